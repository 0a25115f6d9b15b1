"""The PostgreSQL helper: a connection pool, transactions, advisory locks and ordered migrations.

Every connection of the pool is in autocommit mode and never switches to server-side generic plans
(``prepare_threshold=None``: after five executions psycopg would prepare statements, and PostgreSQL's generic plan
for a filtered vector or keyword query ignored the filter's selectivity and was many times slower). A store method
either runs one statement on a pooled connection or, inside ``transaction()``, every statement on the one
connection of that transaction.

Migrations: numbered steps per scope (``inhouse``, ``audit``, ``kb``: one PostgreSQL database holds what the three
SQLite files hold), recorded in ``schema_migrations (scope, version, name, applied_at)``. Each step runs in its own
transaction with its row, under an advisory lock, so several nodes starting together apply it once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from inhouse.errors import InvalidRequest, Unavailable, is_storage_full, storage_full

Params = Sequence[Any] | dict[str, Any] | None


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


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0,
                 configure: Callable[[Any], None] | None = None) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self._errors: type[Exception] = psycopg.Error
        self._data_error: type[Exception] = psycopg.DataError

        def setup(conn: Any) -> None:
            conn.autocommit = True
            if configure is not None:
                configure(conn)

        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False, configure=setup,
            kwargs={"prepare_threshold": None, "row_factory": dict_row},
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:
            self._pool.close()
            raise Unavailable(f"The PostgreSQL server at {redact_url(url)} cannot be reached: {exc}") from exc

    @property
    def errors(self) -> type[Exception]:
        """The driver's base error class (stores map it to their domain errors)."""
        return self._errors

    @contextmanager
    def _full_disk(self) -> Iterator[None]:
        """The server's ``disk_full`` (SQLSTATE 53100) becomes ``StorageFull`` (HTTP 507, CLI exit 6); PostgreSQL
        has rolled the statement's transaction back. Text with a NUL character, which PostgreSQL cannot hold (the
        driver refuses it before sending), is ``InvalidRequest``: a 400, not a server error."""
        try:
            yield
        except self._errors as exc:
            if is_storage_full(exc):
                raise storage_full("Could not write to the PostgreSQL database", exc) from exc
            if isinstance(exc, self._data_error) and "NUL" in str(exc):
                raise InvalidRequest("Text with a NUL character (\\u0000) cannot be stored or looked up.",
                                     code="nul_character") from None
            raise

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection in autocommit mode."""
        with self._full_disk(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self, *, lock: int | None = None, isolation: str | None = None) -> Iterator[Any]:
        """One transaction on one connection; ``lock``: an advisory lock held until it ends."""
        with self._full_disk(), self._pool.connection() as conn, conn.transaction():
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
