"""IDOR: every route with an id in its path, called by a member of another department with that
department's ids, read and write, answers 404 and changes nothing.

The routes are enumerated from the running app: a route with a path parameter that is missing from
``ROUTES`` (or a parameter name missing from the victim table) fails the test, so new routes are covered
(or consciously added) automatically. Runs over HTTP against the real wiring (bootstrap + uvicorn).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from live_server import LiveServer, run_live_server

NO_BODY: dict[str, Any] = {}
UPLOAD: dict[str, Any] = {"files": {"file": ("idor.txt", b"written by another department", "text/plain")}}
# (method, path template) → httpx arguments for the call. Writes carry a valid body, so that a missing
# check would really change something (and validation cannot answer first).
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/admin/users/{user_id}"): NO_BODY,
    ("PATCH", "/v1/admin/users/{user_id}"): {"json": {"role": "admin", "disabled": True}},
    ("DELETE", "/v1/admin/users/{user_id}"): NO_BODY,
    ("GET", "/v1/admin/groups/{group_id}"): NO_BODY,
    ("DELETE", "/v1/admin/groups/{group_id}"): NO_BODY,
    ("PUT", "/v1/admin/groups/{group_id}/members/{user_id}"): NO_BODY,
    ("DELETE", "/v1/admin/groups/{group_id}/members/{user_id}"): NO_BODY,
    ("GET", "/v1/admin/keys/{key_id}"): NO_BODY,
    ("PATCH", "/v1/admin/keys/{key_id}"): {"json": {"rpm_limit": 1}},
    ("DELETE", "/v1/admin/keys/{key_id}"): NO_BODY,
    ("GET", "/v1/keys/{key_id}"): NO_BODY,
    ("DELETE", "/v1/keys/{key_id}"): NO_BODY,
    ("GET", "/v1/collections/{collection_id}"): NO_BODY,
    ("PATCH", "/v1/collections/{collection_id}"): {"json": {"description": "x", "access": {"groups": ["legal"]}}},
    ("DELETE", "/v1/collections/{collection_id}"): NO_BODY,
    ("POST", "/v1/collections/{collection_id}/documents"): UPLOAD,
    ("GET", "/v1/collections/{collection_id}/documents"): NO_BODY,
    ("GET", "/v1/collections/{collection_id}/documents/{document_id}"): NO_BODY,
    ("GET", "/v1/collections/{collection_id}/documents/{document_id}/content"): NO_BODY,
    ("PATCH", "/v1/collections/{collection_id}/documents/{document_id}"): {"json": {"label": "public"}},
    ("DELETE", "/v1/collections/{collection_id}/documents/{document_id}"): NO_BODY,
    ("GET", "/v1/conversations/{conversation_id}"): NO_BODY,
    ("PUT", "/v1/conversations/{conversation_id}"): {"json": {"title": "pwned"}},
    ("DELETE", "/v1/conversations/{conversation_id}"): NO_BODY,
    ("GET", "/v1/responses/{response_id}"): NO_BODY,
    ("GET", "/v1/responses/{response_id}/input_items"): NO_BODY,
    ("DELETE", "/v1/responses/{response_id}"): NO_BODY,
    ("GET", "/v1/apps/support/sessions/{session_id}"): NO_BODY,
    ("POST", "/v1/apps/support/sessions/{session_id}/messages"): {"json": {"content": "I want a human"}},
    ("GET", "/v1/apps/schedule/events/{event_id}"): NO_BODY,
    ("PATCH", "/v1/apps/schedule/events/{event_id}"): {"json": {"title": "pwned", "status": "cancelled"}},
    ("DELETE", "/v1/apps/schedule/events/{event_id}"): NO_BODY,
}
# Path parameters that name no one's resource: the web UI's static files, and the model catalogue (every caller
# allowed models:read sees all of it; an unknown id is the same 404 for everyone).
NOT_IDS = ("/static/{name}", "/v1/models/{model_id:path}")
# Resources of one person (chat history): not even an admin reaches another person's.
PERSONAL = ("{conversation_id}", "{event_id}", "{response_id}")
# Resources the victim's department shares with the whole group: a colleague from the same department may
# legitimately reach them, so only the other department is tested there.
DEPARTMENTAL = ("{collection_id}",)
PARAMS = ("user_id", "group_id", "key_id", "collection_id", "document_id", "conversation_id", "session_id",
          "event_id", "response_id")
# Ids an attacker might try that exist nowhere, or try to break out of the lookup.
ODD_IDS = ["usr_0000000000000000", "' OR 1=1 --", "%00", "key_%25", "x" * 300]


@dataclass
class World:
    server: LiveServer
    victim: dict[str, str]  # path parameter name → the finance department's id
    attacker: dict[str, str]  # the legal department member's own ids
    attacker_key: str
    finance_member_key: str

    def client(self, secret: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[World]:
    """The server on either store (``store_url``): every id route is tried on SQLite and on PostgreSQL."""
    with run_live_server(tmp_path_factory.mktemp("idor"), settings={"kb": {"embedder": "fake"},
                                                                     "store": {"url": store_url}}) as server:
        admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                             timeout=10)

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = admin.post(path, json=body)
            assert r.status_code == 201, r.text
            out: dict[str, Any] = r.json()
            return out

        ids: dict[str, dict[str, str]] = {}
        docs: dict[str, dict[str, str]] = {}
        secrets: dict[str, str] = {}
        for dept, people in (("finance", ["alice", "bob"]), ("legal", ["carol", "dan"])):
            group = post("/v1/admin/groups", {"name": dept})
            for person in people:
                user = post("/v1/admin/users", {"name": person})
                assert admin.put(f"/v1/admin/groups/{group['id']}/members/{user['id']}").status_code == 200
                key = post("/v1/admin/keys", {"name": f"{person} laptop", "user_id": user["id"]})
                ids[person] = {"user_id": user["id"], "group_id": group["id"], "key_id": key["id"]}
                secrets[person] = key["secret"]
            col = post("/v1/collections", {"name": f"{dept}-docs", "access": {"groups": [dept]}})
            r = admin.post(f"/v1/collections/{col['id']}/documents",
                           files={"file": (f"{dept}.txt", f"{dept} quarterly figures".encode(), "text/plain")})
            assert r.status_code == 201, r.text
            docs[dept] = {"collection_id": col["id"], "document_id": r.json()["id"]}
        for person in ids:
            ids[person].update(docs["finance" if person in ("alice", "bob") else "legal"])
            r = httpx.post(f"{server.url}/v1/conversations", headers={"Authorization": f"Bearer {secrets[person]}"},
                           json={"title": f"{person}'s chat", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 201, r.text
            ids[person]["conversation_id"] = r.json()["id"]
            r = httpx.post(f"{server.url}/v1/responses", headers={"Authorization": f"Bearer {secrets[person]}"},
                           json={"model": "fake-model", "input": f"{person} asks"})
            assert r.status_code == 200, r.text
            ids[person]["response_id"] = r.json()["id"]
            mine = {"Authorization": f"Bearer {secrets[person]}"}
            r = httpx.post(f"{server.url}/v1/apps/support/sessions", headers=mine,
                           json={"collections": [f"{'finance' if person in ('alice', 'bob') else 'legal'}-docs"]})
            assert r.status_code == 201, r.text
            ids[person]["session_id"] = r.json()["id"]
            r = httpx.post(f"{server.url}/v1/apps/schedule/events", headers=mine,
                           json={"title": f"{person}'s 1:1", "start": "2030-03-04 10:00", "duration_minutes": 30})
            assert r.status_code == 201, r.text
            ids[person]["event_id"] = r.json()["event"]["id"]
        admin.close()
        yield World(server, victim=ids["alice"], attacker=ids["carol"], attacker_key=secrets["carol"],
                    finance_member_key=secrets["bob"])


# Columns any authenticated request may write (bookkeeping, not state an attacker could abuse).
BOOKKEEPING = {"last_used_at"}


# What the attempts themselves may write: the audit trail, and the requests/minute windows (PostgreSQL).
NOT_STATE = {"audit.db", "audit_records", "audit_head", "request_windows"}


def snapshot(world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the app's store holds (the SQLite files of the data directory, or the PostgreSQL
    database of ``store.url``), except the audit log (which records the attempts themselves) and bookkeeping
    columns. Keys: ``file:table``, or ``pg:table``."""
    settings = world.server.services.settings
    if settings.store.url:
        return _snapshot_postgres(settings.store.url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for path in sorted(settings.data_dir.rglob("*.db")):
        if path.name in NOT_STATE:
            continue
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'")]
            for table in tables:
                cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")') if r[1] not in BOOKKEEPING]
                sel = ", ".join(f'"{c}"' for c in cols)
                out[f"{path.name}:{table}"] = sorted(
                    (tuple(r) for r in con.execute(f'SELECT {sel} FROM "{table}"')), key=repr)
        finally:
            con.close()
    return out


def _snapshot_postgres(url: str) -> dict[str, list[tuple[Any, ...]]]:
    from inhouse.store.postgres.database import PostgresDatabase

    db = PostgresDatabase(url, max_size=1)
    try:
        out: dict[str, list[tuple[Any, ...]]] = {}
        tables = [r["t"] for r in db.query("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")]
        for table in sorted(t for t in tables if t not in NOT_STATE):
            cols = [r["c"] for r in db.query("SELECT column_name AS c FROM information_schema.columns WHERE "
                                             "table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                                             (table,)) if r["c"] not in BOOKKEEPING]
            sel = ", ".join(f'"{c}"' for c in cols)
            out[f"pg:{table}"] = sorted((tuple(r.values()) for r in db.query(f'SELECT {sel} FROM "{table}"')),
                                        key=repr)
        return out
    finally:
        db.close()


def id_routes(world: World) -> list[tuple[str, str]]:
    found = []
    for route in world.server.app.routes:  # the app the server runs
        if isinstance(route, APIRoute) and "{" in route.path and route.path not in NOT_IDS:
            found += [(m, route.path) for m in sorted(route.methods or ())]
    return found


def fill(path: str, ids: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        assert name in ids, f"no id for path parameter {{{name}}} of {path}: add it to the IDOR test"
        return ids[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", one, path)


def assert_error_404(r: httpx.Response, where: str) -> None:
    assert r.status_code == 404, f"{where}: {r.status_code} {r.text}"
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, where


def test_every_id_route_is_in_the_table(world: World) -> None:
    found = id_routes(world)
    missing = [r for r in found if r not in ROUTES]
    assert not missing, f"routes with a path id not covered by the IDOR test: {missing}"
    assert set(ROUTES) <= set(found), f"stale entries: {set(ROUTES) - set(found)}"


@pytest.mark.parametrize("attacker", ["legal member", "finance colleague"])
def test_other_department_ids_answer_404_and_change_nothing(world: World, attacker: str) -> None:
    secret = world.attacker_key if attacker == "legal member" else world.finance_member_key
    before = snapshot(world)
    assert (before.get("inhouse.db:users") or before.get("pg:users")) and \
        (before.get("kb.db:kb_documents") or before.get("pg:kb_documents")), "the snapshot must see the data"
    with world.client(secret) as c:
        for method, path in id_routes(world):
            if attacker == "finance colleague" and any(p in path for p in DEPARTMENTAL):
                continue
            url = fill(path, world.victim)
            assert_error_404(c.request(method, url, **ROUTES[(method, path)]), f"{attacker}: {method} {url}")
            for odd in ODD_IDS:
                url = fill(path, dict.fromkeys(PARAMS, odd))
                r = c.request(method, url, **ROUTES[(method, path)])
                assert r.status_code == 404, f"{method} {url}: {r.status_code}"
    assert snapshot(world) == before


def test_the_same_routes_work_for_their_rightful_callers(world: World) -> None:
    """Positive control: the 404s above come from the access check, not from broken routes."""
    with world.client(world.server.admin_key) as admin:
        for method, path in id_routes(world):
            if method == "GET" and not any(p in path for p in PERSONAL):
                url = fill(path, world.victim)
                assert admin.get(url).status_code == 200, url
        for odd in ODD_IDS:  # an admin probing odd ids gets 404 as well, never 5xx
            assert admin.get(f"/v1/admin/users/{odd}").status_code == 404
            assert admin.delete(f"/v1/admin/keys/{odd}").status_code == 404
    with world.client(world.attacker_key) as own:
        assert own.get(f"/v1/keys/{world.attacker['key_id']}").status_code == 200
        assert own.get(fill("/v1/conversations/{conversation_id}", world.attacker)).status_code == 200
        assert own.get(fill("/v1/responses/{response_id}", world.attacker)).status_code == 200
        assert own.get(fill("/v1/apps/support/sessions/{session_id}", world.attacker)).status_code == 200
        assert own.get(fill("/v1/apps/schedule/events/{event_id}", world.attacker)).status_code == 200
        for path in ("/v1/collections/{collection_id}", "/v1/collections/{collection_id}/documents/{document_id}"):
            assert own.get(fill(path, world.attacker)).status_code == 200, path
