""".ics import of Outlook invites: a Windows zone name (``TZID=W. Europe Standard Time``) is read through the file's
own VTIMEZONE (its STANDARD/DAYLIGHT offsets and yearly rules), or mapped to IANA when the file defines none; a zone
nothing explains is read in the caller's zone AND reported per event in the import's answer. The files are written
here as Outlook and older exporters write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.ics import read_ics
from inhouse.apps.schedule.service import ScheduleService
from inhouse.apps.timezones import WINDOWS_ZONES, VTimezone
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN_VTIMEZONE = (  # exactly as Outlook 16 writes it
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n"
    "BEGIN:STANDARD\r\nDTSTART:16011028T030000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:16010325T020000\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\n"
    "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n")


def outlook(start: str, *, tzid: str = "W. Europe Standard Time", vtimezone: str = BERLIN_VTIMEZONE,
            uid: str = "outlook-1") -> bytes:
    return ("BEGIN:VCALENDAR\r\nPRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\nVERSION:2.0\r\n"
            f"{vtimezone}BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261201T080000Z\r\n"
            f"DTSTART;TZID={tzid}:{start}\r\nDURATION:PT1H\r\nSUMMARY:Supplier call\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n").encode()


def shanghai() -> AppContext:
    return AppContext(actor=ANA, chat=None, model="x", tz=SHANGHAI)  # type: ignore[arg-type]


@pytest.mark.parametrize(("local", "utc"), [
    ("20261215T100000", datetime(2026, 12, 15, 9, 0, tzinfo=UTC)),  # winter: +01:00
    ("20260715T100000", datetime(2026, 7, 15, 8, 0, tzinfo=UTC)),  # summer: +02:00
])
def test_an_outlook_invite_lands_at_its_own_time_not_the_callers(service: ScheduleService, local: str,
                                                                 utc: datetime) -> None:
    out = service.import_ics(shanghai(), outlook(local))
    assert out["created"] == 1 and out["warnings"] == []
    event = service.events.by_uid(ANA, "outlook-1")
    assert event is not None and event.start.astimezone(UTC) == utc and event.end - event.start == timedelta(hours=1)


def test_the_vtimezone_follows_its_rules_like_the_iana_zone() -> None:
    item = read_ics(outlook("20260101T000000"))[0]
    zone = item.start.tzinfo  # type: ignore[union-attr]
    assert isinstance(zone, VTimezone)
    berlin = ZoneInfo("Europe/Berlin")
    instant = datetime(2025, 1, 1, tzinfo=UTC)
    while instant < datetime(2028, 1, 1, tzinfo=UTC):  # every hour across three years of DST changes
        assert instant.astimezone(zone).utcoffset() == instant.astimezone(berlin).utcoffset(), instant
        wall = instant.astimezone(berlin).replace(tzinfo=None)
        if instant.astimezone(berlin).fold == 0:  # an unambiguous wall time reads back as the same instant
            assert wall.replace(tzinfo=zone).astimezone(UTC) == instant, wall
        instant += timedelta(hours=1)


def test_a_custom_vtimezone_with_the_old_us_rule_and_monthdays(service: ScheduleService) -> None:
    # The 1987-2006 US Eastern rule (first Sunday in April written as BYMONTHDAY=1..7, as older exporters do), under
    # a name that is neither IANA nor Windows: only the VTIMEZONE explains it.
    vtimezone = ("BEGIN:VTIMEZONE\r\nTZID:Custom Eastern\r\n"
                 "BEGIN:DAYLIGHT\r\nDTSTART:19870405T020000\r\n"
                 "RRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=SU;BYMONTHDAY=1,2,3,4,5,6,7\r\n"
                 "TZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nEND:DAYLIGHT\r\n"
                 "BEGIN:STANDARD\r\nDTSTART:19871025T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
                 "TZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
    for uid, start in (("before", "20050402T120000"), ("after", "20050404T120000")):
        out = service.import_ics(shanghai(), outlook(start, tzid="Custom Eastern", vtimezone=vtimezone, uid=uid))
        assert out["created"] == 1 and out["warnings"] == []
    before, after = service.events.by_uid(ANA, "before"), service.events.by_uid(ANA, "after")
    assert before is not None and before.start.astimezone(UTC) == datetime(2005, 4, 2, 17, tzinfo=UTC)  # -05:00
    assert after is not None and after.start.astimezone(UTC) == datetime(2005, 4, 4, 16, tzinfo=UTC)  # -04:00


def test_a_windows_name_without_vtimezone_is_mapped_to_iana(service: ScheduleService) -> None:
    out = service.import_ics(shanghai(), outlook("20261215T100000", tzid="Pacific Standard Time", vtimezone=""))
    assert out["warnings"] == []
    event = service.events.by_uid(ANA, "outlook-1")
    assert event is not None and event.start.astimezone(UTC) == datetime(2026, 12, 15, 18, tzinfo=UTC)


def test_every_windows_name_maps_to_a_zone_this_machine_knows() -> None:
    assert len(WINDOWS_ZONES) > 100
    for windows, iana in WINDOWS_ZONES.items():
        assert ZoneInfo(iana).key == iana, windows
    # Spot checks of the offsets the names promise.
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    for windows, hours in (("China Standard Time", 8), ("Tokyo Standard Time", 9), ("India Standard Time", 5.5),
                           ("Eastern Standard Time", -5), ("GMT Standard Time", 0), ("Romance Standard Time", 1),
                           ("AUS Eastern Standard Time", 11), ("Dateline Standard Time", -12)):
        assert winter.astimezone(ZoneInfo(WINDOWS_ZONES[windows])).utcoffset() == timedelta(hours=hours), windows


def test_a_zone_nothing_explains_is_reported_in_the_import_answer(service: ScheduleService) -> None:
    out = service.import_ics(shanghai(), outlook("20261215T100000", tzid="Mars Standard Time", vtimezone=""))
    assert out["created"] == 1
    [warned] = out["warnings"]
    assert warned["uid"] == "outlook-1" and warned["title"] == "Supplier call"
    assert "Mars Standard Time" in warned["warnings"][0] and "Asia/Shanghai" in warned["warnings"][0]
    # A VTIMEZONE with a rule we cannot follow exactly is reported too, not guessed.
    odd = BERLIN_VTIMEZONE.replace("TZID:W. Europe Standard Time", "TZID:Odd").replace(
        "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10", "RRULE:FREQ=MONTHLY;BYDAY=-1SU")
    again = service.import_ics(shanghai(), outlook("20261215T100000", tzid="Odd", vtimezone=odd, uid="odd-1"))
    assert "cannot follow" in again["warnings"][0]["warnings"][0]
