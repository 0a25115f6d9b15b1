"""SQLite's word index (``kb.index.sqlite.keyword``): whole Latin words with title and heading weights, common words
left out, CJK by trigrams. (``word_terms`` is tested in test_keywords.py; the weights also in the conformance suite.)"""

from __future__ import annotations

import hashlib

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument, SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

EMB = FakeEmbedder(32)
ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))
MEMBER = AccessScope.of(Actor("key_m", "m", groups=frozenset({"docs"})))


def put(store: SqliteIndexStore, col: str, title: str, chunks: list[tuple[str, str]]) -> list[str]:
    data = f"{title}{chunks}".encode()
    cs = [Chunk(index=i, text=f"{sec}\n{body}", content=body, token_count=5, kind="paragraph", section=sec)
          for i, (sec, body) in enumerate(chunks)]
    doc = store.put_document(NewDocument(col, title, hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, title,
                                         title, "text/html", data, cs, EMB.embed_passages([c.text for c in cs])))
    return [c.id for c in store.document_chunks(doc.document.id)]


def test_title_and_heading_outrank_the_body_and_common_words_are_dropped() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("docs", acl=Acl(groups=frozenset({"docs"}))).id
        body = put(store, col, "shutil", [("shutil > copytree", "Copy a tree. A subprocess may be used by callers.")])
        titled = put(store, col, "subprocess", [("subprocess > run", "Run a command and wait for it to finish.")])
        for i in range(20):  # "python" is in every chunk
            put(store, col, f"page {i}", [(f"page {i}", f"python text {i} about other things")])
        for scope in (ADMIN, MEMBER):  # the access-filtered SQL ranks alike
            top = store.keyword_search(scope, "subprocess", SearchFilters(), 5)
            assert [s.chunk_id for s in top[:2]] == [titled[0], body[0]]
            # "python" matches every chunk: left out, the rarer word decides
            assert store.keyword_search(scope, "python subprocess", SearchFilters(), 1)[0].chunk_id == titled[0]
        assert len(store.keyword_search(ADMIN, "python", SearchFilters(), 50)) == 22 - 2  # alone, it is kept
    finally:
        store.close()


def test_a_mixed_query_searches_both_indexes() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("docs", acl=Acl()).id
        zh = put(store, col, "手册", [("手册 > 加班", "工作日加班按 1.5 倍工资计算")])
        en = put(store, col, "VPN", [("VPN", "The WireGuard gateway listens on port 51820.")])
        found = {s.chunk_id for s in store.keyword_search(ADMIN, "wireguard 工作日加班", SearchFilters(), 5)}
        assert found == {zh[0], en[0]}
    finally:
        store.close()


def test_query_words_fold_as_the_word_index_stores_them() -> None:
    """``keywords.word_terms`` makes of each word what ``unicode61 remove_diacritics 2`` stores: an accented word
    (``Müller``, stored ``muller``) was asked for as ``ller`` and never found."""
    import apsw

    from inhouse.kb.index.keywords import fold_word, word_terms

    words = ["Müller", "Zürich", "café", "Straße", "ﬁle", "Ｘ２００", "ÆSIR", "Øre", "Ǆ", "İstanbul", "ŁÓDŹ", "naïve",
             "Ångström", "ΣΊΣΥΦΟΣ", "Привет", "résumé", "Ĳssel", "Ǻ", "Ḁ", "Ṩ", "Ỳ", "Ėlė", "Ğ", "Ş", "Ț", "Ő",
             "Ű", "ǅ", "Ⅻ", "ǘ", "ĸ", "ŉ", "Ðe", "Þorn", "Đ", "ħ", "cafe\u0301"]
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE w USING fts5 (b, tokenize = 'unicode61 remove_diacritics 2');"
                 "CREATE VIRTUAL TABLE v USING fts5vocab (w, 'row')")
    for word in words:
        conn.execute("DELETE FROM w")
        conn.execute("INSERT INTO w VALUES (?)", (word,))
        assert [t for (t,) in conn.execute("SELECT term FROM v")] == [fold_word(word)], word
    assert word_terms("Müller") == ["muller"]
