"""``ScheduleService`` on a real SQLite event store: words and lengths turned into intervals (DST, an end given as a
bare time) and the .ics round trip (all-day dates east of UTC, moved occurrences of a recurring series). Over
HTTP and through the model's tool calls: tests/unit/api/test_schedule_routes.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.ics import read_ics
from inhouse.apps.schedule.service import ScheduleService
from inhouse.errors import InvalidRequest
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")
NOW = datetime(2026, 1, 28, 2, 0, tzinfo=UTC)  # Wednesday 28 January, 10:00 in Shanghai


def ctx(tz: str) -> AppContext:
    return AppContext(actor=ANA, chat=None, model="x", now=lambda: NOW, tz=ZoneInfo(tz))  # type: ignore[arg-type]


def ics(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e}END:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n"


def test_all_day_event_exports_its_own_date_east_of_utc(service: ScheduleService) -> None:
    c = ctx("Asia/Shanghai")  # midnight in Shanghai is 16:00 UTC the day before
    service.import_ics(c, ics("UID:holiday\r\nSUMMARY:Spring Festival\r\nDTSTART;VALUE=DATE:20260217\r\n"
                              "DTEND;VALUE=DATE:20260218\r\n"))
    out = service.export_ics(c)
    item = read_ics(out)[0]
    assert (item.start, item.end) == (date(2026, 2, 17), date(2026, 2, 18))
    service.import_ics(c, out)  # its own export imports as the same day
    assert service.events.by_uid(ANA, "holiday").to_dict()["start"] == "2026-02-17T00:00:00+08:00"  # type: ignore[union-attr]


@pytest.mark.parametrize(("start", "minutes"), [
    ("2026-03-29 01:30", 120),  # Berlin springs forward
    ("2026-10-25 01:30", 120),  # Berlin falls back
    ("2026-10-25 02:30", 30),  # starts in the repeated hour, ends in its second pass (02:00 CET)
])
def test_duration_across_dst_is_elapsed_time(service: ScheduleService, start: str, minutes: int) -> None:
    c = ctx("Europe/Berlin")
    iv = service.span(c, start, None, minutes)
    assert iv.end.timestamp() - iv.start.timestamp() == minutes * 60
    ev = service.create_event(c, "Night deploy", iv)["event"]
    moved = service.move_event(c, ev["id"], "2026-03-29 01:00")["event"]  # keeps its length
    length = datetime.fromisoformat(moved["end"]).timestamp() - datetime.fromisoformat(moved["start"]).timestamp()
    assert length == minutes * 60


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("tomorrow 3pm", "4pm", "2026-01-29T16:00:00+08:00"),
    ("明天下午3点", "下午4点", "2026-01-29T16:00:00+08:00"),
    ("明天15:00", "16:00", "2026-01-29T16:00:00+08:00"),
    ("next Friday 10:00", "at 11:30 am", "2026-02-06T11:30:00+08:00"),
    ("tomorrow 3pm", "2026-01-30 16:00", "2026-01-30T16:00:00+08:00"),  # a day named: as written
])
def test_end_given_as_a_time_is_on_the_start_day(service: ScheduleService, start: str, end: str,
                                                 expected: str) -> None:
    assert service.span(ctx("Asia/Shanghai"), start, end).end.isoformat() == expected


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("tomorrow 22:00", "01:00", "2026-01-30T01:00:00+08:00"),  # an evening that ends after midnight
    ("明天晚上10点", "凌晨2点", "2026-01-30T02:00:00+08:00"),
    ("tomorrow 8pm", "8am", "2026-01-30T08:00:00+08:00"),  # a twelve-hour night shift
])
def test_end_given_as_an_earlier_time_is_next_morning(service: ScheduleService, start: str, end: str,
                                                      expected: str) -> None:
    assert service.span(ctx("Asia/Shanghai"), start, end).end.isoformat() == expected


@pytest.mark.parametrize(("start", "end"), [("tomorrow 3pm", "2pm"), ("tomorrow 8pm", "9am"),
                                            ("tomorrow 3pm", "2026-01-29 14:00")])  # a day named: as written
def test_end_before_the_start_is_still_refused_beyond_a_night(service: ScheduleService, start: str,
                                                              end: str) -> None:
    with pytest.raises(InvalidRequest, match="end must be after the start"):
        service.span(ctx("Asia/Shanghai"), start, end)


def test_moved_occurrence_of_a_series_does_not_replace_it(service: ScheduleService) -> None:
    c = ctx("Europe/Berlin")
    series = ("UID:standup\r\nSUMMARY:Standup\r\nDTSTART;TZID=Europe/Berlin:20260302T090000\r\n"
              "DTEND;TZID=Europe/Berlin:20260302T091500\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\n")
    moved = ("UID:standup\r\nRECURRENCE-ID;TZID=Europe/Berlin:20260316T090000\r\nSUMMARY:Standup (moved)\r\n"
             "DTSTART;TZID=Europe/Berlin:20260317T140000\r\nDTEND;TZID=Europe/Berlin:20260317T141500\r\n")
    for order in ((series, moved), (moved, series)):
        report = service.import_ics(c, ics(*order))
        assert report["created"] + report["updated"] == 1
        assert any("changed occurrence" in s["reason"] for s in report["skipped"])
        ev = service.events.by_uid(ANA, "standup")
        assert ev is not None and (ev.title, ev.to_dict()["start"]) == ("Standup", "2026-03-02T09:00:00+01:00")


def test_free_slots_see_every_event_of_a_busy_calendar(service: ScheduleService) -> None:
    """Free/busy read one default page (500 events): in a calendar that full, the later events were shown free."""
    from datetime import timedelta

    from inhouse.apps.schedule.calendar import Interval

    c = ctx("UTC")
    day = datetime(2026, 2, 2, 0, 0, tzinfo=UTC)  # a Monday
    for i in range(520):  # ten-minute slots from midnight: 520 of them fill the days until Thursday 14:40
        start = day + timedelta(minutes=10 * i)
        service.events.create(ANA, f"slot {i}", Interval(start, start + timedelta(minutes=10)), tz="UTC")
    free = service.free_slots(c, [], 30, start="2026-02-02 00:00", end="2026-02-06 00:00", limit=50)
    starts = [s["start"] for s in free["slots"]]
    assert starts and all(s >= "2026-02-05T14:40" for s in starts), starts[:5]


def test_reimport_and_move_keep_all_day_and_zone_true(service: ScheduleService) -> None:
    """A re-import never updated all_day or the zone, and an all-day event moved to clock times stayed all-day."""
    berlin, shanghai = ctx("Europe/Berlin"), ctx("Asia/Shanghai")
    service.import_ics(berlin, ics("UID:offsite\r\nSUMMARY:Offsite\r\nDTSTART;VALUE=DATE:20260210\r\n"
                                   "DTEND;VALUE=DATE:20260211\r\n"))
    assert service.events.by_uid(ANA, "offsite").all_day  # type: ignore[union-attr]
    service.import_ics(shanghai, ics("UID:offsite\r\nSUMMARY:Offsite\r\nDTSTART:20260210T010000Z\r\n"
                                     "DTEND:20260210T030000Z\r\n"))
    again = service.events.by_uid(ANA, "offsite")
    assert again is not None and not again.all_day and again.tz == "Asia/Shanghai"
    service.import_ics(berlin, ics("UID:trip\r\nSUMMARY:Trip\r\nDTSTART;VALUE=DATE:20260212\r\n"
                                   "DTEND;VALUE=DATE:20260213\r\n"))
    trip = service.events.by_uid(ANA, "trip")
    assert trip is not None
    moved = service.move_event(berlin, trip.id, "2026-02-12 10:00", "2026-02-12 12:00")["event"]
    assert moved["all_day"] is False
