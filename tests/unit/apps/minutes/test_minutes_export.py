from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from inhouse.apps.ics import read_ics
from inhouse.apps.minutes.export import to_ics, to_json, to_markdown
from inhouse.apps.minutes.schema import ActionItem, Decision, Evidence, Minutes, NextMeeting, OpenQuestion

EV = Evidence(line=4, timestamp="09:30", speaker="Mei Lin", text="Sofia, please send it; by Friday, OK?")


def sample(**kw: object) -> Minutes:
    base: dict[str, object] = dict(
        title="X300 sync; pricing, launch", meeting_date=date(2026, 10, 28), date_source="header",
        attendees=["Mei Lin", "Sofia Reyes"], summary="Launch moved.",
        decisions=[Decision(text="Launch moves to December 2", evidence=[EV])],
        action_items=[
            ActionItem(owner="Sofia Reyes", task="Send the pricing sheet, v2; to finance\nnow", due=date(2026, 10, 30),
                       due_text="by Friday", evidence=[EV]),
            ActionItem(owner=None, task="Undated task", evidence=[EV], flags=["owner_not_attendee"]),
        ],
        open_questions=[OpenQuestion(text="Keep the X200?", evidence=[EV])],
        next_meeting=NextMeeting(text="November 4 at 10:00", date=date(2026, 11, 4), time="10:00", evidence=[EV]),
        source={"language": "en"},
    )
    base.update(kw)
    return Minutes(**base)  # type: ignore[arg-type]


def test_ics_has_a_todo_per_dated_item_and_the_next_meeting() -> None:
    text = to_ics(sample(), tz=ZoneInfo("Europe/Berlin"), dtstamp=datetime(2026, 10, 28, 12, tzinfo=UTC))
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert "DTSTAMP:20261028T120000Z" in text
    assert "SUMMARY:Sofia Reyes: Send the pricing sheet\\, v2\\; to finance\\nnow" in text.replace("\r\n ", "")
    items = read_ics(text)
    todo, event = items
    assert todo.kind == "VTODO" and todo.due == date(2026, 10, 30) and todo.status == "NEEDS-ACTION"
    assert todo.summary == "Sofia Reyes: Send the pricing sheet, v2; to finance\nnow"
    assert event.kind == "VEVENT" and event.start == datetime(2026, 11, 4, 9, 0, tzinfo=UTC)  # 10:00 Berlin
    assert len({todo.uid, event.uid}) == 2
    again = read_ics(to_ics(sample(), tz=ZoneInfo("Europe/Berlin")))
    assert [i.uid for i in again] == [todo.uid, event.uid]  # stable UIDs: re-import updates, never duplicates


def test_ics_without_dated_items_is_an_empty_calendar() -> None:
    text = to_ics(sample(action_items=[], next_meeting=None))
    assert text.startswith("BEGIN:VCALENDAR\r\n") and read_ics(text) == []


def test_markdown_and_json() -> None:
    md = to_markdown(sample())
    assert md.startswith("# X300 sync; pricing, launch\n")
    assert "| Sofia Reyes | Send the pricing sheet, v2; to finance now | 2026-10-30 | [L4 09:30] |" in md
    assert "| (unassigned) | Undated task | — | [L4 09:30] |" in md
    assert "2026-11-04T10:00 — November 4 at 10:00 [L4 09:30]" in md
    data = json.loads(to_json(sample()))
    assert data["action_items"][0]["due"] == "2026-10-30"
    assert data["next_meeting"]["start"] == "2026-11-04T10:00"
    assert data["action_items"][0]["evidence"][0] == {"line": 4, "timestamp": "09:30", "speaker": "Mei Lin",
                                                      "text": EV.text, "source_line": None}


def test_chinese_markdown_labels() -> None:
    md = to_markdown(sample(source={"language": "zh"}))
    assert "## 行动项" in md and "| 负责人 | 任务 | 截止 | 依据 |" in md
