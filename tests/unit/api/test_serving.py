"""The finish step of ``api/openai/serving.py``: its hooks (metrics, audit token counts, quota) run once per
generation, and one that fails neither stops the others nor the answer."""

from __future__ import annotations

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
