"""The Responses API's wire shapes for each outcome of ``serving.py``: a ``response`` object, or typed server-sent
events (``event: <type>`` + ``data: {…, "sequence_number": n}``)::

    response.created → response.in_progress
    → response.output_item.added (message) → response.content_part.added (output_text)
    → response.output_text.delta … → response.output_text.done → response.content_part.done
    → response.output_item.done
    → per function call: response.output_item.added → response.function_call_arguments.delta
      → response.function_call_arguments.done → response.output_item.done
    → response.completed (or response.incomplete at max_output_tokens; response.failed if the engine fails)

Every outcome is first turned into the same little stream (``Piece``… then ``Final`` or ``Failure``): a local
generation, the fixed "not covered" answer, or an external provider's chat completion (the egress policy sent it
out). The answer is stored (``store``) before the last event or the JSON body is sent. A client that goes away
stops the generation: ``SSEResponse`` watches for it during a stream, ``run_until_disconnect`` before a JSON body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from starlette.responses import Response

from inhouse.api.openai.knowledge import citations_for
from inhouse.api.openai.logprobs import token_object
from inhouse.api.openai.relay import Relayed
from inhouse.api.openai.responses import arguments_text, format_of, new_id
from inhouse.api.openai.serving import Completed, Failed, Finished, LocalGeneration, NotCovered, Text
from inhouse.api.openai.wire import local_headers
from inhouse.api.streaming import SSEResponse, run_until_disconnect
from inhouse.errors import EngineFailure, Unavailable
from inhouse.kb.answer import not_covered_text

if TYPE_CHECKING:
    from starlette.requests import Request

    from inhouse.api.openai.responses import Turn
    from inhouse.engine.params import TokenLogprob

log = logging.getLogger(__name__)
_GENERIC_ERROR = "The inference engine failed while serving this request."

# Called with the finished response object and the answer's tool calls, to store it (``store: true``).
Store = Callable[[dict[str, Any], str, list[dict[str, Any]]], Awaitable[None]]


@dataclass(frozen=True)
class Piece:
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class Final:
    text: str
    tool_calls: list[dict[str, Any]]  # {"call_id", "name", "arguments"}
    finish_reason: str
    usage: dict[str, Any]  # the Responses API's usage object
    logprobs: list[TokenLogprob] | None = None
    citations: list[dict[str, Any]] | None = None  # the knowledge extension's


@dataclass(frozen=True)
class Failure:
    message: str
    code: str | None = None  # set when the message is for the client (the engine crashed or was unloaded: retry)


Step = Piece | Final | Failure


async def respond(outcome: LocalGeneration | NotCovered | Relayed, turn: Turn, store: Store,
                  request: Request) -> Response:
    steps = _steps(outcome)
    headers = _headers(outcome)
    if turn.body.stream:
        return SSEResponse(_events(turn, steps, store), headers=headers)
    final = await run_until_disconnect(request, _final(steps))  # raises ClientDisconnect: the engine was aborted
    body = response_object(turn, final)
    await store(body, final.text, final.tool_calls)
    return JSONResponse(body, headers=headers)


async def _final(steps: AsyncIterator[Step]) -> Final:
    """The whole answer, for a JSON body; closing ``steps`` (also when cancelled) aborts a local generation."""
    final: Final | None = None
    try:
        async for step in steps:
            if isinstance(step, Failure):
                if step.code:  # the engine crashed or was unloaded: 503, retry
                    raise Unavailable(step.message, code=step.code)
                raise EngineFailure(step.message)
            if isinstance(step, Final):
                final = step
    finally:
        await steps.aclose()  # type: ignore[attr-defined]
    if final is None:
        raise EngineFailure("The generation ended without a result.")
    return final


def usage_object(usage: Any) -> dict[str, Any]:
    """Chat usage (``Usage`` or its dict) → the Responses API's."""
    u = usage.to_dict() if hasattr(usage, "to_dict") else dict(usage or {})
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


def response_object(turn: Turn, final: Final | None, *, status: str | None = None,
                    output: list[dict[str, Any]] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    b = turn.body
    incomplete = final is not None and final.finish_reason == "length"
    if status is None:
        status = "incomplete" if incomplete else "completed"
    if output is None:
        output = output_items(final, message_id=new_id("msg")) if final is not None else []
    obj: dict[str, Any] = {
        "id": turn.id, "object": "response", "created_at": turn.created_at, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None, "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": b.instructions, "max_output_tokens": b.max_output_tokens, "model": b.model,
        "output": output, "parallel_tool_calls": True if b.parallel_tool_calls is None else b.parallel_tool_calls,
        "previous_response_id": b.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "store": b.store, "temperature": 1.0 if b.temperature is None else b.temperature, "text": format_of(b),
        "tool_choice": b.tool_choice or "auto", "tools": b.tools or [], "top_p": 1.0 if b.top_p is None else b.top_p,
        "top_logprobs": b.top_logprobs, "truncation": b.truncation or "disabled",
        "metadata": b.metadata or {},
    }
    if b.user is not None:
        obj["user"] = b.user
    if final is not None and status in ("completed", "incomplete"):
        obj["usage"] = final.usage  # absent until then: the description does not allow null
    if final is not None and final.citations is not None:
        obj["citations"] = final.citations
    return obj


def _text_part(text: str, logprobs: list[TokenLogprob] | None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [],
            "logprobs": [token_object(e) for e in logprobs or ()]}


def _message_item(message_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _call_item(call: dict[str, Any], status: str, arguments: str | None = None) -> dict[str, Any]:
    return {"id": call["id"], "type": "function_call", "status": status, "call_id": call["call_id"],
            "name": call["name"], "arguments": call["arguments"] if arguments is None else arguments}


def output_items(final: Final, *, message_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    status = "incomplete" if final.finish_reason == "length" else "completed"
    if final.text or not final.tool_calls:
        items.append(_message_item(message_id, status, [_text_part(final.text, final.logprobs)]))
    items += [_call_item(c, "completed") for c in final.tool_calls]
    return items


# -- the stream ---------------------------------------------------------------------------------------------


async def _events(turn: Turn, steps: AsyncIterator[Step], store: Store) -> AsyncIterator[bytes]:
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        payload = {"type": kind, **fields, "sequence_number": seq}
        seq += 1
        return f"event: {kind}\ndata: ".encode() + json.dumps(payload, ensure_ascii=False,
                                                            separators=(",", ":")).encode() + b"\n\n"

    message_id = new_id("msg")
    started = False
    parts: list[str] = []
    lps: list[dict[str, Any]] = []
    loc = {"item_id": message_id, "output_index": 0, "content_index": 0}

    def start_message() -> list[bytes]:
        return [event("response.output_item.added", output_index=0, item=_message_item(message_id, "in_progress", [])),
                event("response.content_part.added", **loc, part=_text_part("", None))]

    try:
        yield event("response.created", response=response_object(turn, None, status="in_progress"))
        yield event("response.in_progress", response=response_object(turn, None, status="in_progress"))
        async for step in steps:
            if isinstance(step, Piece):
                if not started:
                    started = True
                    for b in start_message():
                        yield b
                entries = [token_object(e) for e in step.logprobs or ()]
                parts.append(step.text)
                lps.extend(entries)
                yield event("response.output_text.delta", **loc, delta=step.text, logprobs=entries)
            elif isinstance(step, Failure):
                error = ({"code": step.code, "message": step.message} if step.code
                         else {"code": "server_error", "message": _GENERIC_ERROR})
                yield event("response.failed", response=response_object(turn, None, status="failed", error=error))
                return
            else:
                final = step
                items = output_items(final, message_id=message_id)
                if items and items[0]["type"] == "message":
                    if not started:
                        for b in start_message():
                            yield b
                    part = items[0]["content"][0]
                    yield event("response.output_text.done", **loc, text=part["text"], logprobs=part["logprobs"])
                    yield event("response.content_part.done", **loc, part=part)
                    yield event("response.output_item.done", output_index=0, item=items[0])
                calls = [i for i in items if i["type"] == "function_call"]
                first = len(items) - len(calls)
                for n, item in enumerate(calls, start=first):
                    yield event("response.output_item.added", output_index=n, item=_call_item(item, "in_progress", ""))
                    yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=n,
                                delta=item["arguments"])
                    yield event("response.function_call_arguments.done", item_id=item["id"], output_index=n,
                                name=item["name"], arguments=item["arguments"])
                    yield event("response.output_item.done", output_index=n, item=item)
                body = response_object(turn, final, output=items)
                await store(body, final.text, final.tool_calls)
                kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
                yield event(kind, response=body)
    except Exception:
        log.exception("responses stream of %s failed", turn.id)
        yield event("response.failed", response=response_object(
            turn, None, status="failed", error={"code": "server_error", "message": _GENERIC_ERROR}))
    finally:
        await steps.aclose()  # type: ignore[attr-defined]


# -- every outcome as steps -----------------------------------------------------------------------------------


def _steps(outcome: LocalGeneration | NotCovered | Relayed) -> AsyncIterator[Step]:
    if isinstance(outcome, NotCovered):
        return _not_covered_steps(outcome)
    if isinstance(outcome, Relayed):
        return _relayed_steps(outcome)
    return _local_steps(outcome)


def _headers(outcome: LocalGeneration | NotCovered | Relayed) -> dict[str, str] | None:
    if isinstance(outcome, NotCovered):
        return None
    if isinstance(outcome, Relayed):
        return outcome.routed.headers()
    return local_headers(outcome)


def _calls(tool_calls: list[Any]) -> list[dict[str, Any]]:
    return [{"id": new_id("fc"), "call_id": c.id, "name": c.name, "arguments": arguments_text(c.arguments)}
            for c in tool_calls]


async def _local_steps(gen: LocalGeneration) -> AsyncIterator[Step]:
    events = gen.events()
    result = None
    try:
        async for event in events:
            if isinstance(event, Text):
                yield Piece(event.text, event.logprobs)
            elif isinstance(event, Failed):
                yield (Failure(event.error or "The model is unavailable; retry.", event.code) if event.code
                       else Failure(_GENERIC_ERROR))
                return
            elif isinstance(event, Finished):
                result = event.result
                if event.held and result.text:  # tools were offered and the text turned out to be no call
                    yield Piece(result.text, result.logprobs)
            elif isinstance(event, Completed) and result is not None:
                citations = citations_for(result.text, gen.grounding) if gen.grounding is not None else None
                yield Final(result.text, _calls(result.tool_calls), result.finish_reason, usage_object(event.usage),
                            result.logprobs, citations)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _not_covered_steps(answer: NotCovered) -> AsyncIterator[Step]:
    text = not_covered_text(answer.question)
    yield Piece(text)
    yield Final(text, [], "stop", usage_object({}), None, [])


async def _relayed_steps(r: Relayed) -> AsyncIterator[Step]:
    """An external provider's chat completion (whole or streamed) as steps."""
    text, finish = "", "stop"
    usage: Any = {}
    calls: dict[int, dict[str, Any]] = {}
    if r.body is not None:
        choice = (r.body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text, finish, usage = message.get("content") or "", choice.get("finish_reason") or "stop", r.body.get("usage")
        for i, c in enumerate(message.get("tool_calls") or []):
            fn = c.get("function") or {}
            calls[i] = {"id": new_id("fc"), "call_id": c.get("id", ""), "name": fn.get("name", ""),
                        "arguments": fn.get("arguments", "")}
        if text:
            yield Piece(text)
    else:
        chunks: list[dict[str, Any]] = [r.first] if r.first is not None else []
        rest = r.rest
        try:
            while True:
                for chunk in chunks:
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text += delta["content"]
                            yield Piece(delta["content"])
                        for c in delta.get("tool_calls") or []:
                            slot = calls.setdefault(c.get("index", 0), {"id": new_id("fc"), "call_id": "", "name": "",
                                                                        "arguments": ""})
                            fn = c.get("function") or {}
                            slot["call_id"] = c.get("id") or slot["call_id"]
                            slot["name"] = fn.get("name") or slot["name"]
                            slot["arguments"] += fn.get("arguments") or ""
                        finish = choice.get("finish_reason") or finish
                if rest is None:
                    break
                try:
                    chunks = [await rest.__anext__()]
                except StopAsyncIteration:
                    break
        finally:
            if rest is not None:
                await rest.aclose()  # type: ignore[attr-defined]
            r.settle()
    citations = citations_for(text, r.grounding) if r.grounding is not None else None
    yield Final(text, [calls[i] for i in sorted(calls)], finish, usage_object(usage), None, citations)
