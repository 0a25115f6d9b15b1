"""Ingestion: files → parse → chunk → embed (batched) → one transaction per document.

- **Idempotent.** A file whose sha256 is already in the collection is skipped before it is parsed or embedded; so
  is a copy of a file this run is still embedding (it is looked at again once that file is committed).
- **Replacement.** Changed bytes under the same source path replace the old version inside one transaction
  (``IndexStore.put_document``): a reader sees the old version or the new one, never both or neither. The new
  version keeps the old one's label and access list unless new ones are given (then raised by its markings): those
  the old one has when the new one is written (a relabel while the file was parsed stands).
- **Crash-safe.** Nothing is written until a document is complete; a process killed mid-batch leaves every
  document either fully committed or absent, and re-running finishes the rest (the committed ones are skipped).
- **Markings.** A document whose own markings (a Purview sensitivity label, "CONFIDENTIAL" in its title or footer,
  ``密级：机密``...) call for a more sensitive label than the one given is stored with that label, and the outcome
  says why (``kb/markings.py``). Markings never lower a label.
- **Derived text.** A document whose text was largely taken from a more sensitive one (a copy, an excerpt) is stored
  with that one's label, the outcome says why (``kb/derived.py``); never lowers a label either.
- **Per-file errors.** A file that cannot be read or parsed is reported (``FileOutcome.error``) and skipped.
- **Batched embedding.** Chunks of consecutive files are embedded together in batches of ``embed_batch``, the
  slow part; each document still commits on its own as soon as its vectors exist.
- **Sync.** With ``remove_missing`` (``inhouse ingest --sync DIR``), documents whose source path lies under one of
  the given prefixes but that are not among the sources any more are deleted (chunks, keyword rows, vectors and
  bytes; searchers drop them from their resident copies through the index's change log) once every file of the
  run has been seen. A file that was moved or renamed is found by its bytes first and its document moved with it
  (``IndexStore.move_document``): same id, label, access list, versions and vectors, nothing parsed or embedded. A
  file at a new path whose bytes match nothing is looked at after every other file: if its text resembles a missing
  document's (``kb/resemblance.py``: half its text when the file name is the same, four fifths otherwise), it was
  moved *and* edited, and becomes that document's new version at its new path (the label and access list stay). A
  file that changed but can no longer be parsed is reported and its previous version kept.
- **Unchanged chunks.** A new version's chunks whose text the stored version embedded keep that vector.

Source paths: a file given directly is known by its base name; a file found under a directory ``D`` by
``D.name/relative/path``. Re-ingesting the same tree therefore finds the same documents. Two folders of one name
(``hr/docs``, ``finance/docs``) would share those paths: each document keeps which folder it came from
(``source_folder``), and a run with another folder of that name (or with two of them) is refused before anything
changes, instead of replacing or deleting the first one's documents (``Ingestor._check_folders``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

import numpy as np

from inhouse.errors import (
    Conflict,
    DocumentRejected,
    InhouseError,
    NotFound,
    ParserUnavailable,
    StorageFull,
    StoreUnavailable,
)
from inhouse.governance.labels import UNLABELLED, Label, label_of_item
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import ChangedMeanwhile, DocumentRecord, Expected, IndexStore, NewDocument
from inhouse.kb.resemblance import resemblance, sketch

if TYPE_CHECKING:
    from inhouse.kb.derived import Derived, DerivedLabels
    from inhouse.kb.document import Chunk, ParsedDocument
    from inhouse.kb.embed import Embedder
    from inhouse.kb.markings import Marked, MarkingReader
    from inhouse.kb.parse.ocr import PageReader

log = logging.getLogger(__name__)

Status = Literal["added", "replaced", "unchanged", "moved", "removed", "error"]
ParseFn = Callable[[bytes, str], "ParsedDocument"]
PageProgress = Callable[[int, int], None]  # (pages read by OCR so far, pages of the file)
PagedParseFn = Callable[[bytes, str, "PageProgress | None"], "ParsedDocument"]
ChunkFn = Callable[["ParsedDocument"], "Sequence[Chunk]"]
_HIDDEN = (".", "~$")
# Times a new version is decided and written when the document it replaces keeps changing meanwhile (``_commit``).
_ATTEMPTS = 3


@dataclass(frozen=True)
class FileOutcome:
    source_path: str
    status: Status
    document_id: str | None = None
    chunks: int = 0
    error: str | None = None
    label: Label | None = None  # what an added or replaced document was stored with
    marking: str | None = None  # why that label is above the one given (the document's own marking)
    moved_from: str | None = None  # a moved document's previous source path
    same_text: float | None = None  # moved *and* edited: the share of the text that is the same (new version written)
    derived_from: str | None = None  # the more sensitive document its text was taken from (``marking`` says how)
    unavailable: bool = False  # an error that is not the file's (its parser was killed from outside): retry later

    @property
    def edited(self) -> bool:
        return self.same_text is not None


@dataclass(frozen=True)
class IngestProgress:
    files_done: int
    files_total: int
    chunks_done: int
    elapsed_s: float
    current: str = ""
    bytes_done: int = 0  # of the sources handled so far (added, replaced, unchanged or failed)
    bytes_total: int = 0  # of all sources whose size is known up front (0: unknown)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left, extrapolated from the bytes handled so far (files when sizes are unknown)."""
        done, total = (self.bytes_done, self.bytes_total) if self.bytes_total else (self.files_done, self.files_total)
        if done <= 0 or self.elapsed_s <= 0 or total <= done:
            return None if done <= 0 else 0.0
        return self.elapsed_s * (total - done) / done


@dataclass
class IngestReport:
    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0  # loading the embedding model (first use in this process)
    embed_seconds: float = 0.0  # inside the embedder
    embedded_chunks: int = 0  # chunks handed to the embedder (those ``embed_seconds`` was spent on)
    reused_chunks: int = 0  # chunks of replaced documents that kept the previous version's vector
    # Set by a caller that wants the run to end (the CLI on Ctrl-C or SIGTERM): it raises KeyboardInterrupt before
    # the next file or batch, never between a commit and its outcome, so ``outcomes`` is exactly what was done.
    stop_requested: bool = False
    # The audit request id of the run: each commit is noted in the store's run journal under it, in the commit's own
    # transaction, so a run killed outright is still named document by document (``IndexStore.run_changes``).
    run: str | None = None

    @property
    def files(self) -> int:
        """Files handled (documents removed by a sync are not files of this run)."""
        return sum(o.status != "removed" for o in self.outcomes)

    @property
    def chunks(self) -> int:
        """Chunks written in this run (embedded, or kept from the version a document replaced)."""
        return sum(o.chunks for o in self.outcomes if o.status in ("added", "replaced") or o.edited)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    @property
    def embed_chunks_per_s(self) -> float:
        """The embedder's speed: chunks embedded (not only those stored) per second inside it."""
        return self.embedded_chunks / self.embed_seconds if self.embed_seconds > 0 else 0.0

    @property
    def errors(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "error"]

    @property
    def raised(self) -> list[FileOutcome]:
        """Documents stored with a more sensitive label than the one given, because of their own markings."""
        return [o for o in self.outcomes if o.marking is not None]

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_dict(self) -> dict[str, object]:
        return {"files": self.files, "chunks": self.chunks, "reused_chunks": self.reused_chunks,
                "embedded_chunks": self.embedded_chunks,
                "seconds": round(self.seconds, 3),
                "chunks_per_s": round(self.chunks_per_s, 1), "embed_chunks_per_s": round(self.embed_chunks_per_s, 1),
                "load_seconds": round(self.load_seconds, 3),
                "added": self.count("added"), "replaced": self.count("replaced"),
                "unchanged": self.count("unchanged"), "moved": self.count("moved"),
                "moved_and_edited": sum(o.edited for o in self.outcomes), "removed": self.count("removed"),
                "errors": [
                    {"source_path": o.source_path, "error": o.error} for o in self.errors],
                "raised": [{"source_path": o.source_path, "label": str(o.label), "marking": o.marking}
                           for o in self.raised]}


@dataclass(frozen=True)
class FileSource:
    """One file to ingest: its bytes are read lazily (a 50 MB file is not held while others wait)."""

    source_path: str
    read: Callable[[], bytes]
    filename: str
    size: int | None = None  # bytes, when known without reading (progress and ETA)
    folder: str | None = None  # ``folder_id`` of the directory it was found under


# A document's path within its collection, at most: PostgreSQL's unique index on it refuses entries over ~2.7 KB, and
# both stores refuse alike (a real path is far shorter; Windows' own limit is 260 characters).
MAX_SOURCE_PATH_BYTES = 1024
SOURCE_FOLDER = "source_folder"  # the metadata key of ``folder_id``


@dataclass(frozen=True)
class SyncRoot:
    """A directory a sync mirrors: its documents' source-path prefix (``"docs/"``) and ``folder_id``."""

    prefix: str
    folder: str


def folder_id(directory: str | os.PathLike[str]) -> str:
    """Which folder a document came from, kept in its metadata (``source_folder``): a digest of the folder's
    absolute path, not the path (document metadata is shown to everyone who may read the document)."""
    return hashlib.sha256(os.fsencode(Path(directory).resolve())).hexdigest()[:16]


def _same_file(src: FileSource | None, doc: DocumentRecord) -> bool:
    """``src`` holds ``doc``'s bytes (read only when its size matches)."""
    if src is None or (src.size is not None and src.size != doc.size_bytes):
        return False
    try:
        return hashlib.sha256(src.read()).hexdigest() == doc.sha256
    except OSError:
        return False


def _top(source_path: str) -> str | None:
    """The folder prefix of a source path found under a directory (``"docs/"``); None for a file given alone."""
    head, sep, _ = source_path.partition("/")
    return head + sep if sep else None


@dataclass
class _Pending:
    source: FileSource
    data: bytes
    sha: str
    parsed: ParsedDocument
    chunks: list[Chunk]
    marked: Marked | None = None
    moved_from: DocumentRecord | None = None  # the missing document this file's text resembles (moved and edited)
    same_text: float = 0.0  # how much of the text is the same as moved_from's


@dataclass(frozen=True)
class _Copy:
    """A file at a path with no document, holding the bytes of a file of this run not committed yet: the store would
    drop it as ``unchanged`` once that one is (``put_document``), so it waits instead of being parsed and embedded."""

    sha: str


def _default_parse(max_file_mb: float, ocr: PageReader | None, max_ocr_pages: int) -> PagedParseFn:
    """``parse_file`` under the size limits; ``ocr`` reads images and scanned pages, reporting each page read."""
    def parse(data: bytes, filename: str, on_page: PageProgress | None) -> ParsedDocument:
        from inhouse.kb.parse import ParseLimits, parse_file

        return parse_file(data, filename, limits=ParseLimits.from_mb(max_file_mb, max_ocr_pages=max_ocr_pages),
                          ocr=ocr, on_page=on_page)

    return parse


def _default_chunk(max_tokens: int, overlap_tokens: int) -> ChunkFn:
    def chunk(doc: ParsedDocument) -> Sequence[Chunk]:
        from inhouse.kb.chunk import chunk_document

        return chunk_document(doc, max_tokens=max_tokens, overlap_tokens=overlap_tokens)

    return chunk


def iter_sources(paths: Iterable[str | os.PathLike[str]]) -> Iterator[FileSource]:
    """Files named by ``paths`` (directories walked in sorted order; hidden files and symlinks skipped)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            folder = folder_id(p)
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(_HIDDEN) for part in rel.parts) or f.is_symlink() or not f.is_file():
                    continue
                yield FileSource(file_name_text(f"{p.resolve().name}/{rel.as_posix()}"), _reader(f),
                                 file_name_text(f.name), _size(f), folder)
        else:
            yield FileSource(file_name_text(p.name), _reader(p), file_name_text(p.name), _size(p))


def sync_prefix(directory: str | os.PathLike[str]) -> SyncRoot:
    """What a sync of ``directory`` mirrors: the source-path prefix of the files ``iter_sources`` finds under it
    (``"docs/"``) and which folder that is."""
    return SyncRoot(file_name_text(f"{Path(directory).resolve().name}/"), folder_id(directory))


# What a file name that is not UTF-8 was most likely written in: GBK/GB18030 (Chinese Windows, Samba shares) when that
# reads as Chinese, else Windows-1252 (Western Windows); cp1252 leaves five bytes undefined, which fall through to
# backslash escapes. GB18030 alone decodes almost any bytes ("Müller" in cp1252 reads as "M黮ler"), hence the check.
_CJK_CHAR = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def file_name_text(name: str) -> str:
    """A file name (or a relative path) as text. Python hands bytes that are not UTF-8 over as lone surrogates
    (``surrogateescape``), which no database, JSON or log line can hold: ``r\\udce9sum\\udce9.md`` stopped the whole
    ingest. Each path component is decoded alone (a GBK file in a UTF-8 folder keeps its folder's name), the same
    way every run, so a file keeps its source path (sync, moves)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return "/".join(_component_text(part) for part in name.split("/"))


def _component_text(part: str) -> str:
    try:
        part.encode("utf-8")
        return part
    except UnicodeEncodeError:
        raw = os.fsencode(part)
    try:
        text = raw.decode("gb18030")
        # Every non-ASCII character Chinese: a cp1252 name's accented letters decode as stray CJK one by one.
        if all(ord(ch) < 0x80 or _CJK_CHAR.match(ch) for ch in text) and not _looks_western(raw):
            return text
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def _looks_western(raw: bytes) -> bool:
    """Whether the non-ASCII bytes of ``raw`` stand alone between ASCII letters, as a Western name's accented letters
    do ("M\\xfcller"); GBK writes a Chinese character as two high bytes in a row."""
    high = [i for i, b in enumerate(raw) if b >= 0x80]
    return bool(high) and all((i - 1 not in high) and (i + 1 not in high) for i in high)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


class Ingestor:
    """Adds, replaces and deletes documents of an ``IndexStore``."""

    def __init__(self, store: IndexStore, embedder: Embedder, *, parse: ParseFn | None = None,
                 chunk: ChunkFn | None = None, embed_batch: int = 32, max_tokens: int = 256,
                 overlap_tokens: int = 32, max_file_mb: float = 50.0, ocr: PageReader | None = None,
                 max_ocr_pages: int = 500, paged_parse: PagedParseFn | None = None,
                 markings: MarkingReader | None = None, derived: DerivedLabels | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """``parse`` replaces ``parse_file`` (tests). ``paged_parse`` is where files are parsed (the server's
        worker processes, ``kb/parse/isolated.py``); without it ``parse_file`` runs here, ``ocr`` reading images
        and scanned pages (at most ``max_ocr_pages`` per file). Each page OCR reads moves the progress.
        ``markings`` reads the label a document's own markings call for, ``derived`` the label of a more sensitive
        document its text was taken from (None: the given label stands)."""
        self.store = store
        self.embedder = embedder
        self._custom_parse = parse
        self._parse = paged_parse or _default_parse(max_file_mb, ocr, max_ocr_pages)
        self._chunk = chunk or _default_chunk(max_tokens, overlap_tokens)
        self._batch = max(1, embed_batch)
        self._max_bytes = int(max_file_mb * 1024 * 1024)
        self._markings = markings
        self._derived = derived
        self._clock = clock

    def ingest_bytes(self, collection_id: str, data: bytes, filename: str, *, source_path: str | None = None,
                     label: Label | str | None = None, acl: Acl | None = None,
                     metadata: Mapping[str, str] | None = None, run: str | None = None,
                     own_copy: bool = False, scope: AccessScope | None = None) -> FileOutcome:
        """One file (an upload). Rejections are returned as an ``error`` outcome, like in a batch; an error that is
        not the file's (its parser killed from outside) is raised, ``ParserUnavailable``: the uploader may retry.
        ``run``: the upload's audit request id (``IngestReport.run``). ``own_copy``: a document of its own even when
        another document of the collection has these bytes; ``scope``: the member uploading, who may replace only a
        document they see (both ``IndexStore.put_document``)."""
        src = FileSource(source_path or filename, lambda: data, filename)
        report = self.ingest(collection_id, [src], label=label, acl=acl, metadata=metadata,
                             report=IngestReport(run=run), own_copy=own_copy, scope=scope)
        outcome = report.outcomes[0]
        if outcome.unavailable:
            raise ParserUnavailable(outcome.error or f"{filename}: the file could not be parsed now; retry.")
        return outcome

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        """``data`` parsed as ingestion parses it (a document's stored bytes, read again)."""
        return self._custom_parse(data, filename) if self._custom_parse is not None else self._parse(data, filename,
                                                                                                      None)

    def ingest_paths(self, collection_id: str, paths: Iterable[str | os.PathLike[str]], **kw: object) -> IngestReport:
        return self.ingest(collection_id, list(iter_sources(paths)), **kw)  # type: ignore[arg-type]

    def ingest(self, collection_id: str, sources: Sequence[FileSource], *, label: Label | str | None = None,
               acl: Acl | None = None, metadata: Mapping[str, str] | None = None,
               progress: Callable[[IngestProgress], None] | None = None,
               remove_missing: Sequence[SyncRoot | str] = (), report: IngestReport | None = None,
               own_copy: bool = False, scope: AccessScope | None = None) -> IngestReport:
        """Add or replace ``sources``. ``remove_missing``: the synced folders (``sync_prefix``; a bare source-path
        prefix such as ``"docs/"`` does not check which folder its documents came from), under which documents of
        the collection that are not among ``sources`` are deleted (a sync of those folders). ``report``:
        filled as files are committed, so a caller whose run is interrupted knows what was done. ``scope``: the
        member whose upload this is (``ingest_bytes``)."""
        # An unknown collection or label fails the whole batch at once, before any file is read.
        collection = self.store.get_collection(collection_id)
        given = None if label is None or (isinstance(label, str) and not label.strip()) else label_of_item(label)
        report = IngestReport() if report is None else report
        start = self._clock()
        if self._derived is not None:
            self._derived.refresh(self.store)  # documents labelled (or relabelled) since the last run count too
        chunks_done = 0
        pending: list[_Pending] = []
        copies: dict[str, list[FileSource]] = {}  # sha256 of a pending file -> the copies of it waiting (``_Copy``)
        prepared = False  # the embedder is prepared (its model loaded) once per run, before its first batch
        bytes_total = sum(s.size or 0 for s in sources)
        bytes_done = 0

        def tick(current: str = "", partial_bytes: int = 0) -> None:
            if progress is not None:
                files = sum(o.status != "removed" for o in report.outcomes)
                progress(IngestProgress(files, len(sources), chunks_done, self._clock() - start, current,
                                        bytes_done + partial_bytes, bytes_total))

        def pages_of(src: FileSource) -> PageProgress:
            """A long scan moves the progress page by page (a share of its bytes for each page read)."""
            def on_page(done: int, total: int) -> None:
                tick(f"{src.source_path}: OCR page {done} of {total}", (src.size or 0) * done // max(total, 1))

            return on_page

        # Documents whose files are gone from the synced folders: moved with their file when its bytes (or, edited,
        # most of its text) turn up under another path, else deleted at the end.
        # The collection's documents, read once: for the folder check of a directory run and for a sync.
        stored = (self._stored(collection.id) if remove_missing or any(src.folder is not None for src in sources)
                  else [])
        self._check_folders(stored, sources, remove_missing)
        missing, known = self._missing(stored, sources, remove_missing) if remove_missing else ({}, set())
        resembling = _Resembling(self.store, missing)

        def stop_here() -> None:
            if report.stop_requested:
                raise KeyboardInterrupt

        def flush() -> None:
            nonlocal chunks_done, prepared, bytes_done
            if not pending:
                return
            stop_here()
            # A new version's chunks that the stored version embedded already keep their vectors: an edit of a long
            # document embeds the chunks it changed (embedding is nearly all of an ingest's time).
            stored = [self.store.embedded_chunks(collection.id, (p.moved_from.source_path if p.moved_from is not None
                                                                 else p.source.source_path)) for p in pending]
            texts = [c.text for p, k in zip(pending, stored, strict=True) for c in p.chunks if c.text not in k]
            if texts and not prepared:
                prepared = True
                t0 = self._clock()
                prepare = getattr(self.embedder, "prepare", None)
                if callable(prepare):
                    prepare()  # a lazy model loads here, timed apart from embedding
                report.load_seconds = self._clock() - t0
            t1 = self._clock()
            fresh = iter(self._embed(texts))
            report.embed_seconds += self._clock() - t1
            report.embedded_chunks += len(texts)
            for p, k in zip(pending, stored, strict=True):
                vectors = np.array([k[c.text] if c.text in k else next(fresh) for c in p.chunks], dtype=np.float32)
                if p.moved_from is not None:
                    self._move_edited(p, report)
                outcome = self._commit(collection.id, p, vectors, given, acl, metadata, report.run, own_copy, scope)
                if outcome.status == "replaced" or outcome.edited:
                    report.reused_chunks += sum(c.text in k for c in p.chunks)
                report.outcomes.append(outcome)
                if outcome.status in ("added", "replaced") or outcome.edited:
                    chunks_done += outcome.chunks
                bytes_done += p.source.size if p.source.size is not None else len(p.data)
                tick(p.source.source_path)
            done = [src for p in pending for src in copies.pop(p.sha, [])]
            pending.clear()
            # Looked at again now that the file whose bytes they hold is committed: found by their bytes, they are
            # unchanged; should that file have failed, one of them is parsed and embedded as it would have been (and
            # flushed now: this may be the run's last flush).
            for src in done:
                take(src, None)
            if done:
                flush()

        def take(src: FileSource, defer: set[str] | None) -> bool:
            """``src`` handled, or False when it was deferred (see ``_prepare``)."""
            nonlocal bytes_done
            stop_here()
            outcome, item = self._prepare(collection.id, src, pages_of(src) if progress is not None else None,
                                          missing, report, defer=defer, own_copy=own_copy, waiting=copies)
            if outcome is None and item is None:
                return False
            if isinstance(item, _Copy):
                copies[item.sha].append(src)
                return True
            if outcome is not None:
                report.outcomes.append(outcome)
                bytes_done += src.size or 0
                tick(src.source_path)
                return True
            assert item is not None
            if defer is None and missing:
                item.moved_from, item.same_text = resembling.claim(src, item.chunks)
            pending.append(item)
            copies.setdefault(item.sha, [])
            if sum(len(p.chunks) for p in pending) >= self._batch:
                flush()
            return True

        tick()
        # A file at a new path whose bytes match no document may be a missing one, edited: it waits until every other
        # file was seen (a document's unchanged file, moved, claims it first), then is read again and compared.
        deferred = [src for src in sources if not take(src, known if missing else None)]
        flush()
        for src in deferred:
            take(src, None)
        flush()
        if missing:  # after every file was seen (a moved one has taken its document along), in one transaction
            stop_here()
            self.store.delete_documents(list(missing), run=report.run)
            report.outcomes += [FileOutcome(d.source_path, "removed", d.id, d.chunk_count) for d in missing.values()]
        report.seconds = self._clock() - start
        return report

    def _stored(self, collection_id: str) -> list[DocumentRecord]:
        out: list[DocumentRecord] = []
        offset, page = 0, 500
        while docs := self.store.list_documents(collection_id, limit=page, offset=offset):
            out += docs
            if len(docs) < page:
                break
            offset += page
        return out

    @staticmethod
    def _missing(stored: Sequence[DocumentRecord], sources: Sequence[FileSource],
                 roots: Sequence[SyncRoot | str]) -> tuple[dict[str, DocumentRecord], set[str]]:
        """The ``stored`` documents under the synced ``roots`` whose source path is not among ``sources``, by id; and
        the source paths of all of them."""
        present = {s.source_path for s in sources}
        prefixes = tuple(r if isinstance(r, str) else r.prefix for r in roots)
        gone = {d.id: d for d in stored if d.source_path.startswith(prefixes) and d.source_path not in present}
        return gone, {d.source_path for d in stored}

    @staticmethod
    def _check_folders(stored: Sequence[DocumentRecord], sources: Sequence[FileSource],
                       roots: Sequence[SyncRoot | str]) -> None:
        """``Conflict``, before anything is changed, when a folder of this run shares its name (its documents' path
        prefix, ``docs/``) with another folder: another one of this run, or the one the collection's documents under
        that prefix came from. Mirroring or ingesting it would delete or replace that folder's documents. The same
        folder moved or remounted elsewhere is not another one: at least half of those documents' files are found at
        the same paths with the same bytes, and it carries on as the folder of those documents."""
        folders: dict[str, str] = {}  # prefix -> folder_id
        for prefix, folder in [(r.prefix, r.folder) for r in roots if isinstance(r, SyncRoot)] + [
                (_top(src.source_path), src.folder) for src in sources if src.folder is not None]:
            if prefix is None:
                continue
            if folders.setdefault(prefix, folder) != folder:
                raise Conflict(f"Two folders named '{prefix.rstrip('/')}' in one run: their files would share the "
                               f"paths '{prefix}…' and one would replace or delete the other's. Ingest the folders "
                               "above them, or each into its own collection.", param="paths")
        if not folders:
            return
        by_path = {src.source_path: src for src in sources}
        others: dict[tuple[str, str], list[DocumentRecord]] = {}  # (prefix, the folder they came from) -> documents
        for d in stored:
            prefix, stamp = _top(d.source_path), d.metadata.get(SOURCE_FOLDER)
            if prefix in folders and stamp is not None and stamp != folders[prefix]:
                others.setdefault((prefix, stamp), []).append(d)
        for (prefix, _), docs in others.items():
            same = sum(_same_file(by_path.get(d.source_path), d) for d in docs)
            if 2 * same < len(docs):  # documents still stamped with the old folder are checked so again next time
                raise Conflict(
                    f"The collection already holds '{prefix}…' from another folder named '{prefix.rstrip('/')}' "
                    f"({docs[0].source_path}); this one would delete or replace those documents. Ingest it into "
                    f"another collection, or the folder above it so that the paths differ (…/finance gives "
                    f"'finance/{prefix}…').", param="paths")

    def _move(self, src: FileSource, doc: DocumentRecord, missing: dict[str, DocumentRecord],
              report: IngestReport) -> FileOutcome | None:
        """``src`` holds the bytes of ``doc``, whose file is gone: the file was moved or renamed, and the document
        (its label and access list with it) goes along. None when another document is at the new path already (a
        file replaced by a moved one): ``doc`` is deleted, and ``src`` is that other document's new version."""
        del missing[doc.id]
        moved = self._move_to(doc, src, report)
        if moved is None:
            return None
        return FileOutcome(src.source_path, "moved", moved.id, moved.chunk_count, label=moved.label,
                           moved_from=doc.source_path)

    def _move_edited(self, p: _Pending, report: IngestReport) -> None:
        """Move the document ``p``'s text resembles to ``p``'s path, where ``_commit`` writes its new version; if it
        cannot be moved (``_move_to``), the file is a new document or another one's new version."""
        assert p.moved_from is not None
        if self._move_to(p.moved_from, p.source, report) is None:
            p.moved_from = None

    def _move_to(self, doc: DocumentRecord, src: FileSource, report: IngestReport) -> DocumentRecord | None:
        """``doc`` moved to ``src``'s path; None when another document is there already (a file replaced by a moved
        one, or an upload meanwhile: ``doc`` is deleted, that one gets the new version) or ``doc`` was deleted
        meanwhile."""
        try:
            return self.store.move_document(doc.id, src.source_path, src.filename, run=report.run)
        except Conflict:
            if self.store.delete_documents([doc.id], run=report.run):
                report.outcomes.append(FileOutcome(doc.source_path, "removed", doc.id, doc.chunk_count))
        except NotFound:
            pass
        return None

    def _prepare(self, collection_id: str, src: FileSource, on_page: PageProgress | None,
                 missing: dict[str, DocumentRecord], report: IngestReport, *, defer: set[str] | None = None,
                 own_copy: bool = False,
                 waiting: Container[str] = ()) -> tuple[FileOutcome | None, _Pending | _Copy | None]:
        """What to do with ``src``: an outcome already (unchanged, moved, an error), the file parsed and chunked
        to be embedded and committed, or a ``_Copy`` of a file of this run whose sha256 is in ``waiting`` (parsed,
        not committed yet). (None, None): a file at a path outside ``defer`` whose bytes match nothing, left for
        later."""
        if len(src.source_path.encode("utf-8", "replace")) > MAX_SOURCE_PATH_BYTES:
            return FileOutcome(src.source_path[:200] + "…", "error", error=(
                f"the path is longer than {MAX_SOURCE_PATH_BYTES} bytes; ingest a folder nearer to the file")), None
        try:
            data = src.read()
        except OSError as exc:
            return FileOutcome(src.source_path, "error", error=f"cannot read: {exc.strerror or exc}"), None
        sha = hashlib.sha256(data).hexdigest()
        own = self.store.find_document(collection_id, source_path=src.source_path)
        if own is not None and own.sha256 == sha:
            return FileOutcome(src.source_path, "unchanged", own.id, own.chunk_count), None
        existing = self.store.find_document(collection_id, sha256=sha)
        if existing is not None and existing.id in missing:
            moved = self._move(src, existing, missing, report)
            if moved is not None:
                return moved, None
            existing = None
        # Bytes another document has stand for a new path's file (one copy indexed); a path with a document of its
        # own gets its new version whatever other documents hold, or it would keep its old text.
        if existing is not None and own is None and not own_copy:
            return FileOutcome(src.source_path, "unchanged", existing.id, existing.chunk_count), None
        if defer is not None and src.source_path not in defer:
            return None, None
        if sha in waiting and own is None and not own_copy:  # as above, once that file is committed
            return None, _Copy(sha)
        try:
            if len(data) > self._max_bytes:
                raise DocumentRejected(src.filename, f"larger than {self._max_bytes // (1024 * 1024)} MB")
            parsed = (self._custom_parse(data, src.filename) if self._custom_parse is not None
                      else self._parse(data, src.filename, on_page))
            chunks = [c for c in self._chunk(parsed) if c.text.strip()]
        except ParserUnavailable as exc:
            return FileOutcome(src.source_path, "error", error=exc.message, unavailable=True), None
        except InhouseError as exc:
            return FileOutcome(src.source_path, "error", error=exc.message), None
        if not chunks:
            return FileOutcome(src.source_path, "error", error=f"{src.filename}: no text to index"), None
        marked = self._markings.read(parsed) if self._markings is not None else None
        return None, _Pending(src, data, sha, parsed, chunks, marked)

    def _embed(self, texts: list[str]) -> np.ndarray:
        parts = [self.embedder.embed_passages(texts[i:i + self._batch]) for i in range(0, len(texts), self._batch)]
        if not parts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.vstack(parts)

    def _commit(self, collection_id: str, p: _Pending, vectors: np.ndarray, label: Label | None, acl: Acl | None,
                metadata: Mapping[str, str] | None, run: str | None, own_copy: bool = False,
                scope: AccessScope | None = None) -> FileOutcome:
        # A new version keeps the label and the access list of the one it replaces unless new ones are given: a
        # changed file must not lose the need-to-know its document was given (nor become visible to the collection).
        # They are those of the row the write replaces: put_document checks that it is still the one read here
        # (``Expected``), and the version is decided again when it is not (a relabel or a new list committed while
        # the file was parsed and embedded was undone by the label read before).
        for attempt in range(_ATTEMPTS):
            previous = self.store.find_document(collection_id, source_path=p.source.source_path)
            doc, marking, derived = self._version(collection_id, p, vectors, previous, label, acl, metadata)
            try:
                result = self.store.put_document(doc, run=run, own_copy=own_copy, expect=Expected.of(previous),
                                                 scope=scope)
                break
            except ChangedMeanwhile:
                if attempt == _ATTEMPTS - 1:
                    raise
            except (StorageFull, StoreUnavailable, NotFound, Conflict):
                # Not this file's fault: the whole batch stops (what is committed stays; a re-run resumes). NotFound:
                # the collection was deleted meanwhile; Conflict: a member's upload of a document they may no
                # longer see.
                raise
            except InhouseError as exc:
                return FileOutcome(p.source.source_path, "error", error=exc.message)
        if result.status == "unchanged":
            return FileOutcome(p.source.source_path, "unchanged", result.document.id, 0, label=result.document.label)
        if self._derived is not None:  # a later file of this run may be taken from this one
            self._derived.add(result.document)
        chunks = result.document.chunk_count
        source = derived.document_id if derived is not None else None
        if p.moved_from is not None and result.status == "replaced":
            return FileOutcome(p.source.source_path, "moved", result.document.id, chunks, label=result.document.label,
                               marking=marking, moved_from=p.moved_from.source_path, same_text=p.same_text,
                               derived_from=source)
        return FileOutcome(p.source.source_path, result.status, result.document.id, chunks, label=result.document.label,
                           marking=marking, derived_from=source)

    def _version(self, collection_id: str, p: _Pending, vectors: np.ndarray, previous: DocumentRecord | None,
                 label: Label | None, acl: Acl | None,
                 metadata: Mapping[str, str] | None) -> tuple[NewDocument, str | None, Derived | None]:
        """The document ``p`` is stored as over ``previous`` (the document at its path): its label (the one given,
        else ``previous``'s, raised by its markings and by a more sensitive document its text was taken from), its
        list, its metadata; and why the label is above the one it had (marking, source)."""
        if label is None:
            label = previous.label if previous is not None else UNLABELLED
        if acl is None and previous is not None:
            acl = previous.acl
        meta = {**p.parsed.metadata, **(metadata or {})}
        if p.source.folder is not None:
            meta[SOURCE_FOLDER] = p.source.folder
        marking = None
        if p.marked is not None:  # kept even when not raised: members may not relabel below it
            meta["marking"], meta["marking_label"] = p.marked.reason, p.marked.label.value
            if p.marked.label > label:
                label, marking = p.marked.label, p.marked.reason
        derived = None
        if self._derived is not None:  # its own earlier versions are not a source of its text
            derived = self._derived.match([c.content for c in p.chunks], label,
                                          exclude=[previous.id] if previous is not None else [], vectors=vectors)
        if derived is not None:
            meta["derived_from"], meta["derived_label"] = derived.document_id, derived.label.value
            label, marking = derived.label, derived.reason
        doc = NewDocument(
            collection_id=collection_id, source_path=p.source.source_path, sha256=p.sha, label=label, acl=acl,
            title=p.parsed.title or p.source.filename, filename=p.parsed.filename or p.source.filename,
            mime=p.parsed.mime, data=p.data, chunks=p.chunks, vectors=vectors, metadata=meta,
        )
        return doc, marking, derived

    def delete(self, document_id: str, *, run: str | None = None) -> None:
        self.store.delete_document(document_id, run=run)


class _Resembling:
    """The documents a sync found missing, for a new file to claim the one whose text it shares (moved and edited).

    Each missing document's sketch is made from its stored chunks on the first claim (a sync that lost nothing, or
    found every missing file by its bytes, reads no chunk). A file claims the document it resembles most, if that is
    at least ``SAME_NAME`` when the file name is the same (a folder reorganised, a file corrected on the way) or
    ``OTHER_NAME`` when it is not (renamed and edited: a stricter bar, so that two contracts of one template are not
    taken for one document). First come, first served: a claimed document is no longer missing."""

    SAME_NAME = 0.5
    OTHER_NAME = 0.8

    def __init__(self, store: IndexStore, missing: dict[str, DocumentRecord]) -> None:
        self._store = store
        self._missing = missing
        self._sketches: dict[str, np.ndarray] | None = None
        self._by_hash: dict[int, list[str]] = {}

    def claim(self, src: FileSource, chunks: Sequence[Chunk]) -> tuple[DocumentRecord | None, float]:
        if not self._missing:
            return None, 0.0
        if self._sketches is None:
            self._sketches = {}
            for doc_id in self._missing:
                self._sketches[doc_id] = sketch(c.content for c in self._store.document_chunks(doc_id))
                for h in self._sketches[doc_id].tolist():
                    self._by_hash.setdefault(h, []).append(doc_id)
        mine = sketch(c.content for c in chunks)
        # Two texts that resemble each other share hashes in their sketches: only those documents are compared.
        candidates = sorted({d for h in mine.tolist() for d in self._by_hash.get(h, ()) if d in self._missing})
        name = PurePosixPath(src.source_path).name.casefold()
        best: DocumentRecord | None = None
        best_score = 0.0
        for doc_id in candidates:
            doc = self._missing[doc_id]
            score = resemblance(mine, self._sketches[doc_id])
            bar = self.SAME_NAME if PurePosixPath(doc.source_path).name.casefold() == name else self.OTHER_NAME
            if score >= bar and score > best_score:
                best, best_score = doc, score
        if best is not None:
            del self._missing[best.id]
        return best, best_score
