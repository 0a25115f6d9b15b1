"""Admin changes at once on PostgreSQL: a change holding the governance lock gets its audit record written, however
many changes wait behind it, and an audit append that finds every connection busy is "store unavailable", never a
driver-level ``Overloaded`` escaping as a 500 after the request's answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from inhouse.errors import AuditStoreUnavailable
from inhouse.governance.audit.log import AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.store.postgres.audit import PostgresAuditStore
from inhouse.store.postgres.database import PostgresDatabase, migrate
from inhouse.store.postgres.governance import GOVERNANCE_LOCK, PostgresGovernanceStore
from inhouse.store.postgres.schema import AUDIT, INHOUSE

pytestmark = pytest.mark.integration

POOL = 2  # the smallest pool: every change beyond the first two would wait for a connection
TIMEOUT_S = 3.0


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresDatabase]:
    db = PostgresDatabase(postgres_url, max_size=POOL, timeout_s=TIMEOUT_S)
    migrate(db, "inhouse", INHOUSE)
    migrate(db, "audit", AUDIT)
    yield db
    db.close()


def _waiting_for_governance_lock(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                       " AND objid = %s", (GOVERNANCE_LOCK,)).fetchone()
    return int(row[0]) if row else 0


def test_changes_queued_behind_the_governance_lock_do_not_starve_its_holder(
        pg: PostgresDatabase, postgres_url: str, tmp_path: Path) -> None:
    """Before: each change took a pooled connection, then waited for the lock; the holder's audit record needed
    one more from the same pool, waited the pool's whole timeout and failed (429, the change rolled back) while the
    others went on waiting."""
    log = AuditLog(PostgresAuditStore(pg), key_path=tmp_path / "audit.key")
    directory = UserDirectory(PostgresGovernanceStore(pg), audit=log)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            directory.create_user(f"user{i}")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    blocker = psycopg.connect(postgres_url, autocommit=False)  # another node, in the middle of a change
    try:
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (GOVERNANCE_LOCK,))
        threads = [threading.Thread(target=create, args=(i,)) for i in range(POOL * 3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 1.0  # every pooled connection waiting on the lock (before the fix: POOL)
        while _waiting_for_governance_lock(blocker) < POOL and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        blocker.rollback()
        for t in threads:
            t.join(timeout=4 * TIMEOUT_S)
        elapsed = time.monotonic() - started
    finally:
        blocker.close()
        log.close()
    assert errors == []
    assert elapsed < TIMEOUT_S / 2, elapsed
    assert sorted(u.name for u in directory.list_users()) == sorted(f"user{i}" for i in range(POOL * 3))


def test_an_append_finding_every_connection_busy_is_store_unavailable(
        pg: PostgresDatabase, postgres_url: str, tmp_path: Path) -> None:
    """A finished request's final record is then kept and written later (``record_finished_request``); before, the
    pool's ``Overloaded`` went out of ``appending`` as it was, a 500 after the answer had started."""
    appends = PostgresDatabase(postgres_url, max_size=1, timeout_s=1.0)
    log = AuditLog(PostgresAuditStore(pg, appends=appends), key_path=tmp_path / "audit.key")
    try:
        with appends.connection():  # the append pool's only connection, busy
            with pytest.raises(AuditStoreUnavailable) as err:
                log.record_request(action="users:create", outcome="success")
            assert err.value.code == "store_busy"
            log.record_finished_request(action="users:create", outcome="success", request_id="req_kept")
            assert log.waiting == 1
        log.record_request(action="users:list", outcome="success")  # writes the kept one first
        assert log.waiting == 0 and log.count() == 2 and log.verify().ok
    finally:
        log.close()
