"""``SqliteAuditStore`` passes the audit store conformance suite (the exhaustive tamper sweeps on SQLite files are
tests/unit/governance/test_audit.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from inhouse.governance.audit.log import AuditLog
from inhouse.store.sqlite.audit import SqliteAuditStore, open_sqlite_audit_log
from inhouse.testing.audit_contract import AuditStoreContract, OpenLog


def _raw(log: AuditLog) -> sqlite3.Connection:
    assert isinstance(log.store, SqliteAuditStore)
    conn = sqlite3.connect(log.store.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
    return conn


class TestSqliteAuditStore(AuditStoreContract):
    @pytest.fixture
    def open_log(self, tmp_path: Path) -> OpenLog:
        return lambda: open_sqlite_audit_log(tmp_path / "audit.db")

    def delete_rows(self, log: AuditLog, first_seq: int, last_seq: int) -> None:
        conn = _raw(log)
        try:
            conn.execute("DELETE FROM audit_records WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))
        finally:
            conn.close()

    def set_column(self, log: AuditLog, seq: int, column: str, value: Any) -> None:
        conn = _raw(log)
        try:
            conn.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = ?", (value, seq))
        finally:
            conn.close()
