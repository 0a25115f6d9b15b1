"""The schedule assistant over HTTP: a scripted model emits <tool_call>s that create, move and cancel events
(checked in the .ics export), invalid tool arguments come back as clear errors (never a 500), events CRUD,
free slots across users, trips with the travel policy read as the caller, .ics import, and IDOR."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.apps.context import AppContext
from inhouse.apps.ics import read_ics
from inhouse.apps.schedule.service import ScheduleService
from inhouse.apps.schedule.tools import run_tool, tool_definitions
from inhouse.types import Actor

MODEL = "fake-model"


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


# The fake model answers by the first key found in its prompt: tool results first, then the user's requests.
SCRIPT = {
    "<tool_response>": "Done, it is in your calendar.",
    "Book the design review": call("create_event", title="Design review", start="next Friday 3pm",
                                   duration_minutes=45, attendees=["li"]),
    "Bad arguments please": call("create_event", title="", start="someday", colour="red"),
    "Unknown tool please": call("launch_rocket", target="moon"),
    "Book the injected call": call("create_event", title="Planning", start="2030-03-01 10:00", attendees=[
        "x@corp.com\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil-1\r\nSUMMARY:Wire-transfer-approval-call\r\n"
        "DTSTART:20300301T090000Z\r\nLOCATION:https://evil.example/join"]),
}
POLICY = (b"# Travel and Expense Policy\n\n## Hotel limits per night\n\nCity tier | Limit per night\n"
          b"Tier 1 (Shanghai, Beijing, Shenzhen) | 1,200 CNY\nOther cities | 500 CNY\n\n## Per diem\n\n"
          b"The daily meal allowance is 200 CNY for domestic travel and 60 USD for international travel.\n")


@pytest.fixture
def svc(make_services: Any) -> Iterator[Any]:
    s = make_services(fake={"n_ctx": 16384, "script": SCRIPT})
    s.settings.apps.model = MODEL
    s.settings.apps.timezone = "Asia/Shanghai"
    root = Actor("key_setup", "setup", role="admin")
    s.kb.create_collection(root, "hr", groups=["staff"])
    s.kb.add_document(root, "hr", POLICY, "travel-policy.md", label="internal")
    d = s.directory
    staff = d.create_group("staff")
    ana, li, eve = d.create_user("ana"), d.create_user("li"), d.create_user("eve")
    d.add_member(staff.id, ana.id)
    d.add_member(staff.id, li.id)
    s.extra["ana"] = s.keys.create_key("ana", user_id=ana.id)[1]
    s.extra["li"] = s.keys.create_key("li", user_id=li.id)[1]
    s.extra["eve"] = s.keys.create_key("eve", user_id=eve.id)[1]
    yield s


def client(svc: Any, who: str) -> TestClient:
    return TestClient(build_app(svc), headers={"Authorization": f"Bearer {svc.extra[who]}"})


def test_conversation_creates_an_event_that_appears_in_the_ics_export(svc: Any) -> None:
    with client(svc, "ana") as c:
        r = c.post("/v1/apps/schedule/chat", json={"message": "Book the design review with Li next Friday at 3pm"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["reply"] == "Done, it is in your calendar." and out["rounds"] == 2
        (action,) = out["actions"]
        assert action["tool"] == "create_event" and "error" not in action["result"], action
        event = action["result"]["event"]
        assert event["title"] == "Design review" and event["timezone"] == "Asia/Shanghai"
        start = datetime.fromisoformat(event["start"])
        assert start.weekday() == 4 and start.hour == 15 and start > datetime.now(UTC)
        ics = c.get("/v1/apps/schedule/export.ics")
        assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
        items = read_ics(ics.text)
        assert [i.summary for i in items] == ["Design review"]
        assert items[0].start == start and (items[0].end - start).total_seconds() == 45 * 60  # type: ignore[operator]
        assert items[0].uid == event["uid"]


def test_invalid_tool_arguments_are_reported_not_500(svc: Any) -> None:
    with client(svc, "ana") as c:
        for message, expect in (("Bad arguments please", "Invalid arguments for create_event"),
                                ("Unknown tool please", "Unknown tool 'launch_rocket'")):
            r = c.post("/v1/apps/schedule/chat", json={"message": message})
            assert r.status_code == 200, r.text
            results = [a["result"] for a in r.json()["actions"]]
            assert results and all(expect in res["error"] for res in results), results
        assert c.get("/v1/apps/schedule/events").json()["data"] == []


def test_tool_definitions_and_argument_validation(svc: Any) -> None:
    names = {t["function"]["name"] for t in tool_definitions()}
    assert names == {"create_event", "move_event", "cancel_event", "list_events", "find_free_slots", "plan_trip"}
    actor = svc.keys.authenticate(svc.extra["ana"])
    from zoneinfo import ZoneInfo
    ctx = AppContext(actor=actor, chat=svc.chat, model=MODEL, tz=ZoneInfo("Europe/Berlin"),
                     now=lambda: datetime(2026, 1, 28, 12, tzinfo=UTC))
    schedule = ScheduleService(svc.stores.events, svc.directory)
    import asyncio

    def run(name: str, args: Any) -> dict[str, Any]:
        return asyncio.run(run_tool(schedule, ctx, name, args))

    assert "not valid JSON" in run("create_event", "{nope")["error"]
    assert "must be a JSON object" in run("create_event", "[1]")["error"]
    assert "'start'" in run("create_event", {"title": "x"})["error"]
    assert "is not an argument" in run("create_event", {"title": "x", "start": "tomorrow", "x": 1})["error"]
    assert "duration" in run("create_event", {"title": "x", "start": "tomorrow 9am",
                                              "duration_minutes": "forever"})["error"]
    assert "'start'" in run("create_event", {"title": "x", "start": "2026-02-30 10:00"})["error"]
    ok = run("create_event", {"title": "Sync", "start": "next Friday 10:00", "duration_minutes": "30 min"})
    # CONVENTION (docs/dates.md): "next Friday" said on Wednesday 28 January is the Friday of next week, like
    # 下周五 (this test asserted 30 January, the old schedule resolver's rule; the clash below moved with it).
    assert ok["event"]["start"] == "2026-02-06T10:00:00+01:00" and ok["conflicts"] == []
    clash = run("create_event", {"title": "Other", "start": "2026-02-06 10:15", "end": "2026-02-06 11:00"})
    assert [e["title"] for e in clash["conflicts"]] == ["Sync"]
    moved = run("move_event", {"event": "Sync", "new_start": "next Monday 9:00"})
    assert moved["event"]["start"] == "2026-02-02T09:00:00+01:00" and moved["event"]["end"].endswith("09:30:00+01:00")
    assert "No upcoming event" in run("cancel_event", {"event": "Nope"})["error"]
    assert run("cancel_event", {"event": "Sync"})["event"]["status"] == "cancelled"
    listed = run("list_events", {"start": "2026-01-28", "end": "2026-02-10"})
    assert [e["title"] for e in listed["events"]] == ["Other"]


def test_events_crud_and_idor(svc: Any) -> None:
    with client(svc, "ana") as ana, client(svc, "li") as li, client(svc, "eve") as eve:
        r = ana.post("/v1/apps/schedule/events", json={"title": "1:1", "start": "2030-03-04 10:00",
                                                       "end": "2030-03-04 10:30", "timezone": "Europe/Paris"})
        assert r.status_code == 201, r.text
        eid = r.json()["event"]["id"]
        assert r.json()["event"]["start"] == "2030-03-04T10:00:00+01:00"
        assert ana.get(f"/v1/apps/schedule/events/{eid}").json()["title"] == "1:1"
        for other in (li, eve):  # a colleague and a stranger alike
            assert other.get(f"/v1/apps/schedule/events/{eid}").status_code == 404
            assert other.patch(f"/v1/apps/schedule/events/{eid}", json={"title": "pwned"}).status_code == 404
            assert other.delete(f"/v1/apps/schedule/events/{eid}").status_code == 404
        p = ana.patch(f"/v1/apps/schedule/events/{eid}", json={"start": "2030-03-04 11:00", "timezone": "Europe/Paris"})
        assert p.status_code == 200 and p.json()["event"]["end"] == "2030-03-04T11:30:00+01:00"
        assert ana.delete(f"/v1/apps/schedule/events/{eid}").json()["deleted"] is True
        assert ana.get(f"/v1/apps/schedule/events/{eid}").status_code == 404
        bad = ana.post("/v1/apps/schedule/events", json={"title": "x", "start": "next blursday"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "start"
        assert ana.post("/v1/apps/schedule/events", json={"title": "x", "start": "2030-01-01 10:00",
                                                          "timezone": "Mars/Base"}).status_code == 400


def test_free_slots_across_colleagues_but_not_strangers(svc: Any) -> None:
    with client(svc, "ana") as ana, client(svc, "li") as li:
        # Li is busy 09:00-12:00 Shanghai on Monday 4 March 2030; Ana 13:00-14:00.
        assert li.post("/v1/apps/schedule/events", json={"title": "offsite", "start": "2030-03-04 09:00",
                                                         "end": "2030-03-04 12:00"}).status_code == 201
        assert ana.post("/v1/apps/schedule/events", json={"title": "lunch talk", "start": "2030-03-04 13:00",
                                                          "end": "2030-03-04 14:00"}).status_code == 201
        r = ana.post("/v1/apps/schedule/free-slots", json={
            "attendees": ["li"], "duration_minutes": 60, "start": "2030-03-04 08:00", "end": "2030-03-04 18:00",
            "limit": 50, "step_minutes": 60})
        assert r.status_code == 200, r.text
        starts = [s["start"][11:16] for s in r.json()["slots"]]
        assert starts == ["12:00", "14:00", "15:00", "16:00", "17:00"]
        stranger = ana.post("/v1/apps/schedule/free-slots", json={"attendees": ["eve"], "duration_minutes": 30})
        assert stranger.status_code == 404
        assert ana.post("/v1/apps/schedule/free-slots", json={"attendees": ["li"],
                                                              "duration_minutes": 0}).status_code == 400


def test_trip_applies_the_policy_only_for_those_who_may_read_it(svc: Any) -> None:
    body = {"destination": "Shanghai", "depart_date": "2030-03-04", "return_date": "2030-03-06",
            "purpose": "customer visit"}
    with client(svc, "ana") as ana, client(svc, "eve") as eve:
        plan = ana.post("/v1/apps/schedule/trips", json=body).json()
        assert plan["budget"]["hotel"]["limit_per_night"] == 1200 and plan["budget"]["hotel"]["total_max"] == 2400
        assert plan["budget"]["per_diem"] == {"rate": 200, "currency": "CNY", "kind": "domestic", "total": 600}
        assert len(plan["days"]) == 3 and plan["policy_sources"]
        london = ana.post("/v1/apps/schedule/trips", json={**body, "destination": "London"}).json()
        assert london["budget"]["hotel"]["limit_per_night"] == 500 and london["budget"]["per_diem"]["currency"] == "USD"
        outsider = eve.post("/v1/apps/schedule/trips", json=body).json()
        assert "hotel" not in outsider["budget"] and outsider["notes"] and outsider["policy_sources"] == []
        back = ana.post("/v1/apps/schedule/trips", json={**body, "return_date": "2030-03-01"})
        assert back.status_code == 400


def test_import_is_idempotent_by_uid(svc: Any) -> None:
    ics = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ext-1@example.com\r\n"
           b"DTSTART;TZID=Europe/Berlin:20300304T100000\r\nDTEND;TZID=Europe/Berlin:20300304T110000\r\n"
           b"SUMMARY:Imported\\, really\r\nEND:VEVENT\r\nBEGIN:VTODO\r\nUID:t\r\nSUMMARY:todo\r\nEND:VTODO\r\n"
           b"END:VCALENDAR\r\n")
    with client(svc, "ana") as ana:
        first = ana.post("/v1/apps/schedule/import", content=ics, headers={"Content-Type": "text/calendar"})
        assert first.status_code == 200 and first.json()["created"] == 1 and len(first.json()["skipped"]) == 1
        again = ana.post("/v1/apps/schedule/import", content=ics, headers={"Content-Type": "text/calendar"})
        assert again.json()["created"] == 0 and again.json()["updated"] == 1
        events = ana.get("/v1/apps/schedule/events", params={"start": "2030-03-01", "end": "2030-03-10"}).json()
        assert [e["title"] for e in events["data"]] == ["Imported, really"]
        assert events["data"][0]["start"] == "2030-03-04T17:00:00+08:00"  # shown in the user's zone
        assert ana.post("/v1/apps/schedule/import", content=b"not a calendar").status_code == 400
        assert ana.post("/v1/apps/schedule/import", content=b"").status_code == 400


def test_a_repeated_call_is_not_executed_twice(make_services: Any) -> None:
    repeat = call("create_event", title="Standup", start="2030-03-04 09:00", duration_minutes=15)
    s = make_services(fake={"n_ctx": 16384, "script": {"Repeat": repeat}})
    s.settings.apps.model = MODEL
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        out = c.post("/v1/apps/schedule/chat", json={"message": "Repeat: standup 2030-03-04 9am"}).json()
        assert [a["tool"] for a in out["actions"]] == ["create_event"]  # the model asked 4 times
        assert out["rounds"] == 4 and out["reply"].startswith("Done: create_event")
        events = c.get("/v1/apps/schedule/events", params={"start": "2030-03-01", "end": "2030-03-10"}).json()
        assert len(events["data"]) == 1


INJECTED = "x@corp.com\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil-1\r\nSUMMARY:Wire transfer\r\nDTSTART:20300301T090000Z"


def test_control_characters_in_event_fields_are_a_400(svc: Any) -> None:
    """An attendee with CR/LF was accepted and written raw into export.ics: an event of the attacker's own there.
    One-line fields refuse control characters (a tab passes); a description keeps its line breaks, not NUL and co."""
    event = {"title": "Planning", "start": "2030-03-01 10:00"}
    with client(svc, "ana") as ana:
        for field, value in (("attendees", [INJECTED]), ("attendees", ["Bob Smith\nfrom sales"]),
                             ("attendees", ["an\x85a"]), ("title", "Plan\rning"), ("location", "Room 1\x00"),
                             ("description", "notes\x1b[31m")):
            r = ana.post("/v1/apps/schedule/events", json={**event, field: value})
            assert r.status_code == 400, (field, value, r.text)
            assert r.json()["error"]["param"] == field and "control characters" in r.json()["error"]["message"]
        r = ana.post("/v1/apps/schedule/events", json={**event, "attendees": ["li\t", " bo@corp.com\n"],
                                                       "description": "Agenda:\r\n1. budget\n\t2. hiring"})
        assert r.status_code == 201, r.text
        eid = r.json()["event"]["id"]
        assert r.json()["event"]["attendees"] == ["li", "bo@corp.com"]  # surrounding whitespace stripped, as before
        patch = ana.patch(f"/v1/apps/schedule/events/{eid}", json={"attendees": ["li", INJECTED]})
        assert patch.status_code == 400 and patch.json()["error"]["param"] == "attendees"
        (item,) = read_ics(ana.get("/v1/apps/schedule/export.ics").text)
        assert item.description == "Agenda:\n1. budget\n\t2. hiring" and item.attendees == ["li", "bo@corp.com"]


def test_an_attendee_the_model_gave_with_line_breaks_adds_no_event_to_the_export(svc: Any) -> None:
    """Tool arguments come from model output, not through the API's checks: the .ics writer keeps them on one line."""
    with client(svc, "ana") as ana:
        out = ana.post("/v1/apps/schedule/chat", json={"message": "Book the injected call"}).json()
        assert "error" not in out["actions"][0]["result"], out
        ics = ana.get("/v1/apps/schedule/export.ics").text
        assert [(i.uid, i.summary) for i in read_ics(ics)] == [(out["actions"][0]["result"]["event"]["uid"],
                                                                 "Planning")]
        assert ics.count("\r\nBEGIN:VEVENT\r\n") == 1 and "\r\nUID:evil-1\r\n" not in ics
        again = ana.post("/v1/apps/schedule/import", content=ics.encode(), headers={"Content-Type": "text/calendar"})
        assert again.status_code == 200 and again.json()["updated"] == 1, again.text
