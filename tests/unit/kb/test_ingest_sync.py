"""``ingest --sync``: new and changed files in, unchanged kept, deleted files' chunks gone everywhere; progress ETA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import IndexStore, SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import Ingestor, IngestProgress, iter_sources, sync_prefix
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIndexStore]:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    yield s
    s.close()


def write(root: Path, name: str, text: str) -> None:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def sync(ing: Ingestor, col: str, d: Path) -> dict[str, list[str]]:
    report = ing.ingest(col, list(iter_sources([d])), remove_missing=[sync_prefix(d)])
    out: dict[str, list[str]] = {}
    for o in report.outcomes:
        out.setdefault(o.status, []).append(o.source_path)
    return out


def test_sync_adds_replaces_keeps_and_removes_idempotently(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    write(d, "keep.md", "# Keep\n\nThe VPN port is 51820.\n")
    write(d, "change.md", "# Change\n\nHotel limit is 1,200 CNY.\n")
    write(d, "gone.md", "# Gone\n\nThe canteen serves zebra sandwiches on Fridays.\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb)
    ing.ingest_bytes(col, b"# Other\n\nnot under docs/\n", "other.md")  # outside the synced folder: left alone
    assert sorted(sync(ing, col, d)["added"]) == ["docs/change.md", "docs/gone.md", "docs/keep.md"]
    (d / "gone.md").unlink()
    write(d, "change.md", "# Change\n\nHotel limit is 1,500 CNY.\n")
    write(d, "new.md", "# New\n\nParental leave is 20 weeks.\n")
    second = sync(ing, col, d)
    assert second == {"removed": ["docs/gone.md"], "replaced": ["docs/change.md"], "added": ["docs/new.md"],
                      "unchanged": ["docs/keep.md"]}
    before = store.counts()
    embedded = emb.passages_embedded
    assert sync(ing, col, d) == {"unchanged": ["docs/change.md", "docs/keep.md", "docs/new.md"]}
    assert store.counts() == before and emb.passages_embedded == embedded  # a second sync changes nothing
    assert sorted(doc.source_path for doc in store.list_documents(col)) == [
        "docs/change.md", "docs/keep.md", "docs/new.md", "other.md"]
    assert all(v == 0 for k, v in store.counts().items() if k.startswith("orphan"))


def test_a_removed_file_leaves_no_trace_in_keyword_vector_or_resident_copies(store: SqliteIndexStore,
                                                                             tmp_path: Path) -> None:
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    secret = "zebra sandwiches canteen fridays"
    write(d, "gone.md", f"# Gone\n\nThe {secret}.\n")
    write(d, "stay.md", "# Stay\n\nThe VPN port is 51820.\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb)
    sync(ing, col, d)
    # Another process searches, so it holds its own resident copy of the vectors.
    reader = SqliteIndexStore(store.path, dim=384)
    try:
        q = emb.embed_query(secret)
        best = reader.vector_search(ADMIN, q, SearchFilters(), 1)
        assert reader.get_chunks(ADMIN, [best[0].chunk_id])[0].source_path == "docs/gone.md"
        (d / "gone.md").unlink()
        assert sync(ing, col, d)["removed"] == ["docs/gone.md"]
        top = reader.vector_search(ADMIN, q, SearchFilters(), 5)
        chunks = reader.get_chunks(ADMIN, [s.chunk_id for s in top])
        assert chunks and all(c.source_path == "docs/stay.md" for c in chunks)
        assert reader.keyword_search(ADMIN, "zebra sandwiches", SearchFilters(), 5) == []
    finally:
        reader.close()
    dump = store.raw_dump()
    assert b"zebra sandwiches" not in dump and b"sandwiches" not in dump  # the word index forgot it too


def test_a_moved_file_takes_its_document_along(store: SqliteIndexStore, tmp_path: Path) -> None:
    """A folder reorganised: each moved or renamed file keeps its document (id, the label and access list an admin
    gave it, its vectors): nothing is parsed or embedded again, and nothing becomes visible that was not."""
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    write(d, "old-name.md", "# Leave\n\nEmployees get 18 days.\n")
    write(d, "board/acquisition.md", "# Kestrel\n\nWe offer 40 million for Kestrel.\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb)
    sync(ing, col, d)
    memo = store.find_document(col, source_path="docs/board/acquisition.md")
    assert memo is not None
    store.relabel(memo.id, label=Label.RESTRICTED, acl=Acl(groups=frozenset({"board"})))
    embedded = emb.passages_embedded
    (d / "old-name.md").rename(d / "new-name.md")
    (d / "archive" / "2026").mkdir(parents=True)
    (d / "board" / "acquisition.md").rename(d / "archive" / "2026" / "acquisition.md")
    report = ing.ingest(col, list(iter_sources([d])), remove_missing=[sync_prefix(d)])
    assert {(o.status, o.moved_from, o.source_path) for o in report.outcomes} == {
        ("moved", "docs/old-name.md", "docs/new-name.md"),
        ("moved", "docs/board/acquisition.md", "docs/archive/2026/acquisition.md")}
    assert emb.passages_embedded == embedded and report.to_dict()["moved"] == 2
    moved = store.get_document(memo.id)
    assert moved.source_path == "docs/archive/2026/acquisition.md" and moved.label is Label.RESTRICTED
    assert moved.acl == Acl(groups=frozenset({"board"})) and moved.version == 1
    hits = store.keyword_search(ADMIN, "Kestrel", SearchFilters(), 5)
    assert [store.get_chunks(ADMIN, [h.chunk_id])[0].source_path for h in hits] == ["docs/archive/2026/acquisition.md"]
    assert sorted(doc.source_path for doc in store.list_documents(col)) == [
        "docs/archive/2026/acquisition.md", "docs/new-name.md"]
    assert sync(ing, col, d) == {"unchanged": ["docs/archive/2026/acquisition.md", "docs/new-name.md"]}


def test_a_file_replaced_by_a_moved_one_is_its_new_version(store: SqliteIndexStore, tmp_path: Path) -> None:
    """draft.md renamed over final.md: final.md's document gets the draft's text, the draft's document goes."""
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    write(d, "draft.md", "# Policy\n\nThe new hotel limit is 1,500 CNY.\n")
    write(d, "final.md", "# Policy\n\nThe hotel limit is 1,200 CNY.\n")
    ing = Ingestor(store, FakeEmbedder())
    sync(ing, col, d)
    final = store.find_document(col, source_path="docs/final.md")
    assert final is not None
    (d / "draft.md").replace(d / "final.md")
    assert sync(ing, col, d) == {"removed": ["docs/draft.md"], "replaced": ["docs/final.md"]}
    (only,) = store.list_documents(col)
    assert only.id == final.id and only.version == 2
    assert "1,500" in store.document_chunks(only.id)[0].content and store.check().ok


MEMO = ("# Kestrel\n\nWe offer 40 million for Kestrel Robotics, payable in two tranches.\n\n"
        "## Terms\n\nThe founders stay for two years. The Shenzhen plant is kept.\n\n"
        "## 时间表\n\n董事会在十二月批准，交割在第一季度完成。\n")


def test_a_file_moved_and_edited_keeps_its_document_label_and_access(index_store: IndexStore,
                                                                       tmp_path: Path) -> None:
    """The restricted board memo is corrected on its way into the archive: new bytes, so no move by bytes, but most
    of its text is the same. It stays the same document (id, label, access list), at its new path, in a new version;
    only what changed is embedded, and the old wording is gone from search."""
    store = index_store
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    write(d, "board/acquisition.md", MEMO)
    write(d, "leave.md", "# Leave\n\nEmployees get 18 days.\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb, max_tokens=24, overlap_tokens=0)
    sync(ing, col, d)
    memo = store.find_document(col, source_path="docs/board/acquisition.md")
    assert memo is not None and memo.chunk_count >= 3
    store.relabel(memo.id, label=Label.RESTRICTED, acl=Acl(groups=frozenset({"board"})))
    (d / "board" / "acquisition.md").unlink()
    write(d, "archive/2026/acquisition.md", MEMO.replace("40 million", "45 million"))
    embedded = emb.passages_embedded
    report = ing.ingest(col, list(iter_sources([d])), remove_missing=[sync_prefix(d)])
    (moved,) = [o for o in report.outcomes if o.status == "moved"]
    assert (moved.moved_from, moved.source_path, moved.document_id) == (
        "docs/board/acquisition.md", "docs/archive/2026/acquisition.md", memo.id)
    assert moved.edited and moved.same_text is not None and 0.5 <= moved.same_text < 1.0
    assert {o.status for o in report.outcomes} == {"moved", "unchanged"}  # nothing removed, nothing added
    assert report.to_dict()["moved_and_edited"] == 1 and report.chunks == moved.chunks
    assert emb.passages_embedded - embedded == 1 and report.reused_chunks == moved.chunks - 1
    now = store.get_document(memo.id)
    assert now.source_path == "docs/archive/2026/acquisition.md" and now.version == 2
    assert now.label is Label.RESTRICTED and now.acl == Acl(groups=frozenset({"board"}))
    hits = store.keyword_search(ADMIN, "45 million", SearchFilters(), 5)
    assert {store.get_chunks(ADMIN, [h.chunk_id])[0].document_id for h in hits} == {memo.id}
    assert not any("40 million" in c.content for c in store.document_chunks(memo.id))
    assert len(store.list_documents(col)) == 2 and store.check().ok
    assert sync(ing, col, d) == {"unchanged": ["docs/archive/2026/acquisition.md", "docs/leave.md"]}


def test_renamed_and_edited_needs_more_of_the_text_and_an_unrelated_file_claims_nothing(
        store: SqliteIndexStore, tmp_path: Path) -> None:
    """Under another name a file must keep four fifths of its text to be the same document; a rewrite, or a file
    that merely shares a phrase, is a new document and the missing one is removed."""
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    long_text = "# Travel\n\n" + " ".join(f"Rule {i}: economy class for flights under {i + 3} hours."
                                          for i in range(40))
    write(d, "travel.md", long_text)
    write(d, "memo.md", MEMO)
    ing = Ingestor(store, FakeEmbedder())
    sync(ing, col, d)
    travel = store.find_document(col, source_path="docs/travel.md")
    assert travel is not None
    (d / "travel.md").unlink()
    (d / "memo.md").unlink()
    write(d, "travel-policy-2027.md", long_text.replace("Rule 7:", "Rule 7 (amended):"))
    write(d, "kestrel-notes.md", "# Notes\n\nWe offer 40 million for Kestrel Robotics? Ask the board first.\n")
    report = ing.ingest(col, list(iter_sources([d])), remove_missing=[sync_prefix(d)])
    assert {(o.status, o.source_path, o.moved_from) for o in report.outcomes} == {
        ("moved", "docs/travel-policy-2027.md", "docs/travel.md"),
        ("added", "docs/kestrel-notes.md", None), ("removed", "docs/memo.md", None)}
    assert store.get_document(travel.id).source_path == "docs/travel-policy-2027.md"


def test_a_moved_unchanged_file_claims_its_document_before_a_resembling_one(store: SqliteIndexStore,
                                                                           tmp_path: Path) -> None:
    """The memo moved unchanged to z/ and an edited copy of it put in a/ (seen first): the document follows its own
    bytes, the copy is a new document."""
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    write(d, "acquisition.md", MEMO)
    ing = Ingestor(store, FakeEmbedder())
    sync(ing, col, d)
    memo = store.find_document(col, source_path="docs/acquisition.md")
    assert memo is not None
    (d / "z").mkdir()
    (d / "acquisition.md").rename(d / "z" / "acquisition.md")
    write(d, "a/acquisition.md", MEMO.replace("40 million", "45 million"))
    assert sync(ing, col, d) == {"moved": ["docs/z/acquisition.md"], "added": ["docs/a/acquisition.md"]}
    assert store.get_document(memo.id).source_path == "docs/z/acquisition.md"


def test_progress_carries_bytes_and_an_eta(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("docs", acl=Acl()).id
    d = tmp_path / "docs"
    for i in range(6):
        write(d, f"f{i}.md", f"# File {i}\n\n" + "word " * (20 * (i + 1)) + "\n")
    now = [0.0]
    seen: list[IngestProgress] = []

    def tick(p: IngestProgress) -> None:
        seen.append(p)
        now[0] += 1.0

    Ingestor(store, FakeEmbedder(), embed_batch=1, clock=lambda: now[0]).ingest_paths(col, [d], progress=tick)
    total = sum(f.stat().st_size for f in d.iterdir())
    assert seen[0].bytes_done == 0 and seen[0].eta_s is None and seen[-1].bytes_total == total
    assert seen[-1].bytes_done == total and seen[-1].eta_s == 0.0
    mid = next(p for p in seen if 0 < p.bytes_done < total)
    assert mid.eta_s == pytest.approx(mid.elapsed_s * (total - mid.bytes_done) / mid.bytes_done)
    assert IngestProgress(1, 4, 0, 10.0).eta_s == pytest.approx(30.0)  # sizes unknown: by files


def test_a_folder_of_the_same_name_neither_deletes_nor_replaces_the_first_ones_documents(
        store: SqliteIndexStore, tmp_path: Path) -> None:
    from inhouse.errors import Conflict

    col = store.create_collection("shared", acl=Acl()).id
    hr, finance = tmp_path / "hr/docs", tmp_path / "finance/docs"
    write(hr, "leave.md", "# Leave\n\nEmployees get 15 days of annual leave.\n")
    write(hr, "x.md", "# X\n\nThe HR version of x.\n")
    write(finance, "x.md", "# X\n\nThe finance version of x.\n")
    ing = Ingestor(store, FakeEmbedder())
    assert sorted(sync(ing, col, hr)["added"]) == ["docs/leave.md", "docs/x.md"]
    before = {d.source_path: d.sha256 for d in store.list_documents(col)}
    with pytest.raises(Conflict, match="another folder named 'docs'"):
        sync(ing, col, finance)  # before the fix: 'removed docs/leave.md', docs/x.md replaced by finance's
    (finance / "x.md").unlink()
    with pytest.raises(Conflict):
        sync(ing, col, finance)  # an empty folder of that name would have deleted everything under docs/
    report = ing.ingest(col, list(iter_sources([tmp_path / "finance"])))  # plain ingest of another folder
    assert [o.status for o in report.outcomes] == []  # finance/ is empty now; nothing happens
    write(finance, "x.md", "# X\n\nThe finance version of x.\n")
    with pytest.raises(Conflict, match="another folder named 'docs'"):
        ing.ingest(col, list(iter_sources([finance])))  # a plain ingest would have replaced HR's x.md
    with pytest.raises(Conflict, match="Two folders named 'docs' in one run"):
        ing.ingest(col, list(iter_sources([hr, finance])), remove_missing=[sync_prefix(hr), sync_prefix(finance)])
    assert {d.source_path: d.sha256 for d in store.list_documents(col)} == before
    # the folder above gives other paths, and the same folder again is the same documents
    assert sync(ing, col, tmp_path / "finance") == {"added": ["finance/docs/x.md"]}
    assert sync(ing, col, hr) == {"unchanged": ["docs/leave.md", "docs/x.md"]}


def test_the_same_folder_moved_or_remounted_syncs_on(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("moved", acl=Acl()).id
    old, new = tmp_path / "old/docs", tmp_path / "new/docs"
    for name in ("a", "b", "c"):
        write(old, f"{name}.md", f"# {name}\n\nThe text of {name}.\n")
    ing = Ingestor(store, FakeEmbedder())
    assert len(sync(ing, col, old)["added"]) == 3
    (tmp_path / "old").rename(tmp_path / "new")  # the share is mounted elsewhere now
    write(new, "b.md", "# b\n\nEdited after the move.\n")
    assert sync(ing, col, new) == {"replaced": ["docs/b.md"], "unchanged": ["docs/a.md", "docs/c.md"]}
    (new / "c.md").unlink()
    assert sync(ing, col, new) == {"removed": ["docs/c.md"], "unchanged": ["docs/a.md", "docs/b.md"]}


def test_documents_from_before_the_folder_was_kept_count_as_the_synced_folders(
        store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("legacy", acl=Acl()).id
    d = tmp_path / "docs"
    ing = Ingestor(store, FakeEmbedder())
    ing.ingest_bytes(col, b"# Old\n\nIngested before source_folder existed.\n", "old.md", source_path="docs/old.md")
    write(d, "new.md", "# New\n\nThe new file.\n")
    assert sync(ing, col, d) == {"added": ["docs/new.md"], "removed": ["docs/old.md"]}


def test_a_path_too_long_for_an_index_is_that_files_error_on_every_store(
        store: SqliteIndexStore, tmp_path: Path) -> None:
    from inhouse.kb.ingest import MAX_SOURCE_PATH_BYTES

    col = store.create_collection("deep", acl=Acl()).id
    d = tmp_path / "docs"
    deep = "/".join(["a" * 200] * 6)  # 1,200 bytes of folders: PostgreSQL's index refused it with a 500
    write(d, f"{deep}/x.md", "# Deep\n\nA file far down.\n")
    write(d, "near.md", "# Near\n\nA file near the top.\n")
    report = Ingestor(store, FakeEmbedder()).ingest(col, list(iter_sources([d])))
    assert [o.status for o in report.outcomes] == ["error", "added"]
    assert f"longer than {MAX_SOURCE_PATH_BYTES} bytes" in (report.outcomes[0].error or "")
