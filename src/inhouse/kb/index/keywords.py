"""The keyword query: how a question becomes search terms. Pure (no SQL), shared by every ``IndexStore``.

Query terms are split into Latin words (>= 3 characters, minus English stop words) and CJK runs (cut into
overlapping 3-character windows, which is what a trigram index holds: Chinese needs no word splitting, and part
numbers match as substrings). Terms of 1-2 characters cannot match a trigram index; short codes among them
(``P3``, ``Q3``, and 1-2 character CJK words such as ``加班``) are returned apart so a store can fall back to a
substring scan. ``like_escape`` escapes a term for ``LIKE … ESCAPE '\\'`` (SQLite and PostgreSQL alike).
``rarest_terms`` leaves out the terms found in the most chunks when matching them all would cost too much.

A store whose keyword index holds words rather than every 3-character window (PostgreSQL's ``tsvector``) indexes
``index_terms`` of each chunk: the same Latin words and CJK windows the query side makes, in text order.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_STOP = frozenset({
    "the", "and", "for", "are", "was", "were", "what", "which", "who", "whom", "whose", "when", "where", "why",
    "how", "many", "much", "does", "did", "done", "with", "that", "this", "these", "those", "from", "into", "onto",
    "over", "per", "get", "gets", "has", "have", "had", "its", "our", "your", "their", "there", "here", "about",
    "any", "all", "not", "but", "you", "can", "could", "may", "might", "must", "should", "would", "will", "shall",
    "being", "been", "than", "then", "them", "they", "she", "his", "her", "him", "also", "some", "such", "only",
    "own", "same", "very", "just", "one", "two", "company",
})
_TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W_][\w.\-]*", re.UNICODE)
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MAX_TERMS = 48


def _terms(text: str) -> tuple[list[str], list[str]]:
    long: list[str] = []
    short: list[str] = []
    for tok in _TOKEN_RE.findall(text.lower()):
        tok = tok.strip(".-")
        if not tok:
            continue
        if _CJK_RE.match(tok):
            if len(tok) < 3:
                short.append(tok)
            else:
                long.extend(tok[i:i + 3] for i in range(len(tok) - 2))
        elif len(tok) >= 3:
            if tok not in _STOP:
                long.append(tok)
        elif tok.isalnum() and not tok.isalpha():
            short.append(tok)  # "p3", "q3": short codes carry meaning; short English words rarely do
    return long, short


def index_terms(text: str) -> list[str]:
    """The terms of a chunk, in order, repeats kept: what a word index holds for ``keyword_terms`` to find."""
    return _terms(text)[0]


def keyword_terms(query: str) -> tuple[list[str], list[str]]:
    """(terms of >= 3 characters for the trigram index, shorter terms for the LIKE fallback)."""
    long, short = _terms(query)
    return list(dict.fromkeys(long))[:_MAX_TERMS], list(dict.fromkeys(short))[:_MAX_TERMS]



def rarest_terms(terms: list[str], share: Callable[[str], float | None], budget: float) -> list[str]:
    """``terms`` without the most frequent ones: rarest first, a term with a known ``share`` of chunks is kept while
    the shares kept add up to at most ``budget``; terms of unknown share (too rare for the statistics) always stay,
    and so does the rarest term. Order kept.

    A term in a large share of the chunks tells little about which chunk answers (BM25 weighs it near 0) and is
    the most expensive to match: its posting list and, where ranking reads the rows (PostgreSQL), its rows."""
    known = {t: s for t in terms if (s := share(t)) is not None}
    kept = {t for t in terms if t not in known}
    total = 0.0
    for t in sorted(known, key=lambda t: known[t]):
        if total + known[t] <= budget or not (kept or total):
            kept.add(t)
            total += known[t]
    return [t for t in terms if t in kept]


def like_escape(term: str) -> str:
    """``term`` with the LIKE wildcards and the escape character escaped (``ESCAPE '\\'``)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
