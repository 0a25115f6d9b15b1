"""A server killed while its audit store was away left a finished stream's final record in `audit.waiting.jsonl`:
the next `inhouse serve` writes it (its request is not closed as interrupted), and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inhouse.governance.audit import STARTED
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.testing.server_process import ServerProcess, create_admin_key

pytestmark = [pytest.mark.integration]


def test_serve_writes_the_records_its_predecessor_kept(tmp_path: Path) -> None:
    create_admin_key(tmp_path)  # an initialised data directory, as the killed server left it
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_kept")
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_cut")
        kept = log._fields(kind="request", action="chat:create", outcome="success", request_id="req_kept",
                           details={"status": 200, "completion_tokens": 12})
    finally:
        log.close()
    (tmp_path / "audit.waiting.jsonl").write_text(json.dumps(kept) + "\n")
    with ServerProcess(tmp_path, "smollm2-135m") as server:
        assert "1 audit record(s) the previous run kept" in server.log_tail(20000)
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        finals = {r.request_id: r.outcome for r in log.records() if r.outcome != STARTED and r.request_id}
        assert finals["req_kept"] == "success" and finals["req_cut"] == "interrupted"
        assert log.verify().ok and not (tmp_path / "audit.waiting.jsonl").exists()
    finally:
        log.close()
