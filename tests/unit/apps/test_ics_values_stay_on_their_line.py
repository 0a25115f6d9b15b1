""".ics export: no value adds a line of its own. An attendee ``x@corp.com<CR><LF>END:VEVENT<CR><LF>BEGIN:VEVENT…``
was written verbatim (``_cal_address`` kept an address as given, ``_cn`` kept CR/LF in a name), so the exported
calendar held a second, attacker-chosen event (a "wire transfer approval call" with a link), and an attendee name on
two lines made the export unreadable even to our own reader. Now a name or an address becomes one line (control
characters as a space), and TEXT values escape line breaks (CR, LF, NEL, U+2028/9) as ``\\n`` and drop other control
characters. Checked on the text itself and through the reader, for the case reported and for any text at all."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.apps.ics import IcsItem, parse_line, read_ics, unfold, write_ics

INJECTED = ("x@corp.com\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil-1\r\nSUMMARY:Wire-transfer-approval-call\r\n"
            "DTSTART:20270301T090000Z\r\nDTEND:20270301T100000Z\r\nLOCATION:https://evil.example/join")
# What may not appear in the file but as the CRLF that ends a line: C0 but tab, DEL, C1, the Unicode line breaks.
STRAY = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
PROPERTIES = {"BEGIN", "END", "VERSION", "PRODID", "CALSCALE", "X-WR-CALNAME", "UID", "DTSTAMP", "DTSTART", "DTEND",
              "SUMMARY", "DESCRIPTION", "LOCATION", "ORGANIZER", "ATTENDEE", "STATUS", "CATEGORIES", "RRULE"}


def event(**values: object) -> IcsItem:
    return IcsItem(summary=str(values.pop("summary", "Planning")), start=datetime(2027, 3, 1, 10, tzinfo=UTC),
                   end=datetime(2027, 3, 1, 10, 30, tzinfo=UTC), uid="plan@inhouse", **values)  # type: ignore[arg-type]


def assert_one_event(text: str) -> IcsItem:
    assert not STRAY.search(text.replace("\r\n", "")), text
    lines = unfold(text)
    assert {parse_line(line).name for line in lines} <= PROPERTIES, lines
    assert sum(line == "BEGIN:VEVENT" for line in lines) == 1, lines
    (item,) = read_ics(text)
    assert item.uid == "plan@inhouse"
    return item


def test_an_attendee_with_line_breaks_adds_no_event() -> None:
    text = write_ics([event(attendees=[INJECTED, "mailto:" + INJECTED], organizer=INJECTED)],
                     dtstamp=datetime(2027, 1, 1, tzinfo=UTC))
    item = assert_one_event(text)
    assert item.summary == "Planning" and item.location == ""
    one_line = INJECTED.replace("\r\n", " ")
    assert item.attendees == [one_line, one_line] and item.organizer == one_line


def test_a_name_on_two_lines_is_read_back_on_one() -> None:
    """It made the export unreadable to ``read_ics`` (and so to ``/v1/apps/schedule/import``)."""
    item = assert_one_event(write_ics([event(attendees=["Bob Smith\nfrom sales", 'Ann "A"\x85Lee\u2028Jr'])]))
    assert item.attendees == ["Bob Smith from sales", "Ann 'A' Lee Jr"]


def test_text_values_escape_line_breaks_and_drop_other_control_characters() -> None:
    messy = "a\r\nb\rc\nd\x85e\u2028f\u2029g\x00h\x1bi\x7fj\x9bk\tl;m,n\\o"
    item = assert_one_event(write_ics([event(summary=messy, location=messy, description=messy, categories=[messy],
                                             rrule="FREQ=WEEKLY\r\nBEGIN:VEVENT")], calendar_name=messy))
    clean = "a\nb\nc\nd\ne\nf\ng" + "hijk\tl;m,n\\o"
    assert item.summary == item.location == item.description == clean
    assert item.rrule == "FREQ=WEEKLY BEGIN:VEVENT"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=60), max_size=3))
def test_no_text_leaves_its_line(text: str, people: list[str]) -> None:
    item = event(summary=text, location=text, description=text, organizer=text, attendees=people, rrule=text,
                 categories=[text] if text.strip() else [])
    assert_one_event(write_ics([item], calendar_name=text))
