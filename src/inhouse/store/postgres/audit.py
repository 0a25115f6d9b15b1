"""``PostgresAuditStore``: one audit chain appended by several inhouse nodes.

An append is one transaction holding ``pg_advisory_xact_lock`` of the chain: the tail it reads is the tail it
extends, on whichever node it runs. The signed head is a row (``audit_head``) written in that same transaction, so
the record and the head commit together; unlike the SQLite store's head file there is nothing to put back after a
failed commit. A snapshot is a ``REPEATABLE READ`` transaction: rows, count and head from one moment. The HMAC key
stays a file on each node (``<data_dir>/audit.key``): every node writing the chain needs the same key, and the
database alone cannot forge a head.

Appends run on a small pool of their own (``APPEND_POOL_SIZE`` connections, opened with the first append), never on
the pool of the other stores: a governance change appends its record while it holds a connection of that pool and
the governance lock, and the changes queued behind the lock may hold every other connection of it. From the same
pool, the record waited the pool's whole timeout (10 s) and the change failed though nothing was wrong. Reads stay
on the shared pool (a long ``verify`` must not keep appends waiting).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from inhouse.errors import AuditStoreUnavailable, AuditUnavailable, Overloaded, StorageFull, StoreUnavailable
from inhouse.governance.audit.chain import FIELDS, Head
from inhouse.governance.audit.store import GroupCount, RecordQuery, Row, append_failed
from inhouse.store.postgres.database import PostgresDatabase, lock_id

AUDIT_LOCK = lock_id("audit-chain")
_INSERT = (f"INSERT INTO audit_records ({', '.join((*FIELDS, 'hash'))})"
           f" VALUES ({', '.join(['%s'] * (len(FIELDS) + 1))})")
_BATCH = 2000
# Appends wait for one another on the chain's lock anyway: one connection appends, the next is ready.
APPEND_POOL_SIZE = 2


def _head(conn: Any) -> str | None:
    row = conn.execute("SELECT head FROM audit_head WHERE id = 1").fetchone()
    return None if row is None else str(row["head"])


class _Append:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def tail(self) -> Head | None:
        row = self._conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        return Head(int(row["seq"]), row["hash"]) if row else None

    def read_head(self) -> str | None:
        return _head(self._conn)

    def insert(self, row: Row) -> None:
        self._conn.execute(_INSERT, [row[name] for name in (*FIELDS, "hash")])

    def write_head(self, text: str) -> None:
        self._conn.execute("INSERT INTO audit_head (id, head) VALUES (1, %s)"
                           " ON CONFLICT (id) DO UPDATE SET head = excluded.head", (text,))


class _Snapshot:
    def __init__(self, conn: Any) -> None:
        self._conn = conn
        row = conn.execute("SELECT count(*) AS n, coalesce(max(seq), 0) AS last FROM audit_records").fetchone()
        self.total, self.last_seq = int(row["n"]), int(row["last"])

    def read_head(self) -> str | None:
        return _head(self._conn)

    def rows(self) -> Iterator[Row]:
        # A server-side cursor: a chain of millions of records is walked without holding it in memory.
        with self._conn.cursor(name="audit_verify") as cur:
            cur.itersize = _BATCH
            cur.execute("SELECT * FROM audit_records ORDER BY seq")
            yield from cur


class PostgresAuditStore:
    """``owns_db``: closing the store closes the pool too (a CLI command that opened it for the log alone).
    ``appends``: the pool appends use (closed with the store); by default one of ``APPEND_POOL_SIZE`` connections to
    ``db``'s database, opened at the first append."""

    def __init__(self, db: PostgresDatabase, *, owns_db: bool = False, appends: PostgresDatabase | None = None) -> None:
        self._db = db
        self._owns_db = owns_db
        self._appends = appends
        self._appends_lock = threading.Lock()
        self._closed = False

    def _append_db(self) -> PostgresDatabase:
        with self._appends_lock:
            if self._appends is None:
                self._appends = PostgresDatabase(self._db.url, max_size=APPEND_POOL_SIZE)
            return self._appends

    @contextmanager
    def appending(self) -> Iterator[_Append]:
        if self._closed:
            raise AuditUnavailable("The audit log is closed.")
        stage = "begin"
        try:
            with self._append_db().transaction(lock=AUDIT_LOCK) as conn:
                stage = "write"
                yield _Append(conn)
                stage = "commit"
        except (self._db.errors, StorageFull, StoreUnavailable, Overloaded) as exc:
            message = {"begin": "The audit log cannot be written", "write": "The audit record could not be written",
                       "commit": "The audit record could not be committed"}[stage]
            if isinstance(exc, Overloaded):
                # Every connection busy: nothing was written, as when the server is away. So a finished request's
                # final record is kept for later (``record_finished_request``), not a 500 after its answer.
                raise AuditStoreUnavailable(f"{message}: every connection to the audit database is busy (nothing "
                                            "was recorded, so nothing was done; retry shortly).",
                                            code="store_busy") from exc
            raise append_failed(message, exc) from exc

    def read_head(self) -> str | None:
        with self._db.connection() as conn:
            return _head(conn)

    @contextmanager
    def snapshot(self, *, settled: bool = False) -> Iterator[_Snapshot]:
        # ``settled`` needs nothing more here: the head is a row committed with its record, and a REPEATABLE READ
        # snapshot sees both or neither, so no append is ever half-seen.
        with self._db.transaction(isolation="REPEATABLE READ READ ONLY") as conn:
            yield _Snapshot(conn)

    def count(self) -> int:
        return int(self._db.scalar("SELECT count(*) FROM audit_records"))

    def rows(self, query: RecordQuery) -> Iterator[Row]:
        sql, params = query.sql("%s")
        with self._db.transaction(isolation="REPEATABLE READ READ ONLY") as conn, \
                conn.cursor(name="audit_rows") as cur:
            cur.itersize = _BATCH
            cur.execute(sql, params)
            yield from cur

    def group_counts(self, query: RecordQuery, columns: Sequence[str]) -> list[GroupCount]:
        sql, params = query.group_sql("%s", columns)
        with self._db.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [GroupCount(tuple(row[c] for c in columns), int(row["n"]), int(row["first_seq"]),
                           int(row["last_seq"]))
                for row in rows]

    def close(self) -> None:
        if not self._closed:
            with self._appends_lock:
                if self._appends is not None:
                    self._appends.close()
            if self._owns_db:
                self._db.close()
        self._closed = True
