"""Result diversity (a document's share of the top k, near-duplicates) and alternate wordings of a query."""

from __future__ import annotations

from tinyindex import put_texts

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import StoredChunk
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever, diversify, near_duplicate, shingles
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor("key_admin", "admin", role="admin")
EMB = FakeEmbedder(64)


def chunk(n: int, doc: str, text: str) -> StoredChunk:
    return StoredChunk(f"chk_{n}", doc, "col_x", n, text, text, "", None, None, doc, f"{doc}.md", Label.INTERNAL)


def test_no_document_takes_more_than_its_share() -> None:
    cands = [chunk(i, "big", f"passage number {i} about leave") for i in range(6)]
    cands += [chunk(10, "b", "carry over rules"), chunk(11, "c", "sick leave rules")]
    kept = diversify(cands, 5, 2)
    docs = [cands[i].document_id for i in kept]
    assert docs.count("big") == 2 + 1  # 2 by share, then one more to fill the fifth slot: only 3 documents exist
    assert {"b", "c"} <= set(docs) and len(kept) == 5
    assert kept[:4] == [0, 1, 6, 7]  # fused order among the chunks within their share


def test_near_duplicates_collapse_to_the_better_ranked_one() -> None:
    text = "Employees may carry over at most 5 unused days into the next year. Carried-over days expire on 31 March."
    cands = [chunk(1, "a", text), chunk(2, "copy", text + " "), chunk(3, "b", "Parental leave is 20 weeks."),
             chunk(4, "c", "Sick leave is 10 days.")]
    assert [cands[i].id for i in diversify(cands, 3, 2)] == ["chk_1", "chk_3", "chk_4"]
    # …but a duplicate still fills a slot nothing else can
    assert [cands[i].id for i in diversify(cands, 4, 2)] == ["chk_1", "chk_3", "chk_4", "chk_2"]


def test_shingle_similarity() -> None:
    a = shingles("The VPN uses WireGuard on port 51820.")
    assert near_duplicate(a, shingles("the vpn  uses wireguard on port 51820."))  # case and spaces aside
    assert not near_duplicate(a, shingles("Profiles expire after 180 days; request a new one."))
    zh = "员工每年享有 3000 元的外部培训预算"
    assert near_duplicate(shingles(zh + "。"), shingles(zh))


def _put(store: SqliteIndexStore, col: str, path: str, texts: list[str]) -> None:
    put_texts(store, col, path, texts, EMB)


def test_retrieval_spreads_the_top_k_over_documents() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("c", acl=Acl()).id
        _put(store, col, "long.html", [f"leave policy section {i}: annual leave days rule {i}" for i in range(12)])
        _put(store, col, "a.md", ["annual leave days for new staff"])
        _put(store, col, "b.md", ["leave days carried over"])
        hits = Retriever(store, EMB).retrieve(ADMIN, "annual leave days", top_k=5)
        paths = [h.chunk.source_path for h in hits]
        assert len(hits) == 5 and paths.count("long.html") == 3 and {"a.md", "b.md"} <= set(paths)
        assert len(Retriever(store, EMB, document_share=1.0).retrieve(ADMIN, "annual leave days", top_k=5)) == 5
    finally:
        store.close()


def test_an_alternate_wording_finds_what_the_question_cannot() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("c", acl=Acl()).id
        _put(store, col, "handbook.zh.md", ["工作日加班按 1.5 倍工资计算"])
        _put(store, col, "travel.md", [f"travel rule {i}: hotels and flights" for i in range(8)])
        _put(store, col, "rules.zh.md", [f"第{i}条：年假和病假的规定" for i in range(6)])
        r = Retriever(store, EMB, document_share=1.0)  # no diversity rule: the wordings alone decide
        plain, sim_plain = r.retrieve_scored(ADMIN, "overtime pay on workdays", top_k=6)
        both, sim_both = r.retrieve_scored(ADMIN, "overtime pay on workdays", top_k=6, alternates=["工作日加班工资"])
        assert "handbook.zh.md" not in [h.chunk.source_path for h in plain]
        assert "handbook.zh.md" in [h.chunk.source_path for h in both]
        assert sim_both > sim_plain  # the gate sees the best similarity of any wording
    finally:
        store.close()


def test_each_wording_has_the_same_say() -> None:
    from inhouse.kb.retrieve import fuse_wordings

    question = [("en1", 0.03, [1, 1]), ("en2", 0.02, [2, 2]), ("shared", 0.01, [3, 3])]
    translation = [("zh1", 0.016, [None, 1]), ("shared", 0.015, [None, 2]), ("zh2", 0.014, [None, 3])]
    fused = fuse_wordings([question, translation])
    assert [cid for cid, _, _ in fused] == ["en1", "zh1", "en2", "shared", "zh2"]  # interleaved, best rank counts
    assert fused[3][1] == 1.0 / 62 and fused[3][2] == [None, 2]
    assert fuse_wordings([question]) == question


ANNUAL = ("Annual leave depends on length of service: 15 days under 2 years, 18 days from 2 to 5 years, 22 days "
          "after 5 years of service.")
REQUESTS = "Annual leave requests of 3 or more days go through the HR portal 10 working days ahead of the leave."


def test_copies_of_one_policy_do_not_fill_the_top_k() -> None:
    """Eight branch copies of the leave policy (the same two passages and a line of their own) rank above the other
    leave documents (16 copies first in the fused list): the top 5 holds each passage once, then the other
    documents, not copies of the two passages."""
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("c", acl=Acl()).id
        for i in range(1, 9):
            _put(store, col, f"branch{i}/leave.md", [ANNUAL, REQUESTS, f"Branch office {i} keeps this copy."])
        _put(store, col, "carry-over.md", ["Unused annual leave: at most 5 days carry over, they expire in March."])
        _put(store, col, "sick.md", ["Sick leave is 10 paid days a year, with a certificate from the third day."])
        hits = Retriever(store, EMB).retrieve(ADMIN, "annual leave days for 3 years of service", top_k=5)
        texts = [h.chunk.content for h in hits]
        assert len(hits) == 5 and texts.count(ANNUAL) == 1 and texts.count(REQUESTS) == 1
        assert {"carry-over.md", "sick.md"} <= {h.chunk.source_path for h in hits}
    finally:
        store.close()


class _ReadCounter:
    """The one store call ``_select`` makes, recorded: which ids were read, and through which scope."""

    def __init__(self, chunks: list[StoredChunk]) -> None:
        self.by_id = {c.id: c for c in chunks}
        self.reads: list[tuple[object, list[str]]] = []

    def get_chunks(self, scope: object, ids: list[str]) -> list[StoredChunk]:
        self.reads.append((scope, list(ids)))
        return [self.by_id[i] for i in ids if i in self.by_id]


def _fused(chunks: list[StoredChunk]) -> list[tuple[str, float, list[int | None]]]:
    return [(c.id, 1.0 / (61 + r), [r + 1, r + 1]) for r, c in enumerate(chunks)]


def test_reading_past_copies_is_bounded_and_goes_through_the_callers_scope() -> None:
    """70 near-duplicates (one passage, a few words of each copy's own) head the fused list: the rule reads on to
    the distinct passages behind them, in reads that double, every one through the caller's scope."""
    copies = [chunk(i, f"copy{i}", ANNUAL + f" Copy {i}.") for i in range(70)]
    others = [chunk(100 + i, f"other{i}", text) for i, text in enumerate(
        ["Sick leave is 10 paid days.", "Parental leave is 20 weeks.", "Bereavement leave is 5 days.",
         "Marriage leave is 3 days.", "Volunteering: 1 paid day a year.", "Holidays on a Sunday move to Monday."])]
    store = _ReadCounter(copies + others)
    scope = AccessScope.of(ADMIN)
    hits = Retriever(store, EMB)._select(scope, _fused(copies + others), 5, {})  # type: ignore[arg-type]
    assert [h.chunk.id for h in hits] == ["chk_0", "chk_100", "chk_101", "chk_102", "chk_103"]
    assert [len(ids) for _, ids in store.reads] == [15, 15, 30, 16]  # each read as long as all before it
    assert all(s is scope for s, _ in store.reads)

    store = _ReadCounter(others + copies)  # nothing alike in the first window: one read, as before
    hits = Retriever(store, EMB)._select(scope, _fused(others + copies), 5, {})  # type: ignore[arg-type]
    assert [h.chunk.id for h in hits] == [f"chk_10{i}" for i in range(5)] and len(store.reads) == 1
