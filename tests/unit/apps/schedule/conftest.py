"""The schedule service over a real, migrated SQLite ``inhouse.db``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.apps.schedule.service import ScheduleService
from inhouse.store.sqlite.assistants import SqliteEventStore
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ScheduleService]:
    db = Database(tmp_path / "inhouse.db")
    apply_migrations(db, MIGRATIONS)
    yield ScheduleService(SqliteEventStore(db))
    db.close()
