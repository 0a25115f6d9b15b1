"""A statement PostgreSQL gives up on because of other sessions (cancelled by statement_timeout while VACUUM FULL or
ALTER TABLE holds a table, a lock_timeout, a deadlock broken, a serialization failure) is ``store_busy``: 503 with
Retry-After, as SQLite's write lock held past the busy timeout is. Before 2026-12-07 it escaped as the driver's error:
a 500 ``internal_error`` with a traceback on search and upload, and a 503 quoting the server's text without
Retry-After on the audit path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from inhouse.api.errors import retry_after, status_of  # noqa: E402
from inhouse.errors import AuditStoreUnavailable, StoreUnavailable  # noqa: E402
from inhouse.governance.audit.log import AuditLog  # noqa: E402
from inhouse.store.postgres.audit import PostgresAuditStore  # noqa: E402
from inhouse.store.postgres.database import PostgresDatabase, migrate  # noqa: E402
from inhouse.store.postgres.schema import AUDIT  # noqa: E402

pytestmark = pytest.mark.integration


def with_statement_timeout(conn: Any) -> None:
    conn.execute("SET statement_timeout = '300ms'")  # what a DBA's ALTER DATABASE … SET statement_timeout gives


@pytest.fixture
def db(postgres_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_url, configure=with_statement_timeout)
    with database.connection() as conn:
        conn.execute("CREATE TABLE busy_t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO busy_t VALUES (1)")
    migrate(database, "audit", AUDIT)
    yield database
    database.close()


@contextmanager
def maintenance_holding(url: str, table: str) -> Iterator[None]:
    """Another session holds ``table`` as VACUUM FULL, ALTER TABLE or REINDEX do (ACCESS EXCLUSIVE)."""
    with psycopg.connect(url) as other:
        other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # in the transaction psycopg began
        yield
        other.rollback()


def assert_busy(exc: StoreUnavailable) -> None:
    assert exc.code == "store_busy" and status_of(exc) == 503 and retry_after(exc) == 5
    assert "busy_t" not in exc.message and "statement timeout" not in exc.message  # the server's text: the log's


@pytest.mark.parametrize("error", [
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),  # 57014
    psycopg.errors.LockNotAvailable('could not obtain lock on relation "busy_t"'),  # 55P03
    psycopg.errors.DeadlockDetected("deadlock detected"),  # 40P01
    psycopg.errors.SerializationFailure("could not serialize access due to concurrent update"),  # 40001
])
def test_each_busy_sqlstate_is_store_busy(error: Exception, db: PostgresDatabase) -> None:
    with pytest.raises(StoreUnavailable) as caught, db.connection():
        raise error
    assert_busy(caught.value)


def test_a_statement_cancelled_behind_maintenance_is_store_busy(db: PostgresDatabase, postgres_url: str) -> None:
    with maintenance_holding(postgres_url, "busy_t"):
        with pytest.raises(StoreUnavailable) as read:
            db.query("SELECT * FROM busy_t")
        assert_busy(read.value)
        with pytest.raises(StoreUnavailable) as write, db.transaction() as conn:
            conn.execute("INSERT INTO busy_t VALUES (2)")
        assert_busy(write.value)
        assert db._outage_since is None  # busy, not gone: later callers keep their full wait
    assert db.query("SELECT id FROM busy_t ORDER BY id") == [{"id": 1}]  # rolled back; the table answers again


def test_an_audit_append_behind_maintenance_is_retryable_and_a_final_record_kept(
        db: PostgresDatabase, postgres_url: str, tmp_path: Path) -> None:
    log = AuditLog(PostgresAuditStore(db, appends=PostgresDatabase(postgres_url, configure=with_statement_timeout)),
                   key_path=tmp_path / "audit.key")
    try:
        log.append(kind="security", action="key.created", resource="key_1", outcome="success")
        with maintenance_holding(postgres_url, "audit_records"):
            with pytest.raises(AuditStoreUnavailable) as refused:
                log.append(kind="security", action="key.created", resource="key_2", outcome="success")
            assert status_of(refused.value) == 503 and retry_after(refused.value) == 5
            assert refused.value.code == "store_busy" and "busy" in refused.value.message  # not "cannot be reached"
            assert "statement timeout" not in refused.value.message
            # A finished request's record waits for the table instead of being lost.
            assert log.record_finished_request(action="chat:create", outcome="success", request_id="req_x") is False
            assert log.waiting == 1
        log.append(kind="security", action="key.created", resource="key_3", outcome="success")
        assert [r.resource or r.request_id for r in log.records()] == ["key_1", "req_x", "key_3"]
        assert log.verify().ok
    finally:
        log.close()
