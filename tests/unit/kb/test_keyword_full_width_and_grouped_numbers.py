"""Keyword queries on both stores: a code typed in a Chinese IME's full-width mode (``ＳＫＵ－４８２１７``) finds the
document holding ``SKU-48217`` (it found nothing: the query's terms kept their full-width forms), and an amount with
thousands separators (``1,250,000``) is searched as one number (it was ``250`` OR ``000``, and documents sharing
only ``000`` ranked above the one holding the amount)."""

from __future__ import annotations

import hashlib

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.keywords import index_terms, keyword_terms, word_terms
from inhouse.kb.index.postgres.terms import tsquery_literal
from inhouse.kb.index.protocol import IndexStore, NewDocument, SearchFilters
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

EMB = FakeEmbedder(384)
ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))


def test_full_width_query_terms_are_the_half_width_ones() -> None:
    for full, half in (("ＳＫＵ－４８２１７在哪个仓库", "SKU-48217在哪个仓库"),
                       ("Ｐ３级故障", "P3级故障"),
                       ("４８２１７", "48217"),
                       ("ｏｓ．ｃｈｍｏｄ ｆｉｌｅ＿ｒａｎｇｅ", "os.chmod file_range")):
        assert keyword_terms(full) == keyword_terms(half), full
        assert word_terms(full) == word_terms(half), full
    assert keyword_terms("ＳＫＵ－４８２１７")[0] == ["sku-48217"]
    # Full-width punctuation ends a term as its ASCII form does; CJK text is untouched.
    assert keyword_terms("（ＳＫＵ－１２３），仓库：") == (["sku-123"], ["仓库"])


def test_invisible_characters_and_decomposed_accents_do_not_split_a_query_word() -> None:
    assert keyword_terms("Reise\u00adkosten\u00adabrechnung Ko\u0308hler 欧阳\u200b娜娜")[0] == [
        "reisekostenabrechnung", "köhler", "欧阳娜", "阳娜娜"]
    assert word_terms("Reise\u00adkosten Ko\u0308hler") == ["reisekosten", "kohler"]


def test_a_number_with_thousands_separators_is_one_term() -> None:
    assert keyword_terms("1,250,000") == (["1,250,000"], [])
    assert keyword_terms("预算 1,250,000 CNY") == (["1,250,000", "cny"], ["预算"])
    assert word_terms("1,250,000 CNY") == ["1 250 000", "cny"]  # a phrase of the word index's tokens
    # The index side: the number, the number of its lower groups, the groups (what a substring index finds).
    assert index_terms("amount 1,250,000.") == ["amount", "1,250,000", "250,000", "250", "000"]
    assert tsquery_literal(keyword_terms("1,250,000")[0]) == "'1,250,000':*"
    # Not a grouped number: a fourth digit, a group of two, or an item of a longer comma list.
    assert keyword_terms("12345,678 and 1,2345 or 1,25")[0] == ["12345", "678", "2345"]
    assert keyword_terms("ports 80,443,8080")[0] == ["ports", "443", "8080"]


def put(store: IndexStore, col: str, name: str, text: str) -> str:
    data = text.encode()
    chunk = Chunk(index=0, text=f"{name}\n{text}", content=text, token_count=5, kind="paragraph", section="")
    doc = store.put_document(NewDocument(col, name, hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, name,
                                         name, "text/plain", data, [chunk], EMB.embed_passages([chunk.text])))
    return doc.document.id


def found(store: IndexStore, query: str, docs: dict[str, str]) -> list[str]:
    names = {c.id: name for doc, name in docs.items() for c in store.document_chunks(doc)}
    return [names[s.chunk_id] for s in store.keyword_search(ADMIN, query, SearchFilters(), 10)]


def test_a_full_width_query_finds_the_half_width_code(index_store: IndexStore) -> None:
    col = index_store.create_collection("stock", acl=Acl()).id
    docs = {put(index_store, col, name, text): name for name, text in (
        ("sheet-05", "SKU-48217 black mounting bracket, warehouse W3, reorder level 40"),
        ("sheet-06", "SKU-51820 grey mounting bracket, warehouse W7, reorder level 20"),
    )}
    for query in ("SKU-48217", "ＳＫＵ－４８２１７", "４８２１７", "ＳＫＵ－４８２１７在哪个仓库"):
        assert found(index_store, query, docs) == ["sheet-05"], query


def test_an_amount_is_searched_as_one_number(index_store: IndexStore) -> None:
    col = index_store.create_collection("budget", acl=Acl()).id
    docs = {put(index_store, col, name, text): name for name, text in (
        ("budget-02", "CC-101 travel 3,250,000; CC-102 events 7,000,000; CC-103 rent 2,250,500"),
        ("budget-05", "CC-501 training 1,250,000; CC-502 licences 4,500,000"),
        ("budget-09", "CC-901 hardware 9,000,250; CC-902 marketing 5,250,000"),
    )}
    for query in ("1,250,000", "1,250,000 CNY", "预算 1,250,000"):
        assert found(index_store, query, docs) == ["budget-05"], query
    # The lower groups name the amounts that end in them, as a substring would.
    assert sorted(found(index_store, "250,000", docs)) == ["budget-02", "budget-05", "budget-09"]


def test_a_comma_list_of_codes_is_no_amount_and_its_terms_stay_small() -> None:
    """A run of 3-digit codes joined by commas (a JSON array, a row of codes) read as one amount had every comma
    suffix indexed beside it: 1,500 codes made a 2.4 MB tsvector, which PostgreSQL refuses (1 MB), so the file could
    not be stored and migration 8 failed on a database holding one."""
    from inhouse.kb.index.postgres.terms import tsvector_literal

    codes = ",".join(str(100 + i % 900) for i in range(1500))
    assert "100,101" not in index_terms(codes)
    assert len(tsvector_literal(f"Allowed region codes: {codes}", "").encode()) < 100_000
    assert "1,250,000,000,000,000,000" in index_terms("a fund of 1,250,000,000,000,000,000 CNY")  # seven groups
    assert "12,345" in index_terms("12,345 CNY, 678 USD")  # an amount before a comma and a space stays one
