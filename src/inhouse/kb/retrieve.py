"""Hybrid retrieval with the caller's access applied inside both searches.

``Retriever.retrieve(actor, query, …)``: the actor is required. It becomes an ``AccessScope`` that the store
turns into SQL inside the keyword (BM25) query and the vector (KNN) query, before ranking, so each list is the
best of what the caller may see and nothing else is ever scored. The lists are fused by reciprocal rank
fusion (``score = Σ 1 / (k + rank)``, k = 60, as in haystack's ``DocumentJoiner``).

**Alternates.** A caller may pass other wordings of the query (``alternates``: the question translated into the
other language of the corpus, see ``kb.translate``); each gets its own keyword and vector list, fused into its own
ranking, and the rankings are interleaved rank by rank (``fuse_wordings``). Trigram keyword search cannot
match across languages and e5-small ranks every same-language chunk above the right other-language one, so this is
what makes an English question find a Chinese passage. ``expansions`` are wordings fused the same way that do not
count for the best similarity (the model's code sketch of the question, ``kb.sketch``), and ``boost_names`` lifts
the fused top 20 whose heading names one of them (``promote_named``).

**Diversity.** ``top_k`` is cut from the fused list so that no document holds more than ``per_document`` of the
slots (``ceil(top_k × share)``, 2 of 5 by default) and a chunk whose text nearly repeats a chosen one (character
5-gram Jaccard ≥ 0.8: the same passage in two files or two versions) is left out. Slots that stay empty are filled
from what was passed over (documents over their share first, duplicates last), so ``top_k`` is filled whenever
enough chunks exist. The fused list is read until ``top_k`` chunks pass both tests or it ends, so copies of one file
cannot crowd out the rest of the list. Hits are the stored chunks themselves: citations point at the exact passage.

**Concurrency.** Each wording's keyword query runs on a small thread pool while this thread embeds the wording and
runs the vector query: the latency is the longer of the two, not their sum. Both stores release the GIL while they
work (SQLite through apsw, PostgreSQL while its server process runs the query, the embedder inside llama.cpp).
"""

from __future__ import annotations

import contextvars
import math
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest, NotFound
from inhouse.kb.access import AccessScope, may_access_collection
from inhouse.kb.index.protocol import IndexStore, Scored, SearchFilters, StoredChunk
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.kb.embed import Embedder

MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
NEAR_DUPLICATE = 0.8  # Jaccard similarity of character 5-grams above which two chunks count as one passage
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Hit:
    chunk: StoredChunk
    score: float  # fused RRF score
    keyword_rank: int | None = None  # 1-based ranks in each list (None: not in it)
    vector_rank: int | None = None
    similarity: float | None = None  # cosine similarity of the query and the chunk, when computed

    def to_dict(self, *, snippet_chars: int = 400) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.id, "document_id": c.document_id, "collection_id": c.collection_id, "title": c.title,
            "source_path": c.source_path, "section": c.section or None, "page_start": c.page_start,
            "page_end": c.page_end, "label": c.label.value, "score": round(self.score, 6),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "text": c.content[:snippet_chars],
        }


def rrf(lists: Sequence[Sequence[Scored]], *, k: int = 60) -> list[tuple[str, float, list[int | None]]]:
    """Reciprocal rank fusion: ``(chunk_id, fused score, 1-based rank in each list)``, best first; ties keep the
    order of first appearance so results are deterministic."""
    scores: dict[str, float] = {}
    ranks: dict[str, list[int | None]] = {}
    for li, items in enumerate(lists):
        for rank, item in enumerate(items, start=1):
            scores[item.chunk_id] = scores.get(item.chunk_id, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(item.chunk_id, [None] * len(lists))[li] = rank
    order = sorted(scores, key=lambda cid: -scores[cid])
    return [(cid, scores[cid], ranks[cid]) for cid in order]


def fuse_wordings(rankings: Sequence[list[tuple[str, float, list[int | None]]]], *,
                  k: int = 60) -> list[tuple[str, float, list[int | None]]]:
    """One fused ranking per wording of the query (its keyword and vector lists), interleaved rank by rank (the
    question's first at equal rank): a chunk's score is ``1 / (k + its best rank in any wording)``.

    Why not a sum over the wordings: every chunk that two wordings rank in the middle would then beat the one that
    tops the translation's ranking (measured on the cross-lingual set: the handbook, first for the Chinese wording of
    an English question, fell to sixth behind English chunks that both wordings listed at ranks 2-20). One wording:
    its ranking unchanged. The ranks returned are (keyword, vector) of the wording that ranked the chunk best."""
    if len(rankings) == 1:
        return rankings[0]
    out: list[tuple[str, float, list[int | None]]] = []
    seen: set[str] = set()
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank][0] not in seen:
                cid, _, lists = ranking[rank]
                seen.add(cid)
                out.append((cid, 1.0 / (k + rank + 1), lists))
    return out


def heading_mentions(heading: str, names: Sequence[str]) -> int:
    """How many of ``names`` (``heapq.nsmallest``, ``pg_cancel_backend``, ``--schema-only``) ``heading`` names: the
    whole name, or its first or last dotted part of 3+ characters (the module, the function), as a whole word,
    case ignored."""
    h = heading.lower()
    count = 0
    for name in names:
        parts = name.lower().lstrip("-").split(".")
        keys = {name.lower(), *(p for p in (parts[0], parts[-1]) if len(p) >= 3)}
        if any(re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", h) for k in keys):
            count += 1
    return count


def shingles(text: str, n: int = 5) -> frozenset[int]:
    """Hashed character ``n``-grams of ``text`` (case and runs of white space ignored; the first 4,000 characters)."""
    t = _SPACES.sub(" ", text[:4000].lower()).strip()
    if len(t) <= n:
        return frozenset({hash(t)})
    return frozenset(hash(t[i:i + n]) for i in range(len(t) - n + 1))


def near_duplicate(a: frozenset[int], b: frozenset[int], threshold: float = NEAR_DUPLICATE) -> bool:
    if not a or not b:
        return False
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) < threshold * len(large):  # the Jaccard index cannot reach the threshold
        return False
    inter = len(small & large)
    return inter / (len(a) + len(b) - inter) >= threshold


class Diversity:
    """The diversity rule, offered chunks one at a time in fused order: a chunk is kept unless it nearly repeats a
    kept one or its document already holds ``per_document`` of them. ``full`` once ``top_k`` are kept that way:
    later chunks can change nothing, so the caller stops reading there. ``chosen`` then fills the slots that stay
    empty from the passed-over chunks (documents over their share first, near-duplicates last)."""

    def __init__(self, top_k: int, per_document: int) -> None:
        self.top_k = top_k
        self.per_document = per_document
        self._offered = 0
        self._kept: list[int] = []
        self._kept_shingles: list[frozenset[int]] = []
        self._per_doc: dict[str, int] = {}
        self._over_share: list[int] = []
        self._duplicates: list[int] = []
        self._shingled: dict[str, frozenset[int]] = {}  # by text: copies of a file repeat their chunks verbatim

    @property
    def full(self) -> bool:
        return len(self._kept) >= self.top_k

    def offer(self, chunk: StoredChunk) -> None:
        i, self._offered = self._offered, self._offered + 1
        sh = self._shingled.get(chunk.content)
        if sh is None:
            sh = self._shingled[chunk.content] = shingles(chunk.content)
        if any(near_duplicate(sh, k) for k in self._kept_shingles):
            self._duplicates.append(i)
        elif self._per_doc.get(chunk.document_id, 0) >= self.per_document:
            self._over_share.append(i)
        else:
            self._kept.append(i)
            self._kept_shingles.append(sh)
            self._per_doc[chunk.document_id] = self._per_doc.get(chunk.document_id, 0) + 1

    def chosen(self) -> list[int]:
        """Indices, in the order offered, of the ``top_k`` to return (fewer only if fewer were offered)."""
        return self._kept + (self._over_share + self._duplicates)[:max(0, self.top_k - len(self._kept))]


def diversify(chunks: Sequence[StoredChunk], top_k: int, per_document: int) -> list[int]:
    """Indices into ``chunks`` (in fused order) of the ``top_k`` to keep by the ``Diversity`` rule, so that
    ``top_k`` is filled whenever ``chunks`` has that many."""
    rule = Diversity(top_k, per_document)
    for c in chunks:
        if rule.full:
            break
        rule.offer(c)
    return rule.chosen()


@dataclass(frozen=True)
class SketchScope:
    subject: str  # the descriptions of the collections sketched for, distinct, "; "-joined, at most 200 characters
    collection_ids: frozenset[str] | None  # where the sketch is searched (None: wherever the question is)


@dataclass(frozen=True)
class _Wording:
    """One wording searched: its keyword and vector lists fused, whether it counts for the relevance gate, and its
    vector list (the similarities)."""

    ranking: list[tuple[str, float, list[int | None]]]
    gate: bool
    vector: list[Scored]


class Retriever:
    def __init__(self, store: IndexStore, embedder: Embedder, *, rrf_k: int = 60, candidates: int = 40,
                 document_share: float = 0.4, search_threads: int = 4) -> None:
        self.store = store
        self.embedder = embedder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.document_share = document_share
        self._search_threads = search_threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _keyword_search(self, scope: AccessScope, query: str, f: SearchFilters, n: int) -> Future[list[Scored]]:
        """The keyword query on the pool (started now, in this request's context), or at once without threads."""
        if self._search_threads <= 0:
            done: Future[list[Scored]] = Future()
            done.set_result(self.store.keyword_search(scope, query, f, n))
            return done
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._search_threads, thread_name_prefix="kb-keyword")
            pool = self._pool
        return pool.submit(contextvars.copy_context().run, self.store.keyword_search, scope, query, f, n)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def per_document(self, top_k: int, share: float | None = None) -> int:
        """The most slots of ``top_k`` one document may hold (``ceil(top_k × document_share)``, at least 1)."""
        return max(1, math.ceil(top_k * (self.document_share if share is None else share)))

    def collection_ids(self, actor: Actor, collections: Sequence[str] | None) -> frozenset[str] | None:
        """Resolve names or ids. One the actor may not access is reported exactly like one that does not exist."""
        if collections is None:
            return None
        scope = AccessScope.of(actor)
        ids = set()
        for ref in collections:
            try:
                col = self.store.get_collection(str(ref))
            except NotFound:
                col = None
            if col is None or not may_access_collection(scope, col.acl):
                raise NotFound(f"No collection '{ref}'.", param="collections")
            ids.add(col.id)
        return frozenset(ids)

    def sketch_scope(self, actor: Actor, collections: Sequence[str] | None, *,
                     everywhere: bool = False) -> SketchScope | None:
        """Whether a question searched in ``collections`` (every collection the actor may access when None) gets a
        code sketch, and for which of them: those with ``sketch_questions`` on, or all of them when ``everywhere``
        (``kb.sketch_questions``). None: none of them. The sketch is searched only there, so a manual's sketch does
        not pull in company documents that the same question also searches."""
        scope = AccessScope.of(actor)
        ids = self.collection_ids(actor, collections)
        searched = [c for c in self.store.list_collections()
                    if (c.id in ids if ids is not None else may_access_collection(scope, c.acl))]
        chosen = searched if everywhere else [c for c in searched if c.sketch_questions]
        if not chosen:
            return None
        subject = "; ".join(dict.fromkeys(d for c in chosen if (d := c.description.strip())))[:200]
        return SketchScope(subject, None if everywhere else frozenset(c.id for c in chosen))

    def retrieve(self, actor: Actor, query: str, collections: Sequence[str] | None = None, top_k: int = 5,
                 filters: SearchFilters | Mapping[str, Any] | None = None) -> list[Hit]:
        return self.retrieve_scored(actor, query, collections, top_k, filters)[0]

    def retrieve_scored(self, actor: Actor, query: str, collections: Sequence[str] | None = None, top_k: int = 5,
                        filters: SearchFilters | Mapping[str, Any] | None = None, *,
                        alternates: Sequence[str] = (), document_share: float | None = None,
                        expansions: Sequence[str] = (), boost_names: Sequence[str] = (),
                        expansion_collections: frozenset[str] | None = None) -> tuple[list[Hit], float]:
        """The hits and the best cosine similarity among all chunks the actor may see, for the query or any of
        its ``alternates`` (the relevance gate of grounded answers: keyword hits alone say little about whether
        the question is covered). ``expansions`` are searched and fused like alternates but do not count for that
        similarity (a code sketch is close to every code sample, whether the question is covered or not), and
        only in ``expansion_collections`` when given. ``boost_names``: see ``promote_named``."""
        return self.retrieve_apart(actor, query, collections, top_k, filters, alternates=alternates,
                                   document_share=document_share, expansions=expansions, boost_names=boost_names,
                                   expansion_collections=expansion_collections, apart=False)[0]

    def retrieve_apart(self, actor: Actor, query: str, collections: Sequence[str] | None = None, top_k: int = 5,
                       filters: SearchFilters | Mapping[str, Any] | None = None, *,
                       alternates: Sequence[str] = (), document_share: float | None = None,
                       expansions: Sequence[str] = (), boost_names: Sequence[str] = (),
                       expansion_collections: frozenset[str] | None = None,
                       apart: bool = True) -> list[tuple[list[Hit], float]]:
        """``retrieve_scored`` of every wording together, then (with ``apart``) of the query alone and of each
        alternate alone, each with the expansions, as separate calls would give them; every wording is searched
        once (a translated question's grounding needs all three, see ``Answerer.ground``)."""
        scope = AccessScope.of(actor)  # raises on a missing actor: there is no "anyone" retrieval
        query = (query or "").strip()
        if not query:
            raise InvalidRequest("The query must not be empty.", param="query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidRequest(f"The query has more than {MAX_QUERY_CHARS} characters.", param="query")
        if not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be between 1 and {MAX_TOP_K}.", param="top_k")
        f = filters if isinstance(filters, SearchFilters) else SearchFilters.from_mapping(filters)
        col_ids = self.collection_ids(actor, collections)
        if col_ids is not None:
            f = replace(f, collection_ids=col_ids if f.collection_ids is None else f.collection_ids & col_ids)
        n = max(self.candidates, top_k * 4)
        gates: dict[str, bool] = {query: True}  # each wording, and whether it counts for the best similarity
        for text, gate in [*((a, True) for a in alternates), *((e, False) for e in expansions)]:
            text = text.strip()[:MAX_QUERY_CHARS]
            if text and text not in gates:
                gates[text] = gate
        queries = list(gates)
        searched: dict[str, _Wording] = {}
        where = {q: f if gates[q] or expansion_collections is None else
                 replace(f, collection_ids=expansion_collections if f.collection_ids is None
                         else f.collection_ids & expansion_collections) for q in queries}
        keyword = [self._keyword_search(scope, q, where[q], n) for q in queries]
        try:
            for q, keyword_hits in zip(queries, keyword, strict=True):
                vector = self.store.vector_search(scope, self.embedder.embed_query(q), where[q], n)
                searched[q] = _Wording(rrf([keyword_hits.result(), vector], k=self.rrf_k), gates[q], vector)
        finally:
            for pending in keyword:  # after an error: nothing waits for the rest
                pending.cancel()
        share = self.document_share if document_share is None else document_share
        combos = [queries]
        if apart:
            extra = [q for q in queries if not gates[q]]
            combos += [[q, *extra] for q in queries if gates[q]]
        return [self._combine(scope, [searched[q] for q in combo], top_k, share, boost_names) for combo in combos]

    def _combine(self, scope: AccessScope, wordings: Sequence[_Wording], top_k: int, share: float | None,
                 boost_names: Sequence[str]) -> tuple[list[Hit], float]:
        """The top ``top_k`` of these wordings' rankings interleaved, and their best similarity."""
        sims: dict[str, float] = {}
        best = 0.0
        for w in wordings:
            if w.gate:
                for s in w.vector:
                    sims[s.chunk_id] = max(sims.get(s.chunk_id, -1.0), s.score)
                best = max(best, w.vector[0].score if w.vector else 0.0)
        fused = fuse_wordings([w.ranking for w in wordings], k=self.rrf_k)
        if boost_names:
            fused = self.promote_named(scope, fused, boost_names)
        return self._select(scope, fused, top_k, sims, share), best

    def promote_named(self, scope: AccessScope, fused: list[tuple[str, float, list[int | None]]],
                      names: Sequence[str], depth: int = 20) -> list[tuple[str, float, list[int | None]]]:
        """The first ``depth`` of ``fused`` re-ordered by how many of ``names`` their heading (document title and
        section path) names (``heading_mentions``), fused order kept among equals; the rest unchanged. Scores are
        re-assigned by the new rank so they stay descending."""
        head = fused[:depth]
        found = {c.id: c for c in self.store.get_chunks(scope, [cid for cid, _, _ in head])}
        counts = [heading_mentions(f"{found[cid].title} {found[cid].section}", names) if cid in found else 0
                  for cid, _, _ in head]
        order = sorted(range(len(head)), key=lambda i: -counts[i])
        return [(head[i][0], 1.0 / (self.rrf_k + r + 1), head[i][2]) for r, i in enumerate(order)] + fused[depth:]

    def _select(self, scope: AccessScope, fused: list[tuple[str, float, list[int | None]]], top_k: int,
                sims: Mapping[str, float], share: float | None = None) -> list[Hit]:
        """The top ``top_k`` of the fused list after the diversity rule. Chunks are read (through the caller's
        scope, like the searches) in windows of the fused list and offered to the rule until it has kept ``top_k``
        within their document's share and no two alike, or the list ends. Counting documents is not enough: eight
        branch copies of one policy are eight documents and one passage. The first window is ``3 × top_k``, usually
        all it takes; each later one is as long as all read before, so a fused list full of copies costs a few reads
        (top_k 5: 4 for one wording's 80 candidates, 5 for three wordings), not one per window."""
        window = 3 * top_k
        rule = Diversity(top_k, self.per_document(top_k, share))
        offered: list[tuple[StoredChunk, float, list[int | None]]] = []
        at = 0
        while at < len(fused) and not rule.full:
            part = fused[at:at + window]
            at += len(part)
            window = at
            found = {c.id: c for c in self.store.get_chunks(scope, [cid for cid, _, _ in part])}
            for cid, score, rank in part:
                if rule.full:
                    break
                if cid in found:  # a chunk deleted between the searches and this read is dropped
                    offered.append((found[cid], score, rank))
                    rule.offer(found[cid])
        hits = []
        for i in rule.chosen():
            chunk, score, rank = offered[i]
            hits.append(Hit(chunk, score, rank[0], rank[1], sims.get(chunk.id)))
        return hits
