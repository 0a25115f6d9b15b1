"""OpenAI's wire shapes: ``chat.completion`` / ``text_completion`` JSON bodies and their streamed chunks as
server-sent events, for each outcome of ``serving.py`` (a local generation, "not covered", a provider's answer).

Our additions ride on the same shapes: ``citations`` (the knowledge extension: in the body, or in one extra chunk
before ``[DONE]``), ``inhouse`` (what the egress policy did) and the ``X-Inhouse-*`` headers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.responses import Response

from inhouse.api.openai.knowledge import StreamCitations, add_citations
from inhouse.api.openai.logprobs import CompletionLogprobs, chat_logprobs
from inhouse.api.openai.serving import Completed, Failed, Finished, Text
from inhouse.api.streaming import DONE, SSEResponse, encode_event, error_event
from inhouse.chat.output import echo_text
from inhouse.chat.service import new_request_id
from inhouse.errors import InhouseError
from inhouse.kb.answer import not_covered_text

if TYPE_CHECKING:
    from inhouse.api.openai.relay import Relayed
    from inhouse.api.openai.serving import LocalGeneration, NotCovered
    from inhouse.chat.output import CompletionResult, PreparedGeneration
    from inhouse.chat.tool_calls import ToolCall

log = logging.getLogger(__name__)

WAKE_HEADER = "X-Inhouse-Wake-Ms"
_GENERIC_STREAM_ERROR = "The inference engine failed while serving this request."


# -- a local generation ------------------------------------------------------------------------------------


def json_response(gen: LocalGeneration, done: Completed) -> JSONResponse:
    p = gen.prepared
    if p.kind == "chat":
        body = chat_body(p, done)
        if gen.routed is not None:
            body["inhouse"] = gen.routed.extension()
        if gen.grounding is not None:
            add_citations(body, gen.grounding)
    else:
        body = completion_body(p, done)
    return JSONResponse(body, headers=local_headers(gen))


def stream_response(gen: LocalGeneration, *, include_usage: bool) -> SSEResponse:
    return SSEResponse(_chunks(gen, include_usage), headers=local_headers(gen))


def chat_message(result: CompletionResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        message["content"] = result.text or None
        calls = tool_call_dicts(result.tool_calls)
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    return message


def chat_body(prepared: PreparedGeneration, done: Completed) -> dict[str, Any]:
    return {
        "id": prepared.request_id,
        "object": "chat.completion",
        "created": prepared.created,
        "model": prepared.model,
        "choices": [{"index": r.index, "message": chat_message(r), "logprobs": chat_logprobs(r.logprobs),
                     "finish_reason": r.finish_reason} for r in done.results],
        "usage": done.usage.to_dict(),
    }


def completion_body(prepared: PreparedGeneration, done: Completed) -> dict[str, Any]:
    choices = []
    for r in done.results:
        echo = echo_text(prepared, r.index, r.prompt_logprobs)
        logprobs = None
        if prepared.logprobs is not None:
            entries = [*(r.prompt_logprobs or ()), *(r.logprobs or ())] if prepared.echo is not None else r.logprobs
            logprobs = CompletionLogprobs().build(entries or (), first_is_prompt_start=prepared.echo is not None)
        choices.append({"index": r.index, "text": echo + r.text, "logprobs": logprobs,
                        "finish_reason": r.finish_reason})
    return {"id": prepared.request_id, "object": "text_completion", "created": prepared.created,
            "model": prepared.model, "choices": choices, "usage": done.usage.to_dict()}


def tool_call_dicts(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls):
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        out.append({"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}})
    return out


async def _chunks(gen: LocalGeneration, include_usage: bool) -> AsyncIterator[bytes]:
    """``chat.completion.chunk`` (or ``text_completion``) events, ``[DONE]`` at the end; a failure after the
    status line was sent is reported in-band, in the one error shape."""
    p = gen.prepared
    chat = p.kind == "chat"
    base: dict[str, Any] = {"id": p.request_id, "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": p.created, "model": p.model}
    citations = StreamCitations(gen.grounding) if gen.grounding is not None else None
    # Completions: per choice, the legacy logprobs builder (its running text offset) and whether echo was sent.
    offsets = [CompletionLogprobs() for _ in p.requests]
    echoed: set[int] = set()

    def emit(payload: dict[str, Any]) -> bytes:
        if citations is not None:
            citations.see(payload)
        return encode_event(payload)

    def chunk(index: int, delta_or_text: Any, finish: str | None, logprobs: Any = None) -> bytes:
        key = "delta" if chat else "text"
        choice = {"index": index, key: delta_or_text, "logprobs": logprobs, "finish_reason": finish}
        body = {**base, "choices": [choice]}
        if include_usage and chat:
            body["usage"] = None
        return emit(body)

    def text_chunk(event: Text) -> bytes:
        if chat:
            return chunk(event.index, {"content": event.text}, None, chat_logprobs(event.logprobs))
        text, entries = event.text, event.logprobs
        first = event.index not in echoed
        if first and p.echo is not None:
            echoed.add(event.index)
            text = echo_text(p, event.index, event.prompt_logprobs) + text
            entries = [*(event.prompt_logprobs or ()), *(entries or ())]
        logprobs = (offsets[event.index].build(entries or (), first_is_prompt_start=first and p.echo is not None)
                    if p.logprobs is not None else None)
        return chunk(event.index, text, None, logprobs)

    events = gen.events()
    try:
        if chat:
            for i in range(len(p.requests)):
                yield chunk(i, {"role": "assistant", "content": ""}, None)
        async for event in events:
            if isinstance(event, Text):
                yield text_chunk(event)
            elif isinstance(event, Failed):
                # A coded failure (engine crashed / unloaded: retry) is meant for the client; others stay in the log.
                yield (error_event(event.error or _GENERIC_STREAM_ERROR, code=event.code) if event.code
                       else error_event(_GENERIC_STREAM_ERROR))
                return
            elif isinstance(event, Finished):
                result = event.result
                if event.held and chat:
                    if result.text or result.logprobs:
                        yield chunk(result.index, {"content": result.text}, None, chat_logprobs(result.logprobs))
                    if result.tool_calls:
                        yield chunk(result.index, {"tool_calls": tool_call_dicts(result.tool_calls)}, None)
                if not chat and p.echo is not None and result.index not in echoed:  # nothing was generated
                    yield text_chunk(Text("", result.index, [], result.prompt_logprobs))
                yield chunk(result.index, {} if chat else "", result.finish_reason)
            elif isinstance(event, Completed):
                if include_usage:
                    yield emit({**base, "choices": [], "usage": event.usage.to_dict()})
                if citations is not None:
                    yield encode_event(citations.chunk())
                yield DONE
    except Exception:
        log.exception("stream of %s failed", p.request_id)
        yield error_event(_GENERIC_STREAM_ERROR)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def local_headers(gen: LocalGeneration) -> dict[str, str] | None:
    headers = gen.routed.headers() if gen.routed is not None else {}
    if gen.wake_s is not None:
        headers[WAKE_HEADER] = f"{gen.wake_s * 1000:.0f}"
    return headers or None


# -- nothing relevant in the documents ---------------------------------------------------------------------


def not_covered_response(answer: NotCovered, *, stream: bool, include_usage: bool = False, n: int = 1) -> Response:
    """The fixed answer when retrieval found nothing relevant: nothing generated, nothing invented. Shaped like a
    generated answer (``n`` choices, ``logprobs``, the usage chunk when asked) so clients need no special case."""
    rid, created, model = new_request_id(), int(time.time()), answer.model
    text = not_covered_text(answer.question)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    if not stream:
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"} for i in range(n)],
            "usage": usage, "citations": [],
        })

    async def events() -> AsyncIterator[bytes]:
        base: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        if include_usage:
            base["usage"] = None  # as on every chunk of a generated answer; the last chunk carries it
        for i in range(n):
            yield encode_event({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": text},
                                                     "logprobs": None, "finish_reason": None}]})
        for i in range(n):
            end: dict[str, Any] = {**base, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                                        "finish_reason": "stop"}]}
            if i == n - 1:  # the (empty) citations once, on the last chunk of the answer
                end["citations"] = []
            yield encode_event(end)
        if include_usage:
            yield encode_event({**base, "choices": [], "usage": usage})
        yield DONE

    return SSEResponse(events())


# -- an external provider's answer ------------------------------------------------------------------------


def relayed_response(r: Relayed) -> Response:
    ext = r.routed.extension()
    if r.body is not None:
        body = {**r.body, "inhouse": ext}
        if r.grounding is not None:
            add_citations(body, r.grounding)
        return JSONResponse(body, headers=r.routed.headers())
    assert r.rest is not None, "a streamed answer has the rest of its chunks"
    return SSEResponse(_relayed_chunks(r, r.rest, ext), headers=r.routed.headers())


async def _relayed_chunks(r: Relayed, rest: AsyncIterator[dict[str, Any]], ext: dict[str, Any]
                          ) -> AsyncIterator[bytes]:
    first, grounding = r.first, r.grounding
    citations = StreamCitations(grounding) if grounding is not None else None

    def emit(payload: dict[str, Any]) -> bytes:
        if citations is not None:
            citations.see(payload)
        return encode_event(payload)

    try:
        if first is not None:
            yield emit({**first, "inhouse": ext})
        async for chunk in rest:
            yield emit(chunk)
        if citations is not None:
            yield encode_event(citations.chunk())
        yield DONE
    except InhouseError as exc:
        log.warning("external stream failed: %s", exc.message)
        yield error_event(exc.message, exc.type, exc.code)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        r.settle()  # also when the client left: what the provider sent until then was used
