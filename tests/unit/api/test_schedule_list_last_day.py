"""``GET /v1/apps/schedule/events``: an ``end`` given as a day includes that day, as ``inhouse schedule list --to``
and the model's ``list_events`` do (one service answers all three); ``start=D&end=D`` is day D (it was a 400, "The
end must be after the start."), and an ``end`` with a time is kept."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app

EVENTS = "/v1/apps/schedule/events"


def test_an_end_day_is_listed_whole(make_services: Any) -> None:
    s = make_services()
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        made = c.post(EVENTS, json={"title": "NYE prep", "start": "2026-12-31 10:00", "timezone": "Europe/Berlin"})
        assert made.status_code == 201, made.text

        def window(start: str, end: str) -> tuple[str, str, list[str]]:
            r = c.get(EVENTS, params={"start": start, "end": end, "timezone": "Europe/Berlin"})
            assert r.status_code == 200, r.text
            return r.json()["from"], r.json()["to"], [e["title"] for e in r.json()["data"]]

        assert window("2026-12-31", "2026-12-31") == ("2026-12-31T00:00:00+01:00", "2027-01-01T00:00:00+01:00",
                                                      ["NYE prep"])
        assert window("2026-12-01", "2026-12-31")[1:] == ("2027-01-01T00:00:00+01:00", ["NYE prep"])
        assert window("2026-12-01", "2026-12-31 10:00")[1:] == ("2026-12-31T10:00:00+01:00", [])
