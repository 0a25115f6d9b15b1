"""``run(ctx, input)``: transcript or audio → verified minutes.

Steps: read the input (audio is transcribed first) → number the lines → windows → one constrained model call per
window → check every proposal in Python (evidence exists and supports it, owner is an attendee, due date
resolved from the quoted words against the meeting date) → merge windows without duplicates. Proposals that fail
a check are returned under ``rejected`` with the reason, never mixed into the minutes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeVar

from inhouse.apps.context import AppContext
from inhouse.apps.dates import RULES, find_date, find_time
from inhouse.apps.minutes.extract import (
    MAX_LOOKS_PER_WINDOW,
    Proposals,
    WindowBudget,
    build_windows,
    dated_lines,
    extract_window,
    is_chinese,
    reduce_summaries,
    second_look,
    too_many_windows,
)
from inhouse.apps.minutes.schema import (
    ActionItem,
    Decision,
    Evidence,
    Minutes,
    MinutesInput,
    NextMeeting,
    OpenQuestion,
    Rejected,
)
from inhouse.apps.minutes.transcript import Transcript, TranscriptLine, parse_transcript, transcript_from_segments
from inhouse.apps.minutes.verify import addressed_attendee, find_evidence, map_owner, terms
from inhouse.errors import EngineFailure, InvalidRequest, Unavailable

log = logging.getLogger(__name__)
_Stated = TypeVar("_Stated", Decision, OpenQuestion)

AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".ogg", ".flac", ".webm", ".aac", ".opus")
_AUDIO_MAGIC = (b"RIFF", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"OggS", b"fLaC", b"\x1aE\xdf\xa3")


class Transcriber(Protocol):
    """Speech → timed text segments ``(start_s, text)``. Blocking; raises InvalidRequest/DocumentRejected."""

    def transcribe(self, data: bytes, filename: str, language: str | None = None) -> list[tuple[float, str]]: ...


@dataclass(frozen=True)
class MinutesOptions:
    window_tokens: int = 1500  # estimated transcript tokens per window
    max_windows: int = 64
    concurrency: int = 2
    second_look: bool = True  # re-ask about unused lines that name a deadline (recall of small models)


def is_audio(data: bytes, filename: str) -> bool:
    if filename.lower().endswith(AUDIO_EXTENSIONS):
        return True
    return data[:4] in _AUDIO_MAGIC or data[:3] in _AUDIO_MAGIC or data[:2] in _AUDIO_MAGIC or data[4:8] == b"ftyp"


def decode_text(data: bytes, filename: str) -> str:
    if b"\x00" in data[:4096]:
        raise InvalidRequest(f"{filename}: this is not a text transcript (binary data); send a .txt, .vtt, .srt "
                             "or an audio file.", param="file")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidRequest(f"{filename}: the transcript is not valid UTF-8 text.", param="file")


async def read_transcript(ctx: AppContext, inp: MinutesInput, transcriber: Transcriber | None,
                          options: MinutesOptions | None = None) -> Transcript:
    """Audio is transcribed, text parsed, both in a worker thread: a long input must not stall the event loop (and
    every other request with it). A text too long for ``options.max_windows`` is refused as soon as the parse has
    read that much of it."""
    options = options or MinutesOptions()
    if not inp.data or inp.data.isspace():  # no copy of a large upload, as strip() would make
        raise InvalidRequest("The transcript is empty.", param="file")
    if is_audio(inp.data, inp.filename):
        if transcriber is None:
            raise InvalidRequest("Audio transcription is not available here; send a text transcript.", param="file")
        segments = await asyncio.to_thread(transcriber.transcribe, inp.data, inp.filename, inp.language)
        return transcript_from_segments(segments, meeting_date=inp.meeting_date, filename=inp.filename,
                                        attendees=inp.attendees)
    return await asyncio.to_thread(_parse_text, inp, WindowBudget(options.window_tokens, options.max_windows))


def _parse_text(inp: MinutesInput, budget: WindowBudget) -> Transcript:
    text = decode_text(inp.data, inp.filename)
    return parse_transcript(text, filename=inp.filename, meeting_date=inp.meeting_date, attendees=inp.attendees,
                            on_line=budget.count)


async def run(ctx: AppContext, inp: MinutesInput, *, options: MinutesOptions | None = None,
              transcriber: Transcriber | None = None) -> Minutes:
    options = options or MinutesOptions()
    tr = await read_transcript(ctx, inp, transcriber, options)
    return await run_transcript(ctx, tr, options)


async def run_transcript(ctx: AppContext, tr: Transcript, options: MinutesOptions | None = None) -> Minutes:
    options = options or MinutesOptions()
    if tr.meeting_date is None:
        # Relative deadlines need a day to count from; a transcript without one is taken to be today's meeting.
        tr.meeting_date, tr.date_source = ctx.local_now().date(), "today"
    windows = await asyncio.to_thread(build_windows, tr.lines, options.window_tokens)
    if len(windows) > options.max_windows:
        raise too_many_windows(len(windows), options.max_windows)
    proposals, failed = await _extract(ctx, tr, windows, options)
    minutes = assemble(tr, proposals)
    if options.second_look:
        extra = await _second_looks(ctx, tr, windows, minutes, options)
        if extra:
            minutes = assemble(tr, [*proposals, *extra])
    title, summary = "", ""
    try:
        title, summary = await reduce_summaries(ctx, proposals, options.window_tokens)
    except EngineFailure as exc:
        log.info("summary of summaries failed: %s", exc)
        summary = " ".join(p.summary for p in proposals if p.summary)[:2000]
    minutes.title = tr.title or title or "Meeting"
    minutes.summary = summary
    minutes.source.update({"format": tr.format, "lines": len(tr.lines), "windows": len(windows),
                           "failed_windows": failed, "model": ctx.model,
                           "language": "zh" if is_chinese(tr) else "en"})
    return minutes


async def _extract(ctx: AppContext, tr: Transcript, windows: list[Any],
                   options: MinutesOptions) -> tuple[list[Proposals], list[str]]:
    """All windows; a window whose output stays invalid JSON is skipped and named, unless every one fails."""
    gate = asyncio.Semaphore(max(1, options.concurrency))
    failed: list[str] = []

    async def one(w: Any) -> list[Proposals]:
        async with gate:
            try:
                return await extract_window(ctx, tr, w)
            except EngineFailure as exc:
                log.warning("minutes window L%d-L%d failed: %s", w.first, w.last, exc)
                failed.append(f"L{w.first}-L{w.last}")
                return []

    groups = list(await asyncio.gather(*(one(w) for w in windows)))
    proposals = [p for g in groups for p in g]
    if not proposals:
        raise Unavailable("The model did not return valid minutes (its output was not valid JSON, twice). "
                          "Try again, or use a larger model (apps.model).", code="invalid_model_output")
    return proposals, sorted(failed)


async def _second_looks(ctx: AppContext, tr: Transcript, windows: list[Any], minutes: Minutes,
                        options: MinutesOptions) -> list[Proposals]:
    """Ask again, one line at a time, about lines naming a deadline or a commitment that no kept item cites."""
    used = {e.line for group in (minutes.action_items, minutes.decisions) for item in group for e in item.evidence}
    if minutes.next_meeting is not None:
        used.update(e.line for e in minutes.next_meeting.evidence)
    todo: dict[int, None] = {}
    for w in windows:
        fresh = [n for n in dated_lines(tr, w) if n not in used and n not in todo]
        todo.update((n, None) for n in fresh[:MAX_LOOKS_PER_WINDOW])
    gate = asyncio.Semaphore(max(1, options.concurrency))

    async def one(n: int) -> Proposals | None:
        async with gate:
            try:
                return await second_look(ctx, tr, n)
            except EngineFailure as exc:
                log.info("second look at L%d failed: %s", n, exc)
                return None

    found = await asyncio.gather(*(one(n) for n in todo))
    return [p for p in found if p is not None]


# -- checking and merging -------------------------------------------------------------------------------


def _evidence(line: TranscriptLine) -> Evidence:
    return Evidence(line=line.number, timestamp=line.timestamp, speaker=line.speaker, text=line.text,
                    source_line=line.source_line)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _similar(a: str, b: str, threshold: float = 0.75) -> bool:
    """Near-identical wording (Jaccard of terms) and the same numbers: "report 7" and "report 52" differ."""
    ta, tb = terms(a), terms(b)
    if not ta or not tb:
        return a.strip().casefold() == b.strip().casefold()
    if re.findall(r"\d+", a) != re.findall(r"\d+", b):
        return False
    return len(ta & tb) / len(ta | tb) >= threshold


def _dates_in(text: str, ref: date) -> list[date]:
    """Every distinct date a line names, in order: "by Friday and the final copy on December 4" names two. Words
    side by side name one date, the explicit one winning as in ``find_date`` ("Friday, October 16", "周五 10 月
    23 日前")."""
    spans: list[tuple[int, int, int, date]] = []  # start, end, rule rank (explicit dates first), date
    for rank, rule in enumerate(RULES):
        if not rule.prose:
            continue
        for m in rule.pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end, _, _ in spans):
                continue  # "下周" inside "下周五": the earlier, more specific rule has the words
            found = find_date(m[0], ref)
            if found is not None:
                spans.append((m.start(), m.end(), rank, found))
    spans.sort()
    groups: list[list[tuple[int, int, int, date]]] = []
    for span in spans:
        if groups and _ADJACENT_RE.fullmatch(text, groups[-1][-1][1], span[0]):
            groups[-1].append(span)
        else:
            groups.append([span])
    found_dates: dict[date, None] = {}
    for group in groups:
        found_dates.setdefault(min(group, key=lambda s: s[2])[3], None)
    return list(found_dates)


_ADJACENT_RE = re.compile(r"[\s,，、(（)）]*")


def _add_supported(raws: Sequence[dict[str, Any]], field: str, make: type[_Stated], into: list[_Stated],
                   tr: Transcript, window: list[int], rejected: list[Rejected]) -> None:
    """Keep each proposed decision / open question that a transcript line supports and that is not a repeat
    (similar text, or the same supporting line); record the rest as rejected."""
    kind = "decision" if field == "decision" else "open_question"
    for raw in raws:
        text = str(raw.get(field) or "").strip()
        if not text:
            continue
        line = find_evidence(text, _int(raw.get("line")), tr, window)
        if line is None:
            rejected.append(Rejected(kind=kind, text=text, reason="no transcript line supports it",
                                     line=_int(raw.get("line")) or None))
        elif not any(_similar(text, x.text) or x.evidence[0].line == line.number for x in into):
            into.append(make(text=text, evidence=[_evidence(line)]))


def assemble(tr: Transcript, proposals: Sequence[Proposals]) -> Minutes:
    ref = tr.meeting_date
    assert ref is not None
    decisions: list[Decision] = []
    actions: list[ActionItem] = []
    questions: list[OpenQuestion] = []
    rejected: list[Rejected] = []
    next_meeting: NextMeeting | None = None
    for p in proposals:
        window = list(p.window.numbers)
        _add_supported(p.decisions, "decision", Decision, decisions, tr, window, rejected)
        for raw in p.action_items:
            item = _action(raw, tr, window, ref, rejected)
            if item is not None and not any(_same_action(item, a) for a in actions):
                actions.append(item)
            elif item is not None:
                _enrich(next(a for a in actions if _same_action(item, a)), item)
        _add_supported(p.open_questions, "question", OpenQuestion, questions, tr, window, rejected)
        if p.next_meeting:
            found = _next_meeting(p.next_meeting, tr, ref, rejected)
            if found is not None and (next_meeting is None or found.date is not None):
                next_meeting = found  # later windows win: the next meeting is usually set at the end
    actions = _drop_restated_questions(actions, questions, rejected)
    actions.sort(key=lambda a: a.evidence[0].line)
    decisions.sort(key=lambda d: d.evidence[0].line)
    questions.sort(key=lambda q: q.evidence[0].line)
    return Minutes(title=tr.title, meeting_date=tr.meeting_date, date_source=tr.date_source,
                   attendees=tr.attendees, summary="", decisions=decisions, action_items=actions,
                   open_questions=questions, next_meeting=next_meeting, rejected=rejected)


def _drop_restated_questions(actions: list[ActionItem], questions: list[OpenQuestion],
                             rejected: list[Rejected]) -> list[ActionItem]:
    """A small model often lists an open question again as a task ("discuss whether …"): an action item on the
    same line as an open question, saying mostly the same thing, is moved to ``rejected``."""
    kept = []
    for a in actions:
        line = a.evidence[0].line
        task_terms = terms(a.task)
        same = [q for q in questions if q.evidence[0].line == line
                and task_terms and len(task_terms & terms(q.text)) / len(task_terms) >= 0.5]
        if same:
            rejected.append(Rejected(kind="action_item", text=f"{a.owner or ''}: {a.task}".strip(": "), line=line,
                                     reason="restates an open question of the same line"))
        else:
            kept.append(a)
    return kept


def _action(raw: dict[str, Any], tr: Transcript, window: list[int], ref: date,
            rejected: list[Rejected]) -> ActionItem | None:
    task = str(raw.get("task") or "").strip()
    owner_text = str(raw.get("owner") or "").strip()
    due_text = str(raw.get("due") or "").strip()
    cited = _int(raw.get("line"))
    if not task:
        return None
    line = find_evidence(task, cited, tr, window)
    if line is None:
        rejected.append(Rejected(kind="action_item", text=f"{owner_text}: {task}".strip(": "),
                                 reason="no transcript line supports it", line=cited or None))
        return None
    flags: list[str] = []
    owner = map_owner(owner_text, tr.attendees, line.speaker) if owner_text else None
    addressed = addressed_attendee(line, tr.attendees, tr, task)
    if addressed is not None and (owner is None or (line.speaker and owner == map_owner(line.speaker, tr.attendees))):
        owner = addressed  # "Sofia, please …" said by Mei Lin: the task is Sofia's
    if owner is None and line.speaker and not owner_text:
        owner = map_owner(line.speaker, tr.attendees)
    if owner is None:
        flags.append("owner_not_attendee")
        if owner_text:
            flags.append(f"owner_text:{owner_text[:80]}")
    due, due_text, ambiguous = _ground_due(due_text, line, tr, ref)
    if ambiguous:
        flags.append("due_ambiguous")
    if due is None and due_text:
        flags.append("due_unresolved")
    return ActionItem(owner=owner, task=task, due=due, due_text=due_text, evidence=[_evidence(line)], flags=flags)


def _ground_due(due_text: str, line: TranscriptLine, tr: Transcript, ref: date) -> tuple[date | None, str, bool]:
    """The due date, only when the transcript says it: the quoted words must name one of the dates of the evidence
    line; else the line's only date. Neighbouring lines count only when the evidence line names no date (a
    request answered "by Friday" on the next line). Also whether the line names several dates and the quoted
    words pick none: then there is no due date, and the item is flagged."""
    quoted = find_date(due_text, ref) if due_text else None
    in_line = _dates_in(line.text, ref)
    if in_line:
        if quoted is not None and quoted in in_line:
            return quoted, due_text, False
        if len(in_line) == 1:
            return in_line[0], "(from the evidence line)", False
        return None, due_text, True
    nearby = {d for n in (line.number - 1, line.number + 1) if (other := tr.line(n)) is not None
              for d in _dates_in(other.text, ref)}
    if quoted is not None and quoted in nearby:
        return quoted, due_text, False
    return None, due_text, False


def _same_action(a: ActionItem, b: ActionItem) -> bool:
    if a.owner != b.owner:
        return False
    if a.evidence[0].line == b.evidence[0].line:
        return _similar(a.task, b.task, 0.3)  # one line rarely holds two tasks of one person
    return _similar(a.task, b.task)  # the same task said twice (asked, then confirmed) by one owner


def _enrich(kept: ActionItem, dup: ActionItem) -> None:
    """A duplicate from an overlapping window may know the due date the first one missed."""
    if kept.due is None and dup.due is not None:
        kept.due, kept.due_text = dup.due, dup.due_text
        kept.flags = [f for f in kept.flags if f != "due_unresolved"]


# Words that make a line about a meeting: the next meeting is only taken from such a line.
_MEETING_RE = re.compile(r"\b(?:meet(?:s|ing|ings)?|sync(?:-up)?|call|catch[- ]up|check[- ]in|stand-?up|session|"
                         r"reconvene|regroup|get together)\b|会议|开会|开个会|例会|周会|晨会|站会|碰头|碰个头|见面",
                         re.I)


def _next_meeting(raw: dict[str, Any], tr: Transcript, ref: date, rejected: list[Rejected]) -> NextMeeting | None:
    """The next meeting, only from the cited line when it talks about a meeting and names the date the model
    quotes (or, when the model quotes none, one date). Its date and time are read from that line, not from the
    model's words."""
    when = str(raw.get("when") or "").strip()
    cited = _int(raw.get("line"))
    if not when:
        return None
    line = tr.line(cited)
    reason = _next_meeting_unsupported(when, line, ref)
    if reason or line is None:
        rejected.append(Rejected(kind="next_meeting", text=when, line=cited or None, reason=reason))
        return None
    in_line = [d for d in _dates_in(line.text, ref) if d > ref]  # a date before this meeting was misread
    quoted = find_date(when, ref)
    day = quoted if quoted in in_line else in_line[0] if len(in_line) == 1 else None
    at = find_time(line.text)
    return NextMeeting(text=when, date=day, time=at.strftime("%H:%M") if at else None, evidence=[_evidence(line)])


def _next_meeting_unsupported(when: str, line: TranscriptLine | None, ref: date) -> str:
    """Why the cited line does not support the proposed next meeting ("" when it does)."""
    if line is None:
        return "the cited line does not exist"
    if not _MEETING_RE.search(line.text):
        return "the cited line does not talk about a meeting"
    quoted, in_line = find_date(when, ref), _dates_in(line.text, ref)
    if quoted is not None and quoted not in in_line:
        return "the cited line does not name that date"
    quoted_time, line_time = find_time(when), find_time(line.text)
    if quoted_time is not None and quoted_time != line_time:
        return "the cited line does not name that time"
    if quoted is None and quoted_time is None and not terms(when) & terms(line.text):
        return "the cited line does not mention it"
    return ""
