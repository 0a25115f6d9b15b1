"""Final records kept in ``audit.waiting.jsonl`` while the store was away are taken over by the next process: every
one not in the chain yet, also those of requests that never wrote a ``started`` record (a relayed external request
has no id; a client gone from a route that is not a generation), and none twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import StoreUnavailable
from inhouse.governance.audit import STARTED, AuditLog
from inhouse.governance.audit.store import append_failed
from inhouse.store.sqlite.audit import open_sqlite_audit_log


def _away(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    def away() -> Any:
        raise append_failed("The audit log cannot be written", StoreUnavailable("The database is away."))

    monkeypatch.setattr(log.store, "appending", away)


def _finals(log: AuditLog) -> list[tuple[Any, ...]]:
    return [(r.request_id, r.outcome, r.location, r.resource) for r in log.records() if r.outcome != STARTED]


def test_records_of_requests_without_a_started_record_are_taken_over(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spool = tmp_path / "audit.waiting.jsonl"
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    log.take_over_kept(spool)
    log.record_request(action="chat:create", outcome=STARTED, request_id="req_local")
    with monkeypatch.context() as m:
        _away(log, m)
        log.record_finished_request(action="chat:create", outcome="success", request_id=None, location="openai",
                                    label="internal", details={"status": 200})
        log.record_finished_request(action="kb:read", outcome="client_disconnected", request_id="req_gone",
                                    resource="GET /v1/kb/documents")
        log.record_finished_request(action="chat:create", outcome="success", request_id="req_local")
        assert len(spool.read_text().splitlines()) == 3
    log.store.close()  # the process dies with the store still away

    after = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        assert after.take_over_kept(spool) == 3
        assert after.close_interrupted() == []
        assert _finals(after) == [(None, "success", "openai", None),
                                  ("req_gone", "client_disconnected", None, "GET /v1/kb/documents"),
                                  ("req_local", "success", None, None)]
        assert after.verify().ok and not spool.exists()
    finally:
        after.close()


def test_a_crash_while_the_kept_records_were_written_duplicates_none(tmp_path: Path) -> None:
    """The spool goes only once all its records are written: after a crash in between, the next process finds them
    in the chain (by request id; without one, by all the record's fields) and writes only the others."""
    spool = tmp_path / "audit.waiting.jsonl"
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_closed")
        log.record_request(action="chat:create", outcome="interrupted", request_id="req_closed")  # by a replica
        written = log.record_request(action="chat:create", outcome="success", location="openai", at=1_700_000_001)
        line = {name: getattr(written, name) for name in ("ts", "kind", "action", "request_id", "actor_key_id",
                                                          "user_id", "resource", "model", "location", "label",
                                                          "outcome", "reason")}
        line.update(documents="[]", redactions="{}", details="{}")
        later = {**line, "ts": "2023-11-14T22:13:22.000000Z"}  # the same request shape, another time: another one
        closed = {**line, "request_id": "req_closed"}
        with spool.open("w") as f:
            for fields in (line, closed, later, later):
                f.write(json.dumps(fields) + "\n")
    finally:
        log.close()
    after = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        assert after.take_over_kept(spool) == 1
        after.close_interrupted()
        assert [(r.request_id, r.ts) for r in after.records() if r.location == "openai"] == [
            (None, "2023-11-14T22:13:21.000000Z"), (None, "2023-11-14T22:13:22.000000Z")]
        assert [r.outcome for r in after.records(action="chat:create") if r.request_id == "req_closed"] == [
            STARTED, "interrupted"]
        assert after.verify().ok and not spool.exists()
    finally:
        after.close()
