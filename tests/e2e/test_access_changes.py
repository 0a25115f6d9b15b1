"""Access changes over real HTTP take effect on the very next request: revoked keys, removed group
members, disabled users, demoted admins; per-key quotas answer 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from live_server import FAKE_MODEL, LiveServer, run_live_server

CHAT = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "data") as s:
        yield s


def client(server: LiveServer, secret: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)


def made(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


def test_changes_apply_on_the_next_request(server: LiveServer) -> None:
    with client(server, server.admin_key) as admin:
        alice = made(admin.post("/v1/admin/users", json={"name": "alice", "role": "admin"}))
        fin = made(admin.post("/v1/admin/groups", json={"name": "finance"}))
        made(admin.put(f"/v1/admin/groups/{fin['id']}/members/{alice['id']}"))
        key = made(admin.post("/v1/admin/keys", json={"name": "laptop", "user_id": alice["id"]}))
        with client(server, key["secret"]) as a:
            assert a.get("/v1/me").json()["groups"] == ["finance"]
            made(admin.delete(f"/v1/admin/groups/{fin['id']}/members/{alice['id']}"))
            assert a.get("/v1/me").json()["groups"] == []
            assert a.get("/v1/admin/users").status_code == 200
            made(admin.patch(f"/v1/admin/users/{alice['id']}", json={"role": "member"}))
            assert a.get("/v1/admin/users").status_code == 403
            assert a.post("/v1/chat/completions", json=CHAT).status_code == 200
            made(admin.patch(f"/v1/admin/users/{alice['id']}", json={"disabled": True}))
            r = a.get("/v1/me")
            assert r.status_code == 401 and r.json()["error"]["code"] == "user_disabled"
            made(admin.patch(f"/v1/admin/users/{alice['id']}", json={"disabled": False}))
            assert a.get("/v1/me").status_code == 200
            made(admin.delete(f"/v1/admin/keys/{key['id']}"))
            r = a.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"


def test_member_revokes_own_key_and_it_stops_at_once(server: LiveServer) -> None:
    with client(server, server.admin_key) as admin:
        bob = made(admin.post("/v1/admin/users", json={"name": "bob"}))
        first = made(admin.post("/v1/admin/keys", json={"name": "b1", "user_id": bob["id"]}))
    with client(server, first["secret"]) as b:
        second = made(b.post("/v1/keys", json={"name": "b2"}))
        with client(server, second["secret"]) as b2:
            assert b2.get("/v1/models").status_code == 200
            made(b.delete(f"/v1/keys/{second['id']}"))
            assert b2.get("/v1/models").status_code == 401


def test_quota_429_with_retry_after_through_the_openai_client(server: LiveServer) -> None:
    with client(server, server.admin_key) as admin:
        carol = made(admin.post("/v1/admin/users", json={"name": "carol"}))
        key = made(admin.post("/v1/admin/keys", json={"name": "c", "user_id": carol["id"], "rpm_limit": 2,
                                                      "tokens_per_day_limit": 100_000}))
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=key["secret"], max_retries=0, timeout=10)
    for _ in range(2):
        oa.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.RateLimitError) as e:
        oa.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    assert e.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    with client(server, key["secret"]) as c:
        quota = c.get("/v1/me").json()["quota"]
    assert quota["requests_today"] == 2 and quota["tokens_used_today"] > 0 and quota["rpm_limit"] == 2
