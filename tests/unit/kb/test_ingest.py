"""Ingestion with the FakeEmbedder: idempotency, replacement, deletion, per-file errors, batching, progress,
and crash safety (a subprocess killed mid-ingest, then re-run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import StorageFull, StoreUnavailable
from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import FileSource, Ingestor, IngestProgress, iter_sources, sync_prefix
from inhouse.testing.fake_embedder import FakeEmbedder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIndexStore]:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    yield s
    s.close()


def write(root: Path, name: str, text: str) -> Path:
    p = root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def test_same_bytes_twice_change_nothing(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl(groups=frozenset({"hr"})))
    docs = tmp_path / "docs"
    write(docs, "leave.md", "# Leave\n\nEmployees get 18 days of annual leave.\n")
    write(docs, "sub/travel.md", "# Travel\n\nHotel limit in Shanghai is 1,200 CNY per night.\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb)
    first = ing.ingest_paths(col.id, [docs])
    assert first.count("added") == 2 and first.chunks >= 2 and not first.errors
    assert {o.source_path for o in first.outcomes} == {"docs/leave.md", "docs/sub/travel.md"}
    before, embedded = store.counts(), emb.passages_embedded
    second = ing.ingest_paths(col.id, [docs])
    assert second.count("unchanged") == 2 and second.chunks == 0
    assert store.counts() == before and emb.passages_embedded == embedded  # not even re-embedded


def test_changed_bytes_replace_in_place(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    f = write(tmp_path, "leave.md", "# Leave\n\nEmployees get 18 days.\n")
    ing = Ingestor(store, FakeEmbedder())
    doc_id = ing.ingest_paths(col.id, [f]).outcomes[0].document_id
    write(tmp_path, "leave.md", "# Leave\n\nEmployees get 20 days.\n")
    out = ing.ingest_paths(col.id, [f]).outcomes[0]
    assert out.status == "replaced" and out.document_id == doc_id
    doc = store.get_document(doc_id)
    assert doc.version == 2 and store.counts()["documents"] == 1
    assert all("20 days" in c.content for c in store.document_chunks(doc_id) if "days" in c.content)
    assert b"20 days" in store.document_data(doc_id)


def test_an_edit_embeds_only_the_chunks_it_changed(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    sections = [f"## Rule {i}\n\nRule {i} of the travel policy: " + f"detail {i} " * 40 for i in range(8)]
    f = write(tmp_path, "policy.md", "# Travel policy\n\n" + "\n\n".join(sections) + "\n")
    emb = FakeEmbedder()
    ing = Ingestor(store, emb, max_tokens=60)
    first = ing.ingest_paths(col.id, [f])
    n = first.chunks
    assert n >= 8 and first.reused_chunks == 0 and emb.passages_embedded == n
    doc_id = first.outcomes[0].document_id
    assert doc_id is not None
    before = {c.content for c in store.document_chunks(doc_id)}
    sections[5] = sections[5].replace("detail 5 detail 5", "detail 5 qwxzebra", 1)
    write(tmp_path, "policy.md", "# Travel policy\n\n" + "\n\n".join(sections) + "\n")
    second = ing.ingest_paths(col.id, [f])
    assert second.count("replaced") == 1 and second.chunks == n
    stored = store.document_chunks(doc_id)
    changed = [c for c in stored if c.content not in before]
    embedded = emb.passages_embedded - n
    assert embedded == len(changed) == second.embedded_chunks and embedded < n / 4, second.to_dict()
    assert second.reused_chunks == n - embedded and all("Rule 5" in c.section for c in changed)
    assert [c.ordinal for c in stored] == list(range(n)) and any("qwxzebra" in c.content for c in changed)
    # Every chunk's vector is the one its text gets embedded to, kept or new.
    known = store.embedded_chunks(col.id, "policy.md")
    assert len(known) == n and all(np.allclose(v, FakeEmbedder().embed_passages([t])[0]) for t, v in known.items())
    assert store.check().ok


def test_a_new_version_keeps_the_label_and_access_list_unless_given_new_ones(store: SqliteIndexStore,
                                                                             tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl(groups=frozenset({"hr"})))
    ing = Ingestor(store, FakeEmbedder())
    narrowed = Acl(groups=frozenset({"hr-leads"}))
    doc_id = ing.ingest_bytes(col.id, b"# Reorg\n\nDraft 1.\n", "reorg.md", label="restricted",
                              acl=narrowed).document_id or ""
    ing.ingest_bytes(col.id, b"# Reorg\n\nDraft 2.\n", "reorg.md")  # a changed file, nothing said about access
    doc = store.get_document(doc_id)
    assert (doc.version, doc.label, doc.acl) == (2, Label.RESTRICTED, narrowed)
    wider = Acl(groups=frozenset({"hr"}))
    ing.ingest_bytes(col.id, b"# Reorg\n\nFinal.\n", "reorg.md", label="internal", acl=wider)
    doc = store.get_document(doc_id)
    assert (doc.version, doc.label, doc.acl) == (3, Label.INTERNAL, wider)
    fresh = ing.ingest_bytes(col.id, b"# Menu\n\nNoodles.\n", "menu.md")
    assert store.get_document(fresh.document_id or "").label == Label.CONFIDENTIAL  # no label: confidential


def test_replacement_is_atomic_for_readers(store: SqliteIndexStore, tmp_path: Path) -> None:
    """While one thread replaces a document over and over, readers always see exactly one version."""
    col = store.create_collection("hr", acl=Acl())
    ing = Ingestor(store, FakeEmbedder())
    text = lambda v: "# Policy\n\n" + "\n\n".join(f"Paragraph {i} of version {v}." for i in range(6))  # noqa: E731
    doc_id = ing.ingest_bytes(col.id, text(0).encode(), "p.md").document_id
    assert doc_id
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            chunks = store.document_chunks(doc_id)
            versions = {w for c in chunks for w in c.content.split() if w.startswith("v")}
            joined = " ".join(c.content for c in chunks)
            found = {v for v in range(20) if f"version {v}." in joined}
            if len(found) != 1:
                bad.append(f"{found} {versions}")

    t = threading.Thread(target=reader)
    t.start()
    for v in range(1, 15):
        assert ing.ingest_bytes(col.id, text(v).encode(), "p.md").status == "replaced"
    stop.set()
    t.join()
    assert not bad, bad[:3]


def test_per_file_errors_are_reported_and_skipped(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    d = tmp_path / "mix"
    write(d, "good.md", "# Good\n\nSome text.\n")
    (d / "empty.txt").write_bytes(b"")
    (d / "zero.pdf").write_bytes(b"")
    (d / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (d / "bad.bin").write_bytes(b"\x7fELF\x00\x00binary")
    (d / "latin.txt").write_bytes(b"caf\xe9 cr\xe8me \xff\xfe invalid utf-8 but text")
    report = Ingestor(store, FakeEmbedder()).ingest_paths(col.id, [d])
    status = {o.source_path.split("/")[-1]: o.status for o in report.outcomes}
    assert status["good.md"] == "added"
    assert status["empty.txt"] == status["zero.pdf"] == status["broken.pdf"] == status["bad.bin"] == "error"
    assert all(o.error for o in report.errors)
    c = store.counts()
    assert c["documents"] == sum(1 for s in status.values() if s == "added")


@pytest.mark.parametrize("gone", [StorageFull("the disk is full"), StoreUnavailable("the database is away")])
def test_a_store_that_cannot_write_stops_the_batch_instead_of_failing_every_file(
        store: SqliteIndexStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gone: Exception) -> None:
    col = store.create_collection("hr", acl=Acl())
    d = tmp_path / "many"
    for i in range(4):
        write(d, f"f{i}.md", f"# Doc {i}\n\nText number {i}.\n")
    put, calls = store.put_document, []

    def put_then_fail(doc: object, **kw: object) -> object:
        calls.append(doc)
        if len(calls) > 1:
            raise gone
        return put(doc, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put_document", put_then_fail)
    with pytest.raises(type(gone)):
        Ingestor(store, FakeEmbedder(), embed_batch=1).ingest_paths(col.id, [d])
    assert len(calls) == 2 and store.counts()["documents"] == 1  # what committed stays; a re-run resumes


def test_too_big_file_is_rejected_before_parsing(store: SqliteIndexStore) -> None:
    col = store.create_collection("hr", acl=Acl())
    out = Ingestor(store, FakeEmbedder(), max_file_mb=0.001).ingest_bytes(col.id, b"x " * 2000, "big.txt")
    assert out.status == "error" and "larger than" in (out.error or "")


def test_path_traversal_filename_is_only_metadata(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    before = set(tmp_path.parent.iterdir())
    out = Ingestor(store, FakeEmbedder()).ingest_bytes(col.id, b"# Hi\n\nhello\n", "../../etc/passwd.md")
    assert out.status == "added"
    doc = store.get_document(out.document_id or "")
    assert "/" not in doc.filename and ".." not in doc.filename
    assert set(tmp_path.parent.iterdir()) == before


def test_embedding_is_batched_across_files_and_progress_reports(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    d = tmp_path / "many"
    for i in range(12):
        write(d, f"f{i:02}.md", f"# File {i}\n\nLine about topic {i}.\n")
    emb = FakeEmbedder()
    seen: list[IngestProgress] = []
    report = Ingestor(store, emb, embed_batch=8).ingest_paths(col.id, [d], progress=seen.append)
    assert report.count("added") == 12
    assert emb.calls <= 3  # 12+ chunks in batches of 8, not one call per file
    assert seen[-1].files_done == 12 and seen[-1].files_total == 12 and seen[-1].chunks_done == report.chunks
    assert [p.files_done for p in seen] == sorted(p.files_done for p in seen)


def test_labels_and_acl_are_stored(store: SqliteIndexStore) -> None:
    col = store.create_collection("hr", acl=Acl())
    ing = Ingestor(store, FakeEmbedder())
    a = ing.ingest_bytes(col.id, b"# A\n\nalpha\n", "a.md")
    b = ing.ingest_bytes(col.id, b"# B\n\nbeta\n", "b.md", label="public", acl=Acl(groups=frozenset({"x"})))
    assert store.get_document(a.document_id or "").label is Label.CONFIDENTIAL  # missing label
    rec = store.get_document(b.document_id or "")
    assert rec.label is Label.PUBLIC and rec.acl == Acl(groups=frozenset({"x"}))


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from inhouse.kb.access import Acl
    from inhouse.kb.index.sqlite import SqliteIndexStore
    from inhouse.kb.ingest import Ingestor
    from inhouse.testing.fake_embedder import FakeEmbedder

    class SlowEmbedder(FakeEmbedder):
        def embed_passages(self, texts):
            time.sleep(0.05)
            return super().embed_passages(texts)

    store = SqliteIndexStore(sys.argv[1], dim=384)
    try:
        col = store.get_collection("hr")
    except Exception:
        col = store.create_collection("hr", acl=Acl())
    def progress(p):
        print(p.files_done, flush=True)
        if len(sys.argv) > 3 and p.files_done >= int(sys.argv[3]):
            time.sleep(120)  # the test kills it here: at a known point, whatever the machine's load
    Ingestor(store, SlowEmbedder(), embed_batch=4).ingest_paths(col.id, [sys.argv[2]], progress=progress)
    print("done", flush=True)
""")


def test_killed_ingestion_restarts_without_duplicates_or_orphans(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for i in range(40):
        write(docs, f"f{i:02}.md", f"# File {i}\n\n" + "\n\n".join(f"Fact {j} of file {i}." for j in range(6)))
    script = tmp_path / "ingest.py"
    script.write_text(CRASH_SCRIPT)
    db = tmp_path / "kb.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(docs), "10"], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once some, but not all, files are in (it waits there)
        line = proc.stdout.readline()
        if line.strip().isdigit() and int(line) >= 10:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = SqliteIndexStore(db, dim=384)
    try:
        partial = s.counts()["documents"]
        assert 0 < partial < 40
    finally:
        s.close()
    done = subprocess.run([sys.executable, str(script), str(db), str(docs)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]
    s = SqliteIndexStore(db, dim=384)
    try:
        c = s.counts()
        assert c["documents"] == 40 and c["duplicate_documents"] == 0
        assert all(v == 0 for k, v in c.items() if k.startswith("orphan") or "without" in k), c
        assert c["chunks"] == c["vectors"] == c["fts_rows"]
    finally:
        s.close()


class LazyEmbedder(FakeEmbedder):
    """A FakeEmbedder whose model "loads" in ``prepare()`` (like the llama.cpp engine), on a scripted clock."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock
        self.prepared = 0

    def prepare(self) -> None:
        self.prepared += 1
        self.clock[0] += 0.5

    def embed_passages(self, texts):  # type: ignore[no-untyped-def]
        self.clock[0] += 0.01 * len(texts)
        return super().embed_passages(texts)


def test_report_separates_model_load_from_embedding(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    for i in range(3):
        write(tmp_path / "d", f"f{i}.md", f"# Doc {i}\n\nParagraph {i} about leave and travel.\n")
    now = [0.0]
    emb = LazyEmbedder(now)
    report = Ingestor(store, emb, embed_batch=1, clock=lambda: now[0]).ingest_paths(col.id, [tmp_path / "d"])
    assert emb.prepared == 1 and report.chunks == 3  # loaded once per run, before the first batch
    assert report.load_seconds == pytest.approx(0.5) and report.embed_seconds == pytest.approx(0.03)
    assert report.embed_chunks_per_s == pytest.approx(100.0) and report.chunks_per_s < 10
    assert report.to_dict()["embed_chunks_per_s"] == 100.0


def test_a_file_rewritten_with_another_files_bytes_gets_them(store: SqliteIndexStore, tmp_path: Path) -> None:
    """A sync kept the old text of a file whose new bytes equal another document's, reporting it unchanged under
    that other document's id."""
    col = store.create_collection("hr", acl=Acl())
    docs = tmp_path / "docs"
    write(docs, "policy-2025.md", "# Leave\n\nEmployees get 18 days of annual leave.\n")
    current = write(docs, "policy-current.md", "# Leave\n\nEmployees get 15 days of annual leave.\n")
    ing = Ingestor(store, FakeEmbedder())
    ing.ingest_paths(col.id, [docs])
    doc = store.find_document(col.id, source_path="docs/policy-current.md")
    assert doc is not None
    current.write_bytes((docs / "policy-2025.md").read_bytes())
    report = ing.ingest(col.id, list(iter_sources([docs])), remove_missing=["docs/"])
    assert {(o.source_path, o.status, o.document_id) for o in report.outcomes} == {
        ("docs/policy-2025.md", "unchanged", store.find_document(col.id, source_path="docs/policy-2025.md").id),
        ("docs/policy-current.md", "replaced", doc.id)}
    assert [c.content for c in store.document_chunks(doc.id)] == ["Employees get 18 days of annual leave."]


def test_file_names_that_are_not_utf8_are_read_as_text(store: SqliteIndexStore, tmp_path: Path) -> None:
    """A name in GBK (a Chinese Windows share) or Windows-1252 reached SQLite as lone surrogates and stopped the
    whole ingest with a UnicodeEncodeError."""
    col = store.create_collection("hr", acl=Acl())
    docs = tmp_path / "文档"  # a folder made on Linux (UTF-8) holding files copied from Windows shares
    docs.mkdir()
    names = ("员工手册.md".encode("gbk"), "résumé.md".encode("cp1252"), "Müller.md".encode("cp1252"), b"bad\x81.md")
    for i, name in enumerate(names):
        (docs / os.fsdecode(name)).write_bytes(b"# Handbook\n\nThe staff handbook, part " + str(i).encode() + b"\n")
    ing = Ingestor(store, FakeEmbedder())
    first = ing.ingest(col.id, list(iter_sources([docs])), remove_missing=[sync_prefix(docs)])
    assert not first.errors and {o.source_path for o in first.outcomes} == {
        "文档/员工手册.md", "文档/résumé.md", "文档/Müller.md", "文档/bad\\x81.md"}
    again = ing.ingest(col.id, list(iter_sources([docs])), remove_missing=[sync_prefix(docs)])
    assert again.count("unchanged") == 4 and again.count("removed") == 0  # the same names every run


POLICY = "# Leave\n\n" + "\n\n".join(f"## Rule {i}\n\nRule {i}: " + f"annual leave detail {i} " * 30 for i in range(5))


def counting_parse(calls: list[str]):  # type: ignore[no-untyped-def]
    from inhouse.kb.parse import parse_file

    def parse(data: bytes, filename: str):  # type: ignore[no-untyped-def]
        calls.append(filename)
        return parse_file(data, filename)

    return parse


def test_copies_of_a_new_file_in_one_run_are_parsed_and_embedded_once(store: SqliteIndexStore,
                                                                      tmp_path: Path) -> None:
    """Twelve byte-identical copies of a new file (one per department folder) were each parsed and embedded, then
    all but one dropped as unchanged when written: 72 chunks embedded for one document of 6, and the report's
    embedding rate divided those 6 by the time of all 72 (0.5 chunks/s instead of 11)."""
    col = store.create_collection("hr", acl=Acl())
    many = tmp_path / "many"
    for i in range(12):
        write(many, f"dept{i:02}/policy.md", POLICY)
    write(many, "dept05/other.md", "# Travel\n\nHotel limit in Shanghai is 1,200 CNY per night.\n")
    now, parsed, seen = [0.0], [], []
    emb = LazyEmbedder(now)
    report = Ingestor(store, emb, parse=counting_parse(parsed), embed_batch=256, clock=lambda: now[0]).ingest_paths(
        col.id, [many], progress=seen.append)
    assert report.count("added") == 2 and report.count("unchanged") == 11 and not report.errors
    policy = store.find_document(col.id, source_path="many/dept00/policy.md")
    assert policy is not None and policy.chunk_count >= 5
    assert {o.document_id for o in report.outcomes if o.source_path.endswith("policy.md")} == {policy.id}
    assert sorted(parsed) == ["other.md", "policy.md"]  # one copy parsed
    assert emb.passages_embedded == report.embedded_chunks == report.chunks == policy.chunk_count + 1
    assert report.embed_chunks_per_s == pytest.approx(100.0)  # the scripted embedder's 0.01 s a chunk
    assert seen[-1].files_done == 13 and seen[-1].chunks_done == report.chunks
    assert store.counts()["documents"] == 2
    again = Ingestor(store, emb).ingest_paths(col.id, [many])  # and a second run finds them all unchanged
    assert again.count("unchanged") == 13 and emb.passages_embedded == report.embedded_chunks


def test_a_copy_is_indexed_when_the_file_it_copies_fails_to_be_written(
        store: SqliteIndexStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipped only where the store would drop it: the copy of a file whose write failed is a document."""
    from inhouse.errors import DocumentRejected

    col = store.create_collection("hr", acl=Acl())
    for d in ("a", "b", "c"):
        write(tmp_path / "docs", f"{d}/policy.md", POLICY)
    put = store.put_document

    def refuse_a(doc, **kw):  # type: ignore[no-untyped-def]
        if doc.source_path == "docs/a/policy.md":
            raise DocumentRejected(doc.filename, "refused for the test")
        return put(doc, **kw)

    monkeypatch.setattr(store, "put_document", refuse_a)
    emb = FakeEmbedder()
    report = Ingestor(store, emb).ingest_paths(col.id, [tmp_path / "docs"])
    status = {o.source_path: o.status for o in report.outcomes}
    assert status == {"docs/a/policy.md": "error", "docs/b/policy.md": "added", "docs/c/policy.md": "unchanged"}
    doc = store.find_document(col.id, source_path="docs/b/policy.md")
    assert doc is not None and store.counts()["documents"] == 1
    # a's chunks and b's were embedded (c waited for b); the rate counts both, not only the stored ones
    assert emb.passages_embedded == report.embedded_chunks == 2 * doc.chunk_count == 2 * report.chunks


def test_copies_in_one_run_are_skipped_only_where_the_store_would_drop_them(store: SqliteIndexStore,
                                                                            tmp_path: Path) -> None:
    """A path with a document of its own gets its new version even when another file of the run has the same bytes,
    and an upload with ``own_copy`` is a document of its own."""
    col = store.create_collection("hr", acl=Acl())
    docs = tmp_path / "docs"
    write(docs, "z-current.md", "# Leave\n\nEmployees get 15 days.\n")
    ing = Ingestor(store, FakeEmbedder())
    ing.ingest_paths(col.id, [docs])
    write(docs, "a-new.md", POLICY)
    write(docs, "z-current.md", POLICY)  # rewritten with the new file's bytes, after it in the run
    report = ing.ingest_paths(col.id, [docs])
    assert {(o.source_path, o.status) for o in report.outcomes} == {
        ("docs/a-new.md", "added"), ("docs/z-current.md", "replaced")}
    own = Ingestor(store, FakeEmbedder()).ingest(
        col.id, [FileSource(f"up/{n}.md", lambda: POLICY.encode(), f"{n}.md") for n in ("x", "y")], own_copy=True)
    assert [o.status for o in own.outcomes] == ["added", "added"]
