"""``GET /v1/status``: what is loaded, the process's memory, the idle timer and the next scheduled release
(``inhouse status`` prints it). Wake-ups are timed where requests wait for them (``openai/serving.py``)."""

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
        return {"object": "status", "default_model": services.settings.models.default, **body}
