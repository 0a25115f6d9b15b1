"""Text taken from a confidential or restricted document keeps its label (indexed document matching).

Markings (``kb/markings.py``) catch a file that says what it is. A copy says nothing: the board memo pasted into a
wiki page, a restricted contract saved again as a draft in a shared folder, an excerpt forwarded in a mail. Ingested
at its folder's label, such a copy hands the restricted text to everyone who may read that folder, and to the
external models the policy lets ``internal`` text reach. Data-loss-prevention products call the remedy indexed
document matching (or document fingerprinting); this is it, inside ingestion.

Every document labelled ``confidential`` or above has a fingerprint: the number of its distinct 5-word phrases and a
bottom-k sample of their hashes (``kb/resemblance.py``: 256 of them, so 2 KB whatever the document's size). A
document being ingested is compared, by all of its phrases, with each fingerprint of a label above its own: the
sampled phrases it contains estimate how many phrases the two share. It takes the most sensitive label among the
documents it shares

- at least ``MIN_SHARED`` phrases (about two sentences of text) and ``MIN_HITS`` sampled phrases (so one chance hit
  on a long document, which stands for hundreds of phrases, counts for nothing),
- and that is at least ``SHARE`` of either text: most of the source copied into something larger, or a document
  that is mostly an excerpt of the source (of a long source a passage of a few percent is below what a 256-phrase
  sample can see: the exact comparison below finds it).

Like a marking it only raises, is kept with the document (``metadata["derived_from"]``, ``["derived_label"]``),
stops members relabelling below it, and says why in the ingest report. The access list is not taken over: the label
is the company-wide rule (who is cleared, what may leave the machine), the access list a collection's own decision.

A sample cannot see a passage that is a small part of a long source: one page of a forty-page contract forwarded in
a mail shares a few hundred phrases with it, a handful of the 256 sampled. So a text is also compared **exactly**
with the sources its chunk vectors lead to: each of its chunk vectors (up to ``NEAR_PROBES``) is searched among the
chunks labelled above it, and the documents found are compared with all of their phrases (read from their chunks,
``FULL_CACHE`` documents kept). The same rule decides; the vectors only choose what to read.

Text that was readable at the new text's label already is not taken from the source: a binder that holds the whole
share (the salary bands, and the public FAQ beside them) is confidential, but an edited copy of the FAQ was not
taken from the binder, the binder took the FAQ. So once a source passes the rule (and only then: nothing more is
read for a text no source matches), phrases the text shares with it that a document labelled at or below the text's
label holds too are not counted, and the rule decides again, exactly, on what is left (the texts keep their size).
Those documents are found as the sources are: the text's chunk vectors (``HELD_PROBES`` of them) searched among the
chunks labelled at or below its label, ``HELD_PER_PROBE`` nearest each, their phrases read from their chunks. A
document's own earlier version counts among them (the FAQ edited in place stays public). One that was stored after
the source and holds most of it (``SHARE`` of its phrases) does not: that is a copy of the source not raised yet
(pasted before the source was labelled), and its text is the source's. Only a new text is judged so
(``discount_below``): a review and a raise judge the copies already in the index, where the ones not raised yet
would hide one another.

A source raised later (an admin labels the salary bands ``restricted``) takes its copies along: the copies compared
as they were ingested, while it was still ``confidential``, and those never compared (ingested at its label) are
labelled below it now. ``copies`` finds them without reading the whole index: each of the source's stored chunk
vectors (up to ``PROBES`` of them) is searched among the chunks labelled below it, and every document a probe finds
is judged by the rule above, compared exactly with the source.

The fingerprints are made from the stored chunks when first needed and kept in memory while the document's version
stands; which documents are sources is read once per ingestion, when a comparison first needs it (one query), and a
document committed in the same run counts at once. They are not stored (a document's version is their key; the
chunks are the truth).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inhouse.errors import NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope
from inhouse.kb.index.protocol import DocumentRecord, IndexStore, SearchFilters
from inhouse.kb.resemblance import SKETCH_SIZE, phrases

_TOP = max(Label)
# The comparisons read every document, whoever's upload or relabel asked for them (nothing read goes back to them).
_EVERYTHING = AccessScope(is_admin=True, key_id="", groups=frozenset(), clearance=_TOP)


@dataclass(frozen=True)
class Derived:
    """The label a document's text calls for because it was taken from another, and why."""

    label: Label
    document_id: str  # the document the text was taken from
    reason: str


@dataclass(frozen=True)
class _Print:
    version: int
    sample: np.ndarray  # the smallest SKETCH_SIZE phrase hashes, sorted
    count: int  # distinct phrases of the whole document


class DerivedLabels:
    """The fingerprints of a store's confidential and restricted documents (module doc).

    Made lazily: ``refresh`` marks the listing of sources out of date, and the first comparison that could use one
    lists which documents are labelled ``floor`` or above (ids, labels, versions: one query; none for an ingestion
    whose documents are all unchanged or restricted); a document's fingerprint is made from its stored chunks the
    first time a text of a lower label is compared with it, and kept while its version stands. Unlabelled documents
    count as confidential, so in a company that labels little nearly every document is confidential, and a
    confidential document is only compared with restricted ones: an ingestion makes no fingerprint and computes no
    phrase unless there is something above its label to compare."""

    MIN_SHARED = 40
    MIN_HITS = 8
    SHARE = 0.5

    def __init__(self, floor: Label = Label.CONFIDENTIAL) -> None:
        self.floor = floor
        self._store: IndexStore | None = None
        self._stale = True  # the listing of sources must be read again before it is used
        self._labels: dict[str, tuple[Label, int]] = {}  # documents labelled floor or above: (label, version)
        self._prints: dict[str, _Print] = {}
        self._stacked: tuple[np.ndarray, np.ndarray, dict[str, int]] | None = None  # samples, their owner, ids
        self._full: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()  # (version, all phrases), last used last
        self._lock = threading.Lock()  # uploads ingest on several threads with one instance

    def refresh(self, store: IndexStore) -> None:
        """At the start of an ingestion: the sources are listed again from ``store`` before the next comparison, so
        documents labelled, relabelled or replaced since count; fingerprints of unchanged versions are kept."""
        with self._lock:
            self._store, self._stale = store, True

    def _list_sources(self) -> None:
        """Read which documents are sources now, if ``refresh`` asked for it (the query runs outside the lock)."""
        with self._lock:
            if not self._stale:
                return
            store = self._store
        assert store is not None, "refresh() first"
        labels = store.document_labels(self.floor)
        with self._lock:
            self._labels, self._stale = labels, False
            stale = [d for d, p in self._prints.items() if labels.get(d, (None, -1))[1] != p.version]
            for doc_id in stale:
                del self._prints[doc_id]
            if stale:
                self._stacked = None

    def add(self, doc: DocumentRecord) -> None:
        """A document committed in this run: a later file of the run may be taken from it."""
        with self._lock:
            if doc.label >= self.floor:
                self._labels[doc.id] = (doc.label, doc.version)
            else:
                self._labels.pop(doc.id, None)
            known = self._prints.get(doc.id)
            if known is not None and known.version != doc.version:  # a new version of a source: its text changed
                del self._prints[doc.id]
                self._stacked = None

    def any_above(self, label: Label) -> bool:
        """Whether any source is labelled above ``label`` (if not, no text of that label needs reading)."""
        if label == _TOP:
            return False
        self._list_sources()
        with self._lock:
            return any(lab > label for lab, _ in self._labels.values())

    def match(self, contents: Sequence[str], label: Label, *, exclude: Iterable[str] = (),
              only: str | None = None, vectors: np.ndarray | None = None,
              discount_below: bool = True) -> Derived | None:
        """The label the text ``contents`` (a document's chunks) calls for because it was taken from a document
        labelled above ``label``; None if none. ``exclude``: documents not to compare with (its own versions);
        ``only``: compare with this document alone, exactly as well; ``vectors``: the chunks' vectors, to compare
        exactly with the sources they are near, and (``discount_below``: a text new to the index) to find the
        documents labelled at or below ``label`` whose phrases do not count as taken (module doc)."""
        if label == _TOP:
            return None  # nothing can be above it: no query, no phrase
        self._list_sources()
        skip = set(exclude)
        with self._lock:
            above = {d: lab for d, (lab, _) in self._labels.items()
                     if lab > label and d not in skip and (only is None or d == only)}
        if not above:
            return None  # nothing to compare with: no phrase is computed
        mine = phrases(contents)
        if not len(mine):
            return None
        with self._lock:  # one snapshot of the fingerprints (the first comparison makes them, once)
            self._fingerprint(above)
            prints = {d: self._prints[d] for d in above if d in self._prints}
            samples, owner, ids = self._stack()
        hits_all = np.bincount(owner[np.isin(samples, mine)], minlength=len(ids))
        best: tuple[Label, float, str, str] | None = None
        passed: dict[str, None] = {}  # the sources this text passes the rule with, in the order judged
        for doc_id, p in prints.items():
            if not len(p.sample):
                continue
            hits = int(hits_all[ids[doc_id]])
            of_source = hits / len(p.sample)  # the share of the source's phrases in this text
            # fewer than MIN_HITS sampled phrases stand for too many to estimate from
            if hits >= self.MIN_HITS and self._passes(of_source * p.count, p.count, len(mine)):
                passed[doc_id] = None
                best = self._better(best, above[doc_id], doc_id, of_source * p.count, p.count, len(mine))
        # Sources the sample may be blind to at this text's size: a share the rule counts (MIN_SHARED phrases and SHARE
        # of this text) would give them fewer than BLIND_MARGIN times MIN_HITS sampled phrases on average (a sample
        # that by chance holds a few of them then falls short). Only those are worth an exact look.
        enough = max(self.MIN_SHARED, self.SHARE * len(mine))
        blind = {d for d, p in prints.items()
                 if p.count * self.BLIND_MARGIN * self.MIN_HITS / max(len(p.sample), 1) > enough}
        exact = ({only} if only is not None else set()) | (self._near(vectors, blind) if vectors is not None else set())
        for doc_id in sorted(exact & set(above) - {best[2] if best else ""}):
            full = self._full_phrases(doc_id)
            if full is not None and len(full):
                shared = len(np.intersect1d(mine, full, assume_unique=True))
                if self._passes(shared, len(full), len(mine)):
                    passed[doc_id] = None
                    best = self._better(best, above[doc_id], doc_id, shared, len(full), len(mine))
        if best is not None and discount_below and vectors is not None:
            # Only now, a source having matched: what the text shares with it that is readable at its label already
            # was not taken from it. The rule decides again, exactly, on what is left (fewer phrases, the same texts).
            holders = self._held_below(vectors, label, mine)
            rejudged, discounted = None, False
            for doc_id in passed if holders else ():
                full = self._full_phrases(doc_id)
                stored = self._stored_at(doc_id)
                if full is None or not len(full) or stored is None:
                    continue
                taken = np.intersect1d(mine, full, assume_unique=True)
                for held, held_since in holders:
                    on_source = np.intersect1d(held, full, assume_unique=True)
                    # One stored after the source and holding most of it is a copy of it not raised yet (made before
                    # the source was labelled): the source's text is not readable below because of it.
                    if held_since >= stored and len(on_source) >= self.SHARE * len(full):
                        continue
                    left = np.setdiff1d(taken, on_source, assume_unique=True)
                    discounted, taken = discounted or len(left) < len(taken), left
                rejudged = self._better(rejudged, above[doc_id], doc_id, len(taken), len(full), len(mine))
            if discounted:  # else the decision stands as made (a tie between sources is not judged again)
                best = rejudged
        return Derived(best[0], best[2], best[3]) if best is not None else None

    def _better(self, best: tuple[Label, float, str, str] | None, source_label: Label, doc_id: str, shared: float,
                source_count: int, count: int) -> tuple[Label, float, str, str] | None:
        """``best``, or the source ``doc_id`` if the text shares enough with it (``shared`` phrases of its
        ``source_count``; the text has ``count``) and it is more sensitive, or as sensitive with a larger share."""
        if not self._passes(shared, source_count, count):
            return best
        of_source, of_this = shared / source_count, shared / count
        share = max(of_source, of_this)
        how = (f"its text repeats {min(of_source, 1.0):.0%} of a {source_label} document" if of_source >= of_this
               else f"{min(of_this, 1.0):.0%} of its text is taken from a {source_label} document")
        if best is None or (source_label, share) > (best[0], best[1]):
            return (source_label, share, doc_id, how)
        return best

    def _passes(self, shared: float, source_count: int, count: int) -> bool:
        """Whether ``shared`` phrases of a source of ``source_count`` in a text of ``count`` are a copy (the rule)."""
        return shared >= self.MIN_SHARED and max(shared / source_count, shared / count) >= self.SHARE

    NEAR_PROBES = 8  # a text's chunks searched for the sources they are near (spread over the text)
    BLIND_MARGIN = 4
    NEAR_PER_PROBE = 4
    FULL_CACHE = 128  # documents (sources, and those holding text below them) whose whole phrase set is kept
    HELD_PROBES = 16  # a text's chunks searched for the documents at or below its label that hold its text already
    HELD_PER_PROBE = 4

    def _near(self, vectors: np.ndarray, sources: set[str]) -> set[str]:
        """The documents among ``sources`` that chunks of a text with these ``vectors`` are nearest to."""
        if self._store is None or not sources:
            return set()
        return _nearest(self._store, vectors, SearchFilters(document_ids=frozenset(sources)), self.NEAR_PROBES,
                        self.NEAR_PER_PROBE) & sources

    def _held_below(self, vectors: np.ndarray, label: Label, mine: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The phrase sets, and when their versions were stored, of the documents labelled ``label`` or below that
        chunks with these ``vectors`` (a text labelled ``label`` whose phrases are ``mine``) are nearest to, those
        holding any of ``mine`` (module doc)."""
        store = self._store
        if store is None or not len(vectors):
            return []
        below = SearchFilters(labels=frozenset(lab for lab in Label if lab <= label))
        held = []
        for doc_id in sorted(_nearest(store, vectors, below, self.HELD_PROBES, self.HELD_PER_PROBE)):
            try:
                doc = store.get_document(doc_id)
            except NotFound:  # deleted meanwhile
                continue
            full = self._full_phrases(doc_id, doc.version)
            if full is not None and np.isin(mine, full, assume_unique=True).any():
                held.append((full, doc.created_at))
        return held

    def _stored_at(self, doc_id: str) -> float | None:
        """When the version of ``doc_id`` in the store was stored; None if it is gone."""
        assert self._store is not None, "refresh() first"
        try:
            return self._store.get_document(doc_id).created_at
        except NotFound:
            return None

    def _full_phrases(self, doc_id: str, version: int | None = None) -> np.ndarray | None:
        """All the phrase hashes of document ``doc_id`` (sorted), from its stored chunks; kept for the last
        ``FULL_CACHE`` documents read, for ``version`` (by default: the version listed of a source). None if it is
        gone."""
        with self._lock:
            if version is None:
                version = self._labels.get(doc_id, (None, -1))[1]
            cached = self._full.get(doc_id)
            if cached is not None and cached[0] == version:
                self._full.move_to_end(doc_id)
                return cached[1]
            store = self._store
        assert store is not None, "refresh() first"
        try:
            found = phrases(c.content for c in store.document_chunks(doc_id))
        except NotFound:
            return None
        with self._lock:
            self._full[doc_id] = (version, found)
            while len(self._full) > self.FULL_CACHE:
                self._full.popitem(last=False)
        return found

    PROBES = 512  # a source's chunks searched for copies (every one of a source up to that; a snippet is one)
    PER_PROBE = 8  # nearest chunks labelled below the source that each probe looks at

    def copies(self, source: DocumentRecord) -> list[tuple[DocumentRecord, Derived]]:
        """The documents of any collection labelled below ``source`` whose text was taken from it by the rule of
        ``match``, now that ``source`` is labelled as it is (after a raise): each with the label and why. Only
        ``source`` is compared with (a raise reaches the copies of what was raised; the rest was judged when it
        was ingested). Read from the store ``refresh`` named."""
        assert self._store is not None, "refresh() first"
        store = self._store
        if source.label < self.floor:
            return []
        below = SearchFilters(labels=frozenset(lab for lab in Label if lab < source.label))
        vectors = list(store.embedded_chunks(source.collection_id, source.source_path).values())
        candidates = sorted(_nearest(store, vectors, below, self.PROBES, self.PER_PROBE) - {source.id})
        found = []
        for doc_id in candidates:
            try:
                doc = store.get_document(doc_id)
                contents = [c.content for c in store.document_chunks(doc_id)]
            except NotFound:  # deleted meanwhile
                continue
            # Not discounted by text readable below: the copies not raised yet are all readable below.
            derived = self.match(contents, doc.label, exclude=[doc_id], only=source.id, discount_below=False)
            if derived is not None:
                found.append((doc, derived))
        return found

    def _fingerprint(self, doc_ids: Iterable[str]) -> None:
        """Make the fingerprints these documents do not have yet, from their stored chunks (under the lock)."""
        assert self._store is not None, "refresh() first"
        for doc_id in doc_ids:
            listed = self._labels.get(doc_id)
            if doc_id in self._prints or listed is None:  # made already, or no longer a source
                continue
            try:
                found = phrases(c.content for c in self._store.document_chunks(doc_id))
            except NotFound:  # deleted since the listing
                continue
            self._prints[doc_id] = _Print(listed[1], found[:SKETCH_SIZE], len(found))
            self._stacked = None

    def _stack(self) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Every sample in one array, with the index of the document each hash belongs to: one ``isin`` call
        compares a text with all fingerprints."""
        if self._stacked is None:
            ids = list(self._prints)
            samples = [self._prints[d].sample for d in ids]
            self._stacked = (np.concatenate(samples) if samples else np.zeros(0, dtype=np.uint64),
                             np.repeat(np.arange(len(ids)), [len(s) for s in samples]),
                             {d: i for i, d in enumerate(ids)})
        return self._stacked


def _nearest(store: IndexStore, vectors: Sequence[np.ndarray] | np.ndarray, where: SearchFilters, probes: int,
             per_probe: int) -> set[str]:
    """The documents of the chunks nearest to ``vectors`` among those ``where`` allows: at most ``probes`` of the
    vectors, spread over them, each looking at its ``per_probe`` nearest chunks."""
    step = max(1, -(-len(vectors) // probes))
    near = {hit.chunk_id for v in vectors[::step] for hit in store.vector_search(_EVERYTHING, v, where, per_probe)}
    return {c.document_id for c in store.get_chunks(_EVERYTHING, sorted(near))}
