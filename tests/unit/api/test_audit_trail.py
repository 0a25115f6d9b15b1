"""The audit trail of the HTTP API: one record per request (plus a write-ahead record per generation),
one per security action, the admin audit routes, and "if the audit write fails, the action fails"."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.bootstrap import audited_loads
from inhouse.errors import AuditUnavailable
from inhouse.governance.audit import MODEL_LOADED, STARTED, AuditLog
from inhouse.governance.directory import UserDirectory
from inhouse.governance.identity import KeyStore
from inhouse.models.spec import ModelSpec
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.store.sqlite.governance import SqliteGovernanceStore

MODEL = "fake-model"  # the conftest's model
ServicesStandIn = Any  # tests/unit/conftest.py: the services build_services made
ServicesFactory = Any
MSG = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def audited(make_services: ServicesFactory) -> Iterator[ServicesStandIn]:
    s = make_services()
    # A log that starts empty: the setup's own records (the test keys, the model load) stay in the first one.
    # Security actions go to it, as build_services wires them.
    audit = open_sqlite_audit_log(s.settings.data_dir / "under-test" / "audit.db")
    governance = SqliteGovernanceStore(s.db)
    yield replace(s, audit=audit, keys=KeyStore(governance, audit=audit),
                  directory=UserDirectory(governance, audit=audit))
    audit.close()


def log_of(s: ServicesStandIn) -> AuditLog:
    audit: AuditLog = s.audit  # type: ignore[attr-defined]
    return audit


@pytest.fixture
def admin(audited: ServicesStandIn) -> Iterator[TestClient]:
    with TestClient(build_app(audited), headers={"Authorization": f"Bearer {audited.admin_key}"}) as c:
        yield c


def member_headers(s: ServicesStandIn) -> dict[str, str]:
    return {"Authorization": f"Bearer {s.member_key}"}


def test_a_chat_request_writes_a_started_and_a_final_record(audited: ServicesStandIn, admin: TestClient) -> None:
    resp = admin.post("/v1/chat/completions", json={"model": MODEL, "messages": MSG},
                      headers=member_headers(audited))
    assert resp.status_code == 200
    usage = resp.json()["usage"]
    started, final = log_of(audited).records()
    member_key = audited.keys.authenticate(audited.member_key).key_id
    for rec in (started, final):
        assert (rec.kind, rec.action, rec.model, rec.location) == ("request", "chat:create", MODEL, "local")
        assert rec.actor_key_id == member_key and rec.request_id == resp.json()["id"]
        assert rec.resource == "POST /v1/chat/completions"
    assert started.outcome == STARTED and final.outcome == "success"
    assert final.details == {"status": 200, "prompt_tokens": usage["prompt_tokens"],
                             "completion_tokens": usage["completion_tokens"]}


def test_a_stream_is_recorded_when_it_ends(audited: ServicesStandIn, admin: TestClient) -> None:
    body = {"model": MODEL, "messages": MSG, "stream": True}
    with admin.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        text = "".join(resp.iter_text())
    assert "[DONE]" in text
    started, final = log_of(audited).records()
    assert (started.outcome, final.outcome) == (STARTED, "success")
    assert final.details["completion_tokens"] > 0 and final.details["status"] == 200


def test_which_requests_are_recorded(audited: ServicesStandIn, admin: TestClient) -> None:
    assert admin.get("/v1/models").status_code == 200
    assert admin.get("/health").status_code == 200  # probes and scrapes carry no content: not recorded
    assert admin.get("/metrics").status_code == 200
    assert admin.get("/no/such/route").status_code == 404
    assert admin.get("/v1/models", headers={"Authorization": "Bearer ih_wrong"}).status_code == 401
    assert admin.get("/v1/admin/users", headers=member_headers(audited)).status_code == 403
    models, wrong_key, forbidden = log_of(audited).records()
    assert (models.action, models.outcome, models.location, models.details) == (
        "models:read", "success", None, {"status": 200})
    assert (wrong_key.outcome, wrong_key.actor_key_id, wrong_key.reason) == ("denied", None, "invalid_api_key")
    assert (forbidden.action, forbidden.outcome, forbidden.reason) == ("users:read", "denied", "permission_denied")


def test_each_security_action_gives_exactly_one_security_record(audited: ServicesStandIn,
                                                                 admin: TestClient) -> None:
    users = [admin.post("/v1/admin/users", json={"name": f"user{i}"}).json() for i in range(3)]
    group = admin.post("/v1/admin/groups", json={"name": "finance"}).json()
    assert admin.put(f"/v1/admin/groups/{group['id']}/members/{users[0]['id']}").status_code < 300
    key = admin.post("/v1/admin/keys", json={"name": "k", "user_id": users[1]["id"]})
    assert key.status_code == 201
    assert admin.delete(f"/v1/admin/keys/{key.json()['id']}").status_code < 300
    assert admin.delete(f"/v1/admin/users/{users[2]['id']}").status_code < 300
    records = log_of(audited).records()
    security = [r.action for r in records if r.kind == "security"]
    assert security == ["user.created"] * 3 + ["group.created", "group.member_added", "key.created",
                                                "key.revoked", "user.deleted"]
    requests = [r for r in records if r.kind == "request"]
    assert len(requests) == 8 and all(r.outcome == "success" for r in requests)
    secret = key.json().get("secret") or key.json().get("key")
    assert secret and all(secret not in json.dumps(r.to_dict()) for r in records)
    assert log_of(audited).verify().ok


def _break_writes(audit: AuditLog) -> None:
    audit.store.connection.execute("PRAGMA query_only = ON")


def test_no_generation_and_no_answer_without_an_audit_record(audited: ServicesStandIn, admin: TestClient) -> None:
    _break_writes(log_of(audited))
    engine = audited.registry.get_engine(MODEL)  # loaded by the fixture
    before = engine.stats().prompt_tokens
    for stream in (False, True):
        resp = admin.post("/v1/chat/completions", json={"model": MODEL, "messages": MSG, "stream": stream})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "audit_unavailable"
    assert engine.stats().prompt_tokens == before  # nothing reached the engine
    # A complete response is held back until its record is written: it turns into the 503.
    resp = admin.get("/v1/models")
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "audit_unavailable"
    # A security action that cannot be recorded does not happen.
    resp = admin.post("/v1/admin/users", json={"name": "ghost"})
    assert resp.status_code == 503
    assert all(u.name != "ghost" for u in audited.directory.list_users())
    log_of(audited).store.connection.execute("PRAGMA query_only = OFF")
    assert log_of(audited).count() == 0


def test_a_tampered_log_refuses_every_action(audited: ServicesStandIn, admin: TestClient) -> None:
    for _ in range(3):
        admin.get("/v1/models")
    conn = sqlite3.connect(log_of(audited).store.path)
    conn.execute("DROP TRIGGER audit_records_no_delete")
    # Two records cut off the end (the last one alone would come back: the signed head holds it).
    conn.execute("DELETE FROM audit_records WHERE seq >= 2")
    conn.commit()
    conn.close()
    resp = admin.post("/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    assert resp.status_code == 503 and "signed head" in resp.json()["error"]["message"]
    report = admin.post("/v1/admin/audit/verify")
    assert report.status_code == 503  # even reading the verdict is an action that must be recorded
    assert log_of(audited).verify().kind == "truncated"


def test_admin_audit_routes(audited: ServicesStandIn, admin: TestClient) -> None:
    admin.post("/v1/chat/completions", json={"model": MODEL, "messages": MSG})
    admin.post("/v1/admin/users", json={"name": "alice"})
    listed = admin.get("/v1/admin/audit", params={"limit": 50}).json()
    assert [r["seq"] for r in listed["data"]] == [1, 2, 3, 4]
    only = admin.get("/v1/admin/audit", params={"action": "user.created", "since": "1d"}).json()["data"]
    assert [r["action"] for r in only] == ["user.created"]
    page = admin.get("/v1/admin/audit", params={"limit": 2}).json()
    assert page["next_after_seq"] == 2
    assert admin.get("/v1/admin/audit", params={"since": "yesterday"}).status_code == 400
    assert admin.get("/v1/admin/audit", params={"limit": 10_000}).status_code == 400
    verdict = admin.post("/v1/admin/audit/verify").json()
    assert verdict["ok"] is True and verdict["records"] >= 6
    report = admin.get("/v1/admin/audit/report").json()
    assert report["confidential_sent_out"]["count"] == 0
    assert report["requests"]["by_destination"] == {"local": 1}
    for path, method in (("/v1/admin/audit", "GET"), ("/v1/admin/audit/verify", "POST"),
                         ("/v1/admin/audit/report", "GET")):
        assert admin.request(method, path, headers=member_headers(audited)).status_code == 403


def fake_spec(name: str) -> ModelSpec:
    return ModelSpec(name=name, path=None, sha256=None, size_bytes=1234, quantization="Q8_0",
                     context_length=2048, architecture="fake", source="test", present=True)


def test_model_loads_are_recorded(tmp_path: Any) -> None:
    audit = open_sqlite_audit_log(tmp_path / "audit.db")
    closed: list[str] = []

    class Engine:
        def close(self) -> None:
            closed.append("closed")

    def load(spec: Any) -> Any:
        if spec.name == "broken":
            raise RuntimeError("bad file")
        return Engine()

    loader = audited_loads(load, audit)
    spec = fake_spec("m1")
    loader(spec)
    with pytest.raises(RuntimeError):
        loader(fake_spec("broken"))
    ok, failed = audit.records()
    assert (ok.action, ok.model, ok.outcome, ok.location) == (MODEL_LOADED, "m1", "success", "local")
    assert ok.details == {"sha256": None, "source": "test", "size_bytes": 1234}
    assert (failed.outcome, failed.reason) == ("failure", "RuntimeError")
    audit.store.connection.execute("PRAGMA query_only = ON")
    with pytest.raises(AuditUnavailable):
        loader(spec)
    assert closed == ["closed"]  # the engine that could not be recorded is not kept
    audit.close()


def test_a_change_to_the_knowledge_index_is_written_ahead(audited: ServicesStandIn, admin: TestClient) -> None:
    col = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]
    base = f"/v1/collections/{col}/documents"
    doc = admin.post(base, files={"file": ("leave.md", b"# Leave\n\nAnnual leave is 18 days.\n")}).json()["id"]
    assert admin.patch(f"{base}/{doc}", json={"label": "confidential"}).status_code == 200
    assert admin.delete(f"{base}/{doc}").status_code == 200
    assert admin.delete(f"/v1/collections/{col}").status_code == 200
    records = [r for r in log_of(audited).records() if r.action in ("kb:write", "kb:manage")]
    pairs = [(r.outcome, r.resource.split(" ")[0], r.request_id) for r in records]
    # Each change: its started record before it, its final record after, under one request id.
    assert [p[:2] for p in pairs] == [("success", "POST")] + [(o, m) for m in ("POST", "PATCH", "DELETE", "DELETE")
                                                             for o in ("started", "success")]
    assert all(pairs[i][2] == pairs[i + 1][2] and pairs[i][2] for i in range(1, 9, 2))
    assert [list(r.documents) for r in records[3:7]] == [[doc]] * 4  # a relabel, a delete name theirs ahead
    store = audited.kb.store
    assert all(store.run_changes(rid) == [] for _, _, rid in pairs[1:])  # recorded, so the journal is done with


def test_a_change_whose_final_record_fails_is_closed_naming_what_it_committed(
        audited: ServicesStandIn, admin: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The document is committed, then the audit store refuses the final record in a way it cannot be kept for later
    (as a server killed at that moment would leave it): the caller gets the real answer (the change is made; before
    2026-12-07 a 503 said nothing was done), and the next start closes the request naming the document the journal
    holds."""
    col = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]
    store = audited.kb.store
    put = store.put_document

    def put_then_break(doc: Any, **kw: Any) -> Any:
        result = put(doc, **kw)
        _break_writes(log_of(audited))
        return result

    monkeypatch.setattr(store, "put_document", put_then_break)
    resp = admin.post(f"/v1/collections/{col}/documents", files={"file": ("leave.md", b"# Leave\n\n18 days.\n")})
    assert resp.status_code == 201
    log_of(audited).store.connection.execute("PRAGMA query_only = OFF")
    (started,) = log_of(audited).unfinished()
    (doc,) = store.list_documents(col)  # committed before the record failed
    assert resp.json()["id"] == doc.id
    (closed,) = audited.close_interrupted()
    assert (closed.request_id, closed.outcome, list(closed.documents)) == (started.request_id, "interrupted",
                                                                           [doc.id])
    assert closed.details["added"] == 1 and store.run_changes(started.request_id) == []
    assert log_of(audited).verify().ok
