"""How many chunks hold a keyword term, from the statistics PostgreSQL keeps anyway.

``ANALYZE`` (run by autovacuum as the table changes) records for a ``tsvector`` column its most common lexemes and
the share of rows holding each (``pg_stats.most_common_elems`` / ``most_common_elem_freqs``: 1,000 lexemes at the
default statistics target, from a sample of 30,000 rows). That is the document frequency of every term frequent
enough to matter for the cost of a keyword query, at no cost to writes: no counter table, no trigger. A term not
in the list is rarer than the rarest one listed (``None``: unknown). A query term matches as a prefix, so its share
is the sum over the listed lexemes it starts (a lower bound). The list is read again after ``ttl_s``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

from inhouse.store.postgres.database import PostgresDatabase

_SQL = ("SELECT s.most_common_elems::text::text[] AS lexemes, s.most_common_elem_freqs AS shares,"
        " c.reltuples AS rows FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema()"
        " AND s.tablename = 'kb_chunks' AND s.attname = 'tsv'"
        " WHERE c.oid = 'kb_chunks'::regclass")


def _is_cjk(term: str) -> bool:
    return "\u3400" <= term[0] <= "\ufaff"


class TermShares:
    """The share of chunks holding each frequent term (``share``), and the number of chunks (``rows``)."""

    def __init__(self, db: PostgresDatabase, *, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._shares: dict[str, float] = {}
        self._sorted: list[str] = []
        self.rows = 0.0

    def _load(self) -> None:
        row = self._db.query_one(_SQL)
        shares: dict[str, float] = {}
        if row is not None and row["lexemes"] and row["shares"]:
            # The frequencies array ends with the minimum and maximum (and maybe the null share): zip stops early.
            shares = {lex: float(f) for lex, f in zip(row["lexemes"], row["shares"], strict=False)}
        self._shares, self._sorted = shares, sorted(shares)
        self.rows = max(0.0, float(row["rows"])) if row is not None and row["rows"] is not None else 0.0

    def refresh(self) -> None:
        """Read the statistics now."""
        with self._lock:
            self._load()
            self._loaded_at = self._clock()

    def current(self) -> TermShares:
        """Itself, with the statistics read again if they are older than ``ttl_s``."""
        if self._loaded_at is None or self._clock() - self._loaded_at > self._ttl_s:
            self.refresh()
        return self

    def share(self, term: str) -> float | None:
        """The share of chunks holding ``term`` (CJK: exactly; Latin: any word it starts); None when it is not
        among the frequent lexemes (or nothing has been analysed yet)."""
        if _is_cjk(term):
            return self._shares.get(term)
        i = bisect.bisect_left(self._sorted, term)
        total, found = 0.0, False
        while i < len(self._sorted) and self._sorted[i].startswith(term):
            total += self._shares[self._sorted[i]]
            found = True
            i += 1
        return min(total, 1.0) if found else None
