"""The evidence report: requests by destination, outcomes by action, confidential items sent out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.governance.audit import STARTED, AuditLog
from inhouse.governance.audit.report import build_report
from inhouse.governance.events import SecurityEvent
from inhouse.store.sqlite.audit import open_sqlite_audit_log

T0 = 1_700_000_000.0


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    a = open_sqlite_audit_log(tmp_path / "audit.db")
    yield a
    a.close()


def req(log: AuditLog, rid: str, location: str | None, label: str | None, outcome: str = "success",
        at: float = T0) -> None:
    log.record_request(action="chat:create", outcome=outcome, request_id=rid, location=location, label=label,
                       model="m" if location else None, at=at)


def test_clean_report(log: AuditLog) -> None:
    req(log, "r1", "local", "restricted", STARTED)
    req(log, "r1", "local", "restricted")  # confidential data served locally: fine
    req(log, "r2", "cloud", "internal")
    req(log, "r3", "cloud", "public")
    req(log, "r4", None, None)
    log.record(SecurityEvent("egress.decision", "key_1", None, "cloud-model", outcome="denied",
                             details={"destination": "cloud", "label": "confidential", "reason": "too high"}))
    report = build_report(log, now=T0 + 10)
    assert report["integrity"]["ok"] is True
    assert report["records"] == 6 and report["records_by_kind"] == {"request": 5, "security": 1}
    assert report["requests"] == {"total": 4, "by_destination": {"cloud": 2, "local": 1}, "without_model": 1,
                                  "external_by_label": {"internal": 1, "public": 1}, "interrupted": 0,
                                  "unfinished": 0}
    assert report["by_action"]["chat:create"] == {"started": 1, "success": 4}
    assert report["by_action"]["egress.decision"] == {"denied": 1}
    assert report["confidential_sent_out"] == {"count": 0, "items": []}
    assert report["generated_at"] == "2023-11-14T22:13:30.000000Z"


def test_confidential_items_sent_out_are_counted_once_per_request(log: AuditLog) -> None:
    req(log, "r1", "cloud", "confidential")
    req(log, "r1", "cloud", "confidential", "failure")  # the same request: one item
    req(log, "r2", "other-cloud", "RESTRICTED", "error")  # failed at the provider: the data left anyway
    req(log, "r3", "cloud", "confidential", STARTED)  # write-ahead only: not counted
    log.record(SecurityEvent("egress.decision", None, None, "m", outcome="success",
                             details={"destination": "cloud", "label": "restricted"}))
    report = build_report(log)
    sent = report["confidential_sent_out"]
    assert sent["count"] == 3
    assert sent["items"] == [{"item": "r1", "seqs": [1, 2]}, {"item": "r2", "seqs": [3]},
                             {"item": "seq:5", "seqs": [5]}]


def test_since_limits_the_report(log: AuditLog) -> None:
    req(log, "old", "cloud", "confidential", at=T0)
    req(log, "new", "local", "public", at=T0 + 86400)
    report = build_report(log, since="2023-11-15T00:00:00.000000Z")
    assert report["records"] == 1 and report["confidential_sent_out"]["count"] == 0
    assert report["period"] == {"first": "2023-11-15T22:13:20.000000Z", "last": "2023-11-15T22:13:20.000000Z"}


def test_grouping_takes_only_record_fields() -> None:
    from inhouse.governance.audit.store import RecordQuery

    sql, params = RecordQuery(since="2023", location="cloud").group_sql("?", ("kind", "label"))
    assert sql.endswith("GROUP BY kind, label") and params == [0, "2023", "cloud"]
    for bad in (("kind; DROP TABLE audit_records",), ("hash",), ()):
        with pytest.raises(ValueError, match="cannot group"):
            RecordQuery().group_sql("?", bad)
