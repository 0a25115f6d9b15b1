"""A record damaged behind the log's back (a JSON column that is no longer JSON, a BLOB in a text column) is
reported, never a crash: ``verify`` says modified at that record, export and the report mark it, the CLI exits 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.governance.audit import AuditLog
from inhouse.governance.audit.report import build_report
from inhouse.store.sqlite.audit import open_sqlite_audit_log


def _filled(path: Path) -> AuditLog:
    log = open_sqlite_audit_log(path)
    for i in range(3):
        log.record_request(action="chat:create", outcome="success", request_id=f"req_{i}", model="m",
                           location="local", label="internal", documents=[f"doc_{i}"], details={"i": i})
    return log


def _damage(path: Path, seq: int, column: str, value: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
        conn.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = ?", (value, seq))
    finally:
        conn.close()


DAMAGE = [("details", '{"name": "alice'), ("details", "[1, 2]"), ("details", '{"x": NaN}'),
          ("documents", '{"not": "a list"}'), ("redactions", b"{}"), ("reason", b"ok"), ("label", b"confidential"),
          ("prev_hash", b"\x00" * 32)]


@pytest.mark.parametrize(("column", "value"), DAMAGE)
def test_a_damaged_record_is_reported_as_modified(column: str, value: Any, tmp_path: Path) -> None:
    log = _filled(tmp_path / "audit.db")
    try:
        _damage(tmp_path / "audit.db", 2, column, value)
        report = log.verify()
        assert (report.ok, report.first_broken_seq, report.kind) == (False, 2, "modified")
        damaged = log.records()[1]
        assert damaged.damaged.keys() == {column}
        line = damaged.to_dict()
        assert line["damaged"] == [column] and isinstance(line[column], str)
        json.dumps(line, allow_nan=False)  # an export line, whatever the column holds
        assert "damaged" not in log.records()[0].to_dict()  # intact records: the export format as before
        json.dumps(build_report(log), allow_nan=False)
        assert build_report(log)["integrity"]["first_broken_seq"] == 2
    finally:
        log.close()


def test_the_cli_says_broken_and_exports_the_damaged_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(data))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    _filled(data / "audit.db").close()
    _damage(data / "audit.db", 1, "details", '{"name": "alice')
    runner = CliRunner()
    verified = runner.invoke(app, ["audit", "verify"], env={"COLUMNS": "400"})
    assert verified.exit_code == 1 and "Traceback" not in verified.output, verified.output
    assert "BROKEN (modified) at record 1" in verified.output
    as_json = runner.invoke(app, ["audit", "verify", "--json"])
    assert as_json.exit_code == 1, as_json.output
    assert json.loads(as_json.output)["record"]["damaged"] == ["details"]
    exported = runner.invoke(app, ["audit", "export"])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [line.get("damaged") for line in lines] == [["details"], None, None]
    assert lines[0]["details"] == '{"name": "alice'
    reported = runner.invoke(app, ["audit", "report", "--json"])
    assert reported.exit_code == 0, reported.output
    assert json.loads(reported.output)["integrity"]["kind"] == "modified"
