"""Calendar dates at the edges of time, over HTTP (regressions of issue 14, bug classes 3 and 4).

* A date the calendar cannot represent — year 999, year 1 in a far zone, 9999-12-31 — is a 400 in the one error
  shape on every way in (create, move, import, list, free slots), and nothing is stored: the user's calendar keeps
  working (export, list, get, change, delete).
* A calendar broken by an earlier release (years below 1000 stored with fewer than four digits, which that
  release's own reader refused) is repaired by migration 7: every event reads, moves and deletes again.
* Free-slot searches are bounded: a thousand-year window is refused at once, not searched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.apps.ics import read_ics
from inhouse.config import Settings
from inhouse.store.sqlite.database import Database, apply_migrations, current_version
from inhouse.store.sqlite.inhouse_db import MIGRATIONS

EVENTS = "/v1/apps/schedule/events"


@pytest.fixture
def api(make_services: Any) -> Iterator[tuple[TestClient, Any]]:
    s = make_services()
    s.settings.apps.timezone = "Asia/Shanghai"
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        yield c, s


def out_of_range(r: Any, param: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"}, err
    assert err["type"] == "invalid_request_error" and err["code"] == "date_out_of_range", err
    assert err["param"] == param and "1900-01-01 to 2999-12-31" in err["message"], err


def ics(*lines: str) -> bytes:
    body = ["BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", *lines, "END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(body).encode()


def stored_times(s: Any) -> list[tuple[str, str]]:
    return [(r["start_utc"], r["end_utc"]) for r in s.db.query("SELECT start_utc, end_utc FROM schedule_events")]


def test_unrepresentable_dates_are_refused_and_never_stored(api: tuple[TestClient, Any]) -> None:
    c, s = api
    good = c.post(EVENTS, json={"title": "Kept", "start": "2030-03-04 10:00", "end": "2030-03-04 11:00"})
    assert good.status_code == 201, good.text
    eid = good.json()["event"]["id"]
    # Create: year 999; year 1 in the zone whose old local time is behind UTC; the last day of time.
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "0999-06-01 10:00"}), "start")
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "0001-01-01 00:00", "timezone": "Pacific/Kiritimati"}),
                 "start")
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "9999-12-31 23:30"}), "start")
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "9999-12-31T23:30:00Z", "timezone": "Etc/GMT-14"}),
                 "start")
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "2999-12-31 23:30", "timezone": "UTC"}),
                 "end")  # ends in year 3000
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "2999-12-31 20:00", "timezone": "America/Adak"}),
                 "start")  # 3000-01-01 in UTC
    out_of_range(c.post(EVENTS, json={"title": "x", "start": "2030-01-01 10:00", "end": "0999-01-01 11:00"}), "end")
    # Move: refused, and the event is unchanged.
    out_of_range(c.patch(f"{EVENTS}/{eid}", json={"start": "0999-06-01 10:00"}), "start")
    out_of_range(c.patch(f"{EVENTS}/{eid}", json={"end": "9999-12-31 23:00"}), "end")
    assert c.get(f"{EVENTS}/{eid}").json()["start"] == "2030-03-04T10:00:00+08:00"
    # Import: an event outside the range is skipped with the reason; one whose end cannot be computed refuses
    # the file. Neither is stored.
    r = c.post("/v1/apps/schedule/import", content=ics("UID:old-1", "DTSTART:09990101T100000Z", "SUMMARY:old"))
    assert r.status_code == 200 and r.json()["created"] == 0, r.text
    (skipped,) = r.json()["skipped"]
    assert skipped["uid"] == "old-1" and "outside the supported dates" in skipped["reason"]
    r = c.post("/v1/apps/schedule/import", content=ics("UID:end-1", "DTSTART:99991231T233000Z", "DURATION:PT2H"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "file", r.text
    r = c.post("/v1/apps/schedule/import", content=ics("UID:end-2", "DTSTART;VALUE=DATE:99991231"))
    assert r.status_code == 400, r.text
    r = c.post("/v1/apps/schedule/import", content=ics("UID:end-3", "DTSTART:20300101T100000Z",
                                                       "DURATION:P" + "9" * 5000 + "W"))
    assert r.status_code == 400, r.text
    # List with a range in a zone, and free slots, at the end of time.
    for params in ({"start": "9999-12-31", "timezone": "Asia/Shanghai"},
                   {"start": "2030-01-01", "end": "9999-12-31 23:59", "timezone": "America/Adak"},
                   {"start": "0001-01-01", "timezone": "Pacific/Kiritimati"}):
        assert c.get(EVENTS, params=params).status_code == 400, params
    out_of_range(c.post("/v1/apps/schedule/free-slots", json={"start": "9999-12-31"}), "start")
    out_of_range(c.post("/v1/apps/schedule/free-slots", json={"start": "0001-01-01", "end": "9999-12-31",
                                                              "step_minutes": 5}), "start")
    out_of_range(c.post("/v1/apps/schedule/trips", json={"destination": "Shanghai", "depart_date": "9999-12-31",
                                                         "return_date": "9999-12-31"}), "depart_date")
    # Only the good event was ever stored, in the four-digit form, and the calendar still works.
    assert stored_times(s) == [("2030-03-04T02:00:00Z", "2030-03-04T03:00:00Z")]
    export = c.get("/v1/apps/schedule/export.ics")
    assert export.status_code == 200 and [i.summary for i in read_ics(export.text)] == ["Kept"]
    listed = c.get(EVENTS, params={"start": "2030-03-01", "end": "2030-03-10"})
    assert [e["title"] for e in listed.json()["data"]] == ["Kept"]
    assert c.delete(f"{EVENTS}/{eid}").json()["deleted"] is True


def test_the_edges_of_the_range_work_end_to_end(api: tuple[TestClient, Any]) -> None:
    c, _ = api
    first = c.post(EVENTS, json={"title": "first", "start": "1900-01-01 00:00", "timezone": "Pacific/Kiritimati"})
    last = c.post(EVENTS, json={"title": "last", "start": "2999-12-31 22:00", "end": "2999-12-31 23:59",
                                "timezone": "Asia/Tokyo"})
    assert first.status_code == 201 and last.status_code == 201, (first.text, last.text)
    assert last.json()["event"]["start"].startswith("2999-12-31T22:00")
    found = c.get(EVENTS, params={"start": "2999-12-31", "end": "2999-12-31 23:59", "timezone": "Asia/Tokyo"})
    assert [e["title"] for e in found.json()["data"]] == ["last"]
    slots = c.post("/v1/apps/schedule/free-slots", json={"start": "2999-12-27 00:00", "duration_minutes": 30,
                                                         "timezone": "Asia/Tokyo"})
    assert slots.status_code == 200 and slots.json()["slots"], slots.text
    items = read_ics(c.get("/v1/apps/schedule/export.ics").text)
    assert sorted(i.summary for i in items) == ["first", "last"]
    assert c.post("/v1/apps/schedule/import", content=c.get("/v1/apps/schedule/export.ics").content).json()[
        "updated"] == 2  # the export reads back


def test_a_thousand_year_free_slot_search_is_refused_at_once(api: tuple[TestClient, Any]) -> None:
    c, _ = api
    began = time.monotonic()
    r = c.post("/v1/apps/schedule/free-slots", json={"start": "1900-01-02 00:00", "end": "2999-12-31 00:00",
                                                     "step_minutes": 5, "limit": 200})
    assert r.status_code == 400 and r.json()["error"]["param"] == "to" and "92 days" in r.json()["error"]["message"]
    assert time.monotonic() - began < 5  # refused before any search, not after one


LEGACY_ROWS = [  # as release 6c87c30 stored them: strftime("%Y") writes year 999 as "999"
    ("evt_legacy_999", "999-06-01T02:00:00Z", "999-06-01T03:00:00Z", "Asia/Shanghai"),
    ("evt_legacy_001", "1-01-01T10:29:20Z", "1-01-01T11:29:20Z", "Pacific/Kiritimati"),
    ("evt_legacy_neg", "1-01-01T01:00:00Z", "1-01-01T02:00:00Z", "America/New_York"),  # before year 1 there
    ("evt_fine_2030", "2030-03-04T02:00:00Z", "2030-03-04T03:00:00Z", "Asia/Shanghai"),
]


def _legacy_database(data_dir: Path) -> None:
    """``inhouse.db`` at schema 6 holding rows the old code wrote, owned by a placeholder owner."""
    db = Database(Settings(data_dir=data_dir).db_path)
    try:
        apply_migrations(db, MIGRATIONS[:6])
        for eid, start, end, tz in LEGACY_ROWS:
            db.execute("INSERT INTO schedule_events (id, owner, uid, title, start_utc, end_utc, tz, status,"
                       " created_at, updated_at) VALUES (?, 'owner:legacy', ?, ?, ?, ?, ?, 'confirmed', 0, 0)",
                       (eid, f"{eid}@inhouse", eid, start, end, tz))
    finally:
        db.close()


def test_a_calendar_broken_by_an_old_release_is_repaired(make_services: Any, tmp_path: Path) -> None:
    _legacy_database(tmp_path / "data0")  # make_services opens data0 and migrates it (6 → latest)
    s = make_services()
    assert current_version(s.db) == MIGRATIONS[-1].version
    member = s.keys.authenticate(s.member_key)
    s.db.execute("UPDATE schedule_events SET owner = ?", (f"key:{member.key_id}",))
    assert {st for st, _ in stored_times(s)} == {"0999-06-01T02:00:00Z", "0001-01-01T10:29:20Z",
                                                 "0001-01-01T01:00:00Z", "2030-03-04T02:00:00Z"}
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        export = c.get("/v1/apps/schedule/export.ics")
        assert export.status_code == 200, export.text
        assert "DTSTART:09990601T020000Z" in export.text and "DTSTART:00010101T102920Z" in export.text
        assert len(read_ics(export.text)) == 4  # every line reads back
        assert c.get(f"{EVENTS}/evt_legacy_999").json()["start"] == "0999-06-01T10:05:43+08:05:43"
        assert c.get(f"{EVENTS}/evt_legacy_001").json()["start"] == "0001-01-01T00:00:00-10:29:20"
        assert c.get(f"{EVENTS}/evt_legacy_neg").json()["start"] == "0001-01-01T01:00:00+00:00"  # shown in UTC
        ordered = c.get(EVENTS, params={"start": "1900-01-01", "end": "2999-12-31"}).json()["data"]
        assert [e["id"] for e in ordered] == ["evt_fine_2030"]  # old rows sort before 1900 again, as text
        assert c.patch(f"{EVENTS}/evt_legacy_999", json={"title": "renamed"}).json()["event"]["title"] == "renamed"
        out_of_range(c.patch(f"{EVENTS}/evt_legacy_999", json={"end": "2030-01-01 10:00"}), "start")
        moved = c.patch(f"{EVENTS}/evt_legacy_999", json={"start": "2030-06-01 10:00", "timezone": "Asia/Shanghai"})
        assert moved.status_code == 200 and moved.json()["event"]["start"] == "2030-06-01T10:00:00+08:00"
        for eid in ("evt_legacy_001", "evt_legacy_neg"):
            assert c.delete(f"{EVENTS}/{eid}").status_code == 200
        assert {e["id"] for e in c.get(EVENTS, params={"start": "2030-01-01", "end": "2030-12-31"}).json()["data"]} \
            == {"evt_legacy_999", "evt_fine_2030"}
