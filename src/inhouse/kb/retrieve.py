"""Hybrid retrieval with the caller's access applied inside both searches.

``Retriever.retrieve(actor, query, …)``: the actor is required. It becomes an ``AccessScope`` that the store
turns into SQL inside the keyword (BM25) query and the vector (KNN) query, before ranking, so each list is the
best of what the caller may see and nothing else is ever scored. The two lists are fused by reciprocal rank
fusion (``score = Σ 1 / (k + rank)``, k = 60, as in haystack's ``DocumentJoiner``), and ``top_k`` is cut from the
fused list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class Retriever:
    def __init__(self, store: IndexStore, embedder: Embedder, *, rrf_k: int = 60, candidates: int = 40) -> None:
        self.store = store
        self.embedder = embedder
        self.rrf_k = rrf_k
        self.candidates = candidates

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

    def retrieve(self, actor: Actor, query: str, collections: Sequence[str] | None = None, top_k: int = 5,
                 filters: SearchFilters | Mapping[str, Any] | None = None) -> list[Hit]:
        return self.retrieve_scored(actor, query, collections, top_k, filters)[0]

    def retrieve_scored(self, actor: Actor, query: str, collections: Sequence[str] | None = None, top_k: int = 5,
                        filters: SearchFilters | Mapping[str, Any] | None = None) -> tuple[list[Hit], float]:
        """The hits and the best cosine similarity among all chunks the actor may see (the relevance gate of
        grounded answers: keyword hits alone say little about whether the question is covered)."""
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
        qvec = self.embedder.embed_query(query)
        keyword = self.store.keyword_search(scope, query, f, n)
        vector = self.store.vector_search(scope, qvec, f, n)
        fused = rrf([keyword, vector], k=self.rrf_k)[:top_k]
        sims = {s.chunk_id: s.score for s in vector}
        chunks = {c.id: c for c in self.store.get_chunks(scope, [cid for cid, _, _ in fused])}
        hits = []
        for cid, score, (kr, vr) in fused:
            if cid in chunks:  # a chunk deleted between the searches and this read is dropped
                hits.append(Hit(chunks[cid], score, kr, vr, sims.get(cid)))
        return hits, (vector[0].score if vector else 0.0)
