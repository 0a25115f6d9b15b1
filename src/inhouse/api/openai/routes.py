"""OpenAI-compatible routes: ``/v1/models`` (and ``/v1/models/{id}``), ``/v1/chat/completions``, ``/v1/completions``.

Thin: a route authenticates (its permission dependency gives the actor), turns the validated body into a
``GenerationCall``, lets ``serving.py`` run the request and ``wire.py`` shape the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import require
from inhouse.api.openai import wire
from inhouse.api.openai.relay import Relayed, external_model_entries
from inhouse.api.openai.serving import GenerationCall, NotCovered, Serving
from inhouse.api.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.errors import ModelNotFound
from inhouse.kb.embed import embedding_model_ids
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.api.metrics import Metrics
    from inhouse.api.schemas import StreamOptions
    from inhouse.kb.embed import Embedder
    from inhouse.models.spec import ModelSpec
    from inhouse.services import Services


def add_openai_routes(router: APIRouter, services: Services, metrics: Metrics) -> None:
    # Routes are added to the app's own router (not include_router): FastAPI versions differ in how
    # included routers appear in `app.routes`, and the permission meta-test walks that list.
    serving = Serving(services, metrics)
    registry, profiles = services.registry, services.profiles

    def model_entries() -> list[dict[str, Any]]:
        """Local models (with their tuned profile), the embedding model's ids, then external providers' models."""
        specs, loaded = registry.list_models(), set(registry.loaded())
        local = [{**_model_entry(s, s.name in loaded), "tuned_profile": profiles.match(s.sha256).to_dict()}
                 for s in specs]
        return local + _embedding_entries(services.kb.embedder) + external_model_entries(services.egress)

    @router.get("/v1/models", dependencies=[Depends(require("models:read"))])
    async def list_models() -> ModelList:
        return ModelList(data=[ModelEntry.model_validate(e) for e in await run_in_threadpool(model_entries)])

    @router.get("/v1/models/{model_id:path}", dependencies=[Depends(require("models:read"))])
    async def retrieve_model(model_id: str) -> ModelEntry:
        entries = await run_in_threadpool(model_entries)
        for entry in entries:
            if entry["id"] == model_id:
                return ModelEntry.model_validate(entry)
        raise ModelNotFound(model_id, [e["id"] for e in entries])

    @router.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request,
                               actor: Actor = Depends(require("chat:create"))) -> Response:
        call = GenerationCall("chat", body.model_dump(exclude_unset=True), actor, stream=body.stream)
        return await _respond(call, request, body.stream_options)

    @router.post("/v1/completions")
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


class ModelEntry(BaseModel):
    """OpenAI's ``model`` object; our metadata rides along as extra fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


def _embedding_entries(embedder: Embedder) -> list[dict[str, Any]]:
    return [{"id": mid, "object": "model", "created": 0, "owned_by": "inhouse", "type": "embedding",
             "dimensions": embedder.dim, "input_type": "query" if mid.endswith(":query") else "passage"}
            for mid in embedding_model_ids(embedder)]


def _model_entry(spec: ModelSpec, loaded: bool) -> dict[str, Any]:
    # OpenAI's fields, then our metadata (ModelInfo carries no file paths: they may be private).
    extra = spec.info(loaded=loaded).to_dict()
    extra.pop("name", None)
    return {"id": spec.name, "object": "model", "created": 0, "owned_by": "inhouse", **extra}
