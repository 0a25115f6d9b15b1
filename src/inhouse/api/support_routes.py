"""The customer-service assistant over HTTP, the embeddable widget's script, and its CORS allow-list.

Routes (action ``apps:support``, the one a widget's scoped key carries):

* ``POST /v1/apps/support/sessions`` ``{"collections": ["support"]}`` → 201 the new session
* ``POST /v1/apps/support/sessions/{session_id}/messages`` ``{"content": "…"}`` → the reply (``handoff``, ``reason``,
  ``summary``, ``citations``)
* ``GET /v1/apps/support/sessions/{session_id}`` → the session with its messages
* ``GET /widget.js`` (public: a static script, no data) → the widget

Cross-origin: only origins listed in ``apps.widget_origins`` get CORS headers, and only on the support routes and the
widget script; preflights from them are answered here, before authentication (browsers send no key with them).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inhouse.api.auth import public, require
from inhouse.apps.context import AppContext, parse_tz
from inhouse.apps.support.assistant import SupportAssistant, build_support_assistant
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike

SUPPORT_PREFIX = "/v1/apps/support/"
WIDGET_PATH = "/widget.js"
Collection = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collections: Annotated[list[Collection], Field(min_length=1, max_length=8)] | None = None


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


def app_context(services: ServicesLike, actor: Actor, *, timezone: str | None = None,
                model: str | None = None) -> AppContext:
    """The per-request context of an assistant: the caller, the chat service, the configured model."""
    settings = services.settings
    apps = settings.apps
    return AppContext(actor=actor, chat=services.chat, model=model or apps.model or settings.models.default,
                      tz=parse_tz(timezone or apps.timezone), kb=getattr(services, "kb", None),
                      audit=None, record_usage=lambda n: services.quotas.record_usage(actor.key_id, n))


def widget_script() -> bytes:
    return resources.files("inhouse.apps.support").joinpath("widget.js").read_bytes()


def add_support_routes(router: APIRouter, services: ServicesLike,
                       assistant: SupportAssistant | None = None) -> SupportAssistant:
    support = assistant or build_support_assistant(services.settings, services.db)  # type: ignore[attr-defined]
    script = widget_script()

    @router.post("/v1/apps/support/sessions", status_code=201)
    async def create_session(body: SessionCreate | None = None,
                             actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        ctx = app_context(services, actor)
        session = await run_in_threadpool(support.open_session, ctx, body.collections if body else None)
        return session.to_dict()

    @router.get("/v1/apps/support/sessions/{session_id}")
    async def get_session(session_id: str, actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        return (await run_in_threadpool(support.session, actor, session_id)).to_dict()

    @router.post("/v1/apps/support/sessions/{session_id}/messages")
    async def post_message(session_id: str, body: MessageCreate,
                           actor: Actor = Depends(require("apps:support"))) -> dict[str, Any]:
        reply = await support.send(app_context(services, actor), session_id, body.content)
        return reply.to_dict()

    @router.get(WIDGET_PATH)
    async def widget(_: None = Depends(public("web:read"))) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    return support


class WidgetCorsMiddleware:
    """CORS for the widget: the support routes and ``/widget.js`` only, for the configured origins only."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.origins = {o.rstrip("/") for o in origins}

    def _applies(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or not self.origins:
            return None
        path: str = scope.get("path", "")
        if not (path.startswith(SUPPORT_PREFIX) or path == WIDGET_PATH):
            return None
        origin = Headers(scope=scope).get("origin")
        return origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = self._applies(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and Headers(scope=scope).get("access-control-request-method"):
            headers = [*cors, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                       (b"access-control-allow-headers", b"authorization, content-type"),
                       (b"access-control-max-age", b"600"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
