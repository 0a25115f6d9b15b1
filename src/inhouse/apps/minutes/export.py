"""Minutes as Markdown, JSON and iCalendar (a VTODO per dated action item, a VEVENT for a dated next meeting)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from inhouse.apps.ics import IcsItem, write_ics
from inhouse.apps.minutes.schema import Evidence, Minutes

FORMATS = ("json", "md", "ics")
MEDIA_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8",
               "ics": "text/calendar; charset=utf-8"}


def _ref(evidence: list[Evidence]) -> str:
    refs = []
    for e in evidence:
        stamp = f" {e.timestamp}" if e.timestamp else ""
        refs.append(f"L{e.line}{stamp}")
    return f"[{', '.join(refs)}]" if refs else ""


def _md(text: str) -> str:
    """Keep a model's text from opening Markdown structure (headings, tables, HTML) inside a list item."""
    return " ".join(text.replace("<", "&lt;").replace("|", "\\|").split())


def to_markdown(m: Minutes) -> str:
    zh = m.source.get("language") == "zh"
    label = {
        "date": "日期" if zh else "Date", "attendees": "参会人" if zh else "Attendees",
        "summary": "摘要" if zh else "Summary", "decisions": "决定" if zh else "Decisions",
        "actions": "行动项" if zh else "Action items", "questions": "待决问题" if zh else "Open questions",
        "next": "下次会议" if zh else "Next meeting", "owner": "负责人" if zh else "Owner",
        "task": "任务" if zh else "Task", "due": "截止" if zh else "Due", "evidence": "依据" if zh else "Evidence",
        "none": "无" if zh else "None.", "unassigned": "(未指定)" if zh else "(unassigned)",
        "rejected": "未采用(无依据)" if zh else "Not included (no supporting line)",
    }
    out = [f"# {_md(m.title)}", ""]
    if m.meeting_date:
        out.append(f"**{label['date']}:** {m.meeting_date.isoformat()}  ")
    if m.attendees:
        out.append(f"**{label['attendees']}:** {', '.join(_md(a) for a in m.attendees)}")
    out += ["", f"## {label['summary']}", "", _md(m.summary) or label["none"], "", f"## {label['decisions']}", ""]
    out += [f"- {_md(d.text)} {_ref(d.evidence)}" for d in m.decisions] or [label["none"]]
    out += ["", f"## {label['actions']}", ""]
    if m.action_items:
        out += [f"| {label['owner']} | {label['task']} | {label['due']} | {label['evidence']} |", "|---|---|---|---|"]
        for a in m.action_items:
            owner = _md(a.owner) if a.owner else label["unassigned"]
            due = a.due.isoformat() if a.due else (_md(a.due_text) or "—")
            out.append(f"| {owner} | {_md(a.task)} | {due} | {_ref(a.evidence)} |")
    else:
        out.append(label["none"])
    out += ["", f"## {label['questions']}", ""]
    out += [f"- {_md(q.text)} {_ref(q.evidence)}" for q in m.open_questions] or [label["none"]]
    out += ["", f"## {label['next']}", ""]
    if m.next_meeting is not None:
        nm = m.next_meeting
        when = nm.start or ""
        out.append(f"{when} — {_md(nm.text)} {_ref(nm.evidence)}".strip(" —"))
    else:
        out.append(label["none"])
    if m.rejected:
        out += ["", f"<details><summary>{label['rejected']} ({len(m.rejected)})</summary>", ""]
        out += [f"- {r.kind}: {_md(r.text)} — {_md(r.reason)}" for r in m.rejected]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def to_json(m: Minutes) -> str:
    return json.dumps(m.to_dict(), ensure_ascii=False, indent=2)


def _uid(m: Minutes, *parts: str) -> str:
    """Stable across exports of the same minutes, so re-importing updates instead of duplicating."""
    basis = "|".join([m.title, str(m.meeting_date), *parts])
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24] + "@inhouse-minutes"


def to_ics(m: Minutes, *, tz: ZoneInfo | None = None, dtstamp: datetime | None = None) -> str:
    """One VTODO per action item with a due date (all-day DUE); a VEVENT for a dated next meeting (one hour,
    in ``tz`` when it has a time; floating time when no zone is known)."""
    items: list[IcsItem] = []
    for a in m.action_items:
        if a.due is None:
            continue
        who = a.owner or ""
        evidence = "; ".join(f"L{e.line} {e.speaker + ': ' if e.speaker else ''}{e.text}" for e in a.evidence)
        items.append(IcsItem(
            kind="VTODO", summary=f"{who}: {a.task}" if who else a.task, due=a.due, uid=_uid(m, "todo", who, a.task),
            description=f"{m.title} ({m.meeting_date}). Evidence: {evidence}", status="NEEDS-ACTION",
            attendees=[who] if who else [], categories=["minutes"]))
    nm = m.next_meeting
    if nm is not None and nm.date is not None:
        if nm.time:
            hh, mm = (int(x) for x in nm.time.split(":"))
            start = datetime.combine(nm.date, time(hh, mm), tzinfo=tz)
            items.append(IcsItem(kind="VEVENT", summary=f"{m.title} (next meeting)", start=start,
                                 end=start + timedelta(hours=1), uid=_uid(m, "next", nm.start or ""),
                                 description=nm.text, attendees=list(m.attendees)))
        else:
            items.append(IcsItem(kind="VEVENT", summary=f"{m.title} (next meeting)", start=nm.date,
                                 end=nm.date + timedelta(days=1), uid=_uid(m, "next", nm.start or ""),
                                 description=nm.text, attendees=list(m.attendees)))
    return write_ics(items, calendar_name=m.title, dtstamp=dtstamp)


def render(m: Minutes, fmt: str, *, tz: ZoneInfo | None = None) -> str:
    if fmt == "md":
        return to_markdown(m)
    if fmt == "ics":
        return to_ics(m, tz=tz)
    return to_json(m)
