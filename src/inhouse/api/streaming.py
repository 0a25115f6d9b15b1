"""Server-sent events, and cancellation when the client goes away (the OpenAI chunk shapes: ``openai/wire.py``).

A disconnect must abort the engine request within one step. Two mechanisms:

* ``SSEResponse`` watches ``receive()`` for ``http.disconnect`` next to the body loop and cancels the loop
  (Starlette ≥ 0.4x only notices a dead client on the next write, which for a queued request may be
  never); the event generators close the engine's async generator in ``finally``, which aborts.
* ``run_until_disconnect`` does the same for work that happens before a response exists (a non-streaming
  completion, or waiting for the first token of a stream).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)
T = TypeVar("T")

DONE = b"data: [DONE]\n\n"


def encode_event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str, type_: str = "server_error", code: str = "engine_failure") -> bytes:
    return encode_event({"error": {"message": message, "type": type_, "code": code, "param": None}})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it (closing its generators aborts the
    engine request) and raise ClientDisconnect. The request body must already have been read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            # Let the cancelled work run its finally blocks (engine abort) before we go on.
            await asyncio.gather(task, return_exceptions=True)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnect()
    return task.result()


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await _wait_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                async for chunk in self.events:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                log.debug("client disconnected during a stream")
            finally:
                with anyio.CancelScope(shield=True):
                    await self.events.aclose()  # type: ignore[attr-defined]
                tg.cancel_scope.cancel()
