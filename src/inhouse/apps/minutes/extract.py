"""Transcript → model proposals, window by window.

A transcript longer than one window is cut into overlapping windows of whole lines (the overlap keeps an item
that straddles a cut inside at least one window); each window is one JSON-schema constrained call. A window that
does not fit the model's context is split in two and retried. Proposals carry the line number the model cited;
checking them is ``verify.py``'s job, merging them ``pipeline.py``'s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from inhouse.apps.context import AppContext, complete_json
from inhouse.apps.dates import find_date
from inhouse.apps.minutes.schema import SUMMARY_SCHEMA, WINDOW_SCHEMA
from inhouse.apps.minutes.transcript import Transcript, TranscriptLine
from inhouse.errors import ContextLengthExceeded, InvalidRequest

log = logging.getLogger(__name__)

_CJK_RE = re.compile(r"[\u3400-\u9fff]")
MIN_WINDOW_LINES = 4
MAX_SPLITS = 4  # a window is halved at most this many times before the meeting is refused
WINDOW_MAX_TOKENS = 1536  # the bounded JSON of one window (item counts are capped by the schema)

SYSTEM_EN = """You write meeting minutes from a transcript. Every transcript line starts with its number, like L12.
Use only what the transcript says; never invent people, dates or tasks.
- decisions: what the meeting agreed or decided. line = the number of the line that states the decision.
- action_items: every task a person committed to ("I will", "I'll") or was asked to do ("please", "can you").
  owner = the attendee who will do the task (when someone says "I will", the owner is that speaker; when someone
  asks another person, the owner is the person asked). task = what to do, short. due = the deadline words
  exactly as spoken ("by Friday", "October 23", "next week"), or "" when none was said. line = the number of
  the line where the task and its deadline are said.
- open_questions: questions that were left unresolved. line = where the question is raised.
- next_meeting: when the next meeting is, as spoken, and its line; line 0 and when "" if not mentioned.
- title: a short title for the meeting. summary: 2-4 sentences on what was discussed.
Write the texts in the language of the transcript."""

SYSTEM_ZH = """你根据会议记录撰写会议纪要。记录的每一行以行号开头,例如 L12。
只使用记录中的内容,不要编造人名、日期或任务。
- decisions:会议做出的决定。line = 说出该决定的行号。
- action_items:每个有人承诺("我负责"、"我来")或被要求完成("请某某")的任务。owner = 执行任务的参会人
  (说"我负责"时,owner 是说话人;请别人做时,owner 是被请的人)。task = 简短的任务描述。due = 原话中的截止时间
  (例如"周五前"、"10 月 23 日前"、"下周五"),没有则为 ""。line = 说出该任务的行号。
- open_questions:尚未解决的问题。line = 提出问题的行号。
- next_meeting:下次会议的时间(原话)及其行号;未提及时 line 为 0,when 为 ""。
- title:会议的简短标题。summary:用 2-4 句话概括讨论内容。
用中文写。"""

LOOK_SYSTEM = ("You read one line of a meeting transcript, with the lines around it. Decide whether that line "
               "gives a person a task: someone commits to do something (\"I will\", \"I'll\", \"I expect to\") or "
               "is asked to (\"please\", \"can you\"). If so: owner = the attendee who will do it (\"I\" is the "
               "speaker of the line), task = what to do, short, due = the deadline words exactly as spoken, or \"\".")
LOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"is_task": {"type": "boolean"}, "owner": {"type": "string"}, "task": {"type": "string"},
                   "due": {"type": "string"}},
    "required": ["is_task", "owner", "task", "due"],
    "additionalProperties": False,
}
MAX_LOOKS_PER_WINDOW = 6

REDUCE_SYSTEM = ("You are given the summaries of consecutive parts of one long meeting. Write one title and one "
                 "summary (3-6 sentences) for the whole meeting, in the language of the summaries.")


def estimate_tokens(text: str) -> int:
    """A cheap upper-ish estimate: a CJK character ≈ 1 token, other text ≈ 3.5 characters per token."""
    cjk = len(_CJK_RE.findall(text))
    return cjk + (len(text) - cjk) * 2 // 7 + 1


def is_chinese(tr: Transcript) -> bool:
    sample = " ".join(ln.text for ln in tr.lines[:200])
    return len(_CJK_RE.findall(sample)) > 0.2 * max(1, len(sample.replace(" ", "")))


@dataclass
class Window:
    first: int  # line numbers, inclusive
    last: int

    @property
    def numbers(self) -> range:
        return range(self.first, self.last + 1)


@dataclass
class Proposals:
    """What the model said about one window, as it said it (unchecked)."""

    window: Window
    title: str = ""
    summary: str = ""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    action_items: list[dict[str, Any]] = field(default_factory=list)
    open_questions: list[dict[str, Any]] = field(default_factory=list)
    next_meeting: dict[str, Any] | None = None


def build_windows(lines: list[TranscriptLine], budget_tokens: int, *, overlap: float = 0.15) -> list[Window]:
    """Consecutive windows of whole lines within ``budget_tokens`` each; each starts ~``overlap`` of the
    previous window before its end (at least one line, never making no progress)."""
    if not lines:
        return []
    windows: list[Window] = []
    start = 0
    while start < len(lines):
        used, end = 0, start
        while end < len(lines):
            cost = estimate_tokens(lines[end].render()) + 1
            if end > start and used + cost > budget_tokens:
                break
            used += cost
            end += 1
        windows.append(Window(lines[start].number, lines[end - 1].number))
        if end >= len(lines):
            break
        back = max(1, int((end - start) * overlap)) if end - start > MIN_WINDOW_LINES else 0
        start = max(start + 1, end - back)
    return windows


class WindowBudget:
    """Refuses a transcript that cannot fit in ``max_windows`` windows while it is still being parsed (give ``count``
    to ``parse_transcript(on_line=…)``), so a huge upload costs about as much work as the limit allows, not its size.

    Why no transcript that ``build_windows`` would accept is refused: a window of two or more lines costs at most
    ``window_tokens`` and a window of one line holds one line, so with ``c`` a line's cost, every window's
    ``sum(min(c, window_tokens))`` is at most ``window_tokens``; every line is in some window, hence windows ≥
    ``sum(min(c, window_tokens)) / window_tokens``. Each line is counted here at its cost rendered without its
    speaker, never more than its final cost: dropping characters never raises ``estimate_tokens``, and a one-off
    label turned into text afterwards keeps the line's other characters. A sum above ``max_windows ×
    window_tokens`` therefore means more than ``max_windows`` windows. Bytes alone give no such bound: blank
    lines, headers and cue timings take bytes and no window."""

    def __init__(self, window_tokens: int, max_windows: int) -> None:
        self.window_tokens, self.max_windows = window_tokens, max_windows
        self._left = window_tokens * max_windows

    def count(self, line: TranscriptLine) -> None:
        bare = TranscriptLine(line.number, line.text, None, line.timestamp).render()
        self._left -= min(estimate_tokens(bare) + 1, self.window_tokens)
        if self._left < 0:
            raise too_many_windows(None, self.max_windows)


def too_many_windows(needed: int | None, max_windows: int) -> InvalidRequest:
    count = f"{needed} windows" if needed is not None else f"more than {max_windows} windows"
    return InvalidRequest(f"The transcript is too long: it needs {count}, at most {max_windows} are allowed "
                          "(apps.minutes_max_windows).", param="file")


def _header(tr: Transcript, today_note: str) -> str:
    parts = []
    if tr.title:
        parts.append(f"Meeting: {tr.title}")
    if tr.meeting_date is not None:
        parts.append(f"Meeting date: {tr.meeting_date.isoformat()} ({tr.meeting_date.strftime('%A')}){today_note}")
    if tr.attendees:
        parts.append("Attendees: " + ", ".join(tr.attendees))
    return "\n".join(parts)


_CUE_RE = re.compile(r"\b(?:i will|i'll|we will|we'll|i can|please|can you|could you|will do|by\s+\w+day|"
                     r"deadline|due)\b|负责|请|麻烦|我来|前完成|之前|截止", re.I)


def cue_lines(tr: Transcript, window: Window) -> list[int]:
    """Lines that name a date or sound like a commitment: a hint that keeps a small model from stopping early."""
    out = []
    for ln in tr.lines[window.first - 1: window.last]:
        if _CUE_RE.search(ln.text) or find_date(ln.text, tr.meeting_date) is not None:
            out.append(ln.number)
    return out


def window_messages(tr: Transcript, window: Window) -> list[dict[str, str]]:
    zh = is_chinese(tr)
    body = "\n".join(ln.render() for ln in tr.lines[window.first - 1: window.last])
    note = " (date unknown: today)" if tr.date_source == "today" else ""
    user = f"{_header(tr, note)}\n\nTranscript lines L{window.first}-L{window.last}:\n{body}"
    cues = cue_lines(tr, window)
    if cues:
        listed = ", ".join(f"L{n}" for n in cues[:40])
        user += (f"\n\n提到期限或承诺的行:{listed}。逐行检查是否有行动项。" if zh else
                 f"\n\nLines that mention a deadline or a commitment: {listed}. Check each one for an action item.")
    return [{"role": "system", "content": SYSTEM_ZH if zh else SYSTEM_EN}, {"role": "user", "content": user}]


async def extract_window(ctx: AppContext, tr: Transcript, window: Window, depth: int = 0) -> list[Proposals]:
    """Ask the model about one window; halve it when it does not fit the context."""
    try:
        out = await complete_json(ctx, window_messages(tr, window), WINDOW_SCHEMA, name="minutes",
                                  max_tokens=WINDOW_MAX_TOKENS)
    except ContextLengthExceeded:
        n = window.last - window.first + 1
        if depth >= MAX_SPLITS or n < 2:
            raise InvalidRequest("A part of the transcript does not fit the model's context even when split; "
                                 "use a model with a longer context or shorter lines.", param="file") from None
        mid = window.first + n // 2
        left = await extract_window(ctx, tr, Window(window.first, mid - 1), depth + 1)
        right = await extract_window(ctx, tr, Window(mid, window.last), depth + 1)
        return left + right
    return [_proposals(window, out)]


def _list(out: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = out.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _proposals(window: Window, out: dict[str, Any]) -> Proposals:
    nm = out.get("next_meeting")
    return Proposals(
        window=window,
        title=str(out.get("title") or "").strip(),
        summary=str(out.get("summary") or "").strip(),
        decisions=_list(out, "decisions"),
        action_items=_list(out, "action_items"),
        open_questions=_list(out, "open_questions"),
        next_meeting=nm if isinstance(nm, dict) else None,
    )


def dated_lines(tr: Transcript, window: Window) -> list[int]:
    """Lines that name a deadline (a date resolvable against the meeting day) or a first-person commitment."""
    out = []
    for ln in tr.lines[window.first - 1: window.last]:
        if find_date(ln.text, tr.meeting_date) is not None or _COMMIT_RE.search(ln.text):
            out.append(ln.number)
    return out


_COMMIT_RE = re.compile(r"\b(?:i will|i'll|i can have|please)\b|我负责|我来|请", re.I)


async def second_look(ctx: AppContext, tr: Transcript, number: int) -> Proposals:
    """One focused question about one line the window pass left unused (small models stop listing early)."""
    around = [ln for n in (number - 1, number, number + 1) if (ln := tr.line(n)) is not None]
    user = (f"Attendees: {', '.join(tr.attendees)}\n" if tr.attendees else "") + "\n".join(
        ln.render() for ln in around) + f"\n\nDoes line L{number} give a person a task?"
    out = await complete_json(ctx, [{"role": "system", "content": LOOK_SYSTEM}, {"role": "user", "content": user}],
                              LOOK_SCHEMA, name="task", max_tokens=200)
    window = Window(around[0].number, around[-1].number)
    if out.get("is_task") is True and str(out.get("task") or "").strip():
        item = {"line": number, "owner": out.get("owner", ""), "task": out.get("task", ""), "due": out.get("due", "")}
        return Proposals(window=window, action_items=[item])
    return Proposals(window=window)


async def reduce_summaries(ctx: AppContext, parts: list[Proposals], budget_tokens: int) -> tuple[str, str]:
    """One title and summary from the summaries of many windows (each trimmed so all fit one call)."""
    texts = [p.summary for p in parts if p.summary]
    if not texts:
        return "", ""
    if len(texts) == 1:
        return parts[0].title, texts[0]
    per = max(80, budget_tokens * 3 // max(1, len(texts)))
    joined = "\n".join(f"Part {i}: {t[:per]}" for i, t in enumerate(texts, 1))
    out = await complete_json(ctx, [{"role": "system", "content": REDUCE_SYSTEM},
                                    {"role": "user", "content": joined}], SUMMARY_SCHEMA, name="summary",
                              max_tokens=512)
    return str(out.get("title") or "").strip(), str(out.get("summary") or "").strip()
