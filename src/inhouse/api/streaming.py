"""Server-sent events in OpenAI's chunk format, and cancellation when the client goes away.

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

from inhouse.api.metrics import GenerationTimer
from inhouse.chat.service import OutputAccumulator, PreparedGeneration
from inhouse.engine.params import Delta

log = logging.getLogger(__name__)
T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
_GENERIC_STREAM_ERROR = "The inference engine failed while serving this request."


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


async def prime(deltas: AsyncIterator[Delta]) -> Delta | None:
    """The first delta. Errors raised before it (queue full, context) propagate as real HTTP errors."""
    try:
        return await deltas.__anext__()
    except StopAsyncIteration:
        return None
    except BaseException:
        await deltas.aclose()  # type: ignore[attr-defined]
        raise


async def _with_first(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    if first is not None:
        yield first
        if first.finish_reason is not None:
            return
    async for d in rest:
        yield d


def tool_call_dicts(acc_calls: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(acc_calls):
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        out.append({"index": i, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": args}})
    return out


async def openai_events(
    prepared: PreparedGeneration,
    first: Delta | None,
    deltas: AsyncIterator[Delta],
    timer: GenerationTimer,
    *,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """SSE chunks for a chat (``chat.completion.chunk``) or text (``text_completion``) stream."""
    chat = prepared.kind == "chat"
    base: dict[str, Any] = {
        "id": prepared.request_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": prepared.created,
        "model": prepared.model,
    }

    def chunk(delta_or_text: Any, finish: str | None) -> bytes:
        if chat:
            choice = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish}
        body = {**base, "choices": [choice]}
        if include_usage:
            body["usage"] = None
        return encode_event(body)

    acc = OutputAccumulator(prepared)
    # With tools offered the text may turn out to be a tool call: hold it back and send the parsed
    # result at the end (content and/or one tool_calls delta).
    hold = prepared.parse_tools
    finished = False
    source = _with_first(first, deltas)
    try:
        if chat:
            yield chunk({"role": "assistant", "content": ""}, None)
        async for delta in source:
            timer.on_delta(delta)
            acc.add(delta)
            if delta.finish_reason == "error":
                finished = True
                log.error("request %s failed mid-stream: %s", prepared.request_id, delta.error)
                # A coded error (engine crashed / unloaded: retry) is meant for the client; others stay in the log.
                yield (error_event(delta.error or _GENERIC_STREAM_ERROR, code=delta.error_code)
                       if delta.error_code else error_event(_GENERIC_STREAM_ERROR))
                return
            if delta.text and not hold:
                yield chunk({"content": delta.text} if chat else delta.text, None)
            if delta.finish_reason is not None:
                break
        finished = acc.finish_reason is not None
        result = acc.result()
        if hold and chat:
            if result.text:
                yield chunk({"content": result.text}, None)
            if result.tool_calls:
                yield chunk({"tool_calls": tool_call_dicts(result.tool_calls)}, None)
        yield chunk({} if chat else "", result.finish_reason)
        if include_usage:
            yield encode_event({**base, "choices": [], "usage": result.usage.to_dict()})
        yield DONE
    except Exception:
        # The status line is already sent: report in-band, in the one error shape.
        log.exception("stream of %s failed", prepared.request_id)
        yield error_event(_GENERIC_STREAM_ERROR)
    finally:
        await source.aclose()  # type: ignore[attr-defined]
        await deltas.aclose()  # type: ignore[attr-defined]
        usage = acc.usage()
        timer.finish(n_prompt=usage.prompt_tokens, n_generated=usage.completion_tokens, aborted=not finished)
