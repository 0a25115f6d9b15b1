"""A request whose task is cancelled (how Ray Serve's proxy tells a cluster ingress that the client left, for a
stream and for an answer abandoned before its end) is audited as the client leaving: ``aborted`` / 499, not a server
error; the cancellation still propagates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from inhouse.api.app import build_app

MODEL = "fake-model"
SLOW = {"delay_s": 0.02, "script": {"hi": "word " * 200}}  # ~3 s of answer
CANCEL_AFTER_S = 0.3


@pytest.fixture
def slow(make_services: Any) -> Iterator[tuple[Any, Any]]:
    s = make_services(fake=SLOW)
    app = build_app(s)
    with TestClient(app):
        yield s, app


def call_and_cancel(app: Any, key: str, path: str, body: dict[str, Any]) -> list[Message]:
    """POST ``body``; cancel the request's task after ``CANCEL_AFTER_S`` (the client never disconnects itself)."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    sent: list[Message] = []
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)  # the proxy, not the client, ends this request
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(CANCEL_AFTER_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole-answer", "stream"])
def test_a_cancelled_request_is_audited_as_aborted(slow: tuple[Any, Any], stream: bool) -> None:
    s, app = slow
    call_and_cancel(app, s.member_key, "/v1/chat/completions",
                    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 150,
                     "stream": stream})
    final = [r for r in s.audit.records(kind="request") if r.action == "chat:create" and r.outcome != "started"]
    assert len(final) == 1
    assert final[0].outcome == "aborted" and final[0].details["status"] == 499
    assert final[0].details["completion_tokens"] < 50
