"""``IndexStoreContract``: the conformance suite every ``IndexStore`` passes (haystack's ``DocumentStoreBaseTests``
idea). Subclass it in a test module and provide the ``store`` fixture::

    class TestSqliteIndexStore(IndexStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
            yield s
            s.close()
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from inhouse.errors import Conflict, NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import IndexStore, NewDocument, SearchFilters
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

DIM = 64
EMBED = FakeEmbedder(DIM)
ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))
HR = AccessScope.of(Actor("key_hr", "hr member", groups=frozenset({"hr"})))
FIN = AccessScope.of(Actor("key_fin", "finance member", groups=frozenset({"finance"})))
NOBODY = AccessScope.of(Actor("key_none", "no groups"))


def make_doc(collection_id: str, source: str, texts: Sequence[str], *, label: Label = Label.INTERNAL,
             acl: Acl | None = None, salt: str = "", title: str = "Doc") -> NewDocument:
    data = ("\n".join(texts) + salt).encode()
    chunks = [Chunk(index=i, text=t, content=t, token_count=len(t.split()), kind="paragraph", section="S",
                    page_start=1, page_end=1) for i, t in enumerate(texts)]
    return NewDocument(collection_id, source, hashlib.sha256(data).hexdigest(), label, acl, title, source,
                       "text/plain", data, chunks, EMBED.embed_passages(list(texts)))


def make_sections(collection_id: str, title: str, sections: Sequence[tuple[str, str]]) -> NewDocument:
    """A document titled ``title`` whose chunks are (section path, text), written as the chunker writes them (the
    section path on the chunk text's first line)."""
    data = f"{title}{list(sections)}".encode()
    chunks = [Chunk(index=i, text=f"{sec}\n{body}", content=body, token_count=len(body.split()), kind="paragraph",
                    section=sec) for i, (sec, body) in enumerate(sections)]
    return NewDocument(collection_id, f"{title}.html", hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, title,
                       f"{title}.html", "text/html", data, chunks, EMBED.embed_passages([c.text for c in chunks]))


class IndexStoreContract:
    """Behaviour every store must have. The ``store`` fixture gives an empty store of dimension ``DIM``."""

    @pytest.fixture
    def store(self, tmp_path: Any) -> IndexStore:  # pragma: no cover - overridden
        raise NotImplementedError

    def _cols(self, store: IndexStore) -> tuple[str, str]:
        hr = store.create_collection("hr", acl=Acl(groups=frozenset({"hr"})))
        fin = store.create_collection("finance", acl=Acl(groups=frozenset({"finance"})))
        return hr.id, fin.id

    def test_collections(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        assert store.get_collection("hr").id == hr
        assert store.get_collection(hr).name == "hr"
        assert [c.name for c in store.list_collections()] == ["finance", "hr"]
        with pytest.raises(Conflict):
            store.create_collection("hr", acl=Acl())
        with pytest.raises(NotFound):
            store.get_collection("nope")
        col = store.update_collection(hr, acl=Acl(groups=frozenset({"hr", "it"})))
        assert col.acl.groups == {"hr", "it"}

    def test_a_collections_sketch_switch_is_kept_and_changed_alone(self, store: IndexStore) -> None:
        manual = store.create_collection("manual", acl=Acl(), description="PostgreSQL 16 manual", sketch_questions=True)
        assert manual.sketch_questions and manual.to_dict()["sketch_questions"] is True
        assert not store.create_collection("plain", acl=Acl()).sketch_questions  # off unless asked for
        assert {c.name: c.sketch_questions for c in store.list_collections()} == {"manual": True, "plain": False}
        off = store.update_collection(manual.id, sketch_questions=False)
        assert not off.sketch_questions and off.description == "PostgreSQL 16 manual"
        kept = store.update_collection(manual.id, description="PostgreSQL 17 manual")  # the switch stays as it is
        assert not kept.sketch_questions and store.get_collection("manual").description == "PostgreSQL 17 manual"
        assert store.update_collection(manual.id, sketch_questions=True).sketch_questions

    def test_put_is_idempotent_and_replaces(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        first = store.put_document(make_doc(hr, "a.txt", ["annual leave is 18 days", "carry over 5 days"]))
        assert first.status == "added" and first.document.chunk_count == 2
        again = store.put_document(make_doc(hr, "a.txt", ["annual leave is 18 days", "carry over 5 days"]))
        assert again.status == "unchanged" and again.document.id == first.document.id
        new = store.put_document(make_doc(hr, "a.txt", ["annual leave is 20 days"]))
        assert new.status == "replaced" and new.document.id == first.document.id and new.document.version == 2
        chunks = store.document_chunks(first.document.id)
        assert [c.content for c in chunks] == ["annual leave is 20 days"]
        counts = store.counts()
        assert counts["documents"] == 1 and counts["chunks"] == 1 and counts["vectors"] == 1
        assert all(v == 0 for k, v in counts.items() if k.startswith(("orphan", "duplicate")) or "without" in k)

    def test_a_new_version_keeps_the_vectors_of_its_unchanged_chunks(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        assert store.embedded_chunks(hr, "a.txt") == {}
        old = ["alpha paragraph one", "beta paragraph two", "gamma paragraph three"]
        doc = store.put_document(make_doc(hr, "a.txt", old)).document
        known = store.embedded_chunks(hr, "a.txt")
        assert set(known) == set(old)
        assert all(np.allclose(known[t], EMBED.embed_passages([t])[0], atol=1e-6) for t in old)
        before = {c.content: c.id for c in store.document_chunks(doc.id)}
        new = ["alpha paragraph one", "beta paragraph EDITED", "gamma paragraph three", "delta paragraph four"]
        store.put_document(make_doc(hr, "a.txt", new))
        chunks = store.document_chunks(doc.id)
        assert [c.content for c in chunks] == new and [c.ordinal for c in chunks] == [0, 1, 2, 3]
        # The unchanged chunks keep their rows (a citation of one still resolves); the edited one is new.
        assert [c.id == before.get(c.content) for c in chunks] == [True, False, True, False]
        shifted = ["zeta paragraph inserted first", *new]
        store.put_document(make_doc(hr, "a.txt", shifted))
        chunks = store.document_chunks(doc.id)
        assert [c.content for c in chunks] == shifted and [c.ordinal for c in chunks] == [0, 1, 2, 3, 4]
        assert (chunks[1].id, chunks[3].id) == (before["alpha paragraph one"], before["gamma paragraph three"])
        assert store.check().ok
        store.put_document(make_doc(hr, "a.txt", new))  # back: the inserted chunk goes, the others move up
        assert set(store.embedded_chunks(hr, "a.txt")) == set(new)
        hits = store.get_chunks(ADMIN, [h.chunk_id for h in store.keyword_search(ADMIN, "beta", SearchFilters(), 9)])
        assert [c.content for c in hits] == ["beta paragraph EDITED"]  # the old version's chunk is gone
        top = store.vector_search(ADMIN, EMBED.embed_query("gamma paragraph three"), SearchFilters(), 1)[0]
        assert top.score == pytest.approx(1.0, abs=1e-4)
        assert store.get_chunks(ADMIN, [top.chunk_id])[0].content == "gamma paragraph three"
        # A new title is in every keyword row: each chunk is indexed again under it.
        store.put_document(make_doc(hr, "a.txt", new, title="Zanzibar handbook", salt="v3"))
        assert len(store.keyword_search(ADMIN, "zanzibar", SearchFilters(), 9)) == 4
        result = store.check()
        assert result.ok and result.counts["chunks"] == 4 and result.counts["vectors"] == 4, result.to_dict()

    def test_a_moved_document_keeps_everything_but_its_path(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        doc = store.put_document(make_doc(hr, "a/leave.txt", ["annual leave is 18 days"])).document
        other = store.put_document(make_doc(hr, "b.txt", ["unrelated"])).document
        chunk_ids = [c.id for c in store.document_chunks(doc.id)]
        moved = store.move_document(doc.id, "archive/leave.txt", "leave.txt")
        assert (moved.id, moved.source_path, moved.version, moved.label) == (doc.id, "archive/leave.txt", 1, doc.label)
        assert [c.id for c in store.document_chunks(doc.id)] == chunk_ids
        assert store.find_document(hr, source_path="a/leave.txt") is None
        hit = store.keyword_search(ADMIN, "annual leave", SearchFilters(), 1)[0]
        assert store.get_chunks(ADMIN, [hit.chunk_id])[0].source_path == "archive/leave.txt"
        with pytest.raises(Conflict):
            store.move_document(doc.id, "b.txt", "b.txt")
        with pytest.raises(NotFound):
            store.move_document("doc_missing", "c.txt", "c.txt")
        assert store.get_document(other.id).source_path == "b.txt" and store.check().ok

    def test_delete_removes_everything(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        doc = store.put_document(make_doc(hr, "a.txt", ["secret zebra fact", "another zebra line"])).document
        store.put_document(make_doc(hr, "b.txt", ["unrelated text"]))
        store.delete_document(doc.id)
        with pytest.raises(NotFound):
            store.get_document(doc.id)
        with pytest.raises(NotFound):
            store.document_data(doc.id)
        assert store.keyword_search(ADMIN, "zebra", SearchFilters(), 10) == []
        c = store.counts()
        assert (c["documents"], c["chunks"], c["fts_rows"], c["vectors"], c["files"]) == (1, 1, 1, 1, 1)
        assert all(v == 0 for k, v in c.items() if k.startswith("orphan"))

    def test_keyword_search_english_and_chinese(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        store.put_document(make_doc(hr, "a.txt", ["Annual leave: 18 days after 3 years.", "VPN port 51820",
                                                  "工作日加班按 1.5 倍工资计算。", "P3 band salary"]))
        top = lambda q: store.keyword_search(HR, q, SearchFilters(), 3)  # noqa: E731
        contents = lambda q: [c.content for c in store.get_chunks(HR, [s.chunk_id for s in top(q)])]  # noqa: E731
        assert contents("annual leave days")[0].startswith("Annual leave")
        assert contents("工作日加班多少倍")[0].startswith("工作日")
        assert contents("加班")[0].startswith("工作日")  # 2 characters: below the trigram size
        assert contents("P3")[0].startswith("P3")

    def test_keyword_search_of_codes_glued_to_chinese(self, store: IndexStore) -> None:
        """Chinese right after Latin letters or digits ("X200路由器…") is searched like any Chinese, and the code itself
        is found too, short ("P3级…") or long: text runs them together, and one token of both found neither."""
        hr, _ = self._cols(store)
        router = "X200路由器的默认密码是admin。忘记密码时按住复位键十秒恢复出厂设置。"
        store.put_document(make_doc(hr, "router.txt", [router]))
        store.put_document(make_doc(hr, "oncall.txt", ["P3级故障需要在4小时内响应，P1级故障需要立即响应。"]))
        store.put_document(make_doc(hr, "other.txt", ["报销规则：出差住宿每晚不超过500元。", "The WireGuard gateway."]))
        store.put_document(make_doc(hr, "manual.txt", ["The X200 manual: P3 tickets first."]))  # the codes as words

        def found(q: str) -> list[str]:
            hits = store.keyword_search(HR, q, SearchFilters(), 5)
            return [c.source_path for c in store.get_chunks(HR, [s.chunk_id for s in hits])]

        for q in ("X200路由器的默认密码是什么？", "路由器的默认密码", "x200 默认密码"):
            assert found(q)[:1] == ["router.txt"], q
        for q in ("P3级故障要多久响应", "级故障"):
            assert found(q)[:1] == ["oncall.txt"], q
        assert set(found("X200")) == {"router.txt", "manual.txt"}
        assert set(found("P3")) == {"oncall.txt", "manual.txt"}
        assert found("500元")[:1] == ["other.txt"]

    def test_a_query_word_found_nowhere_leaves_the_others_their_matches(self, store: IndexStore) -> None:
        """An OR query with one more word (a typo, a word of the question only) finds what the others find, even
        when they are in most chunks: the word found nowhere must not be the one kept."""
        hr, _ = self._cols(store)
        store.put_document(make_doc(hr, "vpn.txt", [f"WireGuard tunnel note {i}: port 5182{i}." for i in range(4)]))
        store.put_document(make_doc(hr, "travel.txt", [f"Travel expense rule number {i}." for i in range(6)]))
        assert len(store.keyword_search(HR, "wireguard", SearchFilters(), 10)) == 4
        assert len(store.keyword_search(HR, "wireguard handshakes", SearchFilters(), 10)) == 4
        assert store.keyword_search(HR, "handshakes", SearchFilters(), 10) == []

    def test_keyword_search_of_accented_words(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        text = "Contact Jürgen Müller at the Zürich office for café vouchers."
        store.put_document(make_doc(hr, "contacts.txt", [text]))
        store.put_document(make_doc(hr, "other.txt", ["Unrelated text about routers and ports."]))
        for q in ("Müller", "Zürich office", "café", "JÜRGEN"):
            hits = store.keyword_search(HR, q, SearchFilters(), 5)
            assert [c.source_path for c in store.get_chunks(HR, [s.chunk_id for s in hits])] == ["contacts.txt"], q

    def test_keyword_title_and_section_outweigh_the_text(self, store: IndexStore) -> None:
        """A question naming a page's subject or an entry's name finds the page titled so, or the entry headed so,
        before chunks that only mention the word in their text (even several times); a dotted name (``os.chmod``)
        is found as a whole."""
        hr, _ = self._cols(store)
        titled = store.put_document(make_sections(hr, "subprocess", [("Running", "Run a command and wait for it.")]))
        headed = store.put_document(make_sections(hr, "os", [("Files > os.chmod(path, mode)", "Change the mode.")]))
        mention = store.put_document(make_sections(hr, "shutil", [
            ("Copying", "A subprocess, or several subprocess calls: subprocess helpers copy trees."),
            ("Modes", "Permission bits: chmod semantics, as chmod does, apply to each copy made by chmod.")]))
        store.put_document(make_sections(hr, "other", [(f"Part {i}", f"unrelated text number {i}") for i in range(12)]))

        def first(q: str) -> list[Any]:
            return store.get_chunks(HR, [s.chunk_id for s in store.keyword_search(HR, q, SearchFilters(), 5)])

        found = first("How do I start a subprocess?")
        assert [c.document_id for c in found[:2]] == [titled.document.id, mention.document.id]
        found = first("what does os.chmod do")
        assert found[0].document_id == headed.document.id
        assert first("chmod")[0].document_id == headed.document.id  # the heading beats three mentions in the text

    def test_access_rule_inside_both_searches(self, store: IndexStore) -> None:
        hr, fin = self._cols(store)
        store.put_document(make_doc(hr, "leave.txt", ["leave days policy"] * 1 + ["leave carry over"]))
        store.put_document(make_doc(fin, "rev.txt", [f"revenue leave figure {i}" for i in range(10)],
                                    label=Label.CONFIDENTIAL))
        q = EMBED.embed_query("revenue leave figure")
        for scope, allowed in ((HR, {"leave.txt"}), (FIN, {"rev.txt"}), (NOBODY, set()),
                               (ADMIN, {"leave.txt", "rev.txt"})):
            kw = store.keyword_search(scope, "revenue leave", SearchFilters(), 50)
            vec = store.vector_search(scope, q, SearchFilters(), 50)
            seen = {c.source_path for c in store.get_chunks(ADMIN, [s.chunk_id for s in kw + vec])}
            assert seen == allowed, (scope, seen)
        # top_k is filled from what the caller may see even when others' chunks are nearer.
        assert len(store.vector_search(HR, q, SearchFilters(), 2)) == 2
        assert store.get_chunks(HR, [s.chunk_id for s in store.vector_search(FIN, q, SearchFilters(), 3)]) == []

    def test_document_acl_and_label_clearance(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        hr_lead = AccessScope.of(Actor("key_lead", "lead", groups=frozenset({"hr", "hr-leads"})))
        narrowed = store.put_document(make_doc(hr, "n.txt", ["narrowed doc"],
                                               acl=Acl(groups=frozenset({"hr-leads"})))).document
        restricted = store.put_document(make_doc(hr, "r.txt", ["restricted doc"], label=Label.RESTRICTED)).document
        named = store.put_document(make_doc(hr, "rn.txt", ["restricted named"], label=Label.RESTRICTED,
                                            acl=Acl(keys=frozenset({"key_hr"})))).document
        assert not store.visible_document(HR, narrowed.id) and store.visible_document(hr_lead, narrowed.id)
        assert not store.visible_document(HR, restricted.id) and store.visible_document(ADMIN, restricted.id)
        assert store.visible_document(HR, named.id) and not store.visible_document(hr_lead, named.id)
        relabelled = store.relabel(restricted.id, label=Label.INTERNAL)
        assert relabelled.label is Label.INTERNAL and store.visible_document(HR, restricted.id)
        before = dict(relabelled.metadata)
        marked = store.relabel(restricted.id, label=Label.CONFIDENTIAL, metadata={"marking": '"X" in the title'})
        assert marked.label is Label.CONFIDENTIAL and marked.metadata == {**before, "marking": '"X" in the title'}

    def test_document_labels_lists_the_documents_at_or_above_a_label(self, store: IndexStore) -> None:
        hr, fin = self._cols(store)
        internal = store.put_document(make_doc(hr, "i.txt", ["internal doc"], label=Label.INTERNAL)).document
        secret = store.put_document(make_doc(fin, "s.txt", ["restricted doc"], label=Label.RESTRICTED)).document
        assert store.document_labels(Label.CONFIDENTIAL) == {secret.id: (Label.RESTRICTED, 1)}
        store.put_document(make_doc(fin, "s.txt", ["restricted doc, version 2"], label=Label.RESTRICTED))
        store.relabel(internal.id, label=Label.CONFIDENTIAL)
        assert store.document_labels(Label.CONFIDENTIAL) == {secret.id: (Label.RESTRICTED, 2),
                                                             internal.id: (Label.CONFIDENTIAL, 1)}
        assert set(store.document_labels(Label.PUBLIC)) == {secret.id, internal.id}

    def test_filters(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        a = store.put_document(make_doc(hr, "x/a.txt", ["alpha policy text"])).document
        store.put_document(make_doc(hr, "y/b.txt", ["alpha policy words"], label=Label.PUBLIC))
        q = EMBED.embed_query("alpha policy")
        only_a = store.vector_search(ADMIN, q, SearchFilters(document_ids=frozenset({a.id})), 10)
        assert {c.document_id for c in store.get_chunks(ADMIN, [s.chunk_id for s in only_a])} == {a.id}
        pub = store.keyword_search(ADMIN, "alpha", SearchFilters(labels=frozenset({Label.PUBLIC})), 10)
        assert {c.source_path for c in store.get_chunks(ADMIN, [s.chunk_id for s in pub])} == {"y/b.txt"}
        pre = store.keyword_search(ADMIN, "alpha", SearchFilters(source_prefix="x/"), 10)
        assert {c.source_path for c in store.get_chunks(ADMIN, [s.chunk_id for s in pre])} == {"x/a.txt"}

    def test_source_prefix_is_case_sensitive_and_literal(self, store: IndexStore) -> None:
        """As paths are; LIKE's wildcards in a prefix are plain characters."""
        hr, _ = self._cols(store)
        for path in ("HR/a.txt", "hr/b.txt", "h%/c.txt", "hrx/d.txt", "h_/e.txt"):
            store.put_document(make_doc(hr, path, [f"alpha policy {path}"]))
        q = EMBED.embed_query("alpha policy")
        for prefix, paths in (("hr/", {"hr/b.txt"}), ("HR/", {"HR/a.txt"}), ("h%", {"h%/c.txt"}),
                              ("h_/", {"h_/e.txt"}), ("Hr", set())):
            f = SearchFilters(source_prefix=prefix)
            hits = store.vector_search(HR, q, f, 10) + store.keyword_search(HR, "alpha", f, 10)
            assert {c.source_path for c in store.get_chunks(HR, [s.chunk_id for s in hits])} == paths, prefix

    def test_visible_document_counts(self, store: IndexStore) -> None:
        """What a member's ``document_count`` is: the documents they may see, not every document."""
        hr, fin = self._cols(store)
        store.put_document(make_doc(hr, "a.txt", ["open"]))
        store.put_document(make_doc(hr, "r.txt", ["restricted"], label=Label.RESTRICTED))
        store.put_document(make_doc(hr, "n.txt", ["narrowed"], acl=Acl(groups=frozenset({"hr-leads"}))))
        store.put_document(make_doc(fin, "f.txt", ["finance"]))
        assert store.visible_document_counts(HR, [hr, fin]) == {hr: 1}
        assert store.visible_document_counts(ADMIN, [hr, fin]) == {hr: 3, fin: 1}
        assert store.visible_document_counts(ADMIN, [fin]) == {fin: 1}
        assert store.visible_document_counts(NOBODY, [hr, fin]) == {}

    def test_same_bytes_elsewhere_in_collection_is_unchanged(self, store: IndexStore) -> None:
        hr, fin = self._cols(store)
        a = store.put_document(make_doc(hr, "a.txt", ["same bytes"]))
        assert store.put_document(make_doc(hr, "copy.txt", ["same bytes"])).status == "unchanged"
        # Another collection is another access list: the same file may live there too.
        assert store.put_document(make_doc(fin, "a.txt", ["same bytes"])).status == "added"
        assert store.find_document(hr, sha256=a.document.sha256) is not None
        # …unless asked for a document of its own (a member's upload of bytes they may not see elsewhere)
        own = store.put_document(make_doc(hr, "mine.txt", ["same bytes"]), own_copy=True)
        assert own.status == "added" and own.document.id != a.document.id

    def test_a_path_whose_file_now_has_another_documents_bytes_gets_them(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        store.put_document(make_doc(hr, "2025.txt", ["leave is 18 days"]))
        current = store.put_document(make_doc(hr, "current.txt", ["leave is 15 days"])).document
        again = store.put_document(make_doc(hr, "current.txt", ["leave is 18 days"]))
        assert again.status == "replaced" and again.document.id == current.id, again
        assert [c.content for c in store.document_chunks(current.id)] == ["leave is 18 days"]
        assert store.put_document(make_doc(hr, "current.txt", ["leave is 18 days"])).status == "unchanged"

    def test_delete_collection(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        store.put_document(make_doc(hr, "a.txt", ["one", "two"]))
        store.delete_collection(hr)
        c = store.counts()
        assert c["collections"] == 1 and c["documents"] == 0 and c["chunks"] == 0 and c["vectors"] == 0

    def test_the_run_journal_holds_what_each_run_committed(self, store: IndexStore) -> None:
        hr, fin = self._cols(store)
        a = store.put_document(make_doc(hr, "a.txt", ["annual leave"]), run="req_1").document
        assert store.put_document(make_doc(hr, "a.txt", ["annual leave"]), run="req_1").status == "unchanged"
        store.put_document(make_doc(hr, "a.txt", ["annual leave is 20 days"]), run="req_1")
        b = store.put_document(make_doc(hr, "b.txt", ["bonus"]), run="req_2").document
        store.move_document(a.id, "archive/a.txt", "a.txt", run="req_1")
        store.relabel(b.id, label=Label.CONFIDENTIAL, run="req_2")
        store.put_document(make_doc(hr, "c.txt", ["no run"]))  # a write outside any audited run: not noted
        assert store.delete_documents([b.id, "doc_missing"], run="req_2") == 1  # only what existed is noted
        assert store.run_changes("req_1") == [(a.id, "added"), (a.id, "replaced"), (a.id, "moved")]
        assert store.run_changes("req_2") == [(b.id, "added"), (b.id, "relabelled"), (b.id, "removed")]
        assert store.run_changes("req_none") == []
        # A failed write notes nothing: its transaction is rolled back with the note.
        with pytest.raises(NotFound):
            store.put_document(make_doc("col_missing", "x.txt", ["x"]), run="req_3")
        with pytest.raises(Conflict):
            store.move_document(a.id, "c.txt", "c.txt", run="req_3")
        assert store.run_changes("req_3") == []
        d = store.put_document(make_doc(fin, "d.txt", ["budget"]), run="req_4").document
        store.delete_collection(fin, run="req_4")
        assert store.run_changes("req_4") == [(d.id, "added"), (d.id, "removed")]
        store.forget_run("req_1")
        assert store.run_changes("req_1") == []
        mark = store.journal_mark()
        store.put_document(make_doc(hr, "e.txt", ["expenses"]), run="req_5")  # a run that began after the mark
        assert store.prune_journal({"req_2"}, mark) == 2  # req_4's entries; req_2 is still open, req_5 is new
        assert [action for _, action in store.run_changes("req_2")] == ["added", "relabelled", "removed"]
        assert store.run_changes("req_4") == [] and len(store.run_changes("req_5")) == 1
        assert store.prune_journal((), store.journal_mark()) == 4
        assert store.run_changes("req_2") == store.run_changes("req_5") == []

    def test_vectors_are_unit_and_similarity_ordered(self, store: IndexStore) -> None:
        hr, _ = self._cols(store)
        store.put_document(make_doc(hr, "a.txt", ["the cat sat on the mat", "quarterly revenue report"]))
        res = store.vector_search(ADMIN, EMBED.embed_query("the cat sat on the mat"), SearchFilters(), 2)
        assert res[0].score == pytest.approx(1.0, abs=1e-4) and res[0].score >= res[1].score
        assert np.isfinite([r.score for r in res]).all()

    def test_check_is_consistent_after_writes_replacements_and_deletes(self, store: IndexStore) -> None:
        hr, fin = self._cols(store)
        keep = store.put_document(make_doc(hr, "a.txt", ["first chunk", "second chunk 年假"])).document
        store.put_document(make_doc(hr, "a.txt", ["first chunk, replaced", "second", "third"]))
        gone = store.put_document(make_doc(fin, "b.txt", ["to be deleted"])).document
        store.delete_document(gone.id)
        result = store.check()
        assert result.ok and result.integrity == ["ok"] and result.fts_integrity == "ok", result.to_dict()
        assert result.problems == {} and result.counts["documents"] == 1 and result.counts["chunks"] == 3
        assert store.get_document(keep.id).chunk_count == 3
