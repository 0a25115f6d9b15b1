"""The admin audit routes over a damaged record (its JSON column no longer JSON, a BLOB in a text column): the list
marks the record damaged, the report says the chain is broken there; never a 500."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app


@pytest.mark.parametrize(("column", "value"), [("details", '{"name": "adm'), ("label", b"confidential")])
def test_the_audit_routes_report_a_damaged_record(column: str, value: Any, services: Any) -> None:
    conn = sqlite3.connect(services.audit.store.path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
        conn.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = 1", (value,))
    finally:
        conn.close()
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {services.admin_key}"},
                    raise_server_exceptions=False) as client:
        listed = client.get("/v1/admin/audit")
        report = client.get("/v1/admin/audit/report")
        verified = client.post("/v1/admin/audit/verify")
    assert listed.status_code == 200, listed.text
    first = listed.json()["data"][0]
    assert first["seq"] == 1 and first["damaged"] == [column] and isinstance(first[column], str)
    assert report.status_code == 200, report.text
    assert report.json()["integrity"]["first_broken_seq"] == 1
    assert verified.status_code == 200 and verified.json()["kind"] == "modified"
