"""An audit append the caller was told failed ("nothing was recorded") never reaches the chain.

The SQLite store writes the signed head file before the commit; when the commit then fails it puts the previous head
back. On a full disk that used to need a new temporary file, which failed (silently), so the refused record stayed in
`audit.head` and the next append "finished" it as a crashed one ("signed but not committed (the process stopped in
between)", with no process stopped): 26 times in a 64 MB tmpfs run, the client having been answered 507."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import AuditStorageFull, AuditUnavailable
from inhouse.governance.audit import AuditLog
from inhouse.store.sqlite import audit as sqlite_audit
from inhouse.store.sqlite.audit import open_sqlite_audit_log


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    audit = open_sqlite_audit_log(tmp_path / "audit.db")
    yield audit
    audit.close()


def append(log: AuditLog, resource: str) -> Any:
    return log.append(kind="security", action="key.created", resource=resource, outcome="success")


@contextmanager
def commit_fails_on_a_full_disk(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The head file is written, then the disk is full: the commit fails, and so does every new file."""
    full = False
    replace_head = log.store.replace_head

    def write_head_then_fill(text: str) -> None:
        nonlocal full
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        replace_head(text)
        full = True

    @contextmanager
    def refused_commit(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as m:
        m.setattr(log.store, "replace_head", write_head_then_fill)
        m.setattr(sqlite_audit, "write_transaction", refused_commit)
        yield


def test_a_commit_refused_on_a_full_disk_leaves_the_previous_head(log: AuditLog, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    append(log, "key_1")
    before = log.store.read_head()
    with commit_fails_on_a_full_disk(log, monkeypatch), pytest.raises(AuditStorageFull):
        append(log, "key_refused")
    assert log.store.read_head() == before  # put back with no new disk block
    with caplog.at_level(logging.WARNING):
        append(log, "key_2")  # space is back
    assert [r.resource for r in log.records()] == ["key_1", "key_2"]
    assert "signed but not committed" not in caplog.text
    assert log.verify().ok
    # A reopened log (the next serve) finds nothing to finish either.
    log.close()
    reopened = open_sqlite_audit_log(log.store.path)
    try:
        assert [r.resource for r in reopened.records()] == ["key_1", "key_2"] and reopened.verify().ok
    finally:
        reopened.close()


def test_a_head_that_could_not_be_put_back_is_never_rolled_forward(log: AuditLog, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Even where putting the previous head back fails too, this process knows it refused that record: the next
    append takes its place instead of finishing it."""
    append(log, "key_1")
    with commit_fails_on_a_full_disk(log, monkeypatch), pytest.raises(AuditUnavailable):
        monkeypatch.setattr(log.store, "_restore_head", lambda *_: None)
        append(log, "key_refused")
    assert "key_refused" in (log.store.read_head() or "")  # the head still holds the refused record
    with caplog.at_level(logging.WARNING):
        written = append(log, "key_2")
    assert [r.resource for r in log.records()] == ["key_1", "key_2"] and written.seq == 2
    assert "signed but not committed" not in caplog.text
    assert log.verify().ok


def test_a_real_crash_between_head_and_commit_is_still_finished(tmp_path: Path) -> None:
    """The ordinary case the roll-forward is for: another process wrote the head and died before its commit."""
    first = open_sqlite_audit_log(tmp_path / "audit.db")
    append(first, "key_1")

    @contextmanager
    def killed_before_commit(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")  # what the kill leaves: the head written, the transaction gone
        raise SystemExit  # the process "stops"; nothing after this in it runs

    with pytest.MonkeyPatch.context() as m:
        m.setattr(sqlite_audit, "write_transaction", killed_before_commit)
        m.setattr(first.store, "_restore_head", lambda *_: None)  # a killed process restores nothing
        with pytest.raises(SystemExit):
            append(first, "key_2")
    first.store.close()
    second = open_sqlite_audit_log(tmp_path / "audit.db")  # another process: it knows of no refusal
    try:
        assert [r.resource for r in second.records()] == ["key_1", "key_2"] and second.verify().ok
    finally:
        second.close()
