"""The finish step of ``api/openai/serving.py``: its hooks (metrics, audit token counts, quota) run once per
generation, and one that fails neither stops the others nor the answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.metrics import GenerationTimer

MODEL = "fake-model"


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_finish_hook_does_not_stop_the_others(make_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                         stream: bool) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the metrics hook broke")

    monkeypatch.setattr(GenerationTimer, "finish", broken)  # the first hook
    s = make_services()
    rec, secret = s.keys.create_key("metered", tokens_per_day_limit=10_000)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": stream,
            "stream_options": {"include_usage": True} if stream else None}
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {secret}"}) as c:
        resp = c.post("/v1/chat/completions", json={k: v for k, v in body.items() if v is not None})
        assert resp.status_code == 200
        if stream:
            assert resp.text.rstrip().endswith("data: [DONE]")
            usage = [line for line in resp.text.splitlines() if '"usage":{' in line][-1]
            total = int(usage.split('"total_tokens":')[1].split("}")[0].split(",")[0])
        else:
            total = resp.json()["usage"]["total_tokens"]
    # The later hooks ran, once: the quota counts the request's tokens exactly, and its final audit record has them.
    assert s.quotas.status(rec.id).tokens_used_today == total > 0
    final = [r for r in s.audit.records(kind="request") if r.action == "chat:create"][-1]
    assert final.outcome == "success" and final.details["prompt_tokens"] + final.details["completion_tokens"] == total


def test_a_delta_carrying_the_last_tokens_and_an_engine_failure_sends_the_text_then_the_error(
        make_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's deltas come merged when the stream fell behind (engine/delivery.py), so the end may arrive
    together with text: the text still goes out, then the error event, and the details stay in the log."""
    from collections.abc import AsyncIterator

    from inhouse.chat.service import ChatService
    from inhouse.engine.params import Delta

    async def merged(self: Any, prepared: Any, index: int = 0) -> AsyncIterator[Delta]:
        yield Delta(prepared.requests[index].request_id, text="abc", token_ids=[1, 2, 3], finish_reason="error",
                    error="llama.cpp said something private", n_generated_tokens=3)

    monkeypatch.setattr(ChatService, "stream", merged)
    s = make_services()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        resp = c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200 and "private" not in resp.text and "[DONE]" not in resp.text
    lines = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in lines[:-1]) == "abc"
    assert lines[-1]["error"]["code"] == "engine_failure"


def test_a_local_answer_is_served_when_earlier_answers_labels_are_unreadable(make_services: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer-label lookup for a history is a database read: a store outage must not turn a local chat into a
    503 (nothing leaves the machine; the egress router fails closed on its own for cloud models)."""
    from inhouse.errors import StoreUnavailable
    from inhouse.store.answer_labels import SqlAnswerLabels

    def away(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("The database is not answering.")

    monkeypatch.setattr(SqlAnswerLabels, "highest", away)
    s = make_services()
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help you?"},
               {"role": "user", "content": "Shorter."}]
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.admin_key}"}) as c:
        resp = c.post("/v1/chat/completions", json={"model": MODEL, "messages": history, "metadata": {
            "label": "confidential"}})
    assert resp.status_code == 200, resp.text
