"""OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``. Thin: the
core (``ChatService``) does the work; this module translates to and from the wire format."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import require
from inhouse.api.metrics import Metrics
from inhouse.api.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.api.streaming import (
    SSEResponse,
    openai_events,
    prime,
    run_until_disconnect,
    tool_call_dicts,
)
from inhouse.errors import InvalidRequest
from inhouse.models.chat import CompletionResult, OutputAccumulator, PreparedGeneration

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike
    from inhouse.models.spec import ModelSpec


def add_openai_routes(router: APIRouter, services: ServicesLike, metrics: Metrics) -> None:
    # Routes are added to the app's own router (not include_router): FastAPI versions differ in how
    # included routers appear in `app.routes`, and the permission meta-test walks that list.
    chat = services.chat
    max_messages = services.settings.server.max_messages

    @router.get("/v1/models", dependencies=[Depends(require("models:read"))])
    async def list_models() -> dict[str, Any]:
        specs, loaded = await run_in_threadpool(lambda: (services.registry.list_models(),
                                                         set(services.registry.loaded())))
        return {"object": "list", "data": [_model_entry(s, s.name in loaded) for s in specs]}

    @router.post("/v1/chat/completions", dependencies=[Depends(require("chat:create"))])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        start = time.perf_counter()
        if len(body.messages) > max_messages:
            raise InvalidRequest(f"At most {max_messages} messages are allowed, got {len(body.messages)}.",
                                 param="messages")
        # Rendering, tokenizing and maybe loading the model block: keep them off the event loop.
        prepared = await run_in_threadpool(chat.prepare_chat, body.model_dump(exclude_unset=True))
        return await _run(prepared, body.stream, body.stream_options, request, start)

    @router.post("/v1/completions", dependencies=[Depends(require("completions:create"))])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        start = time.perf_counter()
        prepared = await run_in_threadpool(chat.prepare_completion, body.model_dump(exclude_unset=True))
        return await _run(prepared, body.stream, body.stream_options, request, start)

    async def _run(prepared: PreparedGeneration, stream: bool, stream_options: Any, request: Request,
                   start: float) -> Response:
        timer = metrics.track(prepared.model, start)
        if stream:
            deltas = chat.stream(prepared)
            try:
                # Before the first token we can still answer with a real status (429, 400…).
                first = await run_until_disconnect(request, prime(deltas))
            except BaseException:
                timer.finish(n_prompt=prepared.n_prompt_tokens, n_generated=0, aborted=True)
                raise
            include_usage = bool(stream_options and stream_options.include_usage)
            return SSEResponse(openai_events(prepared, first, deltas, timer, include_usage=include_usage))
        acc = OutputAccumulator(prepared)

        async def collect() -> CompletionResult:
            deltas = chat.stream(prepared)
            try:
                async for delta in deltas:
                    timer.on_delta(delta)
                    acc.add(delta)
            finally:
                await deltas.aclose()  # type: ignore[attr-defined]
            return acc.result()

        try:
            result = await run_until_disconnect(request, collect())
        finally:
            usage = acc.usage()
            timer.finish(n_prompt=usage.prompt_tokens, n_generated=usage.completion_tokens,
                         aborted=acc.finish_reason is None)
        return JSONResponse(_chat_body(prepared, result) if prepared.kind == "chat"
                            else _completion_body(prepared, result))


def _model_entry(spec: ModelSpec, loaded: bool) -> dict[str, Any]:
    # OpenAI's fields, then our metadata (ModelInfo carries no file paths: they may be private).
    extra = spec.info(loaded=loaded).to_dict()
    extra.pop("name", None)
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": "inhouse", **extra}


def _chat_body(prepared: PreparedGeneration, result: CompletionResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [
            {k: v for k, v in c.items() if k != "index"} for c in tool_call_dicts(result.tool_calls)
        ]
    return {
        "id": prepared.request_id,
        "object": "chat.completion",
        "created": prepared.created,
        "model": prepared.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": result.finish_reason}],
        "usage": result.usage.to_dict(),
    }


def _completion_body(prepared: PreparedGeneration, result: CompletionResult) -> dict[str, Any]:
    return {
        "id": prepared.request_id,
        "object": "text_completion",
        "created": prepared.created,
        "model": prepared.model,
        "choices": [{"index": 0, "text": result.text, "logprobs": None,
                     "finish_reason": result.finish_reason}],
        "usage": result.usage.to_dict(),
    }
