"""SQLite access: one connection shared by threads, serialised by a lock.

WAL lets readers proceed while one writer commits; ``synchronous=NORMAL`` is durable across process
crashes in WAL mode (only a power loss may drop the last transactions). The audit log will ask for FULL
around its own writes. The stdlib ``sqlite3`` is enough: requests touch the database a few times each.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inhouse.errors import is_storage_full, storage_full

Params = Sequence[Any] | dict[str, Any]


@contextmanager
def _full_disk(path: str) -> Iterator[None]:
    """A write that failed because the disk is full becomes ``StorageFull`` (HTTP 507, CLI exit 6)."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_storage_full(exc, None if path == ":memory:" else Path(path).parent):
            raise storage_full(f"Could not write to {Path(path).name}", exc) from exc
        raise


class Database:
    """A sqlite3 connection usable from any thread (one lock around every statement and transaction)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves in ``transaction``.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        self._closed = False

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement (autocommit unless inside ``transaction``); return the rows changed."""
        with self._lock, _full_disk(self.path):
            cur = self._conn.execute(sql, params)
            return cur.rowcount

    def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
            return row

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and a write transaction; commit on success, roll back on any exception."""
        with self._lock, _full_disk(self.path):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT (disk full) leaves the transaction open
                    self._conn.execute("ROLLBACK")
                raise

    def pragma(self, name: str) -> Any:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        return self.scalar(f"PRAGMA {name}")

    def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied now (empty when up to date)."""
        from inhouse.store.migrations import apply_migrations

        return apply_migrations(self)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
