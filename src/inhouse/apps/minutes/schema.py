"""Input and output models of the minutes assistant, and the JSON schema the model fills per window."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MinutesInput(BaseModel):
    """A transcript (text, WebVTT, SRT) or audio (WAV/MP3/M4A) as bytes, with what the caller knows."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    data: bytes = Field(description="The file's bytes: a transcript (UTF-8) or audio.")
    filename: str = Field("transcript.txt", description="Names the format (.txt/.vtt/.srt/.wav/.mp3/.m4a) and may "
                          "carry the meeting date (2026-10-14-…).")
    meeting_date: dt.date | None = Field(None, description="Overrides the date found in the header or filename.")
    attendees: list[str] = Field(default_factory=list, description="Known attendees besides the speakers.")
    language: str | None = Field(None, description="Audio language hint (e.g. 'en', 'zh'); detected when absent.")


class Evidence(BaseModel):
    line: int  # the transcript line number (1-based utterance number)
    timestamp: str | None = None
    speaker: str | None = None
    text: str = ""
    source_line: int | None = None  # the line in the uploaded file


class Decision(BaseModel):
    text: str
    evidence: list[Evidence]


class ActionItem(BaseModel):
    owner: str | None  # always an attendee's name, or None (then flagged "owner_not_attendee")
    task: str
    due: dt.date | None = None
    due_text: str = ""  # the words that gave the date ("by Friday", "下周五")
    evidence: list[Evidence]
    flags: list[str] = Field(default_factory=list)  # owner_not_attendee, owner_text:<…>, due_unresolved, due_ambiguous


class OpenQuestion(BaseModel):
    text: str
    evidence: list[Evidence]


class NextMeeting(BaseModel):
    text: str
    date: dt.date | None = None
    time: str | None = None  # HH:MM
    evidence: list[Evidence] = Field(default_factory=list)

    @property
    def start(self) -> str | None:
        if self.date is None:
            return None
        return f"{self.date.isoformat()}T{self.time}" if self.time else self.date.isoformat()


class Rejected(BaseModel):
    """An item the model proposed that verification refused (shown, never silently lost)."""

    kind: Literal["decision", "action_item", "open_question", "next_meeting"]
    text: str
    reason: str
    line: int | None = None


class Minutes(BaseModel):
    title: str
    meeting_date: dt.date | None
    date_source: str  # parameter | header | filename | today | none
    attendees: list[str]
    summary: str
    decisions: list[Decision]
    action_items: list[ActionItem]
    open_questions: list[OpenQuestion]
    next_meeting: NextMeeting | None = None
    rejected: list[Rejected] = Field(default_factory=list)
    source: dict[str, Any] = Field(default_factory=dict)  # format, lines, windows, model, transcript language

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if self.next_meeting is not None:
            out["next_meeting"]["start"] = self.next_meeting.start
        return out


# -- what the model fills, one window at a time ---------------------------------------------------------

MAX_DECISIONS = 8
MAX_ACTIONS = 12
MAX_QUESTIONS = 6


def _items(props: dict[str, Any], max_items: int) -> dict[str, Any]:
    return {"type": "array", "maxItems": max_items,
            "items": {"type": "object", "properties": props, "required": list(props),
                      "additionalProperties": False}}


# Order matters for a small model: action items first (asked last, after a summary, it tends to stop at "[]"),
# and the line number first in each item anchors it to the transcript.
WINDOW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action_items": _items({"line": {"type": "integer"}, "owner": {"type": "string"},
                                "task": {"type": "string"}, "due": {"type": "string"}}, MAX_ACTIONS),
        "decisions": _items({"line": {"type": "integer"}, "decision": {"type": "string"}}, MAX_DECISIONS),
        "open_questions": _items({"line": {"type": "integer"}, "question": {"type": "string"}}, MAX_QUESTIONS),
        "next_meeting": {"type": "object", "properties": {"line": {"type": "integer"}, "when": {"type": "string"}},
                         "required": ["line", "when"], "additionalProperties": False},
        "title": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["action_items", "decisions", "open_questions", "next_meeting", "title", "summary"],
    "additionalProperties": False,
}

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "summary": {"type": "string"}},
    "required": ["title", "summary"],
    "additionalProperties": False,
}
