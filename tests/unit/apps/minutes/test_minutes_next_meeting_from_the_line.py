"""The next meeting is kept only when the cited line talks about a meeting and names what the model quotes; its
date and time come from that line."""

from __future__ import annotations

from datetime import date

import pytest

from inhouse.apps.minutes.extract import Proposals, Window
from inhouse.apps.minutes.pipeline import assemble
from inhouse.apps.minutes.schema import Minutes
from inhouse.apps.minutes.transcript import parse_transcript

TRANSCRIPT = """Meeting: Website refresh
Date: 2026-10-14
Attendees: Alice Moreau, Bob Tanaka, Will Chen

Alice Moreau: Bob, where are we with the landing page copy?
Bob Tanaka: I will send the draft copy by Friday and the final copy on December 4.
Will Chen: I will fix the broken checkout button by tomorrow.
Alice Moreau: Thanks all. Next sync is October 21 at 10:00.
Bob Tanaka: Let's meet again next week.
"""
ZH = """会议:运营周例会
日期:2026-10-21

赵敏:今天就到这里,下次例会 10 月 28 日 14:00。
陈浩:我会在 10 月 23 日前更新模板。
"""


def minutes(line: int, when: str, text: str = TRANSCRIPT) -> Minutes:
    tr = parse_transcript(text, filename="refresh.txt")
    return assemble(tr, [Proposals(window=Window(1, len(tr.lines)), next_meeting={"line": line, "when": when})])


@pytest.mark.parametrize(("line", "when"), [
    (3, "Monday at 10am"),  # the line is about a bug fix, not a meeting
    (2, "December 4"),  # a date of the line, but no meeting
    (4, "Monday at 10am"),  # a meeting line, but not that day
    (4, "October 21 at 3pm"),  # that day, not that time
    (9, "October 21"),  # no such line
])
def test_a_next_meeting_the_cited_line_does_not_say_is_rejected(line: int, when: str) -> None:
    m = minutes(line, when)
    assert m.next_meeting is None
    assert [r.kind for r in m.rejected] == ["next_meeting"]


@pytest.mark.parametrize("when", ["October 21 at 10:00", "Oct 21, 10am", "the next sync", "next Wednesday"])
def test_the_date_and_time_come_from_the_meeting_line(when: str) -> None:
    m = minutes(4, when)
    assert m.next_meeting is not None, m.rejected
    assert (m.next_meeting.date, m.next_meeting.time) == (date(2026, 10, 21), "10:00")


def test_a_meeting_line_without_a_time_gives_none() -> None:
    m = minutes(5, "next week at 9am")
    assert m.next_meeting is None  # the line names no time: 9am is the model's
    m = minutes(5, "next week")
    assert m.next_meeting is not None and (m.next_meeting.date, m.next_meeting.time) == (date(2026, 10, 19), None)


def test_chinese_meeting_words() -> None:
    m = minutes(1, "10 月 28 日 14:00", ZH)
    assert m.next_meeting is not None and (m.next_meeting.date, m.next_meeting.time) == (date(2026, 10, 28), "14:00")
    assert minutes(2, "10 月 23 日", ZH).next_meeting is None  # 我会 … is a promise, not a meeting
