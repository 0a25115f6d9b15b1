"""An event's iCalendar UID is bounded alike on both stores (PostgreSQL's unique index refused ~2.7 KB with a 500;
SQLite stored it): 1,000 bytes, then a 400 naming the field, and an import skips that event with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inhouse.apps.schedule.store import MAX_UID, Interval
from inhouse.errors import InvalidRequest
from inhouse.store.sqlite.assistants import SqliteEventStore
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")


def test_a_uid_over_the_bound_is_refused_on_sqlite_too(tmp_path: Path) -> None:
    db = Database(tmp_path / "inhouse.db")
    apply_migrations(db, MIGRATIONS)
    try:
        events = SqliteEventStore(db)
        day = Interval(datetime(2027, 1, 5, 2, tzinfo=UTC), datetime(2027, 1, 5, 3, tzinfo=UTC))
        with pytest.raises(InvalidRequest, match=f"'uid' is longer than {MAX_UID} characters"):
            events.create(ANA, "Review", day, tz="UTC", uid="u" * (MAX_UID + 1))
        assert events.create(ANA, "Review", day, tz="UTC", uid="u" * MAX_UID).uid == "u" * MAX_UID
        with pytest.raises(InvalidRequest, match=f"'uid' is longer than {MAX_UID} bytes"):  # the index counts bytes
            events.create(ANA, "Review", day, tz="UTC", uid="会" * 400)
    finally:
        db.close()
