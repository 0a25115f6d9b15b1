"""``SqliteAuditStore``: the ``AuditStore`` of the embedded install: ``audit.db`` beside its head file ``audit.head``.

Writes go through one connection with ``synchronous=FULL`` (a committed record survives a power cut); SQLite's
write lock serialises appends across processes (a lock in the process, too). The head file is replaced atomically
inside the write transaction, before the commit; if the commit then fails, the previous head is put back. It is
kept under a second name (a hard link, ``.audit.head.previous``) before the new one is written, so putting it back is a
rename, which needs no free disk block: a commit refused because the disk filled up leaves the previous head in
place, never the refused record (which the next append would otherwise finish as a crashed one).
Readers (verify, export, reports) use read-only connections of their own, so a long verify never holds up writers
(a settled snapshot takes the write lock only while it reads the row count and the head).

Migrations: version 1 is the table as the first release wrote it (files from before this scheme have
``audit_records`` and no ``schema_migrations``: they are at version 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inhouse.errors import AuditUnavailable, StoreUnavailable, is_busy
from inhouse.governance.audit.chain import FIELDS, Head
from inhouse.governance.audit.log import AuditLog
from inhouse.governance.audit.store import GroupCount, RecordQuery, Row, append_failed
from inhouse.store.sqlite.database import (
    Database,
    Migration,
    apply_migrations,
    connect,
    read_transaction,
    write_transaction,
)

log = logging.getLogger(__name__)

_V1 = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq          INTEGER PRIMARY KEY,   -- 1, 2, 3 … with no gaps
    ts           TEXT NOT NULL,         -- UTC, '2026-01-31T12:00:00.000000Z' (sorts as text)
    kind         TEXT NOT NULL,         -- 'request' | 'security'
    action       TEXT NOT NULL,         -- 'chat:create', 'key.created', 'model.loaded', …
    request_id   TEXT,
    actor_key_id TEXT,
    user_id      TEXT,
    resource     TEXT,
    model        TEXT,
    location     TEXT,                  -- where it ran: 'local' or an external provider's name
    label        TEXT,                  -- effective sensitivity label of the data involved
    documents    TEXT NOT NULL,         -- JSON list of document / chunk ids
    redactions   TEXT NOT NULL,         -- JSON {kind: count}; never the values
    outcome      TEXT NOT NULL,
    reason       TEXT,
    details      TEXT NOT NULL,         -- JSON object
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts);
CREATE INDEX IF NOT EXISTS audit_records_action ON audit_records (action);
CREATE INDEX IF NOT EXISTS audit_records_actor ON audit_records (actor_key_id);
-- Our own code never updates or deletes; these make a bug (or a careless tool) fail loudly. They are no
-- protection against someone who can write the file: the chain and the signed head are.
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

MIGRATIONS = (
    Migration(1, "audit_records", _V1),
    # The requests that never ended (``AuditLog.unfinished``) are found by request id. IF NOT EXISTS: files written
    # by the release before migrations have the index already.
    Migration(2, "audit_records_request",
              "CREATE INDEX IF NOT EXISTS audit_records_request ON audit_records (request_id)"),
)
_INSERT = (f"INSERT INTO audit_records ({', '.join((*FIELDS, 'hash'))})"
           f" VALUES ({', '.join('?' * (len(FIELDS) + 1))})")
_LOCK_POLL_S = 0.0002
_FAILED = {"begin": "The audit log cannot be written", "write": "The audit record could not be written",
           "commit": "The audit record could not be committed"}


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _legacy_version(conn: Any) -> int:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_records'").fetchone()
    return 1 if found else 0


def _dicts(cursor: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """The cursor's rows as dicts. Zipped from plain tuples: a third faster than ``dict(sqlite3.Row)``, which
    counts on a chain of a million records (``verify`` and the report read every one)."""
    cursor.row_factory = None
    names = [d[0] for d in cursor.description]
    return (dict(zip(names, row, strict=True)) for row in cursor)


class _Append:
    def __init__(self, conn: sqlite3.Connection, store: SqliteAuditStore) -> None:
        self._conn = conn
        self._store = store
        self.had_head = False  # a head existed before this append (kept by ``keep_previous_head``)
        self.head_written = False  # the head may have been replaced: put the previous one back if the append fails

    def tail(self) -> Head | None:
        row = self._conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        return Head(row["seq"], row["hash"]) if row else None

    def read_head(self) -> str | None:
        return self._store.read_head()

    def insert(self, row: Row) -> None:
        self._conn.execute(_INSERT, [row[name] for name in (*FIELDS, "hash")])

    def write_head(self, text: str) -> None:
        self.had_head = self._store.keep_previous_head()  # OSError: the head is untouched, the append refused
        self.head_written = True
        self._store.replace_head(text)


class _Snapshot:
    def __init__(self, conn: sqlite3.Connection, store: SqliteAuditStore, *, settled: bool = False) -> None:
        self._conn = conn
        self._store = store
        total, last = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM audit_records").fetchone()
        self.total, self.last_seq = int(total), int(last)
        self._head: tuple[str | None, OSError | None] | None = None  # settled: the head as read with the rows
        if settled:
            try:
                self._head = (store.read_head(), None)
            except OSError as exc:
                self._head = (None, exc)

    def read_head(self) -> str | None:
        if self._head is None:
            return self._store.read_head()
        text, error = self._head
        if error is not None:
            raise error
        return text

    def rows(self) -> Iterator[Row]:
        return _dicts(self._conn.execute("SELECT * FROM audit_records ORDER BY seq"))


class SqliteAuditStore:
    def __init__(self, path: Path | str, *, head_path: Path | None = None, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.head_path = head_path or self.path.parent / "audit.head"
        self._busy_timeout_ms = busy_timeout_ms
        try:
            self._db = Database(self.path, busy_timeout_ms=busy_timeout_ms, synchronous="FULL")
            apply_migrations(self._db, MIGRATIONS, what="audit log", legacy_version=_legacy_version)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"The audit log {self.path} cannot be opened: {exc}") from exc

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer connection (tests make it fail on purpose)."""
        conn: sqlite3.Connection = self._db.connection
        return conn

    # -- writing ----------------------------------------------------------------------------------------------

    @contextmanager
    def appending(self) -> Iterator[_Append]:
        with self._db.lock:
            if self._db.closed:
                raise AuditUnavailable("The audit log is closed.")
            tx = _Append(self._db.connection, self)
            stage = "begin"
            try:
                with write_transaction(self._db.connection):
                    stage = "write"
                    yield tx
                    stage = "commit"
            except BaseException as exc:
                if tx.head_written:
                    self._restore_head(tx.had_head)
                if isinstance(exc, sqlite3.Error | OSError):
                    raise append_failed(_FAILED[stage], exc, self.path.parent) from exc
                raise
            if tx.head_written:
                with contextlib.suppress(OSError):
                    self._previous_head_path.unlink(missing_ok=True)

    # -- the head file ----------------------------------------------------------------------------------------

    def read_head(self) -> str | None:
        try:
            return self.head_path.read_text()
        except FileNotFoundError:
            return None

    def replace_head(self, text: str) -> None:
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.head_path)  # atomic: a reader sees the old head or the new one
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.head_path.parent)  # the rename itself must survive a power cut

    @property
    def _previous_head_path(self) -> Path:
        return self.head_path.with_name(f".{self.head_path.name}.previous")

    def keep_previous_head(self) -> bool:
        """Link the current head under a second name before it is replaced (no new data block); False if there is
        none. Appends are serialised by the write lock, so one such name is enough (a stale one is replaced)."""
        previous = self._previous_head_path
        previous.unlink(missing_ok=True)
        try:
            os.link(self.head_path, previous)
        except FileNotFoundError:
            return False
        except OSError:
            # A file system without hard links: a copy, made while the append can still be refused.
            text = self.read_head()
            if text is None:
                return False
            with open(previous, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        return True

    def _restore_head(self, had_head: bool) -> None:
        """Put back the head kept by ``keep_previous_head`` (a rename: it needs no free space)."""
        try:
            if had_head:
                os.replace(self._previous_head_path, self.head_path)
            else:
                self.head_path.unlink(missing_ok=True)
        except OSError:
            # The refused record's head stays; this process never rolls it forward (``AuditLog._refused``).
            log.error("the audit head of a refused append could not be put back", exc_info=True)
            return
        with contextlib.suppress(OSError):
            _fsync_dir(self.head_path.parent)

    # -- reading ----------------------------------------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def snapshot(self, *, settled: bool = False) -> Iterator[_Snapshot]:
        """``settled``: the rows and the head are read holding the write lock (this process's and SQLite's), so no
        append is between its head write and its commit; the lock is let go before the rows are walked."""
        with self._reader() as conn, read_transaction(conn):
            if not settled:
                yield _Snapshot(conn, self)
                return
            with self._db.lock, self._write_lock():
                snap = _Snapshot(conn, self, settled=True)
            yield snap

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Hold SQLite's write lock for a moment (nothing is written). Polled every ``_LOCK_POLL_S``, not left to
        the busy timeout: SQLite's busy handler sleeps up to 100 ms between tries, and a writer appending without
        pause takes the lock again within microseconds of its commit, so it would win every time."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        conn = connect(self.path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            conn.execute("PRAGMA busy_timeout = 0")  # the polls below wait instead
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.Error as exc:
                    if not is_busy(exc):
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreUnavailable(
                            "The audit log cannot be checked now: another process held its write lock for longer "
                            f"than {self._busy_timeout_ms / 1000:g} s; retry shortly.", code="store_busy") from exc
                    time.sleep(_LOCK_POLL_S)
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute("SELECT count(*) FROM audit_records").fetchone()[0])

    def rows(self, query: RecordQuery) -> Iterator[Row]:
        sql, params = query.sql("?")
        with self._reader() as conn:
            yield from _dicts(conn.execute(sql, params))

    def group_counts(self, query: RecordQuery, columns: Sequence[str]) -> list[GroupCount]:
        sql, params = query.group_sql("?", columns)
        with self._reader() as conn:
            rows = [tuple(row) for row in conn.execute(sql, params)]
        return [GroupCount(row[:-3], *row[-3:]) for row in rows]

    def close(self) -> None:
        self._db.close()


def open_sqlite_audit_log(path: Path | str, *, key_path: Path | None = None, head_path: Path | None = None,
                          clock: Callable[[], float] = time.time, node: str | None = None) -> AuditLog:
    """The audit log of an embedded install: ``audit.db``, with ``audit.head`` and ``audit.key`` beside it.
    ``node``: see ``AuditLog`` (a cluster's ingress replica on the embedded store names itself)."""
    store = SqliteAuditStore(path, head_path=head_path)
    return AuditLog(store, key_path=key_path or Path(path).parent / "audit.key", clock=clock, node=node)
