"""/v1/conversations: the caller's own history; other people's ids answer 404 and change nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import route_actions


def _app(services: Any) -> Any:
    return build_app(services)  # build_services gives every app a ConversationStore


def test_routes_declare_their_actions(services: Any) -> None:
    table = route_actions(_app(services))
    assert table[("GET", "/v1/conversations")] == ["conversations:read"]
    assert table[("POST", "/v1/conversations")] == ["conversations:write"]
    assert table[("PUT", "/v1/conversations/{conversation_id}")] == ["conversations:write"]
    assert table[("DELETE", "/v1/conversations/{conversation_id}")] == ["conversations:write"]


def test_crud_and_isolation(services: Any) -> None:
    app = _app(services)
    _, other = services.keys.create_key("someone else")
    mine = {"Authorization": f"Bearer {services.member_key}"}
    theirs = {"Authorization": f"Bearer {other}"}
    with TestClient(app) as c:
        assert c.get("/v1/conversations").status_code == 401
        r = c.post("/v1/conversations", headers=mine, json={
            "title": "Travel", "model": "fake-model",
            "messages": [{"role": "user", "content": "meal allowance?"},
                         {"role": "assistant", "content": "180 CNY [1]", "citations": [{"index": 1, "title": "T"}]}]})
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert c.get("/v1/conversations", headers=mine).json()["data"][0]["message_count"] == 2
        r = c.put(f"/v1/conversations/{cid}", headers=mine, json={"title": "Travel policy"})
        assert r.json()["title"] == "Travel policy" and len(r.json()["messages"]) == 2
        # Someone else: 404 for read and write, and nothing changes.
        for method, body in (("GET", None), ("PUT", {"title": "pwned"}), ("DELETE", None)):
            resp = c.request(method, f"/v1/conversations/{cid}", headers=theirs, json=body)
            assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found", resp.text
        assert c.get("/v1/conversations", headers=theirs).json()["data"] == []
        assert c.get(f"/v1/conversations/{cid}", headers=mine).json()["title"] == "Travel policy"
        # Bad input: the one error shape.
        bad = c.post("/v1/conversations", headers=mine, json={"messages": [{"role": "system", "content": "x"}]})
        assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "code", "param"}
        assert c.delete(f"/v1/conversations/{cid}", headers=mine).json()["deleted"] is True
        assert c.get(f"/v1/conversations/{cid}", headers=mine).status_code == 404
