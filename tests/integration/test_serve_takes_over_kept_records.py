"""A server killed while its audit store was away left a finished stream's final record in `audit.waiting.jsonl`
and its token charges in `usage.waiting.jsonl`: the next `inhouse serve` writes the record (its request is not
closed as interrupted) and adds the charges not marked done, and says so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from inhouse.governance.audit import STARTED
from inhouse.governance.quotas import DAY_S
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.testing.server_process import ServerProcess, create_admin_key

pytestmark = [pytest.mark.integration]


def test_serve_writes_the_records_its_predecessor_kept(tmp_path: Path) -> None:
    key_id = "key_" + create_admin_key(tmp_path).split("_")[1]  # an initialised data directory, as the server left it
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_kept")
        log.record_request(action="chat:create", outcome=STARTED, request_id="req_cut")
        kept = log._fields(kind="request", action="chat:create", outcome="success", request_id="req_kept",
                           details={"status": 200, "completion_tokens": 12})
    finally:
        log.close()
    (tmp_path / "audit.waiting.jsonl").write_text(json.dumps(kept) + "\n")
    today = int(time.time() // DAY_S)
    charges = [{"charge": "c1", "key_id": key_id, "day": today, "tokens": 700},
               {"charge": "c2", "key_id": key_id, "day": today, "tokens": 40}, {"done": "c1"}]  # c1 was added
    (tmp_path / "usage.waiting.jsonl").write_text("".join(json.dumps(c) + "\n" for c in charges))
    with ServerProcess(tmp_path, "smollm2-135m") as server:
        assert "1 audit record(s) the previous run kept" in server.log_tail(20000)
        assert "1 token charge(s) the previous run kept" in server.log_tail(20000)
    db = Database(tmp_path / "inhouse.db")
    try:
        assert SqliteGovernanceStore(db).usage(key_id, today) == (40, 1)
    finally:
        db.close()
    assert not (tmp_path / "usage.waiting.jsonl").exists()
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        finals = {r.request_id: r.outcome for r in log.records() if r.outcome != STARTED and r.request_id}
        assert finals["req_kept"] == "success" and finals["req_cut"] == "interrupted"
        assert log.verify().ok and not (tmp_path / "audit.waiting.jsonl").exists()
    finally:
        log.close()
