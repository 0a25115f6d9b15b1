"""How the PostgreSQL index writes text and vectors: ``tsvector`` and ``tsquery`` literals of the terms of
``kb.index.keywords``, and pgvector literals. Pure (no connection)."""

from __future__ import annotations

import numpy as np

from inhouse.kb.index.keywords import index_terms

_MAX_POSITION = 16383  # tsvector positions stop here
_MAX_LEXEME_BYTES = 2046  # a longer tsvector or tsquery word is an error ("word is too long")
# ts_rank's weights of D, C, B, A (each at most 1): text 1, section path 2, title 3 (SQLite's word index: 3, 2, 1).
RANK_WEIGHTS = "{0.2, 0.2, 0.4, 0.6}"


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(map(repr, v.astype(np.float32).tolist())) + "]"


def _quote(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _fit(term: str) -> str:
    """``term`` cut to PostgreSQL's longest word (2,046 UTF-8 bytes, at a character boundary). Such a "word" is a
    hex dump or text that lost its spaces: indexed and queried cut alike, a query of it still finds it (the query's
    Latin terms match as prefixes), and a chunk or a question holding one is no longer an error."""
    raw = term.encode()
    if len(raw) <= _MAX_LEXEME_BYTES:
        return term
    return raw[:_MAX_LEXEME_BYTES].decode(errors="ignore")


def _parts(text: str, section: str) -> list[tuple[str, str]]:
    """A chunk row's indexed text (``title\nchunk text``, the chunk text starting with its section path when it has
    one) as (part, weight): the title ``A``, the section path ``B``, the rest ``D``. A text of one line is all text."""
    if "\n" not in text:
        return [(text, "D")]
    title, _, body = text.partition("\n")
    if section and body.startswith(section + "\n"):
        return [(title, "A"), (section, "B"), (body[len(section) + 1:], "D")]
    if section and body == section:
        return [(title, "A"), (section, "B")]
    return [(title, "A"), (body, "D")]


def tsvector_literal(text: str, section: str = "") -> str:
    """The ``tsvector`` of a chunk's terms with their positions (so ``ts_rank`` counts repeats) and weights: terms of
    the document title ``A``, of the section path ``B``, of the text ``D`` (``RANK_WEIGHTS`` scores them 3, 2, 1,
    as SQLite's word index weighs its three columns)."""
    positions: dict[str, list[str]] = {}
    i = 0
    for part, weight in _parts(text, section):
        for term in map(_fit, index_terms(part)):
            i += 1
            if i > _MAX_POSITION:
                break
            positions.setdefault(term, []).append(f"{i}{'' if weight == 'D' else weight}")
    return " ".join(f"{_quote(t)}:{','.join(p[:256])}" for t, p in positions.items())


def tsquery_literal(terms: list[str]) -> str:
    """Any of ``terms``; Latin words also match as prefixes (``leave`` finds ``leaves``, as a substring index
    would), CJK windows exactly."""
    return " | ".join(_quote(_fit(t)) + ("" if "\u3400" <= t[0] <= "\ufaff" else ":*") for t in terms)
