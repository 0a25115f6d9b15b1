"""Section labels ("Risks:", "Next steps:", "下一步：") are not speakers, attendees or owners; with an attendee list,
a label used once must name an attendee to be a speaker."""

from __future__ import annotations

import pytest

from inhouse.apps.minutes.extract import Proposals, Window
from inhouse.apps.minutes.pipeline import assemble
from inhouse.apps.minutes.transcript import parse_transcript

NOTES = """Meeting: Q4 planning
Date: 2026-10-14
Attendees: Alice Moreau, Bob Tanaka

Alice Moreau: Let's go through the plan for the quarter.
Bob Tanaka: The supplier contract is the main risk.
Risks: the supplier may be late by two weeks.
Next steps: finalize the supplier contract.
Bob Tanaka: I have the contract draft ready.
Alice Moreau: Can you send the contract to legal next week?
Bob Tanaka: Sure.
"""


@pytest.mark.parametrize("label", ["Risks", "Next steps", "Issues", "Blockers", "Action items", "Outcome", "Q3",
                                   "风险", "下一步", "待办"])
def test_common_section_labels_are_no_speakers(label: str) -> None:
    tr = parse_transcript(f"{label}: the supplier may be late.\nAlice: I will call them.\n", filename="n.txt")
    assert tr.lines[0].speaker is None
    assert tr.attendees == ["Alice"]


def test_labels_do_not_become_attendees_or_owners() -> None:
    tr = parse_transcript(NOTES, filename="plan.txt")
    assert tr.attendees == ["Alice Moreau", "Bob Tanaka"]
    raw = {"line": 6, "owner": "", "task": "send the contract to legal", "due": "next week"}
    m = assemble(tr, [Proposals(window=Window(1, len(tr.lines)), action_items=[raw])])
    assert [a.owner for a in m.action_items] == ["Bob Tanaka"]


def test_with_an_attendee_list_a_one_off_label_must_name_an_attendee() -> None:
    text = ("Attendees: Alice Moreau, Bob Tanaka\n\nAlice: Hello.\nPricing: the list price stays.\nBob: Fine.\n"
            "Alice: Good.\n")
    tr = parse_transcript(text, filename="n.txt")
    assert [(ln.speaker, ln.text) for ln in tr.lines] == [
        ("Alice", "Hello."), (None, "Pricing: the list price stays."), ("Bob", "Fine."), ("Alice", "Good.")]
    assert "Pricing" not in tr.attendees
    zh = parse_transcript("参会人:赵敏、李娜\n\n赵敏:开始吧。\n小李:我来安排。\n范围:只做华东仓。\n", filename="n.txt")
    assert [ln.speaker for ln in zh.lines] == ["赵敏", "小李", None]


def test_without_an_attendee_list_a_one_off_speaker_stays() -> None:
    tr = parse_transcript("Alice: Hello.\nDana: I will send the quote.\nAlice: Thanks.\n", filename="n.txt")
    assert [ln.speaker for ln in tr.lines] == ["Alice", "Dana", "Alice"]
    assert "Dana" in tr.attendees
