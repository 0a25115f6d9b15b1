"""The PostgreSQL helper: a connection pool, transactions, advisory locks and ordered migrations.

Every connection of the pool is in autocommit mode and never switches to server-side generic plans
(``prepare_threshold=None``: after five executions psycopg would prepare statements, and PostgreSQL's generic plan
for a filtered vector or keyword query ignored the filter's selectivity and was many times slower). A store method
either runs one statement on a pooled connection or, inside ``transaction()``, every statement on the one
connection of that transaction.

**When the server goes away** (stopped, restarted, failed over, or the network to it lost), every statement that
cannot run is ``StoreUnavailable`` (HTTP 503 ``store_unavailable`` with Retry-After, CLI exit as any
``Unavailable``), never a driver error and so never a 500; the caller's message does not name the server (the log
does, once per outage). While the last attempt failed, a caller waits ``OUTAGE_WAIT_S`` for a connection rather than
the pool's full timeout, and once a second one of them connects directly: when the server answers, a new pool
replaces the old one, whose own attempts may be a minute apart by then (``_renew_if_back``). A connection back from
the pool that has been idle for ``CHECK_IDLE_S`` is checked with an empty query before it is handed out (HikariCP's
rule: connections in constant use are not checked), so the first request after the server comes back is not the one
that finds its connection dead.

Migrations: numbered steps per scope (``inhouse``, ``audit``, ``kb``: one PostgreSQL database holds what the three
SQLite files hold), recorded in ``schema_migrations (scope, version, name, applied_at)``. Each step runs in its own
transaction with its row, under an advisory lock, so several nodes starting together apply it once.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inhouse.errors import InvalidRequest, Overloaded, StoreUnavailable, is_storage_full, storage_full

Params = Sequence[Any] | dict[str, Any] | None

log = logging.getLogger(__name__)

# A connection idle this long is checked (an empty query, ~0.1 ms) before it is handed out.
CHECK_IDLE_S = 1.0
# During an outage a caller waits this long for a connection instead of the pool's timeout.
OUTAGE_WAIT_S = 1.0
# SQLSTATEs that mean the server or the connection went away (class 08: connection exception; 57P01-57P03: the
# server shutting down, crashed, or not accepting connections yet). A client-side failure has no SQLSTATE.
_GONE_CLASSES = ("08",)
_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})
# A statement the server gave up on because of other sessions, not because of what it asked: cancelled (57014:
# statement_timeout, e.g. while VACUUM FULL or ALTER TABLE holds a lock, or an administrator's pg_cancel_backend), a
# lock not granted (55P03: lock_timeout, NOWAIT), a deadlock broken (40P01), a serialization failure (40001). The
# statement (and its transaction) was rolled back: ``store_busy``, as SQLite's write lock held past the busy timeout.
_BUSY_STATES = frozenset({"57014", "55P03", "40P01", "40001"})
# A value past one of the server's limits (class 54: program_limit_exceeded), a number past its column's range.
_LIMIT_CLASS = "54"
_OUT_OF_RANGE = "22003"


def lock_id(name: str) -> int:
    """A stable 32-bit advisory lock key for ``name`` (the same on every node)."""
    return zlib.crc32(f"inhouse:{name}".encode())


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "postgresql://…"
    if "password" in info:
        info["password"] = "***"
    return make_conninfo(**info)  # type: ignore[arg-type]


def _gone(exc: BaseException) -> bool:
    """Whether a driver error means the server cannot be reached (rather than a statement it refused). A pool
    timeout is one of these too, unless a direct connection shows the pool was only busy (``_mapped_errors``)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(_GONE_CLASSES) or state in _GONE_STATES


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0,
                 configure: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self._errors: type[Exception] = psycopg.Error
        self._data_error: type[Exception] = psycopg.DataError
        self._timeout_s = timeout_s
        self._clock = clock
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None  # the last attempt found the server gone
        self._probed_at = 0.0  # the last direct connection attempt during an outage
        self._answered_at: tuple[float, bool] = (float("-inf"), True)  # the last probe of a waiting caller, its answer
        self._renew_lock = threading.Lock()  # one probe at a time; the others do not wait for it
        self._returned: dict[int, float] = {}  # id(connection) -> when it last went back to the pool
        self._max_size = max_size
        self._in_use = 0  # connections handed out by _pooled and not yet given back
        self._in_use_lock = threading.Lock()

        def setup(conn: Any) -> None:
            conn.autocommit = True
            if configure is not None:
                configure(conn)

        def check(conn: Any) -> None:
            if self._clock() - self._returned.get(id(conn), 0.0) < CHECK_IDLE_S:
                return
            try:
                ConnectionPool.check_connection(conn)  # raises on a dead connection: the pool opens another
            except Exception:
                # The server restarted (or went away): the other idle connections are dead too. The pool would find
                # them one checkout at a time, backing off 0, 1, 2, 4 ... s between them, so with a warm pool the
                # first request after a restart waited 10 s and got 429 "busy". Check them all now: the dead are
                # replaced at once.
                self._pool.check()
                raise

        def returned(conn: Any) -> None:
            now = self._clock()
            if len(self._returned) > 4 * max_size:  # forget connections the pool has closed since
                self._returned = {k: t for k, t in self._returned.items() if now - t < 3600.0}
            self._returned[id(conn)] = now

        def new_pool() -> Any:
            return ConnectionPool(
                url, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False, configure=setup,
                check=check, reset=returned, kwargs={"prepare_threshold": None, "row_factory": dict_row},
            )

        self._new_pool = new_pool
        self._pool = new_pool()
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:
            self._pool.close()
            raise StoreUnavailable(f"The PostgreSQL server at {redact_url(url)} cannot be reached: {exc}") from exc

    @property
    def errors(self) -> type[Exception]:
        """The driver's base error class (stores map it to their domain errors)."""
        return self._errors

    def _wait_s(self) -> float:
        return OUTAGE_WAIT_S if self._outage_since is not None else self._timeout_s

    def _went(self, exc: BaseException) -> StoreUnavailable:
        with self._outage_lock:
            first = self._outage_since is None
            if first:
                self._outage_since = self._clock()
        if first:
            log.error("PostgreSQL at %s cannot be reached: %s", redact_url(self.url), str(exc).strip()[:300])
        return StoreUnavailable("The database cannot be reached right now; nothing was done. Retry shortly.")

    def _back(self) -> None:
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.warning("PostgreSQL at %s is reachable again after %.1f s", redact_url(self.url),
                        self._clock() - since)

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """The driver's errors a caller can act on, as ours: the server's ``disk_full`` (SQLSTATE 53100) becomes
        ``StorageFull`` (HTTP 507, CLI exit 6; PostgreSQL has rolled the statement's transaction back); a server
        gone away ``StoreUnavailable`` (503); text with a NUL character, which PostgreSQL cannot hold (the driver
        refuses it before sending), ``InvalidRequest``: a 400, not a server error. So are a value past one of the
        server's limits (SQLSTATE class 54: a word over 2,046 bytes in a ``tsvector``, a key over 2,704 bytes in a
        btree index) and a number out of its column's range (22003): the callers bound what they can, this is the
        safety net for what they miss, and the request is what is wrong. A statement cancelled or rolled back because
        of other sessions (``_BUSY_STATES``) is ``StoreUnavailable`` with code ``store_busy`` (503 with Retry-After,
        CLI exit 5)."""
        try:
            yield
        except self._errors as exc:
            if is_storage_full(exc):
                raise storage_full("Could not write to the PostgreSQL database", exc) from exc
            state = getattr(exc, "sqlstate", None) or ""
            if state in _BUSY_STATES:
                # The server's text names tables and the setting that fired: the log has it.
                log.warning("PostgreSQL gave up on a statement (SQLSTATE %s): %s", state, str(exc).strip()[:300])
                raise StoreUnavailable(
                    "The database is busy: a statement waited too long for a lock or was cancelled by the server "
                    "(maintenance such as VACUUM FULL or ALTER TABLE may hold a table; a statement_timeout or "
                    "lock_timeout ended the wait); it was rolled back. Retry shortly.", code="store_busy") from exc
            if _gone(exc):
                if self._outage_since is None and self._busy(exc):
                    raise Overloaded("Every database connection of this process is busy; retry shortly.",
                                     retry_after_s=1.0) from exc
                raise self._went(exc) from exc
            if isinstance(exc, self._data_error) and "NUL" in str(exc):
                raise InvalidRequest("Text with a NUL character (\\u0000) cannot be stored or looked up.",
                                     code="nul_character") from None
            if state.startswith(_LIMIT_CLASS) or state == _OUT_OF_RANGE:
                # The server's text names tables and indexes: the log has it, the caller a plain sentence.
                log.warning("PostgreSQL refused a value (SQLSTATE %s): %s", state, str(exc).strip()[:300])
                if state == _OUT_OF_RANGE:
                    raise InvalidRequest("A number is out of the range the database can store; nothing was changed.",
                                         code="value_out_of_range") from None
                raise InvalidRequest("A value is too long for the database to store or index (a word, a name or an "
                                     "identifier of thousands of characters); nothing was changed.",
                                     code="value_too_long") from None
            raise
        if self._outage_since is not None:
            self._back()

    def _busy(self, exc: BaseException) -> bool:
        """A pool timeout while the server accepts a direct connection: the pool is saturated, not the server
        gone (an overload must not put every later caller on the outage's short wait)."""
        from psycopg_pool import PoolTimeout

        return isinstance(exc, PoolTimeout) and self._server_answers()

    def _server_answers(self) -> bool:
        """One direct connection, outside the pool."""
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=max(1, int(OUTAGE_WAIT_S))).close()
        except psycopg.Error:
            return False
        return True

    @contextmanager
    def _pooled(self) -> Iterator[Any]:
        """A connection of the pool (what its ``connection()`` does: in the connection's context, then back), after
        renewing the pool if an outage has just ended."""
        if self._outage_since is not None:
            self._renew_if_back()
        pool = self._pool  # the one to give it back to, should a renewal replace it meanwhile
        conn = self._getconn(pool)
        with self._in_use_lock:
            self._in_use += 1
        try:
            with conn:
                yield conn
        finally:
            with self._in_use_lock:
                self._in_use -= 1
            pool.putconn(conn)

    def _getconn(self, pool: Any) -> Any:
        """Wait for a connection up to the pool's timeout; but if none came within ``OUTAGE_WAIT_S`` while the pool
        is not saturated, ask the server directly: one that went away is told after about a second, not after the
        whole timeout (the first request of an outage, a stream's final record among them, waited 10 s). A saturated
        pool (every connection open and in use) is only busy: the caller waits its whole time in line (when every
        connection is in use as it comes, without leaving the line at all)."""
        from psycopg_pool import PoolTimeout

        wait = self._wait_s()
        if self._in_use >= self._max_size:
            return pool.getconn(timeout=wait)
        deadline = self._clock() + wait
        try:
            return pool.getconn(timeout=min(OUTAGE_WAIT_S, wait))
        except PoolTimeout:
            left = deadline - self._clock()
            if left <= 0:
                raise
            if self._in_use < self._max_size and not self._answers_lately():  # not saturated: gone?
                raise
        return pool.getconn(timeout=left)

    def _answers_lately(self) -> bool:
        """``_server_answers``, asked at most once per ``OUTAGE_WAIT_S`` for all callers waiting together."""
        with self._outage_lock:
            now = self._clock()
            if now - self._answered_at[0] < OUTAGE_WAIT_S:
                return self._answered_at[1]
        answers = self._server_answers()
        with self._outage_lock:
            self._answered_at = (self._clock(), answers)
        return answers

    def _renew_if_back(self) -> None:
        """During an outage, at most once per ``OUTAGE_WAIT_S``: connect directly, and if the server answers, put a
        new pool in place of the old one. The old pool's reconnection attempts back off exponentially (1, 2, 4 ...
        64 s apart), so after a two-minute outage it could go on refusing for another minute; clients still waiting
        on it get ``StoreUnavailable`` as before."""
        if not self._renew_lock.acquire(blocking=False):
            return
        try:
            now = self._clock()
            if self._outage_since is None or now - self._probed_at < OUTAGE_WAIT_S:
                return
            self._probed_at = now
            if not self._server_answers():
                return
            fresh = self._new_pool()
            try:
                fresh.open(wait=True, timeout=OUTAGE_WAIT_S)
            except Exception:
                fresh.close()
                return
            old, self._pool = self._pool, fresh
        finally:
            self._renew_lock.release()
        threading.Thread(target=old.close, kwargs={"timeout": 1.0}, name="pg-pool-close", daemon=True).start()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection in autocommit mode."""
        with self._mapped_errors(), self._pooled() as conn:
            yield conn

    @contextmanager
    def transaction(self, *, lock: int | None = None, isolation: str | None = None) -> Iterator[Any]:
        """One transaction on one connection; ``lock``: an advisory lock held until it ends."""
        with self._mapped_errors(), self._pooled() as conn, conn.transaction():
            if isolation is not None:
                conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
            if lock is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield conn

    def query(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return list(conn.execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Params = None) -> dict[str, Any] | None:
        with self.connection() as conn:
            row: dict[str, Any] | None = conn.execute(sql, params).fetchone()
            return row

    def scalar(self, sql: str, params: Params = None) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else next(iter(row.values()))

    def execute(self, sql: str, params: Params = None) -> int:
        with self.connection() as conn:
            return int(conn.execute(sql, params).rowcount)

    def erase(self, sql: str, params: Params = None) -> int:
        """SQLite's ``Database.erase`` here: PostgreSQL keeps no WAL of ours to purge (its own is the operator's,
        and a deleted row's space is reclaimed by autovacuum), so it is ``execute``."""
        return self.execute(sql, params)

    def ping(self) -> None:
        """One round trip; ``StoreUnavailable`` when the server cannot be reached."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        self._pool.close()


Step = str | Callable[[Any], None]


@dataclass(frozen=True)
class PgMigration:
    version: int
    name: str
    sql: Step  # one or more statements, or a function of the connection


_CREATE = ("CREATE TABLE IF NOT EXISTS schema_migrations (scope text NOT NULL, version integer NOT NULL,"
           " name text NOT NULL, applied_at double precision NOT NULL, PRIMARY KEY (scope, version))")


def migrate(db: PostgresDatabase, scope: str, migrations: Sequence[PgMigration]) -> list[int]:
    """Apply the steps of ``scope`` not yet recorded; the versions applied now. A database recording a newer
    version than the last step is refused (written by a newer inhouse)."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and increasing")
    lock = lock_id("migrate")
    with db.transaction(lock=lock) as conn:
        conn.execute(_CREATE)
        found = int(conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations WHERE scope = %s",
                                 (scope,)).fetchone()["v"])
    latest = versions[-1] if versions else 0
    if found > latest:
        raise InvalidRequest(f"The PostgreSQL database has {scope} schema version {found}, newer than this "
                             f"version of inhouse understands ({latest}); upgrade inhouse to open it.")
    applied: list[int] = []
    for m in migrations:
        with db.transaction(lock=lock) as conn:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE scope = %s AND version = %s",
                            (scope, m.version)).fetchone():
                continue
            if callable(m.sql):
                m.sql(conn)
            else:
                conn.execute(m.sql)
            conn.execute("INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES (%s, %s, %s, %s)",
                         (scope, m.version, m.name, time.time()))
        applied.append(m.version)
    return applied


def schema_version(db: PostgresDatabase, scope: str) -> int:
    return int(db.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations WHERE scope = %s", (scope,)))
