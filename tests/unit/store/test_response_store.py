"""``SqliteResponseStore`` passes the response store conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.store.sqlite.responses import SqliteResponseStore
from inhouse.testing.conversation_contract import ticking_clock
from inhouse.testing.response_contract import ResponseStoreContract


class TestSqliteResponseStore(ResponseStoreContract):
    @pytest.fixture
    def db(self, tmp_path: Path) -> Iterator[Database]:
        db = open_inhouse_db(tmp_path / "r.db")
        yield db
        db.close()

    @pytest.fixture
    def store(self, db: Database) -> SqliteResponseStore:
        return SqliteResponseStore(db, clock=ticking_clock())

    @pytest.fixture
    def capped(self, db: Database) -> SqliteResponseStore:
        return SqliteResponseStore(db, clock=ticking_clock(), max_per_owner=3)
