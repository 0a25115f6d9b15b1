"""A "word" longer than PostgreSQL's 2,046 bytes (a hex dump, text that lost its spaces, 1,100 × "é" in a question)
is indexed and searched on both stores; on PostgreSQL it was an error ("word is too long") in every ``tsvector`` and
``tsquery``: a 500 on upload and search, and ``inhouse ingest`` stopped at the file."""

from __future__ import annotations

import hashlib
import secrets

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.postgres.terms import tsquery_literal, tsvector_literal
from inhouse.kb.index.protocol import IndexStore, NewDocument, SearchFilters
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

EMB = FakeEmbedder(384)
ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))
LIMIT = 2046


def _lexemes(literal: str) -> list[bytes]:
    return [part.split("'")[1].encode() for part in literal.split(" ") if part.startswith("'")]


def test_literals_cut_a_long_word_to_the_longest_postgresql_holds() -> None:
    hexdump, accents = secrets.token_hex(1100), "é" * 1100  # 2,200 bytes each
    for literal in (tsvector_literal(f"Digest\n{hexdump} {accents} leave"), tsquery_literal([hexdump, accents])):
        words = _lexemes(literal)
        assert max(map(len, words)) <= LIMIT
        assert hexdump.encode()[:LIMIT] in words and ("é" * (LIMIT // 2)).encode() in words  # whole characters
    assert b"leave" in _lexemes(tsvector_literal("leave"))


def put(store: IndexStore, col: str, title: str, text: str) -> str:
    data = text.encode()
    chunk = Chunk(index=0, text=f"{title}\n{text}", content=text, token_count=5, kind="paragraph", section="")
    doc = store.put_document(NewDocument(col, title, hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, title,
                                         title, "text/plain", data, [chunk], EMB.embed_passages([chunk.text])))
    return doc.document.id


def test_a_document_and_a_query_with_a_very_long_word_work_on_both_stores(index_store: IndexStore) -> None:
    col = index_store.create_collection("docs", acl=Acl()).id
    hexdump = secrets.token_hex(1100)
    doc = put(index_store, col, "dump.txt", f"Firmware image digest: {hexdump}")
    other = put(index_store, col, "notes.txt", "Release notes: the flux capacitor was recalibrated.")
    chunk = {c.id: c.document_id for c in index_store.document_chunks(doc)}
    found = index_store.keyword_search(ADMIN, hexdump, SearchFilters(), 5)
    assert [chunk.get(s.chunk_id) for s in found] == [doc]
    assert index_store.keyword_search(ADMIN, "é" * 1100, SearchFilters(), 5) == []
    assert {s.chunk_id for s in index_store.keyword_search(ADMIN, "ü" * 1100 + " capacitor", SearchFilters(), 5)} \
        == {c.id for c in index_store.document_chunks(other)}
