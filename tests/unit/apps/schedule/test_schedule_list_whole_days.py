"""Listing a calendar by dates lists whole days: ``start=2027-03-03&end=2027-03-04`` is midnight to midnight in the
caller's zone (it was 09:00 to 09:00, the default time of an event, so a day's early events were missing and the
next day's were shown). The same service answers HTTP, ``inhouse schedule list --from/--to`` and the model's
``list_events`` tool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.schedule.service import ScheduleService
from inhouse.apps.schedule.tools import run_tool
from inhouse.store.sqlite.assistants import SqliteEventStore
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")
NOW = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ScheduleService]:
    db = Database(tmp_path / "inhouse.db")
    apply_migrations(db, MIGRATIONS)
    svc = ScheduleService(SqliteEventStore(db))
    c = berlin()
    for title, start in (("early standup", "2027-03-03 08:00"), ("lunch", "2027-03-03 12:00"),
                         ("next-day early call", "2027-03-04 07:00")):
        svc.create_event(c, title, svc.span(c, start, None, 30))
    yield svc
    db.close()


def berlin() -> AppContext:
    return AppContext(actor=ANA, chat=None, model="x", now=lambda: NOW,  # type: ignore[arg-type]
                      tz=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(("start", "end"), [("2027-03-03", "2027-03-04"), ("2027年3月3日", "2027年3月4日"),
                                            ("March 3, 2027", "March 4, 2027"), ("the day after tomorrow",
                                                                                 "2027-03-04")])
def test_a_window_of_dates_runs_midnight_to_midnight(service: ScheduleService, start: str, end: str) -> None:
    out = service.list_events(berlin(), start, end)
    assert (out["from"], out["to"]) == ("2027-03-03T00:00:00+01:00", "2027-03-04T00:00:00+01:00")
    assert [e["title"] for e in out["events"]] == ["early standup", "lunch"]


def test_a_time_given_is_kept(service: ScheduleService) -> None:
    out = service.list_events(berlin(), "2027-03-03 10:00", "2027-03-04 08:00")
    assert [e["title"] for e in out["events"]] == ["lunch", "next-day early call"]
    # An event still starts at 09:00 when only its day is named.
    made = service.create_event(berlin(), "review", service.span(berlin(), "2027-03-05"))
    assert made["event"]["start"] == "2027-03-05T09:00:00+01:00"


def test_the_models_list_events_tool_lists_whole_days(service: ScheduleService) -> None:
    out = asyncio.run(run_tool(service, berlin(), "list_events", {"start": "2027-03-03", "end": "2027-03-04"}))
    assert [e["title"] for e in out["events"]] == ["early standup", "lunch"]
