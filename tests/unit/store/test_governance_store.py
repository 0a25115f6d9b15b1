"""``SqliteGovernanceStore`` passes the governance store conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.testing.governance_contract import GovernanceStoreContract


class TestSqliteGovernanceStore(GovernanceStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteGovernanceStore]:
        db = open_inhouse_db(tmp_path / "inhouse.db")
        yield SqliteGovernanceStore(db)
        db.close()
