"""The customer-service assistant over HTTP with the real knowledge base (FakeEmbedder) and a scripted fake model:
a normal FAQ answer with a citation, every handoff rule (a person in English and Chinese, a refund above the
threshold read from the documents, safety words, no answer twice), sessions owned by their key (another key's id
answers 404), scoped widget keys, and the widget's CORS allow-list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import route_actions
from inhouse.types import Actor

MODEL = "fake-model"  # the conftest's

FAQ = b"""# Customer Support FAQ

## Orders and delivery

**How long does delivery take?** Standard delivery within mainland China takes 3 to 5 working days.

## When to talk to a person

The assistant hands the conversation to a human agent when the customer asks for one, when a refund above
1,500 CNY is requested, or when the customer reports a safety problem (smoke, fire, electric shock, sparks).
"""
ANSWER = "Standard delivery takes 3 to 5 working days [1]."
ORIGIN = "https://shop.example.com"


@pytest.fixture
def svc(make_services: Any) -> Iterator[Any]:
    s = make_services(fake={"n_ctx": 8192, "script": {"Context passages:": ANSWER}}, kb={"min_similarity": 0.3})
    s.settings.apps.model = MODEL
    s.settings.apps.widget_origins = [ORIGIN]
    root = Actor("key_setup", "setup", role="admin")
    s.kb.create_collection(root, "support", groups=["support", "everyone"])
    s.kb.add_document(root, "support", FAQ, "customer-faq.md", label="public")
    yield s


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(svc: Any) -> Iterator[TestClient]:
    with TestClient(build_app(svc), headers=headers(svc.admin_key)) as c:
        yield c


def open_session(c: TestClient, **kw: Any) -> str:
    r = c.post("/v1/apps/support/sessions", json={"collections": ["support"]}, **kw)
    assert r.status_code == 201, r.text
    assert r.json()["id"].startswith("ses_") and r.json()["status"] == "open"
    return str(r.json()["id"])


def say(c: TestClient, sid: str, text: str, **kw: Any) -> dict[str, Any]:
    r = c.post(f"/v1/apps/support/sessions/{sid}/messages", json={"content": text}, **kw)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_routes_declare_apps_support(svc: Any) -> None:
    table = route_actions(build_app(svc))
    support = {k: v for k, v in table.items() if k[1].startswith("/v1/apps/support")}
    assert len(support) == 3 and all(v == ["apps:support"] for v in support.values())
    assert table[("GET", "/widget.js")] == ["web:read"]


def test_faq_answer_with_citation_then_state_kept(api: TestClient) -> None:
    sid = open_session(api)
    out = say(api, sid, "How long does delivery take?")
    assert out["handoff"] is False and out["reply"] == ANSWER
    assert out["citations"] and out["citations"][0]["title"] and "delivery" in out["citations"][0]["snippet"].lower()
    session = api.get(f"/v1/apps/support/sessions/{sid}").json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    assert session["messages"][1]["citations"][0]["index"] == 1


def test_the_audit_record_names_the_documents_the_answer_was_given(svc: Any, api: TestClient) -> None:
    sid = open_session(api)
    say(api, sid, "How long does delivery take?")
    faq = svc.kb.list_documents(Actor("key_setup", "setup", role="admin"), "support")[0]
    record = [r for r in svc.audit.records() if r.resource == f"POST /v1/apps/support/sessions/{sid}/messages"][-1]
    assert record.documents == (faq.id,)
    say(api, sid, "Can I talk to a person please?")  # handed over: no passages given
    assert [r for r in svc.audit.records() if r.resource.endswith("/messages")][-1].documents == ()


@pytest.mark.parametrize(("text", "reason"), [
    ("Can I talk to a person please?", "human_requested"),
    ("I want to speak with a human agent", "human_requested"),
    ("请帮我转人工", "human_requested"),
    ("我要人工客服", "human_requested"),
    ("I want a refund of 1,800 CNY for my order", "refund_threshold"),  # the document's 1,500, not a constant
    ("我要退款 3000 元", "refund_threshold"),
    ("My controller started to smoke", "safety"),
    ("The unit gave me an electric shock", "safety"),
    ("there were sparks from the board", "safety"),  # listed in the document, added to the built-in words
    ("控制器冒烟了", "safety"),
    ("设备起火", "safety"),
    ("我被触电了", "safety"),
])
def test_each_handoff_rule(api: TestClient, text: str, reason: str) -> None:
    sid = open_session(api)
    out = say(api, sid, text)
    assert out["handoff"] is True and out["reason"] == reason, out
    assert out["status"] == "handed_over" and out["summary"] and text[:20] in out["summary"]
    # The session stays with the human: no more model answers.
    again = say(api, sid, "How long does delivery take?")
    assert again["handoff"] is True and again["citations"] == []
    assert api.get(f"/v1/apps/support/sessions/{sid}").json()["status"] == "handed_over"


def test_refund_below_the_threshold_is_answered_not_handed_over(api: TestClient) -> None:
    sid = open_session(api)
    assert say(api, sid, "refund of 1,200 CNY please, delivery was late")["handoff"] is False


def test_no_answer_twice_in_a_row_hands_over(api: TestClient) -> None:
    sid = open_session(api)
    first = say(api, sid, "zzqx wibble frobnicate?")
    assert first["handoff"] is False and "could not find" in first["reply"]
    second = say(api, sid, "qqzz blorp snark?")
    assert second["handoff"] is True and second["reason"] == "no_answer"


def test_a_hit_between_two_misses_resets_the_count(api: TestClient) -> None:
    sid = open_session(api)
    assert say(api, sid, "zzqx wibble frobnicate?")["handoff"] is False
    assert say(api, sid, "How long does delivery take?")["citations"]
    assert say(api, sid, "qqzz blorp snark?")["handoff"] is False


def test_another_callers_session_is_404(svc: Any, api: TestClient) -> None:
    sid = open_session(api)
    with TestClient(build_app(svc), headers=headers(svc.member_key)) as other:
        assert other.get(f"/v1/apps/support/sessions/{sid}").status_code == 404
        r = other.post(f"/v1/apps/support/sessions/{sid}/messages", json={"content": "hello"})
        assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "code", "param"}
        assert other.get("/v1/apps/support/sessions/ses_000").status_code == 404


def test_collections_the_caller_may_not_read_are_404(svc: Any) -> None:
    with TestClient(build_app(svc), headers=headers(svc.member_key)) as member:  # not in group support
        assert member.post("/v1/apps/support/sessions", json={"collections": ["support"]}).status_code == 404


def test_bad_input_is_4xx(api: TestClient) -> None:
    sid = open_session(api)
    assert api.post(f"/v1/apps/support/sessions/{sid}/messages", json={"content": ""}).status_code == 400
    assert api.post(f"/v1/apps/support/sessions/{sid}/messages", json={"content": "x" * 5000}).status_code == 400
    assert api.post("/v1/apps/support/sessions", json={"collections": []}).status_code == 400


def test_scoped_key_reaches_only_the_support_routes(svc: Any) -> None:
    _, scoped = svc.keys.create_key("shop widget", scopes=["apps:support"])
    admin_actor = Actor("key_setup", "setup", role="admin")
    svc.kb.update_collection(admin_actor, "support", keys=[svc.keys.list_keys()[-1].id], groups=["support"])
    with TestClient(build_app(svc), headers=headers(scoped)) as widget:
        sid = open_session(widget)
        assert say(widget, sid, "How long does delivery take?")["citations"]
        assert widget.post("/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "hi"}]}).status_code == 403
        assert widget.get("/v1/apps/schedule/events").status_code == 403
        assert widget.post("/v1/search", json={"query": "delivery"}).status_code == 403
        assert widget.get("/v1/keys").status_code == 403
    with pytest.raises(Exception, match="scopes"):
        svc.keys.create_key("bad", scopes=["kb:manage"])
    # A widget key of an administrator's user is a member key: it would otherwise answer a public page's visitors
    # with an admin's clearance.
    boss = svc.directory.create_user("boss", role="admin")
    made, _ = svc.keys.create_key("boss widget", user_id=boss.id, scopes=["apps:support"])
    assert made.role == "member"
    with pytest.raises(Exception, match="cannot be an admin key"):
        svc.keys.create_key("admin widget", user_id=boss.id, role="admin", scopes=["apps:support"])


def test_widget_script_and_cors_allow_list(api: TestClient) -> None:
    js = api.get("/widget.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", js.text)
    assert "textContent" in js.text
    pre = api.options("/v1/apps/support/sessions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in pre.headers["access-control-allow-headers"]
    r = api.post("/v1/apps/support/sessions", json={}, headers={"Origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    evil = api.options("/v1/apps/support/sessions", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers
    other = api.get("/v1/models", headers={"Origin": ORIGIN})  # only the support routes are cross-origin
    assert "access-control-allow-origin" not in other.headers
    # The script is public for 5 minutes: every answer says it varies by Origin, or a shared cache would hand the
    # one without the CORS header (a same-origin fetch, another site's) to an allowed page.
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": ORIGIN}):
        assert api.get("/widget.js", headers=headers).headers.get("vary") == "Origin", headers
    assert "vary" not in api.get("/v1/models", headers={"Origin": ORIGIN}).headers


def test_widget_origins_must_be_web_origins() -> None:
    from inhouse.config import AppsSettings

    assert AppsSettings(widget_origins=["https://shop.example", "http://localhost:3000/"]).widget_origins
    for bad in ("*", "null", "https://shop.example/page", "shop.example", "ftp://shop.example"):
        with pytest.raises(ValueError, match="not a web origin"):
            AppsSettings(widget_origins=[bad])


def test_rules_read_from_the_real_support_documents(eval_corpus: Path) -> None:
    from inhouse.apps.support.rules import check_message, parse_rules

    en = (eval_corpus / "support" / "customer-faq.md").read_text(encoding="utf-8")
    zh = (eval_corpus / "zh" / "customer-service-kb.md").read_text(encoding="utf-8")
    for docs in ([("en", en)], [("zh", zh)]):
        rules = parse_rules(docs)
        assert rules.refund_threshold is not None and rules.currency == "CNY"
        limit = rules.refund_threshold
        above = check_message(f"I need a refund of {limit + 1:.0f} CNY", rules)
        assert above is not None and above.reason == "refund_threshold"
        assert check_message(f"I need a refund of {limit - 1:.0f} CNY", rules) is None
