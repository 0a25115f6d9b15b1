"""The HTTP app: ``build_app(services)`` wires routes, auth, error handlers, limits and metrics.

The app holds no globals: everything comes from the typed ``Services`` (built by ``inhouse.bootstrap``), handed
to each route module here and kept on ``app.state.services`` for the middlewares and dependencies
(``api/deps.services_of``). Route modules never import this module or each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import FastAPI

from inhouse import __version__
from inhouse.api.admin_routes import add_admin_routes
from inhouse.api.audit_routes import add_audit_routes
from inhouse.api.audit_trail import AuditMiddleware
from inhouse.api.auth import AuthFirstRoute
from inhouse.api.conversation_routes import add_conversation_routes
from inhouse.api.cors import WidgetCorsMiddleware
from inhouse.api.embedding_routes import add_embedding_routes
from inhouse.api.errors import install_error_handlers
from inhouse.api.kb_routes import add_kb_routes
from inhouse.api.metrics import Metrics
from inhouse.api.middleware import BodyLimitMiddleware, EdgeMiddleware, upload_limits
from inhouse.api.minutes_routes import add_minutes_routes
from inhouse.api.openai.routes import add_openai_routes
from inhouse.api.outline_routes import add_outline_routes
from inhouse.api.schedule_routes import add_schedule_routes
from inhouse.api.status_routes import add_status_routes
from inhouse.api.support_routes import add_support_routes
from inhouse.api.system_routes import add_system_routes
from inhouse.web.routes import add_web_routes

if TYPE_CHECKING:
    from inhouse.api.metrics import SeriesExchange
    from inhouse.engine.protocol import EngineClient
    from inhouse.models.registry import ModelRegistry
    from inhouse.services import Services


def loaded_engines(registry: ModelRegistry) -> Iterator[EngineClient]:
    # Never loads: a scrape must not wake a model that idle release unloaded.
    yield from (engine for _, engine in registry.loaded_engines())


def build_app(services: Services, *, series_exchange: SeriesExchange | None = None) -> FastAPI:
    """``series_exchange``: the HTTP metrics are summed with the app's other processes' (a cluster's ingress
    replicas, ``cluster/metrics_board.py``); without it, /metrics counts this process's requests."""
    # FastAPI's own /docs and /openapi.json would declare no permission: /openapi.json is a route of ours
    # (api/system_routes.py, described by api/openapi.py) and there is no interactive page.
    app = FastAPI(title="inhouse", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    # Every route authenticates and checks its permission before its body is read (api/auth.py).
    app.router.route_class = AuthFirstRoute
    parser = services.kb.parser
    metrics = Metrics(lambda: list(loaded_engines(services.registry)), exchange=series_exchange,
                      parse_stops=lambda: dict(parser.stops) if parser is not None else {},
                      waiting=lambda: {"audit": services.audit.waiting, "usage": services.quotas.waiting})
    # The embedder's wakes happen inside the knowledge base, not where a chat request waits (openai/serving.py).
    services.residency.on_embedder_wake = lambda name, seconds: metrics.model_wake.labels(name).observe(seconds)
    install_error_handlers(app)
    add_system_routes(app.router, services, metrics)
    add_openai_routes(app.router, services, metrics)
    add_admin_routes(app.router, services)
    add_audit_routes(app.router, services)
    add_status_routes(app.router, services)
    add_kb_routes(app.router, services.kb)
    add_embedding_routes(app.router, services.kb.embedder, services.quotas)
    add_conversation_routes(app.router, services.conversations)  # the web UI's chat history
    # The assistants; every route declares apps:use, or apps:support for those a widget's scoped key may call.
    add_support_routes(app.router, services)
    add_schedule_routes(app.router, services)
    add_minutes_routes(app.router, services)
    add_outline_routes(app.router, services)
    add_web_routes(app.router, services)  # the web UI at / (page shells, static files, sign-in form)
    # Innermost of ours: one audit record per request, written before a complete response is released.
    app.add_middleware(AuditMiddleware)
    # Added last = outermost: the edge counts even the 413s of the body limit.
    server = services.settings.server
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=server.max_body_bytes,
                       limit_for_path=upload_limits(services.settings), timeout_s=server.body_timeout_s,
                       min_rate=server.body_min_rate)
    app.add_middleware(EdgeMiddleware, metrics=metrics)
    # Outermost: the support widget's CORS preflights are answered before anything else (they carry no key).
    app.add_middleware(WidgetCorsMiddleware, origins=services.settings.apps.widget_origins)
    return app
