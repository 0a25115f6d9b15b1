"""OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Thin: a route authenticates (its permission dependency gives the actor), turns the validated body into a
``GenerationCall``, lets ``serving.py`` run the request and ``wire.py`` shape the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import require
from inhouse.api.openai import wire
from inhouse.api.openai.relay import Relayed, external_model_entries
from inhouse.api.openai.serving import GenerationCall, NotCovered, Serving
from inhouse.api.openapi import errors
from inhouse.api.responses import ChatCompletion, Completion, ModelList
from inhouse.api.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.api.metrics import Metrics
    from inhouse.api.schemas import StreamOptions
    from inhouse.models.spec import ModelSpec
    from inhouse.services import Services


# With "stream": true the answer is server-sent events: JSON chunks, then `data: [DONE]`.
STREAM = {"content": {"text/event-stream": {"schema": {"type": "string"}}}}


def add_openai_routes(router: APIRouter, services: Services, metrics: Metrics) -> None:
    # Routes are added to the app's own router (not include_router): FastAPI versions differ in how
    # included routers appear in `app.routes`, and the permission meta-test walks that list.
    serving = Serving(services, metrics)
    registry, profiles = services.registry, services.profiles

    @router.get("/v1/models", dependencies=[Depends(require("models:read"))], responses={200: {"model": ModelList}})
    async def list_models() -> dict[str, Any]:
        specs, loaded = await run_in_threadpool(lambda: (registry.list_models(), set(registry.loaded())))
        external = await run_in_threadpool(external_model_entries, services.egress)
        tuned = await run_in_threadpool(lambda: {s.name: profiles.match(s.sha256).to_dict() for s in specs})
        return {"object": "list", "data": [{**_model_entry(s, s.name in loaded), "tuned_profile": tuned[s.name]}
                                           for s in specs] + external}

    @router.post("/v1/chat/completions", responses={200: {"model": ChatCompletion, **STREAM}, **errors(
        404, why={404: "No such model, or a `knowledge` collection that does not exist or is not the caller's."})})
    async def chat_completions(body: ChatCompletionRequest, request: Request,
                               actor: Actor = Depends(require("chat:create"))) -> Response:
        call = GenerationCall("chat", body.model_dump(exclude_unset=True), actor, stream=body.stream)
        return await _respond(call, request, body.stream_options)

    @router.post("/v1/completions", responses={200: {"model": Completion, **STREAM}, **errors(
        404, why={404: "No such model."})})
    async def completions(body: CompletionRequest, request: Request,
                          actor: Actor = Depends(require("completions:create"))) -> Response:
        call = GenerationCall("completion", body.model_dump(exclude_unset=True), actor, stream=body.stream)
        return await _respond(call, request, body.stream_options)

    async def _respond(call: GenerationCall, request: Request, stream_options: StreamOptions | None) -> Response:
        outcome = await serving.start(call, request)
        if isinstance(outcome, NotCovered):
            return wire.not_covered_response(outcome, stream=call.stream)
        if isinstance(outcome, Relayed):
            return wire.relayed_response(outcome)
        if call.stream:
            return wire.stream_response(outcome, include_usage=bool(stream_options and stream_options.include_usage))
        return wire.json_response(outcome, await outcome.result())


def _model_entry(spec: ModelSpec, loaded: bool) -> dict[str, Any]:
    # OpenAI's fields, then our metadata (ModelInfo carries no file paths: they may be private).
    extra = spec.info(loaded=loaded).to_dict()
    extra.pop("name", None)
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": "inhouse", **extra}
