"""Due dates: every date of the evidence line counts, the quoted words pick one of them; a date said only on a
neighbouring line counts only when the evidence line names none; several dates and none picked → no due date."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from inhouse.apps.minutes.extract import Proposals, Window
from inhouse.apps.minutes.pipeline import _dates_in, assemble
from inhouse.apps.minutes.schema import ActionItem
from inhouse.apps.minutes.transcript import parse_transcript

WEDNESDAY = date(2026, 10, 14)
TRANSCRIPT = """Meeting: Website refresh
Date: 2026-10-14
Attendees: Alice Moreau, Bob Tanaka

Alice Moreau: Bob, where are we with the landing page copy?
Bob Tanaka: I will send the draft copy by Friday and the final copy on December 4.
Alice Moreau: Good. Could you also update the pricing table by next Friday? Then I will review it.
Bob Tanaka: Sure.
Alice Moreau: And could you renew the certificate?
Bob Tanaka: Yes, by Monday.
"""


def item(raw: dict[str, Any]) -> ActionItem:
    tr = parse_transcript(TRANSCRIPT, filename="refresh.txt")
    minutes = assemble(tr, [Proposals(window=Window(1, len(tr.lines)), action_items=[raw])])
    assert len(minutes.action_items) == 1, minutes.rejected
    return minutes.action_items[0]


@pytest.mark.parametrize(("task", "due", "expected"), [
    ("send the draft copy", "by Friday", date(2026, 10, 16)),
    ("send the draft copy", "Friday", date(2026, 10, 16)),
    ("send the final copy", "December 4", date(2026, 12, 4)),
])
def test_the_quoted_words_pick_one_of_the_lines_dates(task: str, due: str, expected: date) -> None:
    found = item({"line": 2, "owner": "Bob Tanaka", "task": task, "due": due})
    assert (found.due, found.due_text, found.flags) == (expected, due, [])


def test_a_date_only_the_neighbouring_line_names_loses_to_the_lines_own() -> None:
    found = item({"line": 3, "owner": "Bob Tanaka", "task": "update the pricing table", "due": "December 4"})
    assert (found.due, found.due_text) == (date(2026, 10, 23), "(from the evidence line)")


def test_a_neighbouring_line_counts_when_the_evidence_line_names_no_date() -> None:
    found = item({"line": 5, "owner": "Bob Tanaka", "task": "renew the certificate", "due": "Monday"})
    assert found.due == date(2026, 10, 19)


@pytest.mark.parametrize("due", ["", "next month", "ASAP"])
def test_several_dates_and_none_picked_is_no_due_date_and_flagged(due: str) -> None:
    found = item({"line": 2, "owner": "Bob Tanaka", "task": "send the draft copy", "due": due})
    assert found.due is None
    assert "due_ambiguous" in found.flags


@pytest.mark.parametrize(("text", "expected"), [
    ("I will send the draft copy by Friday and the final copy on December 4.",
     [date(2026, 10, 16), date(2026, 12, 4)]),
    ("Please send it by Friday, October 16.", [date(2026, 10, 16)]),
    ("我这边需要把模板更新一下,周五 10 月 23 日前完成。", [date(2026, 10, 23)]),  # the explicit date wins
    ("我来邀请客户参加下周五的试用。", [date(2026, 10, 23)]),  # 下周 inside 下周五 is not a second date
    ("Nothing dated here.", []),
])
def test_dates_in_a_line(text: str, expected: list[date]) -> None:
    assert _dates_in(text, WEDNESDAY) == expected
