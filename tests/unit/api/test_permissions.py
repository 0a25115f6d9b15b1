"""Meta-test: every route declares exactly one permission action, and the actions are enforced."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from inhouse.api.app import build_app
from inhouse.api.auth import ACTIONS, require, route_actions


def test_every_route_declares_one_known_action(app: FastAPI) -> None:
    table = route_actions(app)
    assert table, "no routes found"
    for (method, path), actions in table.items():
        assert len(actions) == 1, f"{method} {path} declares {actions}"
        assert actions[0] in ACTIONS, f"{method} {path}: unknown action {actions[0]}"
    # Nothing reaches the app around the permission system (docs, static files, plain Starlette routes).
    plain = [r for r in app.routes if isinstance(r, Route) and (m := r.methods) is not None
             and ("GET", r.path) not in table and not any((x, r.path) in table for x in m)]
    assert not plain, f"routes without a declared permission: {[r.path for r in plain]}"


def test_expected_routes_and_actions(app: FastAPI) -> None:
    table = route_actions(app)
    assert table[("GET", "/health")] == ["health:read"]
    assert table[("GET", "/ready")] == ["health:read"]
    assert table[("GET", "/v1/models")] == ["models:read"]
    assert table[("POST", "/v1/chat/completions")] == ["chat:create"]
    assert table[("POST", "/v1/completions")] == ["completions:create"]
    assert table[("GET", "/metrics")] == ["metrics:read"]


def test_admin_actions_need_admin(services: Any) -> None:
    app = build_app(services)

    @app.get("/admin-only", dependencies=[Depends(require("keys:manage"))])
    async def admin_only() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app) as c:
        member = c.get("/admin-only", headers={"Authorization": f"Bearer {services.member_key}"})
        assert member.status_code == 403
        assert member.json()["error"]["type"] == "permission_error"
        admin = c.get("/admin-only", headers={"Authorization": f"Bearer {services.admin_key}"})
        assert admin.status_code == 200


def test_key_in_x_api_key_header(app: FastAPI, services: Any) -> None:
    with TestClient(app) as c:
        assert c.get("/v1/models", headers={"x-api-key": services.member_key}).status_code == 200
        assert c.get("/v1/models").status_code == 401
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 200


def test_revoked_key_is_refused(app: FastAPI, services: Any) -> None:
    rec, secret = services.keys.create_key("temp")
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as c:
        assert c.get("/v1/models").status_code == 200
        services.keys.revoke(rec.id)
        resp = c.get("/v1/models")
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "revoked_api_key"


def test_unauthenticated_mode_is_anonymous_admin(make_services: Any) -> None:
    s = make_services(server={"allow_unauthenticated": True})
    app = build_app(s)

    @app.get("/admin-only", dependencies=[Depends(require("keys:manage"))])
    async def admin_only() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "Bearer sk-no-key-required"}).status_code == 200
        assert c.get("/admin-only").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
            assert c.get("/v1/models", headers={"Host": host}).status_code == 200, host
        # The same origin's page (the web UI) and clients that are no browser may change things.
        assert c.post("/v1/admin/users", json={"name": "ana"}).status_code == 201
        assert c.post("/v1/admin/users", json={"name": "ben"}, headers={
            "Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}).status_code == 201


def test_unauthenticated_mode_refuses_other_hosts_and_other_sites_pages(make_services: Any) -> None:
    """Loopback was the only guard: a page whose domain was rebound to 127.0.0.1 created admin keys and read them,
    and a cross-site form (no CORS preflight) uploaded documents, as the anonymous admin."""
    s = make_services(server={"allow_unauthenticated": True})
    with TestClient(build_app(s), base_url="http://127.0.0.1:8000") as c:
        rebound = c.post("/v1/admin/keys", json={"name": "x"}, headers={"Host": "rebind.evil.example:8000"})
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_local", rebound.text
        assert c.get("/v1/admin/keys", headers={"Host": "rebind.evil.example:8000"}).status_code == 403
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                        {"Origin": "http://localhost:9999"}):
            r = c.post("/v1/collections", json={"name": "poisoned"}, headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_request", (headers, r.text)
        assert c.get("/v1/collections").json()["data"] == []


def test_metrics_auth(make_services: Any) -> None:
    private = make_services()
    with TestClient(build_app(private)) as c:
        assert c.get("/metrics").status_code == 401
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {private.member_key}"})
        assert ok.status_code == 200 and "inhouse_requests_total" in ok.text
    public = make_services(server={"metrics_public": True})
    with TestClient(build_app(public)) as c:
        assert c.get("/metrics").status_code == 200
