"""How the PostgreSQL index writes text and vectors: ``tsvector`` and ``tsquery`` literals of the terms of
``kb.index.keywords``, and pgvector literals. Pure (no connection)."""

from __future__ import annotations

import numpy as np

from inhouse.kb.index.keywords import index_terms

_MAX_POSITION = 16383  # tsvector positions stop here


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(map(repr, v.astype(np.float32).tolist())) + "]"


def _quote(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(text: str) -> str:
    """The ``tsvector`` of a chunk's terms with their positions (so ``ts_rank`` counts repeats)."""
    positions: dict[str, list[int]] = {}
    for i, term in enumerate(index_terms(text)[:_MAX_POSITION], start=1):
        positions.setdefault(term, []).append(i)
    return " ".join(f"{_quote(t)}:{','.join(map(str, p[:256]))}" for t, p in positions.items())


def tsquery_literal(terms: list[str]) -> str:
    """Any of ``terms``; Latin words also match as prefixes (``leave`` finds ``leaves``, as a substring index
    would), CJK windows exactly."""
    return " | ".join(_quote(t) + ("" if "\u3400" <= t[0] <= "\ufaff" else ":*") for t in terms)
