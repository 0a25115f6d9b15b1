"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import open_to_all, public
from inhouse.api.errors import inhouse_error_response
from inhouse.api.metrics import CONTENT_TYPE, Metrics
from inhouse.api.openapi import openapi_of
from inhouse.errors import InhouseError, StorageReadOnly, Unavailable, writable

if TYPE_CHECKING:
    from inhouse.services import Services


def add_system_routes(router: APIRouter, services: Services, metrics: Metrics) -> None:
    # /ready and /metrics run on threads of their own limiter, not the shared one (anyio's 40): requests that
    # hold every shared thread (a slow disk, a model loading) must not turn a readiness probe into a timeout.
    probes = anyio.CapacityLimiter(4)

    @router.get("/health", dependencies=[Depends(public("health:read"))])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", dependencies=[Depends(public("health:read"))], response_model=None)
    async def ready() -> JSONResponse:
        try:
            body = await anyio.to_thread.run_sync(_readiness, services, limiter=probes)
        except InhouseError as exc:
            # 503 whatever the cause (an unknown default model is a configuration problem, not a 404).
            wrapped = exc if isinstance(exc, Unavailable) else Unavailable(exc.message)
            return inhouse_error_response(wrapped)
        return JSONResponse(body)

    metrics_dep = open_to_all("metrics:read", services.settings.server.metrics_public)

    @router.get("/metrics", dependencies=[Depends(metrics_dep)], response_model=None,
                response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format."}})
    async def prometheus_metrics() -> Response:
        data = await anyio.to_thread.run_sync(metrics.render, limiter=probes)
        return Response(data, media_type=CONTENT_TYPE)

    openapi_dep = open_to_all("openapi:read", services.settings.server.openapi_public)

    @router.get("/openapi.json", dependencies=[Depends(openapi_dep)], response_model=None,
                responses={200: {"description": "This description (OpenAPI 3.1)."}})
    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(openapi_of, request.app))


def _readiness(services: Services) -> dict[str, Any]:
    if services.stores.ping is not None:
        services.stores.ping()  # a load balancer should stop sending requests that could only get 503s
    elif not writable(services.settings.data_dir):  # the embedded stores: every request's audit record would fail
        raise StorageReadOnly("The data directory cannot be written (its disk is read-only: a disk is turned "
                              "read-only after an I/O error): every request that must be recorded fails until the "
                              "disk is repaired and inhouse restarted.")
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
