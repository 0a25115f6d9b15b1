"""Transcripts in, numbered lines out: plain text (with or without speakers and timestamps), WebVTT and SRT.

Every utterance becomes one ``TranscriptLine`` numbered from 1; the model cites these numbers as evidence, and
``source_line`` keeps the line of the original file for people. Header lines (``Meeting:``, ``Date:``,
``Attendees:``, ``会议:``, ``日期:``, ``参会人:`` …) are read as metadata and are not numbered. The meeting date comes
from an explicit parameter, else the header, else a ``YYYY-MM-DD`` in the filename; attendees are the header's
names plus everyone who speaks.

The text is read one line at a time and ``on_line`` sees every utterance as it is made, so a caller can refuse a
transcript that is too long after reading only as much as its limit allows (``extract.WindowBudget``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

from inhouse.apps.dates import find_date
from inhouse.errors import InvalidRequest

MAX_LINE_CHARS = 5000  # a longer "line" is split: one evidence line must stay quotable
_PIECE_CHARS = 1 << 18
OnLine = Callable[["TranscriptLine"], None]  # told of each utterance as it is made; may raise to stop the parse


@dataclass(frozen=True)
class TranscriptLine:
    number: int  # 1-based utterance number: what the model cites
    text: str
    speaker: str | None = None
    timestamp: str | None = None  # as written ("00:01:02", "[00:45]" → "00:45")
    source_line: int | None = None  # line in the input file (1-based), when the input was a file

    def render(self) -> str:
        """How the model sees the line: ``L12 [08:10] Wang Jun: text``."""
        stamp = f" [{self.timestamp}]" if self.timestamp else ""
        who = f" {self.speaker}:" if self.speaker else ""
        return f"L{self.number}{stamp}{who} {self.text}"


@dataclass
class Transcript:
    lines: list[TranscriptLine]
    title: str = ""
    meeting_date: date | None = None
    date_source: str = "none"  # parameter | header | filename | none
    attendees: list[str] = field(default_factory=list)
    format: str = "text"  # text | webvtt | srt | audio

    def line(self, number: int) -> TranscriptLine | None:
        if 1 <= number <= len(self.lines):
            return self.lines[number - 1]
        return None

    @property
    def speakers(self) -> list[str]:
        seen: dict[str, None] = {}
        for ln in self.lines:
            if ln.speaker:
                seen.setdefault(ln.speaker, None)
        return list(seen)


# -- headers ---------------------------------------------------------------------------------------------

_COLON = r"\s*[:：]\s*"
_HEADER_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("meeting", "title", "subject", "topic", "会议", "会议名称", "主题", "会议主题"),
    "date": ("date", "meeting date", "日期", "会议日期", "时间", "会议时间"),
    "attendees": ("attendees", "participants", "present", "attendance", "参会人", "参会人员", "与会人员",
                  "出席", "出席人员", "参与人"),
}
_HEADER_RE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]{1,20}|[\u4e00-\u9fff]{2,5})" + _COLON + r"(?P<value>.+)$")

# -- utterances ------------------------------------------------------------------------------------------

_TS = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"
_LEAD_TS_RE = re.compile(rf"^\s*(?:[\[(](?P<b>{_TS})[\])]|(?P<p>{_TS})(?=\s))\s*[-–—]?\s*")
# A speaker label: a short name then a colon. Names may be "Mei Lin", "Dr. O'Neil", "张伟", "Speaker 1".
_SPEAKER_RE = re.compile(
    r"^(?P<name>[\u4e00-\u9fff·]{1,8}|[A-Z][\w.'’-]*(?:\s+[A-Za-z][\w.'’-]*){0,3}(?:\s+\d{1,2})?)" + _COLON
    + r"(?P<text>.*)$"
)
# Words that look like a label but open a sentence or a section ("Decision: …", "Risks: …", "下一步：…") rather than
# name a speaker.
_NOT_SPEAKERS = frozenset({
    "note", "notes", "decision", "decisions", "action", "actions", "action item", "action items", "todo", "todos",
    "to do", "to-do", "agenda", "question", "questions", "open questions", "update", "updates", "summary", "re",
    "fyi", "ps", "http", "https", "next", "next step", "next steps", "risk", "risks", "issue", "issues", "blocker",
    "blockers", "problem", "problems", "outcome", "outcomes", "result", "results", "conclusion", "conclusions",
    "status", "background", "context", "goal", "goals", "objective", "objectives", "follow up", "follow-up",
    "follow-ups", "takeaways", "key points", "highlights", "deadline", "owner", "owners", "reminder", "important",
    "q1", "q2", "q3", "q4", "h1", "h2",
    "风险", "下一步", "下一步计划", "待办", "待办事项", "行动项", "决定", "决议", "结论", "问题", "议题",
    "备注", "注意", "总结", "背景", "进展", "目标", "计划", "更新", "议程", "纪要",
    *(k for keys in _HEADER_KEYS.values() for k in keys)})

_SPEAKER_ONLY_RE = re.compile(_SPEAKER_RE.pattern.replace("(?P<text>.*)$", "$"))

_SPACE_RE = re.compile(r"\s*")
_CUE_TIME_RE = re.compile(rf"^\s*(?P<start>{_TS})\s*-->\s*(?P<end>{_TS})")
_VOICE_RE = re.compile(r"<v(?:\.[\w.-]+)?\s+(?P<name>[^>]+)>")
_TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>")


def parse_transcript(text: str, *, filename: str | None = None, meeting_date: date | None = None,
                     attendees: list[str] | None = None, on_line: OnLine | None = None) -> Transcript:
    """Parse a transcript in any supported text format. Raises InvalidRequest when it holds no utterance, and
    whatever ``on_line`` raises."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    leading = _SPACE_RE.match(text)
    start = leading.end() if leading else 0
    head = text[start:start + 10].upper()
    if head.startswith("WEBVTT"):
        tr = _parse_cues(text, "webvtt", on_line)
    elif _looks_like_srt(text[start:start + 4096]):  # its first two lines are a number and a timing
        tr = _parse_cues(text, "srt", on_line)
    else:
        tr = _parse_plain(text, on_line)
    if not tr.lines:
        raise InvalidRequest("The transcript is empty: no spoken lines were found.", param="file")
    apply_filename(tr, filename, meeting_date)
    if tr.attendees and tr.format == "text":  # a WebVTT voice tag is markup for a speaker, not a label
        _unlabel_one_off(tr, [*tr.attendees, *(attendees or [])])
    names = list(tr.attendees) + list(attendees or []) + tr.speakers
    tr.attendees = _unique(n for n in names if n)
    return tr


def _unlabel_one_off(tr: Transcript, attendees: list[str]) -> None:
    """With an attendee list, a label used once ("Scope: …", "Pricing:" over a paragraph) that names no attendee is
    a section heading, not a speaker: its lines keep the label as text and have no speaker."""
    runs: dict[str, int] = {}
    for i, ln in enumerate(tr.lines):
        if ln.speaker and (i == 0 or tr.lines[i - 1].speaker != ln.speaker):
            runs[ln.speaker] = runs.get(ln.speaker, 0) + 1
    labels = {s for s, n in runs.items() if n == 1 and not _names_one_of(s, attendees)}
    for i, ln in enumerate(tr.lines):
        if ln.speaker in labels:
            first = i == 0 or tr.lines[i - 1].speaker != ln.speaker
            text = f"{ln.speaker}: {ln.text}" if first else ln.text
            tr.lines[i] = TranscriptLine(ln.number, text, None, ln.timestamp, ln.source_line)


def _names_one_of(label: str, names: list[str]) -> bool:
    """Whether a speaker label names one of ``names``: the whole name, a part of it ("Alice" for "Alice Moreau"), or
    for a Chinese name its surname with a prefix or title ("小李", "李经理" for "李娜")."""
    low = label.casefold()
    words = set(low.split())
    for name in (n.casefold() for n in names):
        if low == name or words <= set(name.split()) or set(name.split()) <= words:
            return True
        if re.fullmatch(r"[\u4e00-\u9fff·]+", name) and (name in low or (len(low) >= 2 and low in name)):
            return True
        surname = re.fullmatch(r"[小老]?([\u4e00-\u9fff])(?:总|经理|工|老师|主管|总监)?", low)
        if surname and re.fullmatch(r"[\u4e00-\u9fff·]+", name) and name.startswith(surname[1]):
            return True
    return False


def apply_filename(tr: Transcript, filename: str | None, meeting_date: date | None = None) -> None:
    """An explicit date wins; else a ``YYYY-MM-DD`` in the filename fills a missing date, its stem a missing title."""
    if meeting_date is not None:
        tr.meeting_date, tr.date_source = meeting_date, "parameter"
    elif tr.meeting_date is None and filename:
        found = re.search(r"(\d{4})[-_.](\d{2})[-_.](\d{2})", filename)
        if found:
            try:
                tr.meeting_date = date(int(found[1]), int(found[2]), int(found[3]))
                tr.date_source = "filename"
            except ValueError:
                pass
    if not tr.title and filename:
        stem = re.sub(r"\.[A-Za-z0-9]{2,4}$", "", filename.rsplit("/", 1)[-1])
        stem = re.sub(r"^\d{4}[-_.]\d{2}[-_.]\d{2}[-_ ]*", "", stem)
        tr.title = re.sub(r"[-_]+", " ", re.sub(r"\.zh$|\.en$", "", stem)).strip()


def _unique(names: object) -> list[str]:
    out: dict[str, str] = {}
    for n in names:  # type: ignore[attr-defined]
        out.setdefault(str(n).strip().casefold(), str(n).strip())
    return [v for v in out.values() if v]


def split_attendees(value: str) -> list[str]:
    """``"Mei Lin (PM, chair), Daniel Okafor"`` / ``"赵敏(运营总监)、陈浩"`` → names (roles in brackets dropped)."""
    value = re.sub(r"[(（][^)）]*[)）]", "", value)
    parts = re.split(r"\s*(?:[,，、;；/]|\band\b|和|及)\s*", value)
    return [p.strip(" .。") for p in parts if p.strip(" .。") and len(p.strip()) <= 60]


def _header(line: str) -> tuple[str, str] | None:
    m = _HEADER_RE.match(line)
    if not m:
        return None
    key = m["key"].strip().casefold()
    for kind, keys in _HEADER_KEYS.items():
        if key in keys:
            return kind, m["value"].strip()
    return None


def _speaker(rest: str) -> tuple[str | None, str]:
    m = _SPEAKER_RE.match(rest)
    if not m:
        return None, rest
    name = m["name"].strip()
    if name.casefold() in _NOT_SPEAKERS or not m["text"].strip():
        return None, rest
    return name, m["text"].strip()


def _lines(text: str) -> Iterator[str]:
    """``text.split("\\n")`` a piece at a time: split at once, a huge file would be all its lines in memory before
    the first one is looked at."""
    start = 0
    while len(text) - start > _PIECE_CHARS:
        cut = text.find("\n", start + _PIECE_CHARS)  # pieces of whole lines
        if cut < 0:
            break
        yield from text[start:cut].split("\n")
        start = cut + 1
    yield from text[start:].split("\n")


def _parse_plain(text: str, on_line: OnLine | None) -> Transcript:
    tr = Transcript(lines=[])
    in_header = True
    last_speaker: str | None = None
    for i, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line:
            last_speaker = None  # a blank line ends a speaker's paragraph
            continue
        if in_header:
            hdr = _header(line)
            if hdr is not None:
                _apply_header(tr, *hdr)
                continue
        stamp: str | None = None
        m = _LEAD_TS_RE.match(line)
        if m:
            stamp = m["b"] or m["p"]
            line = line[m.end():]
        speaker, body = _speaker(line)
        label = _SPEAKER_ONLY_RE.match(line)
        if label and speaker is None and label["name"].casefold() not in _NOT_SPEAKERS:
            last_speaker, in_header = label["name"].strip(), False  # "Alice:" alone: her lines follow
            continue
        if in_header and speaker is None and stamp is None and not tr.lines and _is_title_line(line, tr):
            tr.title = line.strip("# ").strip()
            continue
        in_header = False
        if speaker is None and stamp is None:
            speaker = last_speaker  # a continuation paragraph of the previous speaker
        last_speaker = speaker
        if not body.strip():
            continue
        _add(tr, body, speaker, stamp, i, on_line)
    return tr


def _is_title_line(line: str, tr: Transcript) -> bool:
    return not tr.title and line.startswith("#")


def _apply_header(tr: Transcript, kind: str, value: str) -> None:
    if kind == "title" and not tr.title:
        tr.title = value
    elif kind == "date" and tr.meeting_date is None:
        found = find_date(value, None)
        if found is not None:
            tr.meeting_date, tr.date_source = found, "header"
    elif kind == "attendees":
        tr.attendees.extend(split_attendees(value))


def _add(tr: Transcript, text: str, speaker: str | None, stamp: str | None, source_line: int | None,
         on_line: OnLine | None = None) -> None:
    text = re.sub(r"\s+", " ", text).strip()
    while text:
        piece, text = text[:MAX_LINE_CHARS], text[MAX_LINE_CHARS:]
        line = TranscriptLine(len(tr.lines) + 1, piece, speaker, stamp, source_line)
        if on_line is not None:
            on_line(line)
        tr.lines.append(line)


def _looks_like_srt(text: str) -> bool:
    first = [ln.strip() for ln in text.strip().split("\n", 3)[:3]]
    return len(first) >= 2 and first[0].isdigit() and bool(_CUE_TIME_RE.match(first[1]))


def _parse_cues(text: str, fmt: str, on_line: OnLine | None) -> Transcript:
    """WebVTT or SRT: blocks separated by blank lines; a block with a ``-->`` timing line is a cue."""
    tr = Transcript(lines=[], format=fmt)
    block: list[tuple[int, str]] = []
    for i, raw in enumerate(itertools.chain(_lines(text), [""]), 1):
        if raw.strip():
            block.append((i, raw.strip()))
            continue
        if block:
            _cue(tr, block, fmt, on_line)
            block = []
    return tr


def _cue(tr: Transcript, block: list[tuple[int, str]], fmt: str, on_line: OnLine | None) -> None:
    first = block[0][1]
    if fmt == "webvtt" and (first.startswith("WEBVTT") or first.startswith(("NOTE", "STYLE", "REGION"))):
        for _, ln in block[1:]:  # "NOTE Date: 2026-10-14" style metadata is honoured, other notes ignored
            hdr = _header(ln)
            if hdr:
                _apply_header(tr, *hdr)
        hdr = _header(first.removeprefix("NOTE").strip())
        if hdr:
            _apply_header(tr, *hdr)
        return
    timing = next((k for k, (_, ln) in enumerate(block) if "-->" in ln), None)
    if timing is None:
        return
    m = _CUE_TIME_RE.match(block[timing][1])
    stamp = _short_stamp(m["start"]) if m else None
    body_lines = block[timing + 1:]
    if not body_lines:
        return
    joined = " ".join(ln for _, ln in body_lines)
    voice = _VOICE_RE.search(joined)
    speaker: str | None = voice["name"].strip() if voice else None
    body = _TAG_RE.sub("", joined).strip()
    if speaker is None:
        speaker, body = _speaker(body)
    elif body.startswith(f"{speaker}:"):
        body = body[len(speaker) + 1:].strip()
    if body:
        _add(tr, body, speaker, stamp, body_lines[0][0], on_line)


def _short_stamp(stamp: str) -> str:
    """``00:01:02.500`` → ``00:01:02``: milliseconds add nothing for a reader of minutes."""
    return re.split(r"[.,]", stamp)[0]


def transcript_from_segments(segments: list[tuple[float, str]], *, meeting_date: date | None = None,
                             filename: str | None = None, attendees: list[str] | None = None) -> Transcript:
    """A transcript from timed text segments (speech recognition): no speakers, one line per segment."""
    tr = Transcript(lines=[], format="audio", attendees=list(attendees or []))
    for start, text in segments:
        stamp = f"{int(start // 3600):02d}:{int(start % 3600 // 60):02d}:{int(start % 60):02d}"
        speaker, body = _speaker(text.strip())
        if body.strip():
            _add(tr, body, speaker, stamp, None)
    if not tr.lines:
        raise InvalidRequest("No speech was recognised in the audio.", param="file")
    apply_filename(tr, filename, meeting_date)
    tr.attendees = _unique([*tr.attendees, *tr.speakers])
    return tr
