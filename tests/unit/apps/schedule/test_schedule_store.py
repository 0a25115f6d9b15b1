"""The stored form of instants, and SQLite's event store reading the rows an earlier release wrote wrongly (years
below 1000 with fewer than four digits) once migration 7 has padded them. What every event store does alike is
``inhouse.testing.assistant_contract`` (tests/unit/store/test_assistant_stores.py, and on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.schedule.calendar import Interval
from inhouse.apps.schedule.store import iso_utc, parse_utc
from inhouse.store.conversations import owner_of
from inhouse.store.sqlite.assistants import SqliteEventStore
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "inhouse.db")
    yield d
    d.close()


def at(*args: int, tz: str = "UTC") -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def test_stored_text_has_four_year_digits_and_reads_back() -> None:
    assert iso_utc(at(999, 6, 1, 10)) == "0999-06-01T10:00:00Z"
    assert iso_utc(at(2030, 3, 4, 10, tz="Asia/Shanghai")) == "2030-03-04T02:00:00Z"
    assert parse_utc("0999-06-01T10:00:00Z") == at(999, 6, 1, 10)
    assert parse_utc("999-06-01T10:00:00Z") == at(999, 6, 1, 10)  # as the old release wrote it
    with pytest.raises(ValueError):
        parse_utc("2030-03-04 10:00")


def test_migration_7_repairs_rows_written_with_short_years(db: Database) -> None:
    apply_migrations(db, MIGRATIONS[:6])
    owner = owner_of(ANA)
    rows = [("evt_a", "999-06-01T02:00:00Z", "999-06-01T03:00:00Z", "Asia/Shanghai"),
            ("evt_b", "1-01-01T10:29:20Z", "1-01-01T11:29:20Z", "Pacific/Kiritimati"),
            ("evt_c", "1-01-01T01:00:00Z", "10-01-01T02:00:00Z", "America/New_York"),
            ("evt_d", "2030-03-04T02:00:00Z", "2030-03-04T03:00:00Z", "UTC")]
    for eid, start, end, tz in rows:
        db.execute("INSERT INTO schedule_events (id, owner, uid, title, start_utc, end_utc, tz, status, created_at,"
                   " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'confirmed', 0, 0)",
                   (eid, owner, eid, eid, start, end, tz))
    assert apply_migrations(db, MIGRATIONS[:7]) == [7]
    stored = {r["id"]: (r["start_utc"], r["end_utc"]) for r in db.query("SELECT * FROM schedule_events")}
    assert stored == {"evt_a": ("0999-06-01T02:00:00Z", "0999-06-01T03:00:00Z"),
                      "evt_b": ("0001-01-01T10:29:20Z", "0001-01-01T11:29:20Z"),
                      "evt_c": ("0001-01-01T01:00:00Z", "0010-01-01T02:00:00Z"),
                      "evt_d": ("2030-03-04T02:00:00Z", "2030-03-04T03:00:00Z")}
    store = SqliteEventStore(db)
    listed = store.list_events(ANA)  # sorted as text again: year 1 before year 999 before 2030
    assert [e.id for e in listed] == ["evt_c", "evt_b", "evt_a", "evt_d"]
    assert store.get(ANA, "evt_a").to_dict()["start"] == "0999-06-01T10:05:43+08:05:43"
    assert store.get(ANA, "evt_c").to_dict()["start"] == "0001-01-01T01:00:00+00:00"  # New York cannot show it
    assert store.get(ANA, "evt_b").start == datetime(1, 1, 1, 10, 29, 20, tzinfo=UTC)
    moved = store.update(ANA, "evt_a", interval=Interval(at(2030, 6, 1, 10), at(2030, 6, 1, 11)))
    assert moved.start == at(2030, 6, 1, 10)
    store.delete(ANA, "evt_b")
    assert [e.id for e in store.list_events(ANA)] == ["evt_c", "evt_d", "evt_a"]


@pytest.mark.parametrize(("wall", "fold"), [
    ((2026, 10, 25, 2, 30), 0),  # Berlin falls back: 02:30 happens twice
    ((2026, 10, 25, 2, 30), 1),
    ((2026, 3, 29, 2, 30), 0),  # Berlin springs forward: 02:30 never happens (read as 03:30 CEST)
])
def test_times_in_a_dst_fold_or_gap_are_stored(db: Database, wall: tuple[int, ...], fold: int) -> None:
    apply_migrations(db, MIGRATIONS)
    start = at(*wall, tz="Europe/Berlin").replace(fold=fold)
    end = at(2026, 11, 1, 1, 30, tz="America/New_York")  # also ambiguous (New York falls back that night)
    event = SqliteEventStore(db).create(ANA, "Night shift", Interval(start, end), tz="Europe/Berlin")
    # Not ==: under PEP 495 an aware == across zones is False for a time in a fold or gap.
    assert (event.start.timestamp(), event.end.timestamp()) == (start.timestamp(), end.timestamp())
