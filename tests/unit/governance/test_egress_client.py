"""ExternalProviderClient: refuses what the policy did not allow, restores answers (also streamed)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from inhouse.errors import PermissionDenied, Unavailable
from inhouse.governance.egress.client import ChunkRestorer, ExternalProviderClient
from inhouse.governance.egress.router import RoutedRequest
from inhouse.governance.labels import Label
from inhouse.governance.pii.redact import RedactionSession
from inhouse.governance.policy import Decision, Provider

PROVIDER = Provider("cloud", "http://cloud.invalid/v1", "INHOUSE_TEST_KEY", ("m",), Label.PUBLIC, Label.INTERNAL)


def routed(egress: str = "sent_redacted") -> RoutedRequest:
    session = RedactionSession()
    session.placeholder("EMAIL", "alice@example.com")
    decision = Decision("cloud" if egress.startswith("sent") else "local", egress, "test",  # type: ignore[arg-type]
                        Label.INTERNAL, PROVIDER)
    body = {"model": "m", "messages": [{"role": "user", "content": "mail <EMAIL_1>"}]}
    return RoutedRequest("m", decision, body, session)


def handler(calls: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        body = json.loads(request.content)
        if body.get("stream"):
            pieces = ["Sent to <EM", "AIL", "_1", "> now <", "EMAIL_1"]  # ends mid-placeholder, no finish
            text = "".join(f"data: {json.dumps({'id': 'x', 'choices': [{'index': 0, 'delta': {'content': p}}]})}\n\n"
                           for p in pieces)
            return httpx.Response(200, text=text + "data: [DONE]\n\n")
        return httpx.Response(200, json={"id": "x", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Sent to <EMAIL_1>", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"to": "<EMAIL_1>"}'}}]}}]})
    return httpx.MockTransport(handle)


def test_complete_and_stream_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_TEST_KEY", "k")
    calls: list[httpx.Request] = []
    client = ExternalProviderClient(transport=handler(calls))
    out = asyncio.run(client.complete(routed()))
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Sent to alice@example.com"
    assert msg["tool_calls"][0]["function"]["arguments"] == '{"to": "alice@example.com"}'
    assert calls[0].headers["authorization"] == "Bearer k"
    assert b"alice" not in calls[0].content

    async def collect() -> str:
        parts = []
        async for chunk in client.stream(routed()):
            parts.append(chunk["choices"][0]["delta"].get("content") or "")
        return "".join(parts)

    # The provider stopped mid-placeholder: the held-back tail still comes out (as sent, unrestorable).
    assert asyncio.run(collect()) == "Sent to alice@example.com now <EMAIL_1"


@pytest.mark.parametrize("egress", ["kept_local", "refused"])
def test_refuses_requests_the_policy_kept(egress: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_TEST_KEY", "k")
    calls: list[httpx.Request] = []
    client = ExternalProviderClient(transport=handler(calls))
    with pytest.raises(PermissionDenied):
        asyncio.run(client.complete(routed(egress)))
    assert calls == []


def test_missing_key_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INHOUSE_TEST_KEY", raising=False)
    calls: list[httpx.Request] = []
    with pytest.raises(Unavailable) as info:
        asyncio.run(ExternalProviderClient(transport=handler(calls)).complete(routed()))
    assert info.value.code == "provider_unavailable" and calls == []


def test_upstream_errors_do_not_echo_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_TEST_KEY", "k")
    transport = httpx.MockTransport(lambda r: httpx.Response(400, text="your prompt <EMAIL_1> was bad"))
    with pytest.raises(Unavailable) as info:
        asyncio.run(ExternalProviderClient(transport=transport).complete(routed()))
    assert "HTTP 400" in info.value.message and "EMAIL" not in info.value.message


def test_chunk_restorer_flushes_on_finish() -> None:
    session = RedactionSession()
    session.placeholder("PHONE", "13812345678")
    r = ChunkRestorer(session)
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": "call <PHO"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "NE_1> or <"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    out = [r.restore(c)["choices"][0]["delta"].get("content", "") for c in chunks]
    assert out == ["call ", "13812345678 or ", "<"]
    assert r.finish() is None
