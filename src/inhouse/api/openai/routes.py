"""OpenAI-compatible routes: ``/v1/models`` (and ``/v1/models/{id}``), ``/v1/chat/completions``, ``/v1/completions``,
``/v1/responses`` (and a stored response's ``GET``/``DELETE``).

Thin: a route authenticates (its permission dependency gives the actor), turns the validated body into a
``GenerationCall``, lets ``serving.py`` run the request and ``wire.py`` shape the answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import require
from inhouse.api.openai import responses_wire, wire
from inhouse.api.openai.relay import Relayed, external_model_entries
from inhouse.api.openai.responses import (
    ItemList,
    ResponseDeleted,
    ResponseObject,
    ResponseRequest,
    answer_messages,
    build_turn,
    item_resources,
)
from inhouse.api.openai.serving import GenerationCall, NotCovered, Serving
from inhouse.api.openapi import errors
from inhouse.api.responses import ChatCompletion, Completion
from inhouse.api.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.errors import InhouseError, ModelNotFound, NotFound
from inhouse.governance.answer_labels import answer_label
from inhouse.kb.embed import embedding_model_ids
from inhouse.models.tuning.status import tuned_status
from inhouse.types import Actor

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from inhouse.api.metrics import Metrics
    from inhouse.api.schemas import StreamOptions
    from inhouse.kb.embed import Embedder
    from inhouse.models.spec import ModelSpec
    from inhouse.services import Services


# With "stream": true the answer is server-sent events: JSON chunks, then `data: [DONE]`.
STREAM = {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
# The Responses API's events are typed: each has an `event:` line naming its type beside its `data:` (JSON).
TYPED_STREAM = {"content": {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}}}}


def add_openai_routes(router: APIRouter, services: Services, metrics: Metrics) -> None:
    # Routes are added to the app's own router (not include_router): FastAPI versions differ in how
    # included routers appear in `app.routes`, and the permission meta-test walks that list.
    serving = Serving(services, metrics)
    registry, profiles = services.registry, services.profiles

    def tuned_profile(spec: ModelSpec) -> dict[str, Any] | None:
        """The profile's entry, its status what serve does with it (``variant_missing``, ``does_not_fit``)."""
        match = profiles.match(spec.sha256)
        entry = match.to_dict()
        return entry if entry is None else {**entry, "status": tuned_status(match, registry,
                                                                             services.settings.engine)[0]}

    def model_entries() -> list[dict[str, Any]]:
        """Local models (with their tuned profile), the embedding model's ids, then external providers' models."""
        specs, loaded = registry.list_models(), set(registry.loaded())
        local = [{**_model_entry(s, s.name in loaded), "tuned_profile": tuned_profile(s)} for s in specs]
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

    @router.post("/v1/responses", responses={200: {"model": ResponseObject, **TYPED_STREAM, "description": "A response "
                                                  "object, or its typed server-sent events when 'stream' is true."}})
    async def create_response(body: ResponseRequest, request: Request,
                              actor: Actor = Depends(require("responses:create"))) -> Response:
        previous = None
        if body.previous_response_id:
            try:
                previous = await run_in_threadpool(services.responses.get, actor, body.previous_response_id)
            except NotFound as exc:
                raise NotFound(exc.message, param="previous_response_id") from None
        turn = build_turn(body, previous)
        outcome = await serving.start(GenerationCall("chat", turn.chat_body, actor, stream=body.stream), request)
        grounding = outcome.grounding if not isinstance(outcome, NotCovered) else None
        routed = outcome.routed if not isinstance(outcome, NotCovered) else None
        label = answer_label(turn.chat_body, grounding.labels if grounding is not None else (),
                             routed.decision.label if routed is not None else None)

        async def store(obj: dict[str, Any], text: str, tool_calls: list[dict[str, Any]]) -> None:
            if not body.store:
                return
            conversation = turn.conversation(answer_messages(text, tool_calls))
            try:
                await run_in_threadpool(lambda: services.responses.save(
                    actor, response_id=turn.id, model=body.model, previous_id=body.previous_response_id,
                    messages=conversation, input_items=turn.input_items, body=obj, label=label))
            except InhouseError as exc:  # the answer is not lost for it; continuing from it will say not found
                log.warning("response %s was not stored: %s", turn.id, exc.message)

        return await responses_wire.respond(outcome, turn, store, request)

    @router.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, actor: Actor = Depends(require("responses:read"))) -> ResponseObject:
        return ResponseObject.model_validate((await run_in_threadpool(services.responses.get, actor, response_id)).body)

    @router.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(response_id: str, order: Literal["asc", "desc"] = "desc",
                               limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None,
                               actor: Actor = Depends(require("responses:read"))) -> ItemList:
        stored = await run_in_threadpool(services.responses.get, actor, response_id)
        items = item_resources(response_id, stored.input_items)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return ItemList(data=page, has_more=len(items) > limit, first_id=page[0]["id"] if page else None,
                        last_id=page[-1]["id"] if page else None)

    @router.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str,
                              actor: Actor = Depends(require("responses:write"))) -> ResponseDeleted:
        await run_in_threadpool(services.responses.delete, actor, response_id)
        return ResponseDeleted(id=response_id)

    async def _respond(call: GenerationCall, request: Request, stream_options: StreamOptions | None) -> Response:
        outcome = await serving.start(call, request)
        if isinstance(outcome, NotCovered):
            return wire.not_covered_response(outcome, stream=call.stream, n=int(call.body.get("n") or 1),
                                             include_usage=bool(stream_options and stream_options.include_usage))
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
