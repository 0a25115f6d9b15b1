"""``GET /v1/status``: what is loaded, the process's memory, the idle timer and the next scheduled release
(``inhouse status`` prints it). Also the wake-up bookkeeping shared by the generation routes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.auth import require

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike
    from inhouse.api.metrics import Metrics

WAKE_HEADER = "X-Inhouse-Wake-Ms"


def add_status_routes(router: APIRouter, services: ServicesLike) -> None:
    @router.get("/v1/status", dependencies=[Depends(require("models:read"))])
    async def status() -> dict[str, Any]:
        return await run_in_threadpool(_status, services)


def _status(services: ServicesLike) -> dict[str, Any]:
    residency = getattr(services, "residency", None)
    if residency is not None:
        body: dict[str, Any] = residency.status()
    else:  # minimal wirings (tests) have no residency: report what the registry knows
        body = {"loaded": [{"model": n} for n in services.registry.loaded()]}
    return {"object": "status", "default_model": services.settings.models.default, **body,
            "hardware": hardware_status(services)}


def hardware_status(services: ServicesLike) -> dict[str, Any]:
    """The probe's summary and the weight path each loaded model uses, with the reason (never probes: a
    status request must not take seconds; ``serve`` probes before it starts)."""
    probe = getattr(services, "probe", None)
    report = probe.cached() if probe is not None else None
    choices = getattr(services, "weight_choices", {})
    out: dict[str, Any] = {"probed": report is not None,
                           "weight_buffers": {name: c.to_dict() for name, c in choices.items()}}
    if report is not None:
        out.update(report.summary())
    how = getattr(services, "default_model", None)
    if how is not None:
        out["default_model_reason"] = how.reason
    return out


class WakeWatch:
    """Times a request that found its model unloaded: the wait to load it is its wake-up time, reported
    in ``X-Inhouse-Wake-Ms``, in ``inhouse_model_wake_seconds`` and in ``/v1/status``."""

    def __init__(self, services: ServicesLike, model: Any) -> None:
        self._services = services
        self._model = model if isinstance(model, str) else None
        self._cold = self._model is not None and self._model not in services.registry.loaded()
        self._t0 = time.perf_counter()
        self.seconds: float | None = None

    def done(self, metrics: Metrics) -> None:
        """Call once the model is ready (after the request was prepared)."""
        if not self._cold or self._model not in self._services.registry.loaded():
            return
        self.seconds = time.perf_counter() - self._t0
        metrics.model_wake.labels(self._model).observe(self.seconds)
        residency = getattr(self._services, "residency", None)
        if residency is not None:
            residency.record_wake(self._model, self.seconds)

    def tag(self, response: Response) -> Response:
        if self.seconds is not None:
            response.headers[WAKE_HEADER] = f"{self.seconds * 1000:.0f}"
        return response
