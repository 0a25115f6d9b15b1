"""The minutes pipeline on the fake engine: verification, owners, dates, windows, merging, bad model output."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.minutes import MinutesInput, MinutesOptions, run
from inhouse.apps.minutes.extract import Window, build_windows, estimate_tokens, window_messages
from inhouse.apps.minutes.transcript import parse_transcript
from inhouse.errors import InvalidRequest, Unavailable

MakeCtx = Callable[..., AppContext]

TRANSCRIPT = """Meeting: X300 launch sync
Date: 2026-10-28 (Wednesday), 10:00-10:40
Attendees: Mei Lin (chair), Daniel Okafor, Sofia Reyes

[00:00] Mei Lin: Three topics today: launch date, pricing sheet, manual.
[00:45] Daniel Okafor: Two open bugs remain in the CAN driver. I will fix both CAN driver bugs by next Friday.
[06:30] Mei Lin: Decision: the X300 launch moves to December 2.
[09:30] Mei Lin: Sofia, please send the pricing sheet to finance by Friday.
[11:20] Sofia Reyes: Will do.
[15:30] Daniel Okafor: Do we keep the X200 in production after the launch?
[16:40] Mei Lin: Thanks everyone. Next sync is November 4 at 10:00.
"""

GOOD = {
    "title": "X300 sync", "summary": "Launch moved; pricing and bugs assigned.",
    "decisions": [{"line": 3, "decision": "The X300 launch moves to December 2."},
                  {"line": 1, "decision": "The company will open an office in Paris."}],  # not in the transcript
    "action_items": [
        {"line": 2, "owner": "Daniel", "task": "Fix both CAN driver bugs", "due": "next Friday"},
        {"line": 4, "owner": "Mei Lin", "task": "Send the pricing sheet to finance", "due": "by Friday"},
        {"line": 99, "owner": "Sofia Reyes", "task": "Book the launch venue", "due": ""},  # no such line
        {"line": 1, "owner": "Sofia Reyes", "task": "send pricing sheet finance", "due": "Friday"},  # duplicate
    ],
    "open_questions": [{"line": 6, "question": "Do we keep the X200 in production after the launch?"}],
    "next_meeting": {"line": 7, "when": "November 4 at 10:00"},
}


def window_reply(payload: dict[str, Any]) -> Any:
    return lambda prompt: json.dumps(payload) if "Transcript lines" in prompt else json.dumps(
        {"title": "t", "summary": "s"})


def minutes_of(make_ctx: MakeCtx, responder: Any, text: str = TRANSCRIPT, **kw: Any) -> Any:
    ctx = make_ctx(responder)
    return asyncio.run(run(ctx, MinutesInput(data=text.encode(), filename="sync.txt", **kw)))


def test_verified_minutes(make_ctx: MakeCtx) -> None:
    m = minutes_of(make_ctx, window_reply(GOOD))
    assert m.title == "X300 launch sync" and m.meeting_date == date(2026, 10, 28)
    assert [d.text for d in m.decisions] == ["The X300 launch moves to December 2."]
    assert m.decisions[0].evidence[0].line == 3 and m.decisions[0].evidence[0].timestamp == "06:30"
    owners = [(a.owner, a.task, a.due) for a in m.action_items]
    # "Daniel" → the attendee; "next Friday" across the month end; Mei Lin asked Sofia → Sofia owns it.
    assert owners == [("Daniel Okafor", "Fix both CAN driver bugs", date(2026, 11, 6)),
                      ("Sofia Reyes", "Send the pricing sheet to finance", date(2026, 10, 30))]
    assert [q.evidence[0].line for q in m.open_questions] == [6]
    assert m.next_meeting is not None and m.next_meeting.start == "2026-11-04T10:00"
    rejected = {(r.kind, r.text) for r in m.rejected}
    assert ("decision", "The company will open an office in Paris.") in rejected
    assert ("action_item", "Sofia Reyes: Book the launch venue") in rejected
    assert m.source["windows"] == 1 and m.source["lines"] == 7


def test_an_open_question_restated_as_a_task_is_not_an_action_item(make_ctx: MakeCtx) -> None:
    payload = {**GOOD, "action_items": [
        {"line": 6, "owner": "Daniel", "task": "Decide whether we keep the X200 in production", "due": ""}]}
    m = minutes_of(make_ctx, window_reply(payload))
    assert m.action_items == [] and len(m.open_questions) == 1
    assert any(r.reason == "restates an open question of the same line" for r in m.rejected)


def test_evidence_is_repaired_to_a_neighbouring_line_that_supports_it(make_ctx: MakeCtx) -> None:
    payload = {**GOOD, "decisions": [], "open_questions": [],
               "action_items": [{"line": 3, "owner": "I", "task": "Fix both CAN driver bugs", "due": ""}]}
    m = minutes_of(make_ctx, window_reply(payload))
    (item,) = m.action_items
    assert item.evidence[0].line == 2  # the cited line 3 is about the launch; line 2 says it
    assert item.owner == "Daniel Okafor"  # "I" on Daniel's line
    assert item.due == date(2026, 11, 6)  # no quoted deadline: the one date on the evidence line


def test_owner_who_is_no_attendee_is_flagged_not_invented(make_ctx: MakeCtx) -> None:
    payload = {**GOOD, "action_items": [{"line": 2, "owner": "the vendor", "task": "fix CAN driver bugs",
                                         "due": "when possible"}]}
    (item,) = minutes_of(make_ctx, window_reply(payload)).action_items
    assert item.owner is None
    assert "owner_not_attendee" in item.flags and "owner_text:the vendor" in item.flags
    assert item.due == date(2026, 11, 6)  # the evidence line names one date


def test_chinese_owner_mapping(make_ctx: MakeCtx) -> None:
    text = ("日期:2026-10-21\n参会人:赵敏、李娜\n\n[07:20] 赵敏:请李娜在下周五前给受影响的客户发一封致歉邮件。\n"
            "[07:50] 李娜:没问题。\n")
    payload = {"title": "周会", "summary": "s", "decisions": [], "open_questions": [],
               "action_items": [{"line": 1, "owner": "小李", "task": "给受影响的客户发致歉邮件", "due": "下周五前"}],
               "next_meeting": {"line": 0, "when": ""}}
    m = minutes_of(make_ctx, window_reply(payload), text=text)
    assert [(a.owner, a.due) for a in m.action_items] == [("李娜", date(2026, 10, 30))]
    assert m.next_meeting is None and m.source["language"] == "zh"


def test_invalid_json_is_retried_once(make_ctx: MakeCtx) -> None:
    calls: list[str] = []

    def flaky(prompt: str) -> str:
        calls.append(prompt)
        if "Transcript lines" in prompt and len(calls) == 1:
            return "{'title': oops"
        return window_reply(GOOD)(prompt)

    m = minutes_of(make_ctx, flaky)
    assert len(m.action_items) == 2 and sum("Transcript lines" in c for c in calls) == 2


def test_second_look_finds_a_task_the_window_pass_missed(make_ctx: MakeCtx) -> None:
    looked: list[str] = []

    def responder(prompt: str) -> str:
        if "Does line L" in prompt:
            looked.append(prompt.rsplit("Does line ", 1)[1][:3])
            if "Does line L2 " in prompt:
                return json.dumps({"is_task": True, "owner": "I", "task": "Fix both CAN driver bugs",
                                   "due": "by next Friday"})
            return json.dumps({"is_task": False, "owner": "", "task": "", "due": ""})
        return window_reply({**GOOD, "action_items": GOOD["action_items"][1:2]})(prompt)

    m = minutes_of(make_ctx, responder)
    assert [(a.owner, a.due) for a in m.action_items] == [("Daniel Okafor", date(2026, 11, 6)),
                                                          ("Sofia Reyes", date(2026, 10, 30))]
    assert "L2 " in looked and "L4 " not in looked  # line 4 already backs an item: not asked again
    assert "L3 " not in looked  # the decision's line neither


def test_garbage_from_the_model_is_a_clear_error(make_ctx: MakeCtx) -> None:
    with pytest.raises(Unavailable) as exc:
        minutes_of(make_ctx, lambda prompt: "I am not JSON at all")
    assert exc.value.code == "invalid_model_output" and "not valid JSON" in exc.value.message


def test_empty_and_binary_input_are_refused(make_ctx: MakeCtx) -> None:
    for data in (b"", b"  \n ", b"Meeting: only a header\n"):
        with pytest.raises(InvalidRequest):
            minutes_of(make_ctx, window_reply(GOOD), text=data.decode())
    ctx = make_ctx(window_reply(GOOD))
    with pytest.raises(InvalidRequest, match="binary"):
        asyncio.run(run(ctx, MinutesInput(data=b"\x00\x01\x02garbage", filename="x.txt")))
    with pytest.raises(InvalidRequest, match="Audio transcription is not available"):
        asyncio.run(run(ctx, MinutesInput(data=b"RIFF....WAVEfmt ", filename="x.wav")))


def test_meeting_without_a_date_counts_from_today(make_ctx: MakeCtx) -> None:
    text = TRANSCRIPT.replace("Date: 2026-10-28 (Wednesday), 10:00-10:40\n", "")
    m = minutes_of(make_ctx, window_reply(GOOD), text=text)
    assert m.meeting_date == date(2026, 10, 20) and m.date_source == "today"  # the context's clock


def test_windows_overlap_and_cover_every_line() -> None:
    text = "\n".join(f"[{i // 60:02d}:{i % 60:02d}] P{i % 3}: line {i} about topic {i}" for i in range(300))
    tr = parse_transcript(text)
    windows = build_windows(tr.lines, 200)
    assert windows[0].first == 1 and windows[-1].last == 300
    for a, b in itertools.pairwise(windows):
        assert b.first <= a.last  # overlap
        assert b.first > a.first  # progress
    for w in windows:
        cost = sum(estimate_tokens(tr.lines[n - 1].render()) + 1 for n in w.numbers)
        assert cost <= 200 or w.first == w.last


def three_hour_transcript() -> tuple[str, list[int]]:
    lines, commitments = ["Meeting: Quarterly planning", "Date: 2026-10-28", "Attendees: Ann, Bo, Cy", ""], []
    for i in range(540):  # one line every 20 seconds for three hours
        stamp = f"[{i // 180:02d}:{i // 3 % 60:02d}:{i % 3 * 20:02d}]"
        who = ["Ann", "Bo", "Cy"][i % 3]
        if i % 45 == 7:
            commitments.append(i + 1)
            lines.append(f"{stamp} {who}: I will prepare the budget report number {i} by next Friday.")
        else:
            lines.append(f"{stamp} {who}: We talked about detail {i} of the plan and its many open points.")
    return "\n".join(lines), commitments


def test_three_hour_transcript_in_bounded_time_without_duplicates(make_ctx: MakeCtx) -> None:
    text, commitments = three_hour_transcript()

    def responder(prompt: str) -> str:
        m = re.search(r"Transcript lines L(\d+)-L(\d+)", prompt)
        if not m:
            return json.dumps({"title": "Quarterly planning", "summary": "Budget reports were assigned."})
        first, last = int(m[1]), int(m[2])
        items = [{"line": n, "owner": "I", "task": f"prepare the budget report number {n - 1}", "due": "next Friday"}
                 for n in commitments if first <= n <= last]
        return json.dumps({"title": "t", "summary": f"part {first}", "decisions": [], "open_questions": [],
                           "action_items": items, "next_meeting": {"line": 0, "when": ""}})

    ctx = make_ctx(responder)
    start = time.perf_counter()
    m = asyncio.run(run(ctx, MinutesInput(data=text.encode(), filename="planning.txt"),
                        options=MinutesOptions(window_tokens=1500)))
    elapsed = time.perf_counter() - start
    assert m.source["lines"] == 540 and m.source["windows"] > 5
    assert [a.evidence[0].line for a in m.action_items] == commitments  # each once, despite the overlaps
    assert all(a.due == date(2026, 11, 6) and a.owner in ("Ann", "Bo", "Cy") for a in m.action_items)
    assert m.summary == "Budget reports were assigned."
    assert elapsed < 30


def test_too_many_windows_is_refused(make_ctx: MakeCtx) -> None:
    text, _ = three_hour_transcript()
    ctx = make_ctx(window_reply(GOOD))
    with pytest.raises(InvalidRequest, match="too long"):
        asyncio.run(run(ctx, MinutesInput(data=text.encode(), filename="p.txt"),
                        options=MinutesOptions(window_tokens=500, max_windows=3)))


def test_window_that_does_not_fit_is_split(make_ctx: MakeCtx) -> None:
    decision = {"line": 3, "decision": "The X300 launch moves to December 2."}
    small = {"title": "t", "summary": "s", "decisions": [decision], "action_items": [], "open_questions": [],
             "next_meeting": {"line": 0, "when": ""}}
    tr = parse_transcript(TRANSCRIPT)
    probe = make_ctx(window_reply(small))
    body = {"model": probe.model, "messages": window_messages(tr, Window(1, len(tr.lines)))}
    full = probe.chat.prepare_chat(body).n_prompt_tokens
    # The fake tokenizes bytes: the whole window does not fit, each half does (with room for the reply).
    ctx = make_ctx(window_reply(small), n_ctx=full - 1)
    m = asyncio.run(run(ctx, MinutesInput(data=TRANSCRIPT.encode(), filename="sync.txt"),
                        options=MinutesOptions(window_tokens=5000)))
    assert m.source["windows"] == 1
    assert [d.text for d in m.decisions] == ["The X300 launch moves to December 2."]
