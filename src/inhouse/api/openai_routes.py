"""OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``. Thin: the
core (``ChatService``) does the work; this module translates to and from the wire format."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.audit_trail import begin_generation, note_route
from inhouse.api.auth import require
from inhouse.api.egress import external_model_entries, serve_external, with_extension
from inhouse.api.kb_routes import attach_citations, ground_chat, not_covered_response
from inhouse.api.metrics import Metrics
from inhouse.api.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.api.status_routes import WakeWatch
from inhouse.api.streaming import (
    SSEResponse,
    openai_events,
    prime,
    run_until_disconnect,
    tool_call_dicts,
)
from inhouse.chat.service import CompletionResult, OutputAccumulator, PreparedGeneration
from inhouse.errors import InvalidRequest

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike
    from inhouse.governance.egress.router import RoutedRequest
    from inhouse.models.spec import ModelSpec


def add_openai_routes(router: APIRouter, services: ServicesLike, metrics: Metrics) -> None:
    # Routes are added to the app's own router (not include_router): FastAPI versions differ in how
    # included routers appear in `app.routes`, and the permission meta-test walks that list.
    chat = services.chat
    max_messages = services.settings.server.max_messages
    # None in minimal wirings (tests): then no model is external and nothing can go out.
    egress = getattr(services, "egress", None)
    external = getattr(services, "external", None)
    kb = getattr(services, "kb", None)  # None in minimal wirings: the knowledge extension is then refused

    @router.get("/v1/models", dependencies=[Depends(require("models:read"))])
    async def list_models() -> dict[str, Any]:
        specs, loaded = await run_in_threadpool(lambda: (services.registry.list_models(),
                                                         set(services.registry.loaded())))
        external_entries = await run_in_threadpool(external_model_entries, egress)
        tuned = await run_in_threadpool(lambda: {s.name: _tuned_profile(services, s) for s in specs})
        return {"object": "list", "data": [{**_model_entry(s, s.name in loaded), "tuned_profile": tuned[s.name]}
                                           for s in specs] + external_entries}

    @router.post("/v1/chat/completions", dependencies=[Depends(require("chat:create"))])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        start = time.perf_counter()
        if len(body.messages) > max_messages:
            raise InvalidRequest(f"At most {max_messages} messages are allowed, got {len(body.messages)}.",
                                 param="messages")
        raw = body.model_dump(exclude_unset=True)
        # The egress policy decides first where a request naming an external model may run.
        actor = getattr(request.state, "actor", None)
        # Knowledge extension: retrieval (with the actor's access) rewrites the messages into a grounded prompt;
        # the retrieved chunks' labels then count in the egress decision below.
        knowledge, grounding = raw.pop("knowledge", None), None
        if knowledge is not None:
            if kb is None or actor is None:
                raise InvalidRequest("This server has no knowledge base.", param="knowledge")
            grounding = await ground_chat(kb, actor, raw, knowledge)
            if not grounding.covered:
                return not_covered_response(raw["model"], body.stream, grounding.question)
            raw["messages"] = grounding.messages
        labels = grounding.labels if grounding is not None else ()
        routed = None if egress is None else await run_in_threadpool(
            lambda: egress.route(raw, actor, extra_labels=labels))
        note_route(request, routed)
        if routed is not None and routed.goes_out:
            return attach_citations(await serve_external(external, routed, request, body.stream), grounding)
        # Rendering, tokenizing and maybe loading the model block: keep them off the event loop.
        target = routed.body if routed else raw
        wake = WakeWatch(services, target.get("model"))  # the model may have been released while idle
        prepared = await run_in_threadpool(chat.prepare_chat, target)
        wake.done(metrics)
        return wake.tag(attach_citations(
            await _run(prepared, body.stream, body.stream_options, request, start, routed), grounding))

    @router.post("/v1/completions", dependencies=[Depends(require("completions:create"))])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        start = time.perf_counter()
        wake = WakeWatch(services, body.model)
        prepared = await run_in_threadpool(chat.prepare_completion, body.model_dump(exclude_unset=True))
        wake.done(metrics)
        return wake.tag(await _run(prepared, body.stream, body.stream_options, request, start))

    async def _run(prepared: PreparedGeneration, stream: bool, stream_options: Any, request: Request,
                   start: float, routed: RoutedRequest | None = None) -> Response:
        # Write-ahead audit record: if the audit log cannot take it, 503 before any token is generated.
        audit_finish = await begin_generation(request, prepared)
        timer = metrics.track(prepared.model, start)
        timer.on_finish.append(audit_finish)
        actor = getattr(request.state, "actor", None)  # set by require(); None only on public routes
        if actor is not None:
            # Tokens count against the key's daily quota once the request has finished (streamed or not).
            timer.on_finish.append(lambda n_prompt, n_gen: services.quotas.record_usage(actor.key_id,
                                                                                      n_prompt + n_gen))
        if stream:
            deltas = chat.stream(prepared)
            try:
                # Before the first token we can still answer with a real status (429, 400…).
                first = await run_until_disconnect(request, prime(deltas))
            except BaseException:
                timer.finish(n_prompt=prepared.n_prompt_tokens, n_generated=0, aborted=True)
                raise
            include_usage = bool(stream_options and stream_options.include_usage)
            return SSEResponse(openai_events(prepared, first, deltas, timer, include_usage=include_usage),
                               headers=routed.headers() if routed else None)
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
        return JSONResponse(with_extension(_chat_body(prepared, result), routed) if prepared.kind == "chat"
                            else _completion_body(prepared, result), headers=routed.headers() if routed else None)


def _tuned_profile(services: ServicesLike, spec: ModelSpec) -> dict[str, Any] | None:
    """The model's tuned profile as ``inhouse serve`` treats it (applied / other CPU / invalid), or None."""
    profiles = getattr(services, "profiles", None)
    return None if profiles is None else profiles.match(spec.sha256).to_dict()


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
