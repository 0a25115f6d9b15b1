"""Identity over HTTP, in process: /v1/admin/…, /v1/me, /v1/keys, quotas on model routes."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import route_actions
from inhouse.governance import events

MSG = [{"role": "user", "content": "hi"}]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_routes_declare_their_actions(services: Any) -> None:
    table = route_actions(build_app(services))
    expected = {
        ("GET", "/v1/admin/users"): "users:read", ("POST", "/v1/admin/users"): "users:manage",
        ("GET", "/v1/admin/users/{user_id}"): "users:read", ("PATCH", "/v1/admin/users/{user_id}"): "users:manage",
        ("DELETE", "/v1/admin/users/{user_id}"): "users:manage",
        ("GET", "/v1/admin/groups"): "groups:read", ("POST", "/v1/admin/groups"): "groups:manage",
        ("GET", "/v1/admin/groups/{group_id}"): "groups:read",
        ("DELETE", "/v1/admin/groups/{group_id}"): "groups:manage",
        ("PUT", "/v1/admin/groups/{group_id}/members/{user_id}"): "groups:manage",
        ("DELETE", "/v1/admin/groups/{group_id}/members/{user_id}"): "groups:manage",
        ("GET", "/v1/admin/keys"): "keys:read", ("POST", "/v1/admin/keys"): "keys:manage",
        ("GET", "/v1/admin/keys/{key_id}"): "keys:read", ("PATCH", "/v1/admin/keys/{key_id}"): "keys:manage",
        ("DELETE", "/v1/admin/keys/{key_id}"): "keys:manage",
        ("GET", "/v1/me"): "me:read", ("GET", "/v1/keys"): "own_keys:read", ("POST", "/v1/keys"): "own_keys:manage",
        ("GET", "/v1/keys/{key_id}"): "own_keys:read", ("DELETE", "/v1/keys/{key_id}"): "own_keys:manage",
    }
    for route, action in expected.items():
        assert table[route] == [action], route


def test_admin_manages_users_groups_and_keys(services: Any) -> None:
    sink = services.audit_sink
    with TestClient(build_app(services), headers=bearer(services.admin_key)) as c:
        admin_key_id = c.get("/v1/me").json()["key_id"]
        sink.events.clear()
        r = c.post("/v1/admin/users", json={"name": "alice", "display_name": "Alice Li"})
        assert r.status_code == 201, r.text
        alice = r.json()
        assert (alice["object"], alice["role"], alice["groups"]) == ("user", "member", [])
        assert c.post("/v1/admin/users", json={"name": "alice"}).status_code == 409
        assert c.post("/v1/admin/users", json={"name": "x", "role": "owner"}).status_code == 400
        assert c.post("/v1/admin/users", json={"name": "x", "extra": 1}).json()["error"]["code"] == "invalid_request"
        fin = c.post("/v1/admin/groups", json={"name": "finance"}).json()
        r = c.put(f"/v1/admin/groups/{fin['id']}/members/{alice['id']}")
        assert r.status_code == 200 and r.json()["members"] == [{"id": alice["id"], "name": "alice"}]
        assert c.get(f"/v1/admin/users/{alice['id']}").json()["groups"] == ["finance"]
        assert c.patch(f"/v1/admin/users/{alice['id']}", json={"role": "admin"}).json()["role"] == "admin"
        created = c.post("/v1/admin/keys", json={"name": "alice laptop", "user_id": alice["id"],
                                                 "rpm_limit": 30}).json()
        assert created["secret"].startswith(created["prefix"]) and created["role"] == "admin"
        listed = c.get("/v1/admin/keys", params={"user_id": alice["id"]}).json()["data"]
        assert [k["id"] for k in listed] == [created["id"]] and "secret" not in listed[0]
        assert created["secret"] not in c.get("/v1/admin/keys").text
        r = c.patch(f"/v1/admin/keys/{created['id']}", json={"tokens_per_day_limit": 1000})
        assert (r.json()["rpm_limit"], r.json()["tokens_per_day_limit"]) == (30, 1000)
        r = c.patch(f"/v1/admin/keys/{created['id']}", json={"rpm_limit": None})
        assert (r.json()["rpm_limit"], r.json()["tokens_per_day_limit"]) == (None, 1000)
        me = c.get("/v1/me", headers=bearer(created["secret"])).json()
        assert (me["user"]["name"], me["groups"], me["role"]) == ("alice", ["finance"], "admin")
        assert c.delete(f"/v1/admin/groups/{fin['id']}/members/{alice['id']}").json()["members"] == []
        assert c.delete(f"/v1/admin/groups/{fin['id']}/members/{alice['id']}").status_code == 404
        assert c.delete(f"/v1/admin/keys/{created['id']}").json()["revoked_at"] is not None
        assert c.get("/v1/me", headers=bearer(created["secret"])).status_code == 401
        assert c.delete(f"/v1/admin/groups/{fin['id']}").json() == {"id": fin["id"], "object": "group",
                                                                  "deleted": True}
        assert c.delete(f"/v1/admin/users/{alice['id']}").status_code == 200
        assert c.get(f"/v1/admin/users/{alice['id']}").status_code == 404
        assert c.get("/v1/admin/users").json()["data"] == []
    assert [e.action for e in sink.events] == [
        events.USER_CREATED, events.GROUP_CREATED, events.MEMBERSHIP_ADDED, events.USER_UPDATED, events.KEY_CREATED,
        events.KEY_UPDATED, events.KEY_UPDATED, events.MEMBERSHIP_REMOVED, events.KEY_REVOKED, events.GROUP_DELETED,
        events.USER_DELETED,
    ]
    assert {e.actor_key_id for e in sink.events} == {admin_key_id}


def test_member_is_refused_admin_routes(services: Any) -> None:
    user = services.directory.create_user("alice")
    with TestClient(build_app(services), headers=bearer(services.member_key)) as c:
        for method, path in [("GET", "/v1/admin/users"), ("POST", "/v1/admin/users"), ("GET", "/v1/admin/keys"),
                             ("POST", "/v1/admin/groups")]:
            r = c.request(method, path, json={"name": "x"})
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", (method, path)
        # With an id in the path: 404 whatever the id, so ids cannot be probed.
        for uid in (user.id, "usr_doesnotexist"):
            r = c.get(f"/v1/admin/users/{uid}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            assert c.patch(f"/v1/admin/users/{uid}", json={"role": "admin"}).status_code == 404
    assert services.directory.get_user(user.id).role == "member"


def test_me_and_own_keys(services: Any) -> None:
    d, keys = services.directory, services.keys
    alice, bob = d.create_user("alice"), d.create_user("bob")
    g = d.create_group("finance")
    d.add_member(g.id, alice.id)
    _, a_secret = keys.create_key("a1", user_id=alice.id)
    b_rec, _ = keys.create_key("b1", user_id=bob.id)
    with TestClient(build_app(services), headers=bearer(a_secret)) as c:
        me = c.get("/v1/me").json()
        assert (me["user"]["id"], me["groups"], me["role"], me["key"]["name"]) == (alice.id, ["finance"], "member",
                                                                                   "a1")
        assert me["quota"] == {"rpm_limit": 0, "tokens_per_day_limit": 0, "tokens_used_today": 0,
                               "requests_today": 0}
        r = c.post("/v1/keys", json={"name": "a2"})
        assert r.status_code == 201 and r.json()["user_id"] == alice.id and r.json()["role"] == "member"
        a2 = r.json()
        assert c.get("/v1/me", headers=bearer(a2["secret"])).json()["user"]["id"] == alice.id
        assert sorted(k["name"] for k in c.get("/v1/keys").json()["data"]) == ["a1", "a2"]
        assert c.post("/v1/keys", json={"name": "x", "role": "admin"}).status_code == 403
        assert c.get(f"/v1/keys/{a2['id']}").json()["id"] == a2["id"]
        for method in ("GET", "DELETE"):
            r = c.request(method, f"/v1/keys/{b_rec.id}")
            assert r.status_code == 404 and r.json()["error"]["message"] == f"No API key with id '{b_rec.id}'."
        assert c.request("GET", "/v1/keys/key_0000").json()["error"]["message"] == "No API key with id 'key_0000'."
        assert c.delete(f"/v1/keys/{a2['id']}").json()["revoked_at"] is not None
    assert keys.get(b_rec.id).revoked_at is None
    # A key bound to no user sees itself only and cannot mint keys.
    with TestClient(build_app(services), headers=bearer(services.member_key)) as c:
        assert [k["name"] for k in c.get("/v1/keys").json()["data"]] == ["member"]
        assert c.post("/v1/keys", json={"name": "x"}).status_code == 403
        assert c.get("/v1/me").json()["user"] is None


def test_a_key_made_by_a_key_is_at_most_that_key(services: Any) -> None:
    """A key an admin limited minted itself an unlimited one through /v1/keys (no limits, no expiry)."""
    carol = services.directory.create_user("carol")
    soon = time.time() + 3600
    _, limited = services.keys.create_key("limited", user_id=carol.id, rpm_limit=50, tokens_per_day_limit=500,
                                          expires_at=soon)
    with TestClient(build_app(services), headers=bearer(limited)) as c:
        r = c.post("/v1/keys", json={"name": "mine"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["rpm_limit"], made["tokens_per_day_limit"], made["expires_at"]) == (50, 500, soon)
        sooner = c.post("/v1/keys", json={"name": "n", "expires_at": soon - 60})
        assert sooner.status_code == 201 and sooner.json()["expires_at"] == soon - 60, sooner.text
        late = c.post("/v1/keys", json={"name": "late", "expires_at": soon + 60})
        assert late.status_code == 403 and late.json()["error"]["param"] == "expires_at", late.text


def test_revoking_a_spent_key_and_minting_another_does_not_renew_the_budget(make_services: Any) -> None:
    """A spent key minted a fresh one and revoked itself, over and over: 366 tokens in a day on a 20-token budget.
    The keys revoked today still count toward max_keys_per_user, so one user's keys get at most that many budgets."""
    services = make_services(governance={"max_keys_per_user": 2})
    carol = services.directory.create_user("carol")
    first, secret = services.keys.create_key("limited", user_id=carol.id, tokens_per_day_limit=20)
    with TestClient(build_app(services)) as c:
        r = c.post("/v1/keys", json={"name": "second"}, headers=bearer(secret))
        assert r.status_code == 201, r.text
        assert c.delete(f"/v1/keys/{first.id}", headers=bearer(secret)).status_code == 200
        third = c.post("/v1/keys", json={"name": "third"}, headers=bearer(r.json()["secret"]))
        assert third.status_code == 409 and "revoked key counts until midnight UTC" in third.text, third.text
    # An administrator can still make one (a key lost or leaked), and the count starts again tomorrow.
    services.keys.create_key("from the admin", user_id=carol.id)


def test_member_key_of_an_admin_cannot_mint_an_admin_key(services: Any) -> None:
    boss = services.directory.create_user("boss", role="admin")
    _, narrow = services.keys.create_key("narrow", user_id=boss.id, role="member")
    with TestClient(build_app(services), headers=bearer(narrow)) as c:
        r = c.post("/v1/keys", json={"name": "x"})
        assert r.status_code == 201 and r.json()["role"] == "member"
        assert c.post("/v1/keys", json={"name": "y", "role": "admin"}).status_code == 403
        assert c.get("/v1/admin/users").status_code == 403


def test_rpm_quota_answers_429_with_retry_after(make_services: Any) -> None:
    services = make_services(governance={"default_rpm": 2})
    with TestClient(build_app(services), headers=bearer(services.member_key)) as c:
        body = {"model": "fake-model", "messages": MSG, "max_tokens": 2}
        assert c.post("/v1/chat/completions", json=body).status_code == 200
        assert c.post("/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 2}).status_code \
            == 200
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert c.get("/v1/models").status_code == 200  # not metered
        admin = c.post("/v1/chat/completions", json=body, headers=bearer(services.admin_key))
        assert admin.status_code == 200  # quotas are per key


def test_tokens_are_counted_for_plain_and_streamed_requests(make_services: Any) -> None:
    services = make_services()
    rec, secret = services.keys.create_key("metered", tokens_per_day_limit=10_000)
    with TestClient(build_app(services), headers=bearer(secret)) as c:
        r = c.post("/v1/chat/completions", json={"model": "fake-model", "messages": MSG, "max_tokens": 3})
        total = r.json()["usage"]["total_tokens"]
        assert services.quotas.status(rec.id).tokens_used_today == total > 0
        with c.stream("POST", "/v1/chat/completions", json={"model": "fake-model", "messages": MSG,
                                                            "max_tokens": 3, "stream": True}) as s:
            assert s.status_code == 200
            "".join(s.iter_text())
        used = services.quotas.status(rec.id)
        assert used.requests_today == 2 and used.tokens_used_today > total
        services.keys.set_limits(rec.id, rpm_limit=None, tokens_per_day_limit=used.tokens_used_today)
        r = c.post("/v1/chat/completions", json={"model": "fake-model", "messages": MSG, "max_tokens": 3})
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
        assert int(r.headers["retry-after"]) >= 1


def test_credentials_are_checked_before_the_body(make_services: Any) -> None:
    """FastAPI decodes JSON before dependencies run: the 401/403/404 still comes first, and a request with
    a bad body is metered once, not twice."""
    services = make_services(governance={"default_rpm": 2})
    bad = {"content": b"{not json", "headers": {"content-type": "application/json"}}
    with TestClient(build_app(services)) as c:
        assert c.post("/v1/admin/users", **bad).status_code == 401  # type: ignore[arg-type]
        r = c.post("/v1/chat/completions", headers=bearer("ih_nope"), content=b"{")
        assert r.status_code == 401
        member = bearer(services.member_key)
        assert c.post("/v1/admin/users", content=b"{", headers=member).status_code == 403
        assert c.patch("/v1/admin/users/usr_x", content=b"{", headers=member).status_code == 404
        assert c.post("/v1/chat/completions", json={"model": 1}, headers=member).status_code == 400
        assert c.post("/v1/chat/completions", content=b"{", headers=member).status_code == 400
        assert c.post("/v1/chat/completions", json={"model": "fake-model", "messages": MSG, "max_tokens": 1},
                      headers=member).status_code == 429  # two bad requests counted, once each
