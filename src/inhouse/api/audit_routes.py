"""Audit routes (admins only): ``GET /v1/admin/audit`` lists records, ``POST /v1/admin/audit/verify``
checks the chain and the signed head, ``GET /v1/admin/audit/report`` is the evidence report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from inhouse.api.audit_trail import audit_log_of
from inhouse.api.auth import require
from inhouse.errors import AuditUnavailable
from inhouse.governance.audit import parse_since
from inhouse.governance.audit.report import build_report

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike
    from inhouse.governance.audit import AuditLog

MAX_LIMIT = 1000


def _log(request: Request) -> AuditLog:
    audit = audit_log_of(request)
    if audit is None:
        raise AuditUnavailable("This server has no audit log configured.")
    return audit


def add_audit_routes(router: APIRouter, services: ServicesLike) -> None:

    @router.get("/v1/admin/audit", dependencies=[Depends(require("audit:read"))])
    async def list_audit(
        request: Request,
        since: str | None = Query(None, max_length=64, description="7d, 12h, 30m or an ISO date/time"),
        action: str | None = Query(None, max_length=200),
        actor: str | None = Query(None, max_length=200, description="an actor key id (key_…)"),
        kind: str | None = Query(None, pattern="^(request|security)$"),
        after_seq: int = Query(0, ge=0, description="records after this seq (paging, oldest first)"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> dict[str, Any]:
        audit = _log(request)
        since_ts = parse_since(since) if since else None
        records = await run_in_threadpool(lambda: audit.records(
            since=since_ts, action=action, actor=actor, kind=kind, after_seq=after_seq, limit=limit))
        data = [r.to_dict() for r in records]
        return {"object": "list", "data": data,
                "next_after_seq": data[-1]["seq"] if len(data) == limit else None}

    @router.post("/v1/admin/audit/verify", dependencies=[Depends(require("audit:read"))])
    async def verify_audit(request: Request) -> dict[str, Any]:
        audit = _log(request)
        report = await run_in_threadpool(audit.verify)
        return report.to_dict()

    @router.get("/v1/admin/audit/report", dependencies=[Depends(require("audit:read"))])
    async def audit_report(
        request: Request, since: str | None = Query(None, max_length=64),
    ) -> dict[str, Any]:
        audit = _log(request)
        since_ts = parse_since(since) if since else None
        return await run_in_threadpool(lambda: build_report(audit, since=since_ts))
