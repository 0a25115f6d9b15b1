"""Owners: "I" is the speaker, a request goes to the person asked; words that only look like a request (申请,
邀请, "you'll have a copy") or like a name ("I will" beside an attendee called Will) change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from inhouse.apps.minutes.extract import Proposals, Window
from inhouse.apps.minutes.pipeline import assemble
from inhouse.apps.minutes.transcript import parse_transcript

EN = """Meeting: Ops sync
Date: 2026-10-14
Attendees: Alice Moreau, Bob Tanaka, Will Chen

Alice Moreau: Bob, where is the budget?
Bob Tanaka: I will send the budget to finance by Friday, you'll have a copy too.
Alice Moreau: Thanks. Could you also book the venue by Monday? I will pay the deposit.
Bob Tanaka: Sure.
Alice Moreau: Will, please check the projector before Monday.
Bob Tanaka: Will you print the agenda? I can bring the badges.
Will Chen: OK.
"""

ZH = """会议:IT 周会
日期:2026-10-21
参会人:赵敏、周强、陈浩

赵敏:测试环境的服务器够用吗?
周强:不够。我负责申请两台测试服务器,周五前完成。
陈浩:我来邀请客户参加下周的试用,下周三前发出邀请。
赵敏:请周强把测试报告发给我。
"""


def owner_of(text: str, item: dict[str, Any]) -> str | None:
    tr = parse_transcript(text, filename="sync.txt")
    minutes = assemble(tr, [Proposals(window=Window(1, len(tr.lines)), action_items=[item])])
    assert len(minutes.action_items) == 1, minutes.rejected
    return minutes.action_items[0].owner


@pytest.mark.parametrize(("owner", "expected"), [("I", "Bob Tanaka"), ("Bob Tanaka", "Bob Tanaka"),
                                                 ("", "Bob Tanaka")])
def test_a_promise_to_the_listener_is_no_request_and_will_is_no_name(owner: str, expected: str) -> None:
    # "you'll have a copy" is not a request to Alice; "I will" does not name Will Chen.
    assert owner_of(EN, {"line": 2, "owner": owner, "task": "send the budget to finance", "due": "by Friday"}) \
        == expected


def test_a_request_goes_to_the_person_asked_not_to_an_attendee_called_will() -> None:
    assert owner_of(EN, {"line": 3, "owner": "", "task": "book the venue", "due": "by Monday"}) == "Bob Tanaka"
    assert owner_of(EN, {"line": 3, "owner": "Alice Moreau", "task": "book the venue", "due": ""}) == "Bob Tanaka"


def test_the_speakers_own_sentence_after_a_request_stays_the_speakers() -> None:
    # "Could you book the venue? I will pay the deposit.": the deposit is Alice's.
    assert owner_of(EN, {"line": 3, "owner": "I", "task": "pay the deposit", "due": ""}) == "Alice Moreau"


def test_a_capitalised_name_is_named_but_a_modal_verb_is_not() -> None:
    assert owner_of(EN, {"line": 5, "owner": "Alice Moreau", "task": "check the projector", "due": ""}) == "Will Chen"
    # "Will you print …" asked by Bob: the other person of the exchange (Alice, the previous speaker), not Will Chen
    # because of the word "Will".
    assert owner_of(EN, {"line": 6, "owner": "", "task": "print the agenda", "due": ""}) == "Alice Moreau"


@pytest.mark.parametrize(("line", "owner", "task"), [
    (2, "周强", "申请两台测试服务器"), (2, "我", "申请两台测试服务器"),
    (3, "我", "邀请客户参加下周的试用"), (3, "陈浩", "邀请客户参加试用"),
])
def test_qing_inside_a_word_is_no_request(line: int, owner: str, task: str) -> None:
    speaker = {2: "周强", 3: "陈浩"}[line]
    assert owner_of(ZH, {"line": line, "owner": owner, "task": task, "due": ""}) == speaker


def test_qing_on_its_own_is_a_request_to_the_person_named() -> None:
    assert owner_of(ZH, {"line": 4, "owner": "赵敏", "task": "把测试报告发给赵敏", "due": ""}) == "周强"
