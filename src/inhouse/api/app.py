"""The HTTP app: ``build_app(services)`` wires routes, auth, error handlers, limits and metrics.

The app holds no globals: everything comes from ``services`` (built by ``inhouse.bootstrap``), reachable
from handlers through closures and ``app.state.services``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI

from inhouse.api.admin_routes import add_admin_routes
from inhouse.api.apps_routes import WidgetCorsMiddleware, add_apps_routes
from inhouse.api.audit_routes import add_audit_routes
from inhouse.api.audit_trail import AuditMiddleware
from inhouse.api.conversation_routes import add_conversation_routes
from inhouse.api.embedding_routes import add_embedding_routes
from inhouse.api.errors import install_error_handlers
from inhouse.api.kb_routes import add_kb_routes, upload_limit
from inhouse.api.metrics import Metrics
from inhouse.api.middleware import BodyLimitMiddleware, EdgeMiddleware
from inhouse.api.openai_routes import add_openai_routes
from inhouse.api.status_routes import add_status_routes
from inhouse.api.system_routes import add_system_routes
from inhouse.web.routes import add_web_routes

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService
    from inhouse.config import Settings
    from inhouse.engine.protocol import EngineClient
    from inhouse.governance.directory import UserDirectory
    from inhouse.governance.identity import KeyStore
    from inhouse.governance.quotas import QuotaService
    from inhouse.models.registry import ModelRegistry



class ServicesLike(Protocol):
    """What the app needs of ``inhouse.bootstrap.Services`` (any object with these attributes)."""

    settings: Settings
    keys: KeyStore
    directory: UserDirectory
    quotas: QuotaService
    registry: ModelRegistry
    chat: ChatService


def loaded_engines(registry: ModelRegistry) -> Iterator[EngineClient]:
    # Never loads: a scrape must not wake a model that idle release unloaded.
    yield from (engine for _, engine in registry.loaded_engines())


def build_app(services: ServicesLike) -> FastAPI:
    # No /docs or /openapi.json: every route must declare a permission, and these would not.
    app = FastAPI(title="inhouse", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    metrics = Metrics(lambda: list(loaded_engines(services.registry)))
    app.state.metrics = metrics
    install_error_handlers(app)
    add_system_routes(app.router, services, metrics)
    add_openai_routes(app.router, services, metrics)
    add_admin_routes(app.router, services)
    add_audit_routes(app.router, services)
    add_status_routes(app.router, services)
    kb = getattr(services, "kb", None)  # absent in minimal wirings (tests of other parts)
    if kb is not None:
        add_kb_routes(app.router, kb)
        add_embedding_routes(app.router, kb.embedder)
    if getattr(services, "conversations", None) is not None:  # the web UI's chat history
        add_conversation_routes(app.router, services.conversations)  # type: ignore[attr-defined]
    if getattr(services, "db", None) is not None:  # the assistants keep sessions and events in the database
        add_apps_routes(app.router, services)
    add_web_routes(app.router, services)  # the web UI at / (page shells, static files, sign-in form)
    # Innermost of ours: one audit record per request, written before a complete response is released.
    app.add_middleware(AuditMiddleware)
    # Added last = outermost: the edge counts even the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=services.settings.server.max_body_bytes,
                       limit_for_path=upload_limit(services.settings) if kb is not None else None)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    # Outermost: the support widget's CORS preflights are answered before anything else (they carry no key).
    app.add_middleware(WidgetCorsMiddleware, origins=services.settings.apps.widget_origins)
    return app
