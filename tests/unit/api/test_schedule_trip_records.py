"""A trip planned from the travel policy (``POST /v1/apps/schedule/trips``, or the schedule chat's ``plan_trip``
tool) gives the caller passages of the knowledge base: its audit record names those documents and their label, as a
search returning them does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.types import Actor

TRIP = {"destination": "Shanghai", "depart_date": "2030-03-01", "return_date": "2030-03-03"}
PLAN = "<tool_call>\n" + json.dumps({"name": "plan_trip", "arguments": {k: TRIP[k] for k in TRIP}}) + "\n</tool_call>"
SCRIPT = {"<tool_response>": "Your trip is planned.", "Plan my Shanghai trip": PLAN}
POLICY = (b"# Travel policy (confidential)\n\n## Hotel limits per night\n\nCity tier | Limit per night\n"
          b"Tier 1 (Shanghai, Beijing) | 1,200 CNY\nOther cities | 500 CNY\n\n## Per diem\n\n"
          b"The per diem is 200 CNY for domestic travel and 60 USD for international travel.\n")


@pytest.fixture
def svc(make_services: Any) -> Iterator[Any]:
    s = make_services(fake={"n_ctx": 16384, "script": SCRIPT})
    s.settings.apps.model = "fake-model"
    s.settings.apps.timezone = "Asia/Shanghai"
    root = Actor("key_setup", "setup", role="admin")
    d = s.directory
    staff, ana = d.create_group("staff"), d.create_user("ana")
    d.add_member(staff.id, ana.id)
    s.kb.create_collection(root, "hr", groups=["staff"])
    s.extra["policy"] = s.kb.add_document(root, "hr", POLICY, "travel-policy.md", label="confidential").document_id
    s.extra["ana"] = s.keys.create_key("ana", user_id=ana.id)[1]
    yield s


def _record(svc: Any, resource: str) -> Any:
    return [r for r in svc.audit.records() if r.resource == resource][-1]


def test_a_planned_trip_names_the_policy_documents_it_applied(svc: Any) -> None:
    with TestClient(build_app(svc), headers={"Authorization": f"Bearer {svc.extra['ana']}"}) as ana:
        trip = ana.post("/v1/apps/schedule/trips", json=TRIP).json()
    assert trip["budget"]["hotel"]["limit_per_night"] == 1200
    assert {(s["document_id"], s["label"]) for s in trip["policy_sources"]} == {(svc.extra["policy"], "confidential")}
    record = _record(svc, "POST /v1/apps/schedule/trips")
    assert list(record.documents) == [svc.extra["policy"]] and record.label == "confidential"
    assert [r.resource for r in svc.audit.records(document=svc.extra["policy"])] == [
        "POST /v1/apps/schedule/trips"]


def test_the_chats_trip_tool_names_the_policy_documents_too(svc: Any) -> None:
    with TestClient(build_app(svc), headers={"Authorization": f"Bearer {svc.extra['ana']}"}) as ana:
        out = ana.post("/v1/apps/schedule/chat", json={"message": "Plan my Shanghai trip"}).json()
    (action,) = out["actions"]
    assert action["tool"] == "plan_trip" and action["result"]["policy_sources"], action
    record = _record(svc, "POST /v1/apps/schedule/chat")
    assert list(record.documents) == [svc.extra["policy"]] and record.label == "confidential"


def test_a_trip_without_a_policy_the_caller_may_read_names_none(svc: Any) -> None:
    eve = svc.keys.create_key("eve", user_id=svc.directory.create_user("eve").id)[1]
    with TestClient(build_app(svc), headers={"Authorization": f"Bearer {eve}"}) as c:
        assert c.post("/v1/apps/schedule/trips", json=TRIP).json()["policy_sources"] == []
    record = _record(svc, "POST /v1/apps/schedule/trips")
    assert list(record.documents) == [] and record.label is None
