"""The .ics writer and reader: CRLF, folding at 75 octets on character boundaries, escaping, UTC/TZID/floating
times, all-day values, DURATION, nested VALARM, and clear errors on what is not a calendar."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.apps.ics import IcsItem, escape_text, fold_line, read_ics, unescape_text, unfold, write_ics
from inhouse.errors import InvalidRequest

PARIS = ZoneInfo("Europe/Paris")
STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def test_write_is_crlf_folded_and_escaped() -> None:
    item = IcsItem("Budget; Q3, review\nwith 李伟 " + "预算" * 40, datetime(2026, 1, 30, 9, tzinfo=PARIS),
                   datetime(2026, 1, 30, 10, tzinfo=PARIS), uid="u1@test", attendees=["li@example.com", "Li Wei"])
    text = write_ics([item], dtstamp=STAMP)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75
    assert "DTSTART:20260130T080000Z" in text  # aware times in UTC
    assert "SUMMARY:Budget\\; Q3\\, review\\nwith" in text
    assert "ATTENDEE:mailto:li@example.com" in text and 'CN="Li Wei"' in text
    back = read_ics(text)[0]
    assert back.summary == item.summary and back.uid == "u1@test"
    assert back.start == item.start and back.end == item.end
    assert back.attendees == ["li@example.com", "Li Wei"]


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_text_round_trips_through_escape_and_fold(value: str) -> None:
    # Text as a user writes it: line breaks as LF, tabs; other control characters are dropped (and CR, NEL,
    # U+2028/9 come back as LF): test_ics_values_stay_on_their_line.py.
    value = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", "", value)
    line = fold_line("SUMMARY:" + escape_text(value))
    assert all(len(p.encode("utf-8")) <= 75 for p in line.split("\r\n"))
    assert unescape_text(unfold(line)[0][len("SUMMARY:"):]) == value


def test_read_tzid_floating_all_day_duration_and_todo() -> None:
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Asia/Shanghai:20260203T150000\r\nDURATION:PT1H30M\r\n"
        "SUMMARY:Long line folded \r\n over two lines\r\n"
        "BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nSUMMARY:not the event\r\nEND:VALARM\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20260210\r\nSUMMARY:Holiday\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:c\r\nDTSTART:20260211T090000\r\nDTEND:20260211T100000\r\nSUMMARY:Floating\r\n"
        "END:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:d\r\nDTSTART;TZID=Mars/Olympus:20260211T090000\r\nSUMMARY:Odd zone\r\nEND:VEVENT\r\n"
        "BEGIN:VTODO\r\nUID:e\r\nDUE;VALUE=DATE:20260220\r\nSUMMARY:Send slides\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n"
    )
    a, b, c, d, e = read_ics(text, default_tz=PARIS)
    sh = ZoneInfo("Asia/Shanghai")
    assert a.summary == "Long line folded over two lines"
    assert a.start == datetime(2026, 2, 3, 15, tzinfo=sh) and a.end == a.start + timedelta(minutes=90)
    assert b.start == date(2026, 2, 10) and b.end == date(2026, 2, 11)  # one day by default
    assert c.start == datetime(2026, 2, 11, 9, tzinfo=PARIS)  # floating → the default zone
    assert d.warnings and d.start == datetime(2026, 2, 11, 9, tzinfo=PARIS)
    assert e.kind == "VTODO" and e.due == date(2026, 2, 20)
    assert read_ics(text)[2].start == datetime(2026, 2, 11, 9)  # no default zone: stays floating


def test_write_todo_and_all_day() -> None:
    text = write_ics([IcsItem("Send slides", kind="VTODO", due=date(2026, 2, 20), uid="t"),
                      IcsItem("Off", date(2026, 2, 10), date(2026, 2, 11), uid="o")], dtstamp=STAMP)
    assert "BEGIN:VTODO" in text and "DUE;VALUE=DATE:20260220" in text
    assert "DTSTART;VALUE=DATE:20260210" in text
    assert [i.kind for i in read_ics(text)] == ["VTODO", "VEVENT"]


def test_missing_uid_gets_a_stable_one() -> None:
    text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260211T090000Z\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n"
    assert read_ics(text)[0].uid == read_ics(text)[0].uid != ""


@pytest.mark.parametrize("bad", [
    b"", b"hello", b"\xff\xfe\x00", "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\n",
    "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026-02-11\nEND:VEVENT\nEND:VCALENDAR",
    "BEGIN:VCALENDAR\nBEGIN:VEVENT\nno colon here\nEND:VEVENT\nEND:VCALENDAR",
    "BEGIN:VCALENDAR\nEND:VEVENT\nEND:VCALENDAR",
])
def test_bad_calendars_are_clear_errors(bad: str | bytes) -> None:
    with pytest.raises(InvalidRequest):
        read_ics(bad)


def test_years_below_1000_are_written_with_four_digits() -> None:
    # strftime("%Y") writes year 999 as "999", which no reader (ours included) accepts.
    item = IcsItem("old", datetime(999, 6, 1, 10, tzinfo=UTC), datetime(999, 6, 1, 11, tzinfo=UTC), uid="u@old")
    todo = IcsItem("due", kind="VTODO", due=date(1, 1, 1), uid="t@old")
    text = write_ics([item, todo], dtstamp=STAMP)
    assert "DTSTART:09990601T100000Z" in text and "DUE;VALUE=DATE:00010101" in text
    back = read_ics(text)
    assert back[0].start == item.start and back[1].due == date(1, 1, 1)


@pytest.mark.parametrize("lines", [
    "DTSTART:99991231T233000Z\r\nDURATION:PT2H",  # DTSTART + DURATION past the last representable instant
    "DTSTART;VALUE=DATE:99991231",  # an all-day event lasts a day: into year 10000
    "DTSTART:20300101T100000Z\r\nDURATION:P999999999W",  # beyond timedelta
    "DTSTART:20300101T100000Z\r\nDURATION:P" + "9" * 5000 + "D",  # more digits than int() reads
])
def test_dates_that_cannot_be_computed_are_clear_errors(lines: str) -> None:
    text = f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n{lines}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    with pytest.raises(InvalidRequest) as exc:
        read_ics(text)
    assert exc.value.param == "file"


@pytest.mark.parametrize(("start", "end"), [
    ("20260329T013000", datetime(2026, 3, 29, 4, 30, tzinfo=ZoneInfo("Europe/Berlin"))),  # spring forward
    ("20261025T013000", datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin"))),  # fall back
])
def test_duration_hours_are_exact_across_dst(start: str, end: datetime) -> None:
    text = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:m\r\n"
            f"DTSTART;TZID=Europe/Berlin:{start}\r\nDURATION:PT2H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    item = read_ics(text)[0]
    assert isinstance(item.start, datetime) and isinstance(item.end, datetime)
    assert item.end.timestamp() - item.start.timestamp() == 7200  # RFC 5545 3.3.6: hours are elapsed time
    assert (item.end.timestamp(), item.end.fold) == (end.timestamp(), end.fold)


def test_duration_days_are_nominal_across_dst() -> None:
    text = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:m\r\nDTSTART;TZID=Europe/Berlin:20260328T090000\r\n"
            "DURATION:P1DT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert read_ics(text)[0].end == datetime(2026, 3, 29, 10, tzinfo=ZoneInfo("Europe/Berlin"))  # 24h of 25h


def test_recurrence_id_is_read_and_written() -> None:
    text = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID;TZID=Europe/Paris:20260316T090000\r\n"
            "DTSTART;TZID=Europe/Paris:20260317T140000\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
            "BEGIN:VEVENT\r\nUID:s\r\nDTSTART;TZID=Europe/Paris:20260302T090000\r\nSUMMARY:series\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n")
    moved, series = read_ics(text)
    assert moved.recurrence_id == datetime(2026, 3, 16, 9, tzinfo=PARIS) and series.recurrence_id is None
    assert read_ics(write_ics([moved], dtstamp=STAMP))[0].recurrence_id == moved.recurrence_id
