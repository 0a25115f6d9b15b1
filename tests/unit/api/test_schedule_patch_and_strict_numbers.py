"""Schedule over HTTP: a PATCH that gives an all-day event clock times makes it a timed event (it kept ``all_day``
and exported DTSTART and DTEND as one DATE, an empty all-day event), and whole-number fields are strict ints:
``"duration_minutes": true`` was read as 1 (a one-minute event) by pydantic before our own check saw it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.apps.ics import read_ics
from inhouse.apps.schedule.tools import run_tool

ALL_DAY = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:offsite@example.com\r\n"
           b"DTSTAMP:20261201T000000Z\r\nDTSTART;VALUE=DATE:20270505\r\nDTEND;VALUE=DATE:20270506\r\n"
           b"SUMMARY:Offsite day\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


@pytest.fixture
def api(make_services: Any) -> Iterator[TestClient]:
    s = make_services()
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        c.app_services = s  # type: ignore[attr-defined]
        yield c


def test_patching_clock_times_onto_an_all_day_event_makes_it_timed(api: TestClient) -> None:
    imported = api.post("/v1/apps/schedule/import", params={"timezone": "Europe/Berlin"}, content=ALL_DAY,
                        headers={"Content-Type": "text/calendar"})
    assert imported.json()["created"] == 1
    [event] = api.get("/v1/apps/schedule/events", params={"start": "2027-05-05", "end": "2027-05-06",
                                                          "timezone": "Europe/Berlin"}).json()["data"]
    assert event["all_day"] is True
    r = api.patch(f"/v1/apps/schedule/events/{event['id']}", json={
        "start": "2027-05-12 15:00", "end": "2027-05-12 16:00", "timezone": "Europe/Berlin"})
    assert r.status_code == 200, r.text
    assert r.json()["event"]["all_day"] is False and r.json()["event"]["start"] == "2027-05-12T15:00:00+02:00"
    [item] = read_ics(api.get("/v1/apps/schedule/export.ics").content)
    assert (item.start, item.end) == (datetime(2027, 5, 12, 13, tzinfo=UTC), datetime(2027, 5, 12, 14, tzinfo=UTC))
    # A PATCH of the title alone leaves an all-day event all-day.
    api.post("/v1/apps/schedule/import", params={"timezone": "Europe/Berlin"},
             content=ALL_DAY.replace(b"offsite@", b"other@"), headers={"Content-Type": "text/calendar"})
    listed = api.get("/v1/apps/schedule/events", params={"start": "2027-05-05", "end": "2027-05-06"}).json()["data"]
    other = next(e for e in listed if e["all_day"])
    assert api.patch(f"/v1/apps/schedule/events/{other['id']}", json={"title": "Renamed"}).json()["event"]["all_day"]


@pytest.mark.parametrize("value", [True, False, 1.5])
def test_duration_minutes_must_be_a_whole_number_not_a_bool(api: TestClient, value: Any) -> None:
    r = api.post("/v1/apps/schedule/events", json={"title": "x", "start": "2027-06-01 10:00",
                                                   "duration_minutes": value})
    assert r.status_code == 400, r.text
    assert "duration_minutes" in r.json()["error"]["message"] + str(r.json()["error"].get("param"))


def test_numbers_and_texts_that_are_durations_still_work(api: TestClient) -> None:
    for value, minutes in ((45, 45), ("45 min", 45), ("1.5 hours", 90), ("半小时", 30)):
        r = api.post("/v1/apps/schedule/events", json={"title": "x", "start": "2027-06-01 10:00",
                                                       "duration_minutes": value, "timezone": "UTC"})
        assert r.status_code == 201 and r.json()["event"]["end"] == f"2027-06-01T{10 + minutes // 60:02d}:" \
            f"{minutes % 60:02d}:00+00:00", (value, r.text)


@pytest.mark.parametrize("field", [{"duration_minutes": True}, {"limit": True}, {"step_minutes": True}])
def test_free_slot_numbers_refuse_bools(api: TestClient, field: dict[str, Any]) -> None:
    r = api.post("/v1/apps/schedule/free-slots", json={"start": "2027-06-01 09:00", "end": "2027-06-02 18:00",
                                                       **field})
    assert r.status_code == 400, r.text


def test_the_models_tools_refuse_bools_too(api: TestClient) -> None:
    s = api.app_services  # type: ignore[attr-defined]
    ctx = s.assistants.contexts.for_actor(s.keys.authenticate(s.member_key))
    for name, args in (("create_event", {"title": "x", "start": "2027-06-01 10:00", "duration_minutes": True}),
                       ("find_free_slots", {"duration_minutes": True}), ("find_free_slots", {"limit": True})):
        out = asyncio.run(run_tool(s.assistants.schedule, ctx, name, args))
        assert "error" in out, (name, args, out)
