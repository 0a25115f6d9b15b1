"""``GET /v1/status``: what is loaded, the process's memory, the idle timer, the next scheduled release and
the hardware (the probe's verdict and each loaded model's weight path, with the reason); ``inhouse status``
prints it. Wake-ups are timed where requests wait for them (``openai/serving.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from inhouse.api.auth import require

if TYPE_CHECKING:
    from inhouse.services import Services


def add_status_routes(router: APIRouter, services: Services) -> None:
    @router.get("/v1/status", dependencies=[Depends(require("models:read"))])
    async def status() -> dict[str, Any]:
        body = await run_in_threadpool(services.residency.status)
        return {"object": "status", "default_model": services.settings.models.default, **body,
                "hardware": hardware_status(services)}


def hardware_status(services: Services) -> dict[str, Any]:
    """The probe's summary and the weight path each loaded model uses, with the reason (never probes: a
    status request must not take seconds; ``serve`` probes before it starts)."""
    report = services.probe.cached()
    out: dict[str, Any] = {"probed": report is not None,
                           "weight_buffers": {name: c.to_dict() for name, c in services.weight_choices.items()}}
    if report is not None:
        out.update(report.summary())
    if services.default_model is not None:
        out["default_model_reason"] = services.default_model.reason
    return out
