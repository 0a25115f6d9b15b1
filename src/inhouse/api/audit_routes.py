"""Audit routes (admins only): ``GET /v1/admin/audit`` lists records, ``POST /v1/admin/audit/verify``
checks the chain and the signed head, ``GET /v1/admin/audit/report`` is the evidence report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from inhouse.api.auth import require
from inhouse.api.bounds import MAX_INT64
from inhouse.api.responses import AuditList
from inhouse.governance.audit import parse_since
from inhouse.governance.audit.report import build_report

if TYPE_CHECKING:
    from inhouse.services import Services

MAX_LIMIT = 1000


def add_audit_routes(router: APIRouter, services: Services) -> None:

    @router.get("/v1/admin/audit", dependencies=[Depends(require("audit:read"))], responses={200: {"model": AuditList}})
    async def list_audit(
        since: str | None = Query(None, max_length=64, description="7d, 12h, 30m or an ISO date/time"),
        action: str | None = Query(None, max_length=200),
        actor: str | None = Query(None, max_length=200, description="an actor key id (key_…)"),
        kind: str | None = Query(None, pattern="^(request|security)$"),
        document: str | None = Query(None, max_length=200,
                                     description="a document id (doc_…): the records that name it (who read, searched, "
                                     "downloaded or was given its passages; who uploaded, relabelled, deleted it)"),
        after_seq: int = Query(0, ge=0, le=MAX_INT64, description="records after this seq (paging, oldest first)"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> dict[str, Any]:
        audit = services.audit
        since_ts = parse_since(since) if since else None
        records = await run_in_threadpool(lambda: audit.records(
            since=since_ts, action=action, actor=actor, kind=kind, document=document, after_seq=after_seq,
            limit=limit))
        data = [r.to_dict() for r in records]
        return {"object": "list", "data": data,
                "next_after_seq": data[-1]["seq"] if len(data) == limit else None}

    @router.post("/v1/admin/audit/verify", dependencies=[Depends(require("audit:read"))])
    async def verify_audit() -> dict[str, Any]:
        report = await run_in_threadpool(services.audit.verify)
        return report.to_dict()

    @router.get("/v1/admin/audit/report", dependencies=[Depends(require("audit:read"))])
    async def audit_report(since: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        since_ts = parse_since(since) if since else None
        return await run_in_threadpool(lambda: build_report(services.audit, since=since_ts))
