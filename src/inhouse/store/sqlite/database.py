"""The one SQLite helper: connection set-up, transactions and ordered migrations, for every SQLite file.

inhouse keeps three SQLite files in its data directory: ``inhouse.db`` (governance, conversations, the assistants'
tables), ``kb.db`` (the knowledge index, opened through ``apsw`` because it loads ``sqlite-vec``) and ``audit.db``
(the hash-chained audit log). All three go through this module:

* ``configure`` sets the pragmas (WAL, busy timeout, synchronous, foreign keys, and ``secure_delete`` on the files
  that keep user text) on a connection of either driver; ``connect`` opens a stdlib ``sqlite3`` connection with them.
* ``Database.purge_after_commit`` / ``purge_wal``: after a delete that users rely on, the WAL is emptied, so the
  deleted rows' pages leave the disk with the commit and not at the next clean stop (below).
* ``write_transaction`` / ``read_transaction`` are the one copy of ``BEGIN IMMEDIATE`` / ``COMMIT`` / ``ROLLBACK``.
  ``Database`` wraps a connection with a lock, so it is usable from any thread.
* ``Migration`` + ``apply_migrations``: numbered steps per database, recorded in ``schema_migrations``
  (version, name, applied_at), each applied in its own write transaction together with its row, so a crash
  leaves a file before or after a version, never between. Steps are append-only: never edit one that shipped.
  A file written before a database joined this scheme carries an older marker; ``legacy_version`` reads it once
  and the steps it stands for are recorded as applied (see each database's migrations).

The stdlib ``sqlite3`` and ``apsw`` connections share what is used here: ``execute(sql, params)`` returning a
cursor with ``fetchone``/``fetchall``. ``WAL`` lets readers proceed while one writer commits;
``synchronous=FULL`` on every file: in WAL mode each commit is fsynced, so a write the caller was told about (an
upload's 201, a key shown once, a token charge) survives a power cut too, as the audit record that names it does.
``NORMAL`` would survive a killed process but could lose the last commits at a power cut, leaving the audit log (which
always asked for ``FULL``) naming a document the index no longer has; the fsync costs about 0.3 ms a request here
(docs/storage.md).

Deletion in WAL mode: ``secure_delete`` zeroes a deleted row's bytes in the page it rewrites, but that page goes to the
``-wal`` file, and the frames written earlier (the insert, every later version of the page) stay there until a
checkpoint has copied them and later writes happen to overwrite them: a deleted document or conversation stayed
readable in ``kb.db-wal`` for as long as the server ran. ``purge_wal`` runs ``wal_checkpoint(TRUNCATE)``: the zeroed
pages reach the database file and the WAL is cut to zero bytes. A reader still using the old frames (a search in
flight; a backup's long read) blocks it: it waits ``_PURGE_WAIT_MS`` for them, then is tried again on a timer.
On those files ``journal_size_limit`` is ``_WAL_KEEP_BYTES``: a WAL that grew past it (a large document's transaction,
checkpoints held off by a reader) is cut back when SQLite restarts it, rather than kept at its largest size with stale
frames past its end.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from inhouse.errors import (
    InvalidRequest,
    is_busy,
    is_read_only,
    is_storage_full,
    storage_full,
    storage_read_only,
    store_busy,
)

log = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]
Synchronous = Literal["OFF", "NORMAL", "FULL"]
_SYNC_LEVEL = {"OFF": 0, "NORMAL": 1, "FULL": 2}
# How long a purge of the WAL waits for readers of the frames it removes (a search takes milliseconds; a backup's read
# can take minutes: that one is waited out by retries, not by the writer that deleted).
_PURGE_WAIT_MS = 500
# A purge readers blocked is tried again after purge_retry_s, the delay doubling up to this, until it succeeds or the
# file is closed.
_PURGE_RETRY_MAX_S = 60.0
# The WAL size kept across SQLite's own checkpoints: one autocheckpoint's worth (1000 pages of 4 KiB), whose frames the
# next cycle overwrites. 0 (cut to nothing at every restart) made each cycle grow the file again: small commits in a
# loop took 1.3-2x as long (4 MiB: as without a limit).
_WAL_KEEP_BYTES = 4 * 1024 * 1024


def configure(conn: Any, *, busy_timeout_ms: int = 5000, synchronous: Synchronous = "FULL",
              readonly: bool = False, foreign_keys: bool = True, secure_delete: bool = False) -> None:
    """The pragmas every inhouse connection runs with (either driver). A read-only connection only waits."""
    pragmas = [f"busy_timeout = {int(busy_timeout_ms)}"]
    if not readonly:
        pragmas += ["journal_mode = WAL", f"synchronous = {_SYNC_LEVEL[synchronous]}"]
    if foreign_keys:
        pragmas.append("foreign_keys = ON")
    if secure_delete:
        # Where deleted text must leave the disk: freed bytes zeroed, and the WAL cut back after it restarts.
        pragmas += ["secure_delete = ON", f"journal_size_limit = {_WAL_KEEP_BYTES}"]
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma}").fetchall()


def connect(path: Path | str, *, readonly: bool = False, busy_timeout_ms: int = 5000,
            synchronous: Synchronous = "FULL", foreign_keys: bool = True,
            secure_delete: bool = False) -> sqlite3.Connection:
    """A stdlib connection with rows as ``sqlite3.Row``, autocommit (transactions are ours), usable by any thread
    (callers serialise: ``Database`` holds a lock)."""
    if str(path) != ":memory:" and not readonly:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    configure(conn, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous, readonly=readonly,
              foreign_keys=foreign_keys, secure_delete=secure_delete)
    return conn


@contextmanager
def write_transaction(conn: Any) -> Iterator[Any]:
    """``BEGIN IMMEDIATE`` (take the write lock now, so what is read is what is changed), ``COMMIT`` on success,
    ``ROLLBACK`` on any exception, including a failed ``COMMIT``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


@contextmanager
def read_transaction(conn: Any) -> Iterator[Any]:
    """A read snapshot: every statement inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        _rollback(conn)  # nothing was written: ending the read is all a rollback does here


def _rollback(conn: Any) -> None:
    with suppress(Exception):  # no transaction left: SQLite ended it itself after the error
        conn.execute("ROLLBACK")


def driver_errors(conn: Any) -> tuple[type[Exception], ...]:
    """The base error classes of ``conn``'s driver: the ``Error`` of the module that defines its class (stdlib
    ``sqlite3``, or ``apsw`` for the index, which this module never imports: it belongs to ``kb/index/sqlite/``)."""
    driver = sys.modules.get(type(conn).__module__.split(".")[0])
    error = getattr(driver, "Error", None)
    return (error,) if isinstance(error, type) and issubclass(error, Exception) else (sqlite3.Error,)


@contextmanager
def full_disk_guard(path: str, what: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """A driver error that means the disk is full becomes ``StorageFull`` (HTTP 507, CLI exit 6); one that means
    the disk cannot be written any more ``StorageReadOnly`` (503 ``storage_read_only``, CLI exit 5); one that means
    another process held the write lock past the busy timeout ``StoreUnavailable`` (503 ``store_busy`` with
    Retry-After, CLI exit 5), not a 500; other errors pass unchanged. The transaction it happened in has been
    rolled back by then (``write_transaction``)."""
    try:
        yield
    except errors as exc:
        directory = None if path == ":memory:" else Path(path).parent
        if is_storage_full(exc, directory):
            raise storage_full(what, exc) from exc
        if is_read_only(exc, directory):
            raise storage_read_only(what) from exc
        if is_busy(exc):
            raise store_busy(what) from exc
        raise


class Database:
    """A connection usable from any thread: one re-entrant lock around every statement and transaction.

    Calls made by the thread inside ``transaction()`` join that transaction (the lock is re-entrant and a nested
    ``transaction()`` does not begin a second one). A write that fails because the disk is full raises
    ``StorageFull`` (``what`` names the file in its message). ``secure_delete``: for a connection it opens (a file
    that keeps user text); ``purge_retry_s``: the first delay before a blocked ``purge_wal`` is tried again."""

    def __init__(self, path: Path | str, *, conn: Any = None, busy_timeout_ms: int = 5000,
                 synchronous: Synchronous = "FULL", what: str | None = None, secure_delete: bool = False,
                 purge_retry_s: float = 1.0) -> None:
        self.path = str(path)
        self._conn: Any = conn if conn is not None else connect(path, busy_timeout_ms=busy_timeout_ms,
                                                                synchronous=synchronous, secure_delete=secure_delete)
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False
        self._purge_requested = False  # by the transaction in progress
        self._purge_pending = False  # a purge readers blocked, waiting for its retry
        self._purge_first_s = self._purge_delay_s = float(purge_retry_s)
        self._purge_timer: threading.Timer | None = None
        self._what = f"Could not write to {what or Path(self.path).name}"
        self._errors = driver_errors(self._conn)

    def _guard(self) -> Any:
        return full_disk_guard(self.path, self._what, self._errors)

    @property
    def connection(self) -> Any:
        return self._conn

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """The driver's base error classes."""
        return self._errors

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement (autocommit unless inside ``transaction``); return the rows changed."""
        with self._lock, self._guard():
            cur = self._conn.execute(sql, params)
            rowcount = getattr(cur, "rowcount", None)
            return int(rowcount if rowcount is not None else self._conn.changes())

    def erase(self, sql: str, params: Params = ()) -> int:
        """``execute`` a statement that deletes what a user wants gone (a conversation, a stored response, an event):
        the WAL is purged once it commits (``purge_after_commit``), so the text leaves the disk with the commit."""
        with self.transaction():
            self.purge_after_commit()
            return self.execute(sql, params)

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Params = ()) -> Any:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Hold the lock and a write transaction; commit on success, roll back on any exception (a failed
        ``COMMIT`` included: a full disk leaves nothing half-written)."""
        with self._lock, self._guard():
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            with write_transaction(self._conn) as conn:
                self._depth = 1
                try:
                    yield conn
                finally:
                    self._depth = 0
                    purge, self._purge_requested = self._purge_requested, False
            if purge:  # committed
                self._purge()

    @contextmanager
    def snapshot(self) -> Iterator[Any]:
        """Hold the lock and a read transaction (one consistent view for several statements)."""
        with self._lock, read_transaction(self._conn) as conn:
            yield conn

    def purge_after_commit(self) -> None:
        """Inside ``transaction()`` that deletes or replaces what a user wants gone (a document, a conversation):
        once it commits, ``purge_wal`` runs. A rollback drops the request with the changes."""
        with self._lock:
            if not self._depth:
                raise RuntimeError("purge_after_commit outside a transaction")
            self._purge_requested = True

    def purge_wal(self) -> bool:
        """Copy the WAL into the database file and cut it to zero bytes (``wal_checkpoint(TRUNCATE)``), so pages
        that held deleted rows are on disk nowhere but as ``secure_delete`` zeroed them. Waits ``_PURGE_WAIT_MS``
        for readers of the old frames; if they still hold them, returns False and tries again on a timer (the
        delete itself stands either way). A no-op on a file not in WAL mode."""
        with self._lock:
            if self._depth:
                raise RuntimeError("purge_wal inside a transaction: use purge_after_commit")
            return self._purge()

    def _purge(self, *, retry: bool = True) -> bool:
        """``purge_wal`` under the lock; a failure (even of the driver: the commit stands) leaves a retry."""
        if self._closed:
            return False
        try:
            wait = int(self._conn.execute("PRAGMA busy_timeout").fetchone()[0])
            self._conn.execute(f"PRAGMA busy_timeout = {min(wait, _PURGE_WAIT_MS)}").fetchall()
            try:
                # (busy, frames in the WAL, frames copied): busy=1 when a reader kept it from finishing.
                busy = int(self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {wait}").fetchall()
        except self._errors as exc:
            log.warning("could not empty the WAL of %s after a delete (tried again later): %s", self.path, exc)
            busy = 1
        if not busy:
            self._purge_pending = False
            self._purge_delay_s = self._purge_first_s
            if self._purge_timer is not None:
                self._purge_timer.cancel()
                self._purge_timer = None
            return True
        self._purge_pending = True
        if retry and self._purge_timer is None:
            # One timer at a time, its delay doubling: a reader that stays (a backup) costs one attempt a minute.
            self._purge_timer = threading.Timer(self._purge_delay_s, self._retry_purge)
            self._purge_timer.daemon = True
            self._purge_delay_s = min(self._purge_delay_s * 2, _PURGE_RETRY_MAX_S)
            self._purge_timer.start()
        return False

    def _retry_purge(self) -> None:
        with self._lock:
            self._purge_timer = None
            if self._purge_pending and not self._closed:
                self._purge()

    @property
    def purge_pending(self) -> bool:
        """A purge readers blocked is still to be retried."""
        return self._purge_pending

    def pragma(self, name: str) -> Any:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        return self.scalar(f"PRAGMA {name}")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                if self._purge_timer is not None:
                    self._purge_timer.cancel()
                    self._purge_timer = None
                if self._purge_pending:
                    self._purge(retry=False)  # a last try (the last connection to close checkpoints on its own)
                self._closed = True
                self._conn.close()


# -- migrations ------------------------------------------------------------------------------------------------

Step = str | Callable[[Any], None]


@dataclass(frozen=True)
class Migration:
    """One numbered step: SQL (one or more statements) or a function of the connection (for DDL that depends on
    a runtime value, such as the vector dimension)."""

    version: int
    name: str
    sql: Step


def statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies and string literals keep their semicolons).
    ``executescript`` is not used: it commits on its own and would break one-transaction-per-version."""
    out: list[str] = []
    buf = ""
    for piece in sql.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        out.append(buf.strip().rstrip(";"))
    return out


def run_step(conn: Any, step: Step) -> None:
    if callable(step):
        step(conn)
        return
    for stmt in statements(step):
        conn.execute(stmt)


_CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def apply_migrations(db: Database, migrations: Sequence[Migration], *, what: str = "database",
                     legacy_version: Callable[[Any], int] | None = None) -> list[int]:
    """Apply the steps ``db`` has not recorded, in order; return the versions applied now (empty: up to date).

    Each step runs in its own write transaction with the row that records it; the check is made inside that
    transaction, so two processes opening the same file apply a step once. A file that records a version newer
    than the last step is refused (``InvalidRequest``): it was written by a newer inhouse."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and increasing")
    latest = versions[-1] if versions else 0
    with db.transaction() as conn:
        if not _has_table(conn, "schema_migrations"):
            adopted = legacy_version(conn) if legacy_version is not None else 0
            if adopted > latest:  # refused before anything is written: the newer inhouse keeps its file as it was
                raise InvalidRequest(
                    f"The {what} at {db.path} has schema version {adopted}, newer than this version of inhouse "
                    f"understands ({latest}); upgrade inhouse to open it.")
            conn.execute(_CREATE_TABLE)
            now = time.time()
            for m in migrations:
                if m.version <= adopted:  # the older marker says these are in the file already
                    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                                 (m.version, m.name, now))
        found = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
    if found > latest:
        raise InvalidRequest(
            f"The {what} at {db.path} has schema version {found}, newer than this version of inhouse "
            f"understands ({latest}); upgrade inhouse to open it.")
    applied: list[int] = []
    for m in migrations:
        with db.transaction() as conn:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)).fetchone():
                continue
            run_step(conn, m.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (m.version, m.name, time.time()))
        applied.append(m.version)
    return applied


def current_version(db: Database) -> int:
    """The newest version recorded in ``db`` (0: no migration yet)."""
    with db.snapshot() as conn:
        if not _has_table(conn, "schema_migrations"):
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
