"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import metrics_permission, public
from inhouse.api.errors import inhouse_error_response
from inhouse.api.metrics import CONTENT_TYPE, Metrics
from inhouse.errors import InhouseError, Unavailable

if TYPE_CHECKING:
    from inhouse.services import Services


def add_system_routes(router: APIRouter, services: Services, metrics: Metrics) -> None:

    @router.get("/health", dependencies=[Depends(public("health:read"))])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", dependencies=[Depends(public("health:read"))], response_model=None)
    async def ready() -> JSONResponse:
        try:
            body = await run_in_threadpool(_readiness, services)
        except InhouseError as exc:
            # 503 whatever the cause (an unknown default model is a configuration problem, not a 404).
            wrapped = exc if isinstance(exc, Unavailable) else Unavailable(exc.message)
            return inhouse_error_response(wrapped)
        return JSONResponse(body)

    metrics_dep = metrics_permission(services.settings.server.metrics_public)

    @router.get("/metrics", dependencies=[Depends(metrics_dep)], response_model=None)
    async def prometheus_metrics() -> Response:
        data = await run_in_threadpool(metrics.render)
        return Response(data, media_type=CONTENT_TYPE)


def _readiness(services: Services) -> dict[str, Any]:
    default = services.settings.models.default
    registry = services.registry
    if default in registry.loaded():
        if not registry.get_engine(default).healthy():
            raise Unavailable(f"The default model '{default}' is loaded but its engine is not healthy.")
        return {"status": "ready", "model": default, "loaded": True}
    spec = registry.resolve(default)
    if not spec.present:
        raise Unavailable(f"The default model '{default}' is not downloaded yet.")
    return {"status": "ready", "model": default, "loaded": False}
