"""The assistants' SQLite stores and the in-memory request windows pass their conformance suites (PostgreSQL's:
tests/unit/store/test_postgres_stores.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inhouse.governance.quotas import MemoryRequestWindows, RequestWindows
from inhouse.store.sqlite.assistants import SqliteEventStore, SqliteSessionStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.testing.assistant_contract import EventStoreContract, SessionStoreContract
from inhouse.testing.conversation_contract import ticking_clock
from inhouse.testing.rate_contract import RequestWindowsContract


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_inhouse_db(tmp_path / "inhouse.db")
    yield d
    d.close()


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def events(self, db: Database) -> SqliteEventStore:
        return SqliteEventStore(db, clock=ticking_clock())


class TestSqliteSessionStore(SessionStoreContract):
    @pytest.fixture
    def sessions(self, db: Database) -> SqliteSessionStore:
        return SqliteSessionStore(db, clock=ticking_clock())


class TestMemoryRequestWindows(RequestWindowsContract):
    @pytest.fixture
    def open_windows(self) -> Callable[[], RequestWindows]:
        windows = MemoryRequestWindows()
        return lambda: windows  # one process: every caller shares the one object
