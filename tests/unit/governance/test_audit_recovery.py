"""The audit log after a crash: no operator step, nothing lost, unfinished requests reported as interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from inhouse.store.sqlite.audit import open_sqlite_audit_log

SRC = str(Path(__file__).resolve().parents[3] / "src")

# Append records, then die by SIGKILL right after the signed head of the next record is on disk and before its
# commit: the narrowest crash window of an append.
KILL_BETWEEN_HEAD_AND_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from inhouse.store.sqlite.audit import SqliteAuditStore, open_sqlite_audit_log
    log = open_sqlite_audit_log(sys.argv[1])
    for i in range(3):
        log.append(kind="security", action="key.created", resource=f"key_{i}", outcome="success")
    original = SqliteAuditStore.replace_head
    def write_then_die(self, text):
        original(self, text)
        os.kill(os.getpid(), signal.SIGKILL)
    SqliteAuditStore.replace_head = write_then_die
    log.append(kind="security", action="user.created", resource="usr_x", outcome="success")
""")


def test_a_crash_between_head_write_and_commit_needs_no_reseal(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_HEAD_AND_COMMIT, str(db)],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    log = open_sqlite_audit_log(db)  # opening finishes the interrupted append
    try:
        report = log.verify()
        assert report.ok and report.records == 4 and report.reseals == 0, report
        assert [r.action for r in log.records()][-1] == "user.created"
        log.append(kind="security", action="key.revoked", resource="key_0", outcome="success")  # no reseal needed
        assert log.verify().ok and log.count() == 5
    finally:
        log.close()
