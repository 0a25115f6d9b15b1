"""The event store never writes a row it cannot read back, and reads the rows an earlier release wrote wrongly
(years below 1000 with fewer than four digits) once migration 7 has padded them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.schedule.calendar import Interval
from inhouse.apps.schedule.store import EventStore, iso_utc, parse_utc, stored_interval
from inhouse.errors import InvalidRequest
from inhouse.store.conversations import owner_of
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS, migrate
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


@pytest.mark.parametrize(("start", "end", "param"), [
    (at(999, 6, 1, 10), at(999, 6, 1, 11), "start"),
    # LMT -10:29:20: the old release stored this as "1-01-01T10:29:20Z"
    (at(1, 1, 1, 0, tz="Pacific/Kiritimati"), at(1, 1, 1, 1, tz="Pacific/Kiritimati"), "start"),
    (at(9999, 12, 31, 20), at(9999, 12, 31, 22), "start"),
    (at(2999, 12, 31, 23, 30), at(3000, 1, 1, 1, 30), "end"),
])
def test_out_of_range_events_are_refused_inside_the_transaction(db: Database, start: datetime, end: datetime,
                                                                 param: str) -> None:
    migrate(db)
    with pytest.raises(InvalidRequest) as exc:
        EventStore(db).create(ANA, "x", Interval(start, end), tz="UTC")
    assert exc.value.code == "date_out_of_range" and exc.value.param == param
    assert db.scalar("SELECT count(*) FROM schedule_events") == 0


def test_a_refused_move_leaves_the_event_unchanged(db: Database) -> None:
    migrate(db)
    store = EventStore(db)
    event = store.create(ANA, "kept", Interval(at(2030, 3, 4, 10), at(2030, 3, 4, 11)), tz="UTC")
    with pytest.raises(InvalidRequest):
        store.update(ANA, event.id, title="renamed", interval=Interval(at(999, 1, 1, 10), at(999, 1, 1, 11)))
    again = store.get(ANA, event.id)
    assert (again.title, again.start, again.end) == ("kept", event.start, event.end)
    with pytest.raises(InvalidRequest):
        stored_interval(Interval(at(2030, 1, 1), at(3000, 1, 1)))


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
    store = EventStore(db)
    listed = store.list_events(ANA)  # sorted as text again: year 1 before year 999 before 2030
    assert [e.id for e in listed] == ["evt_c", "evt_b", "evt_a", "evt_d"]
    assert store.get(ANA, "evt_a").to_dict()["start"] == "0999-06-01T10:05:43+08:05:43"
    assert store.get(ANA, "evt_c").to_dict()["start"] == "0001-01-01T01:00:00+00:00"  # New York cannot show it
    assert store.get(ANA, "evt_b").start == datetime(1, 1, 1, 10, 29, 20, tzinfo=UTC)
    moved = store.update(ANA, "evt_a", interval=Interval(at(2030, 6, 1, 10), at(2030, 6, 1, 11)))
    assert moved.start == at(2030, 6, 1, 10)
    store.delete(ANA, "evt_b")
    assert [e.id for e in store.list_events(ANA)] == ["evt_c", "evt_d", "evt_a"]
