"""A data directory written by the release before the storage seams (6c87c30) opens and works in place.

``data/legacy-6c87c30.tar.gz`` was written by that release's own code (``data/make_legacy.py``): ``inhouse.db``
(governance, usage, a conversation; ``schema_migrations`` at 6), ``audit.db`` (5 records, no version marker) with
its head and key, and ``kb.db`` (``kb_meta`` schema 2, 8-d vectors, no ``schema_migrations``).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inhouse.governance.identity import KeyStore
from inhouse.governance.labels import Label
from inhouse.governance.quotas import DAY_S, QuotaService
from inhouse.kb.access import AccessScope
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument, SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.index.sqlite.schema import LEGACY_FENCE
from inhouse.store.sqlite.audit import MIGRATIONS as AUDIT_MIGRATIONS
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.store.sqlite.conversations import SqliteConversationStore
from inhouse.store.sqlite.database import Database, current_version
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.store.sqlite.inhouse_db import MIGRATIONS, migrate, open_inhouse_db
from inhouse.types import Actor

ARCHIVE = Path(__file__).parent / "data" / "legacy-6c87c30.tar.gz"
WRITTEN_AT = 1_780_000_000.0


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path, json.loads((tmp_path / "legacy.json").read_text())


def test_the_archive_is_what_the_old_release_wrote(old: tuple[Path, dict[str, Any]]) -> None:
    d, _ = old
    for name in ("kb.db", "audit.db"):
        db = Database(d / name)
        try:
            assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations'") == 0, name
        finally:
            db.close()
    kb = Database(d / "kb.db")
    try:
        assert kb.scalar("SELECT value FROM kb_meta WHERE key = 'schema'") == "2"
    finally:
        kb.close()


def test_inhouse_db_opens_and_works(old: tuple[Path, dict[str, Any]]) -> None:
    d, facts = old
    db = open_inhouse_db(d / "inhouse.db")
    try:
        assert current_version(db) == MIGRATIONS[-1].version and migrate(db) == []
        store = SqliteGovernanceStore(db)
        actor = KeyStore(store).authenticate(facts["secret"])
        assert (actor.key_id, actor.user_id, actor.role, actor.groups) == (
            facts["key_id"], facts["user_id"], "admin", {facts["group"]})
        quotas = QuotaService(store, clock=lambda: WRITTEN_AT)
        assert quotas.status(facts["key_id"]).tokens_used_today == 123
        assert int(WRITTEN_AT // DAY_S) > 0
        conv = SqliteConversationStore(db).get(actor, facts["conversation_id"])
        assert conv.title == "old chat" and conv.messages == [{"role": "user", "content": "你好"}]
    finally:
        db.close()


def test_audit_db_opens_verifies_and_appends(old: tuple[Path, dict[str, Any]]) -> None:
    d, facts = old
    log = open_sqlite_audit_log(d / "audit.db")
    try:
        report = log.verify()
        assert report.ok and report.records == facts["audit_records"] == report.head_seq
        log.record_request(action="chat:create", outcome="success")
        assert log.verify().ok and log.count() == facts["audit_records"] + 1
    finally:
        log.close()
    db = Database(d / "audit.db")
    try:
        # Adopted at version 1 (the table without a marker), then the steps after it: the request-id index.
        assert current_version(db) == AUDIT_MIGRATIONS[-1].version == 2
        assert [r[0] for r in db.query("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]
    finally:
        db.close()
    log = open_sqlite_audit_log(d / "audit.db")  # reopening changes nothing
    try:
        assert log.verify().ok
    finally:
        log.close()


def test_kb_db_opens_searches_and_takes_new_documents(old: tuple[Path, dict[str, Any]]) -> None:
    d, facts = old
    hr = AccessScope.of(Actor("key_x", "hr member", groups=frozenset({"hr"})))
    # The first open adopts the old marker (2), adds the word index (3), the collections' sketch switch (4), FTS5
    # secure-delete (5), the run journal (6) and the access rule's indexes (7); the second changes nothing.
    for _ in range(2):
        s = SqliteIndexStore(d / "kb.db", dim=8)
        try:
            assert s.schema_version() == 7
            assert not any(c.sketch_questions for c in s.list_collections())
            found = s.get_chunks(hr, [h.chunk_id for h in s.keyword_search(hr, "annual leave", SearchFilters(), 5)])
            assert found[0].content == "annual leave is 18 days" and found[0].document_id == facts["document_id"]
            v = s.vector_search(hr, np.eye(8, dtype=np.float32)[1], SearchFilters(), 1)[0]
            assert v.score == pytest.approx(1.0) and s.get_chunks(hr, [v.chunk_id])[0].content.startswith("工作日")
            assert all(n == 0 for k, n in s.counts().items() if k.startswith("orphan"))
        finally:
            s.close()
    kb = Database(d / "kb.db")
    try:
        # The old release refuses a kb_meta schema above its own 2: it must not write into the migrated file.
        assert kb.scalar("SELECT value FROM kb_meta WHERE key = 'schema'") == str(LEGACY_FENCE)
    finally:
        kb.close()
    s = SqliteIndexStore(d / "kb.db", dim=8)
    try:
        new = s.put_document(make_doc(facts["collection_id"], "vpn.txt", ["vpn profiles last 180 days"])).document
        assert s.counts()["documents"] == 2 and s.document_chunks(new.id)[0].content == "vpn profiles last 180 days"
    finally:
        s.close()


def make_doc(collection_id: str, source: str, texts: list[str]) -> NewDocument:
    data = "\n".join(texts).encode()
    chunks = [Chunk(index=i, text=t, content=t, token_count=3, kind="paragraph", section="", page_start=None,
                    page_end=None) for i, t in enumerate(texts)]
    vectors = np.eye(8, dtype=np.float32)[2:2 + len(texts)]
    return NewDocument(collection_id, source, hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, source, source,
                       "text/plain", data, chunks, vectors)
