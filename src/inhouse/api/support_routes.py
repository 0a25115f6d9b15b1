"""The customer-service assistant over HTTP, and the embeddable widget's script.

Routes (action ``apps:support``, the one a widget's scoped key carries):

* ``POST /v1/apps/support/sessions`` ``{"collections": ["support"]}`` → 201 the new session
* ``POST /v1/apps/support/sessions/{session_id}/messages`` ``{"content": "…"}`` → the reply (``handoff``, ``reason``,
  ``summary``, ``citations``); a message sent while an earlier one is answered waits for it, 409 when several
  already wait
* ``GET /v1/apps/support/sessions/{session_id}`` → the session with its messages
* ``GET /widget.js`` (public: a static script, no data) → the widget

Cross-origin requests from the widget's host pages are handled by ``api/cors.py``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.audit_trail import note
from inhouse.api.auth import public, require
from inhouse.api.cors import WIDGET_PATH
from inhouse.api.openapi import errors, media
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.services import Services

Collection = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collections: Annotated[list[Collection], Field(min_length=1, max_length=8)] | None = None


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


def widget_script() -> bytes:
    return resources.files("inhouse.apps.support").joinpath("widget.js").read_bytes()


def add_support_routes(router: APIRouter, services: Services) -> None:
    support, contexts = services.assistants.support, services.assistants.contexts
    script = widget_script()

    @router.post("/v1/apps/support/sessions", status_code=201, responses=errors(404, 409, why={
        404: "A collection that does not exist or is not the caller's.", 409: "Too many sessions for this key."}))
    async def create_session(body: SessionCreate | None = None,
                             actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        ctx = contexts.for_actor(actor)
        session = await run_in_threadpool(support.open_session, ctx, body.collections if body else None)
        return session.to_dict()

    @router.get("/v1/apps/support/sessions/{session_id}")
    async def get_session(session_id: str, actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        return (await run_in_threadpool(support.session, actor, session_id)).to_dict()

    @router.post("/v1/apps/support/sessions/{session_id}/messages", responses=errors(409, why={
        409: "Several messages of this session are already waiting for the one being answered."}))
    async def post_message(session_id: str, body: MessageCreate, request: Request,
                           actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        reply = await support.send(contexts.for_actor(actor), session_id, body.content)
        note(request, documents=reply.documents)
        return reply.to_dict()

    @router.get(WIDGET_PATH, response_class=Response, responses={200: media("text/javascript")})
    async def widget(_: None = Depends(public("web:read"))) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
