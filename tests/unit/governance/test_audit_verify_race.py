"""``verify`` while another process appends steadily (a server, and the daily `inhouse audit verify`): the SQLite
store writes its head file just before the commit, so an ordinary snapshot can see a head ahead of its rows. Steady
appends are made deterministic here: every ordinary snapshot is taken with another process's append in flight.
An intact chain must never be reported cut."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import StoreUnavailable
from inhouse.governance.audit import AuditLog
from inhouse.governance.audit.log import _VERIFY_PAUSES_S
from inhouse.store.sqlite.audit import SqliteAuditStore, open_sqlite_audit_log
from inhouse.testing.audit_contract import append_in_flight, fill


class SteadyAppends:
    """The verifier's store, while ``writer`` (another process: its own connection and lock) appends without pause:
    an ordinary snapshot always finds one of its appends between head write and commit (committed once the snapshot
    is done). A settled snapshot is the store's own."""

    def __init__(self, store: SqliteAuditStore, writer: AuditLog) -> None:
        self._store = store
        self._writer = writer
        self.in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def snapshot(self, **kwargs: Any) -> Iterator[Any]:
        if kwargs.get("settled"):
            with self._store.snapshot(**kwargs) as snap:
                yield snap
            return
        with append_in_flight(self._writer), self._store.snapshot() as snap:
            self.in_flight += 1
            yield snap


def test_verify_under_steady_appends_finds_the_chain_intact(tmp_path: Path) -> None:
    reader, writer = open_sqlite_audit_log(tmp_path / "audit.db"), open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        fill(writer, 5)
        assert isinstance(reader.store, SqliteAuditStore)
        steady = SteadyAppends(reader.store, writer)
        reader.store = steady  # type: ignore[assignment]
        for n in range(3):
            report = reader.verify()
            assert report.ok, report
            # every look committed the append it found in flight; the settled look sees them all
            assert report.records == 5 + (n + 1) * len(_VERIFY_PAUSES_S)
        assert steady.in_flight == 3 * len(_VERIFY_PAUSES_S)  # every ordinary look found one
    finally:
        reader.close()
        writer.close()


def test_a_settled_snapshot_waits_for_the_append_in_flight(tmp_path: Path) -> None:
    """The append in flight holds the write lock; a settled snapshot cannot be taken until it ends."""
    reader, writer = open_sqlite_audit_log(tmp_path / "audit.db"), open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        fill(writer, 2)
        assert isinstance(reader.store, SqliteAuditStore)
        store = SqliteAuditStore(tmp_path / "audit.db", busy_timeout_ms=50)
        try:
            with append_in_flight(writer):
                with reader.store.snapshot() as snap:  # an ordinary one: the head is ahead of its rows
                    assert snap.last_seq == 2 and '"seq": 3' in (snap.read_head() or "")
                with pytest.raises(StoreUnavailable) as refused, store.snapshot(settled=True):
                    raise AssertionError("a settled snapshot was taken while an append was in flight")
                assert refused.value.code == "store_busy"
            with store.snapshot(settled=True) as snap:
                assert snap.last_seq == 3 and '"seq": 3' in (snap.read_head() or "")
        finally:
            store.close()
    finally:
        reader.close()
        writer.close()
