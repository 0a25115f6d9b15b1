"""Listing a calendar by dates lists whole days, the last one included: ``start=2027-03-03&end=2027-03-04`` runs from
the midnight that starts the 3rd to the one that ends the 4th, in the caller's zone, and ``2027-03-03`` to
``2027-03-03`` is that day. It was 09:00 to 09:00 (the default time of an event: a day's early events were missing
and the next day's shown), then midnight to the *first* midnight of the end day (``--to 2026-12-31`` left out the
31st, and a one-day window was refused, "The end must be after the start."). A time given is kept. The same
service answers HTTP, ``inhouse schedule list --from/--to`` and the model's ``list_events`` tool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
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


@pytest.mark.parametrize(("start", "end"), [("2027-03-03", "2027-03-03"), ("2027年3月3日", "2027年3月3日"),
                                            ("March 3, 2027", "March 3, 2027"), ("the day after tomorrow",
                                                                                 "2027-03-03"),
                                            ("2027-03-03", "the day after tomorrow"), ("2027-03-03", "Wednesday")])
def test_a_window_of_one_day_is_that_day_midnight_to_midnight(service: ScheduleService, start: str,
                                                             end: str) -> None:
    out = service.list_events(berlin(), start, end)
    assert (out["from"], out["to"]) == ("2027-03-03T00:00:00+01:00", "2027-03-04T00:00:00+01:00")
    assert [e["title"] for e in out["events"]] == ["early standup", "lunch"]


@pytest.mark.parametrize("end", ["2027-03-04", "2027/03/04", "2027年3月4日", "March 4, 2027", "Thursday"])
def test_the_last_day_named_is_listed_whole(service: ScheduleService, end: str) -> None:
    out = service.list_events(berlin(), "2027-03-03", end)
    assert out["to"] == "2027-03-05T00:00:00+01:00"
    assert [e["title"] for e in out["events"]] == ["early standup", "lunch", "next-day early call"]


def test_an_end_on_a_day_whose_midnight_a_dst_change_skips_is_its_first_instant(service: ScheduleService) -> None:
    # Santiago springs forward at midnight: 2027-09-05 starts at 01:00 -03:00.
    out = service.list_events(replace(berlin(), tz=ZoneInfo("America/Santiago")), "2027-09-03", "2027-09-04")
    assert (out["from"], out["to"]) == ("2027-09-03T00:00:00-04:00", "2027-09-05T01:00:00-03:00")


def test_the_last_day_of_the_range_can_end_a_window(service: ScheduleService) -> None:
    # Its end, the next midnight, is in year 3000 in UTC: the day is in the range, so the window is accepted.
    out = service.list_events(replace(berlin(), tz=ZoneInfo("America/Adak")), "2999-12-30", "2999-12-31")
    assert out["to"] == "3000-01-01T00:00:00-10:00" and out["events"] == []


def test_a_time_given_is_kept(service: ScheduleService) -> None:
    out = service.list_events(berlin(), "2027-03-03 10:00", "2027-03-04 08:00")
    assert [e["title"] for e in out["events"]] == ["lunch", "next-day early call"]
    # An event still starts at 09:00 when only its day is named.
    made = service.create_event(berlin(), "review", service.span(berlin(), "2027-03-05"))
    assert made["event"]["start"] == "2027-03-05T09:00:00+01:00"


def test_the_models_list_events_tool_lists_whole_days(service: ScheduleService) -> None:
    out = asyncio.run(run_tool(service, berlin(), "list_events", {"start": "2027-03-03", "end": "2027-03-03"}))
    assert [e["title"] for e in out["events"]] == ["early standup", "lunch"]
