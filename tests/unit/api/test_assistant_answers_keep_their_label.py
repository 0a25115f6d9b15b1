"""Text the assistants return from labelled passages is remembered with their label, as a chat completion's answer
is (``governance/answer_labels.py``): a support answer, a trip plan applying the travel policy, and the schedule
chat's reply after planning a trip. Pasted into a chat for a cloud model ("Make this shorter: …"), it counts at that
label, and the egress router refuses or redacts it. Before the fix none of them was remembered: a confidential
support answer pasted into a chat was sent to the cloud. The real services (bootstrap's wiring), knowledge base
(FakeEmbedder) and answer-label table, a scripted fake model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.governance.labels import Label
from inhouse.types import Actor

MODEL = "fake-model"
GOODWILL = (b"# Goodwill credits\n\nThe goodwill override code is LYNX-4471. Agents may grant a goodwill credit of at "
            b"most 37 percent of the order value with that code.\n")
SUPPORT_ANSWER = "The goodwill override code is LYNX-4471; agents may grant at most 37 percent of the order value [1]."
POLICY = (b"# Travel policy\n\n## Hotel limits per night\n\nCity tier | Limit per night\n"
          b"Tier 1 (Shanghai, Beijing) | 1,200 CNY\nOther cities | 500 CNY\n\n## Per diem\n\n"
          b"The per diem is 200 CNY for domestic travel and 60 USD for international travel.\n")
TRIP = {"destination": "Shanghai", "depart_date": "2030-03-01", "return_date": "2030-03-03"}
PLAN = "<tool_call>\n" + json.dumps({"name": "plan_trip", "arguments": TRIP}) + "\n</tool_call>"
CHAT_ANSWER = "Planned: the hotel limit in Shanghai is 1,200 CNY a night and the per diem 200 CNY."
SCRIPT = {"<tool_response>": CHAT_ANSWER, "Plan my Shanghai trip": PLAN, "Context passages:": SUPPORT_ANSWER}


@pytest.fixture
def svc(make_services: Any) -> Iterator[Any]:
    s = make_services(fake={"n_ctx": 16384, "script": SCRIPT}, kb={"min_similarity": 0.2})
    s.settings.apps.model = MODEL
    root = Actor("key_setup", "setup", role="admin")
    d = s.directory
    staff, carol = d.create_group("staff"), d.create_user("carol")
    d.add_member(staff.id, carol.id)
    s.kb.create_collection(root, "support", groups=["staff"])
    s.kb.add_document(root, "support", GOODWILL, "goodwill.md", label="confidential")
    s.kb.create_collection(root, "hr", groups=["staff"])
    s.kb.add_document(root, "hr", POLICY, "travel-policy.md", label="confidential")
    s.extra["carol"] = s.keys.create_key("carol", user_id=carol.id)[1]
    yield s


@pytest.fixture
def carol(svc: Any) -> Iterator[TestClient]:
    with TestClient(build_app(svc), headers={"Authorization": f"Bearer {svc.extra['carol']}"}) as c:
        yield c


def pasted(svc: Any, text: str) -> list[Label]:
    """The labels the egress router counts for ``text`` pasted into a chat (``AnswerLabels`` is its label source)."""
    return list(svc.answers({"messages": [{"role": "user", "content": f"Make this shorter:\n\n{text}"}]}))


def test_the_assistants_contexts_remember_in_the_servers_answer_labels(svc: Any) -> None:
    assert svc.assistants.contexts.for_actor(Actor("key_x", "x")).answers is svc.answers


def test_a_support_answer_pasted_into_a_chat_keeps_its_label(svc: Any, carol: TestClient) -> None:
    sid = carol.post("/v1/apps/support/sessions", json={"collections": ["support"]}).json()["id"]
    r = carol.post(f"/v1/apps/support/sessions/{sid}/messages",
                   json={"content": "What is the goodwill override code and the most credit an agent may grant?"})
    assert r.status_code == 200 and r.json()["reply"] == SUPPORT_ANSWER, r.text
    assert pasted(svc, SUPPORT_ANSWER) == [Label.CONFIDENTIAL]


def test_a_trip_plan_and_the_chats_reply_keep_the_policys_label(svc: Any, carol: TestClient) -> None:
    trip = carol.post("/v1/apps/schedule/trips", json=TRIP)
    assert trip.status_code == 200 and trip.json()["budget"]["hotel"]["limit_per_night"] == 1200
    assert pasted(svc, trip.text) == [Label.CONFIDENTIAL]  # the JSON as the client received it
    out = carol.post("/v1/apps/schedule/chat", json={"message": "Plan my Shanghai trip"}).json()
    assert out["reply"] == CHAT_ANSWER and [a["tool"] for a in out["actions"]] == ["plan_trip"]
    assert pasted(svc, CHAT_ANSWER) == [Label.CONFIDENTIAL]
