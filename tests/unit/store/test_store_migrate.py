"""``store.url`` chooses the stores, and ``inhouse store migrate --to`` moves an embedded install into PostgreSQL:
everything copied, the audit chain verifying there, a second run refused, a broken source chain refused."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inhouse.apps.schedule.calendar import Interval
from inhouse.bootstrap import Services, build_services
from inhouse.cli.main import app as cli
from inhouse.config import Settings
from inhouse.governance.audit.log import AuditLog
from inhouse.governance.identity import KeyStore
from inhouse.kb.index.postgres import PostgresIndexStore
from inhouse.store.postgres.assistants import PostgresEventStore, PostgresSessionStore
from inhouse.store.postgres.audit import PostgresAuditStore
from inhouse.store.postgres.conversations import PostgresConversationStore
from inhouse.store.postgres.database import PostgresDatabase
from inhouse.store.postgres.governance import PostgresGovernanceStore
from inhouse.store.postgres.responses import PostgresResponseStore
from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

pytestmark = pytest.mark.integration

DOCS = {"leave.md": b"# Leave\n\nAnnual leave is 18 days. Carry over up to 5 days.\n",
        "vpn.md": "# VPN\n\nVPN profiles last 180 days. 工作日加班按 1.5 倍工资计算。\n".encode()}


def services(settings: Settings) -> Services:
    return build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name))


def embedded_install(data_dir: Path) -> dict[str, Any]:
    """A small install: a user in a group with a key, usage, a conversation, a stored response, a support session,
    a calendar event, two documents, audit records."""
    s = services(Settings(data_dir=data_dir, kb={"embedder": "fake"}))
    try:
        admin = Actor("key_setup", "setup", role="admin")
        ann = s.directory.create_user("ann")
        hr = s.directory.create_group("hr")
        s.directory.add_member(hr.id, ann.id)
        key, secret = s.keys.create_key("ann laptop", user_id=ann.id)
        s.quotas.record_usage(key.id, 321)
        actor = s.keys.authenticate(secret)
        assert s.conversations is not None and s.kb is not None
        conv = s.conversations.create(actor, title="leave question", messages=[{"role": "user", "content": "假期?"}])
        s.responses.save(actor, response_id="resp_kept", model="m", previous_id=None,
                         messages=[{"role": "assistant", "content": "二十天"}], input_items=[],
                         body={"id": "resp_kept"})
        session = s.stores.sessions.create(actor, ["handbook"])
        session.messages.append({"role": "user", "content": "报销?", "at": 1.0})
        s.stores.sessions.save(session)
        event = s.stores.events.create(actor, "Leave", Interval(datetime(2030, 3, 4, tzinfo=UTC),
                                                                 datetime(2030, 3, 5, tzinfo=UTC)),
                                       tz="Asia/Shanghai", all_day=True, attendees=["王芳"])
        s.kb.create_collection(admin, "handbook", groups=["hr"])
        s.kb.create_collection(admin, "pg-manual", description="PostgreSQL 16 manual", sketch_questions=True)
        for name, data in DOCS.items():
            s.kb.add_document(admin, "handbook", data, name)
        hits = s.kb.retriever.retrieve(actor, "annual leave days", top_k=3)
        return {"secret": secret, "key_id": key.id, "conversation": conv.id, "records": s.audit.count(),
                "session": s.stores.sessions.get(actor, session.id), "event": event,
                "top": [h.chunk.id for h in hits], "docs": [d.id for d in s.kb.list_documents(admin, "handbook")]}
    finally:
        s.close()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_an_embedded_install_moves_to_postgresql_whole(tmp_path: Path, postgres_url: str) -> None:
    data = tmp_path / "data"
    facts = embedded_install(data)
    code, out = run("store", "migrate", "--to", postgres_url, "--data-dir", str(data))
    assert code == 0, out
    assert "audit chain in PostgreSQL: ok" in out and "support_sessions" in out

    pg = PostgresDatabase(postgres_url)
    try:
        actor = KeyStore(PostgresGovernanceStore(pg)).authenticate(facts["secret"])
        assert actor.key_id == facts["key_id"] and actor.groups == {"hr"}
        assert PostgresConversationStore(pg).get(actor, facts["conversation"]).messages[0]["content"] == "假期?"
        assert PostgresResponseStore(pg).get(actor, "resp_kept").messages[0]["content"] == "二十天"
        assert PostgresSessionStore(pg).get(actor, facts["session"].id) == facts["session"]
        assert PostgresEventStore(pg).get(actor, facts["event"].id) == facts["event"]  # all_day, zone, attendees
        log = AuditLog(PostgresAuditStore(pg), key_path=data / "audit.key")
        report = log.verify()
        assert report.ok and report.records == facts["records"]
        log.record_request(action="chat:create", outcome="success")  # the chain goes on in PostgreSQL
        assert log.verify().ok
    finally:
        pg.close()

    # Every service over PostgreSQL, chosen by the one setting: the same answers as before the move.
    s = services(Settings(data_dir=data, kb={"embedder": "fake"}, store={"url": postgres_url}))
    try:
        assert s.stores is not None and s.stores.kind == "postgresql"
        assert s.kb is not None and isinstance(s.kb.store, PostgresIndexStore)
        actor = s.keys.authenticate(facts["secret"])
        assert s.quotas.status(actor.key_id).tokens_used_today == 321  # (recorded seconds ago, the same UTC day)
        assert isinstance(s.assistants.schedule.events, PostgresEventStore)
        assert s.assistants.schedule.events.get(actor, facts["event"].id) == facts["event"]
        assert s.assistants.support.store.get(actor, facts["session"].id) == facts["session"]
        admin = Actor("key_setup", "setup", role="admin")
        assert [d.id for d in s.kb.list_documents(admin, "handbook")] == facts["docs"]
        manual = s.kb.collection(admin, "pg-manual")
        assert manual.sketch_questions and manual.description == "PostgreSQL 16 manual"
        assert not s.kb.collection(admin, "handbook").sketch_questions
        assert s.kb.document_data(admin, facts["docs"][0])[1] in DOCS.values()
        hits = s.kb.retriever.retrieve(actor, "annual leave days", top_k=3)
        assert hits and hits[0].chunk.id == facts["top"][0]
        s.directory.create_user("bob")  # recorded in the PostgreSQL chain
        assert s.audit.verify().ok and s.audit.count() == facts["records"] + 2
    finally:
        s.close()

    code, out = run("store", "migrate", "--to", postgres_url, "--data-dir", str(data))
    assert code == 1 and "already holds inhouse data" in " ".join(out.split())
    # `inhouse audit verify` reads the chain where store.url says.
    code, out = run("audit", "verify", "--data-dir", str(data), env={"INHOUSE_STORE__URL": postgres_url})
    assert code == 0 and f"ok: {facts['records'] + 2} records" in out


def test_a_source_chain_that_does_not_verify_is_refused(tmp_path: Path, postgres_url: str) -> None:
    data = tmp_path / "data"
    embedded_install(data)
    conn = sqlite3.connect(data / "audit.db")
    conn.execute("DROP TRIGGER audit_records_no_update")
    conn.execute("UPDATE audit_records SET outcome = 'forged' WHERE seq = 2")
    conn.commit()
    conn.close()
    code, out = run("store", "migrate", "--to", postgres_url, "--data-dir", str(data))
    assert code == 1 and "does not verify" in " ".join(out.split())
    pg = PostgresDatabase(postgres_url)
    try:
        assert pg.scalar("SELECT to_regclass('audit_records') IS NULL")  # refused before the target was touched
    finally:
        pg.close()
