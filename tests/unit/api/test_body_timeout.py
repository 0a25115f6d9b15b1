"""The body time rule of ``BodyLimitMiddleware``: ``timeout_s`` plus a second per ``min_rate`` bytes, counting only
the time spent waiting for the client, and nothing once the body is complete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from inhouse.api.middleware import BodyLimitMiddleware

Chunk = tuple[float, bytes]  # (delay before it arrives, bytes)


def client(chunks: list[Chunk], *, then_disconnect_after_s: float | None = None) -> Receive:
    """A client that sends ``chunks`` with their delays; after the last, receive() blocks until it disconnects."""
    queue = list(chunks)

    async def receive() -> Message:
        if queue:
            delay, body = queue.pop(0)
            await asyncio.sleep(delay)
            return {"type": "http.request", "body": body, "more_body": bool(queue)}
        await asyncio.sleep(then_disconnect_after_s if then_disconnect_after_s is not None else 3600)
        return {"type": "http.disconnect"}

    return receive


async def read_body(scope: Scope, receive: Receive, send: Send, *, work_s: float = 0.0) -> None:
    """An app that reads the body chunk by chunk (working ``work_s`` after each) and answers its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        await asyncio.sleep(work_s)
        if not message.get("more_body"):
            break
    await JSONResponse({"size": size})(scope, receive, send)


def run(app: Callable[[Scope, Receive, Send], Awaitable[None]], receive: Receive, *, timeout_s: float,
        min_rate: int) -> tuple[int, dict[str, str], Any]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [], "query_string": b""}
    mw = BodyLimitMiddleware(app, max_body_bytes=1_000_000, timeout_s=timeout_s, min_rate=min_rate)
    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(body) if headers.get("content-type") == "application/json" else body


def test_a_dripping_body_is_a_408_in_the_error_shape_and_closes() -> None:
    drip = [(0.0, b'{"model"')] + [(0.1, b" ")] * 50  # a byte every 0.1 s: 5 s in all
    status, headers, body = run(read_body, client(drip), timeout_s=0.3, min_rate=1000)
    assert status == 408 and headers["connection"] == "close"
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == "request_timeout" and "too slowly" in body["error"]["message"]


def test_a_long_body_at_a_fair_rate_is_read_past_the_timeout() -> None:
    # 10 KB/s for 1.2 s: four times timeout_s, but each 1,000 bytes buy another second.
    steady = [(0.1, b"x" * 1000)] * 12
    assert run(read_body, client(steady), timeout_s=0.3, min_rate=1000) == (
        200, {"content-length": "14", "content-type": "application/json"}, {"size": 12_000})


def test_the_apps_own_work_between_reads_does_not_count() -> None:
    async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(scope, receive, send, work_s=0.2)

    instant = [(0.0, b"x")] * 5  # 1 s of the app's work, no waiting for the client
    assert run(slow_reader, client(instant), timeout_s=0.3, min_rate=0)[0] == 200


def test_no_limit_once_the_body_is_complete() -> None:
    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).body()

        async def slowly() -> Any:
            for _ in range(4):
                await asyncio.sleep(0.2)  # meanwhile Starlette waits for a disconnect on receive()
                yield b"data: x\n\n"

        await StreamingResponse(slowly(), media_type="text/event-stream")(scope, receive, send)

    status, _, body = run(stream, client([(0.0, b"{}")]), timeout_s=0.1, min_rate=0)
    assert status == 200 and body == b"data: x\n\n" * 4


@pytest.mark.parametrize("min_rate", [0, 500])
def test_a_body_that_never_starts_is_cut_after_timeout_s(min_rate: int) -> None:
    status, _, body = run(read_body, client([(5.0, b"{}")]), timeout_s=0.2, min_rate=min_rate)
    assert status == 408 and "0 bytes" in body["error"]["message"]
