"""Another process holding an embedded database's write lock past the busy timeout (an `inhouse` command, a backup,
an administrator's sqlite3 shell): the write that waited gets 503 ``store_busy`` with Retry-After in the one error
shape, not a 500; nothing is half-written, and the same request succeeds once the lock is released."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from live_server import run_live_server

from inhouse.errors import is_busy
from inhouse.governance.audit.store import append_failed

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()  # held until the test says so
conn.execute("ROLLBACK")
"""


def test_a_write_lock_held_elsewhere_is_a_503_then_the_write_succeeds(tmp_path: Path) -> None:
    with run_live_server(tmp_path / "data") as server:
        auth = {"Authorization": f"Bearer {server.admin_key}"}
        # A separate process: SQLite's locks are per process (fcntl), so a connection of this one would not block.
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "data" / "inhouse.db")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            t = time.monotonic()
            r = httpx.post(server.url + "/v1/admin/users", headers=auth, json={"name": "bob"}, timeout=60)
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert set(error) == {"message", "type", "code", "param"} and error["code"] == "store_busy", error
            assert int(r.headers["retry-after"]) >= 1 and time.monotonic() - t < 30
        finally:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(30)
        assert "bob" not in {u.name for u in server.services.directory.list_users()}  # nothing half-written
        again = httpx.post(server.url + "/v1/admin/users", headers=auth, json={"name": "bob"}, timeout=60)
        assert again.status_code == 201, again.text
        assert server.services.audit.verify().ok


def test_a_busy_audit_database_is_a_store_unavailable_audit_error() -> None:
    import sqlite3

    exc = sqlite3.OperationalError("database is locked")
    assert is_busy(exc)
    err = append_failed("The audit log cannot be written", exc)
    assert err.code == "store_busy" and "busy" in err.message
