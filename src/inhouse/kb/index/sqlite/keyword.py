"""Keyword search on ``kb.db``: two FTS5 indexes over every chunk, queried inside the caller's read transaction.

* ``kb_words`` (``unicode61``; schema 3, reading the chunk and document rows since 5): the document title, the section
  path and the text as three columns. Latin-script query words (``keywords.word_terms``) are matched here as whole
  words and ranked by ``bm25(kb_words, 3, 2, 1)``: a question naming a page's subject or an entry's name finds it in
  the title or the heading before the pages that mention it in passing. Words in more than ``FREQUENT`` of all chunks
  are left out of the query (document frequencies from the ``fts5vocab`` table, one indexed lookup; when all that are
  found at all are that common the rarest one stays): their BM25 weight is ~0 and their posting lists are the
  longest. A trigram phrase of a common word (``function``: six trigrams, ``ion`` in most chunks) made FTS5 walk the
  longest posting lists of the index: that was the slow tail of keyword search on a real manual.
* ``kb_fts`` (``trigram``): every 3-character window of "title, section path, text". Chinese needs no word
  splitting there, and part numbers match as substrings. CJK query runs (``keywords.keyword_terms``) are searched
  here; in a query without CJK, so are Latin terms with digits (``X200``, which the word index holds glued to the
  CJK text after it as ``x200路由器``; they are searched as words too), and all Latin terms when none of them is a
  word the word index can take (or finds).

A query with both (``wireguard 工作日加班``) searches both indexes and fuses the two lists by rank, the trigram list
first: on a tie, a code glued to the Chinese the question asks about ("X200路由器…") comes before a page naming the
code alone. A query of only 1-2 character terms (``加班``, ``P3``) falls back to a ``LIKE`` scan over the chunks the
caller may see; one with a short code (``P3``) scans for it beside its word search, which misses "P3级故障".

The FTS match is materialized and then filtered by the access rule before ``ORDER BY … LIMIT``, so the limit is
filled from allowed rows only (``rowid IN`` inside the MATCH made FTS5 re-run the match per allowed row: 800 ms
instead of 1 ms at 5k chunks). Each match's document is read from the covering index ``kb_chunks_pk_doc`` and
tested against the list of allowed documents, so the filter costs per match, not per chunk the caller may see; when
the caller may see more documents than the query matches chunks (a member who sees nearly everything), each match's
document is tested by the access rule instead, and the list is never built (50,000 one-chunk documents, a member who
sees 99 %, 900 matches: 68-78 → 3-4 ms of CPU).
BM25's term statistics are those of the whole index, as with any shared inverted index; no text, score or count of
a row the caller may not see leaves the query.
"""

from __future__ import annotations

import json
import re
from typing import Any

from inhouse.kb.access import AccessScope
from inhouse.kb.index.keywords import keyword_terms, like_escape, word_terms
from inhouse.kb.index.protocol import SearchFilters, unrestricted
from inhouse.kb.index.sqlite.access import allowed_chunks, allowed_docs, collection_documents, document_condition

# Words in more than this share of all chunks are left out of a keyword query; column weights of the word index
# (title, section path, text).
FREQUENT = 0.3
WEIGHTS = "3.0, 2.0, 1.0"
# Up to this many matches, a member who may see more documents than that has each match tested (``_per_match``).
PER_MATCH_MAX = 5000
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def fts_expr(terms: list[str]) -> str:
    """Any of ``terms``, each quoted (a phrase when it has several words)."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def fuse(lists: list[list[tuple[int, float]]], limit: int, k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ``(pk, score)`` lists."""
    scores: dict[int, float] = {}
    for items in lists:
        for rank, (pk, _) in enumerate(items, start=1):
            scores[pk] = scores.get(pk, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:limit]


def keyword_matches(r: Any, query: str, scope: AccessScope, filters: SearchFilters, limit: int,
                    chunk_count: int) -> list[tuple[int, float]]:
    """``(chunk pk, score)`` of the best keyword matches the caller may see, best first, read through ``r`` (a
    connection inside a read transaction). ``chunk_count`` is the number of chunks (0: counted here)."""
    long, short = keyword_terms(query)
    # CJK windows; else codes with digits (words too): the word index holds "X200路由器" as one token, in which
    # "x200" is a substring. Not both: with the Chinese the code would count twice for a page naming it alone.
    substrings = [t for t in long if _CJK_RE.match(t)] or [t for t in long if any(ch.isdigit() for ch in t)]
    words = frequent_words_dropped(r, word_terms(query), chunk_count)
    short_codes = [t for t in short if any(ch.isdigit() for ch in t)]
    lists: list[list[tuple[int, float]]] = []
    if substrings or (long and not words):
        lists.append(fts_matches(r, "kb_fts", "bm25(kb_fts)", fts_expr(substrings or long), scope, filters, limit))
    if words:
        lists.append(fts_matches(r, "kb_words", f"bm25(kb_words, {WEIGHTS})", fts_expr(words), scope, filters,
                                 limit))
    if short and (not lists or (short_codes and not long)):
        lists.append(like_matches(r, short if not lists else short_codes, scope, filters, limit))
    if not lists:
        return []
    return lists[0] if len(lists) == 1 else fuse(lists, limit)


def frequent_words_dropped(r: Any, words: list[str], chunk_count: int) -> list[str]:
    """``words`` without those in more than ``FREQUENT`` of all chunks and those in none; when no word is left (nor
    a phrase), the rarest word found in some chunk. Phrases (``os chmod``) stay. A word found nowhere (a typo, a
    word of the question only) must not count as kept: the frequent word that does match would go for it."""
    single = [w for w in words if " " not in w]
    if not single:
        return words
    df = dict(r.execute("SELECT term, doc FROM kb_words_vocab WHERE term IN (SELECT value FROM json_each(?))",
                        (json.dumps(single),)).fetchall())
    n = chunk_count or int(r.execute("SELECT count(*) FROM kb_chunks").fetchone()[0])
    kept = [w for w in words if " " in w or 0 < df.get(w, 0) <= FREQUENT * n]
    found = [w for w in single if df.get(w, 0) > 0]
    if kept or not found:
        return kept
    return [min(found, key=lambda w: df[w])]


def fts_matches(r: Any, table: str, rank: str, match: str, scope: AccessScope, filters: SearchFilters,
                limit: int) -> list[tuple[int, float]]:
    params: dict[str, Any] = {"q": match, "limit": int(limit)}
    if unrestricted(scope, filters):
        sql = (f"SELECT m.pk, m.score FROM (SELECT rowid AS pk, {rank} AS score FROM {table}"
               f" WHERE {table} MATCH :q ORDER BY score LIMIT :limit) m ORDER BY m.score")
    elif _per_match(r, table, match, scope):
        # Few matches, more documents the caller may see: each match's document is tested (``CROSS JOIN`` keeps
        # the matches first: SQLite would otherwise start from the documents).
        cond, access = document_condition(scope, filters)
        params.update(access)
        sql = (f"WITH m AS MATERIALIZED (SELECT rowid AS pk, {rank} AS score FROM {table}"
               f" WHERE {table} MATCH :q) SELECT m.pk, m.score FROM m CROSS JOIN kb_chunks k INDEXED BY"
               " kb_chunks_pk_doc CROSS JOIN kb_documents d CROSS JOIN kb_collections c WHERE k.pk = m.pk"
               f" AND d.pk = k.document_pk AND c.pk = d.collection_pk AND {cond} ORDER BY m.score LIMIT :limit")
    else:
        # The match is materialized first, then filtered by the access rule, then ranked and cut: FTS5 would
        # otherwise run the MATCH once per allowed rowid (``rowid IN`` is pushed into the table). Each match's
        # document comes from the covering index (cost follows the matches, not the number of chunks the caller
        # may see); the allowed documents are one list, built once per query.
        docs, access = allowed_docs(scope, filters)
        params.update(access)
        sql = (f"WITH m AS MATERIALIZED (SELECT rowid AS pk, {rank} AS score FROM {table}"
               f" WHERE {table} MATCH :q) SELECT m.pk, m.score FROM m WHERE (SELECT k.document_pk"
               f" FROM kb_chunks k INDEXED BY kb_chunks_pk_doc WHERE k.pk = m.pk) IN ({docs})"
               " ORDER BY m.score LIMIT :limit")
    return [(int(pk), -float(score)) for pk, score in r.execute(sql, params)]


def _per_match(r: Any, table: str, match: str, scope: AccessScope) -> bool:
    """Test each match's document rather than list the caller's documents? Testing costs ~2 µs per match, the list
    ~1.3 µs per document the caller may see (plus ~0.8 µs per match to look up): so up to ``PER_MATCH_MAX``
    matches, when the collections whose lists name the caller hold more documents than the query matches chunks
    (what they may see at most: a cheap bound; a member who sees 1 % of a large collection pays ~1 µs more per
    match than the list would cost). Counting the matches is one pass over the posting lists; counting the
    documents stops at one more than the matches."""
    n = int(r.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (match,)).fetchone()[0])
    if n > PER_MATCH_MAX:
        return False
    docs, access = collection_documents(scope)
    more = r.execute(f"SELECT count(*) FROM ({docs} LIMIT :cap)", {**access, "cap": n + 1})
    return int(more.fetchone()[0]) > n


def like_matches(r: Any, short: list[str], scope: AccessScope, filters: SearchFilters,
                 limit: int) -> list[tuple[int, float]]:
    """Chunks containing any of ``short`` (1-2 character terms), ranked by how many of them each contains."""
    allowed, params = allowed_chunks(scope, filters)
    params["limit"] = int(limit)
    hits = []
    for i, term in enumerate(short):
        params[f"t{i}"] = "%" + like_escape(term) + "%"
        hits.append(f"(f.text LIKE :t{i} ESCAPE '\\')")
    sql = (f"SELECT f.rowid, ({' + '.join(hits)}) AS n FROM kb_fts f"
           f" WHERE f.rowid IN ({allowed}) AND n > 0 ORDER BY n DESC, f.rowid LIMIT :limit")
    return [(int(pk), float(n)) for pk, n in r.execute(sql, params)]
