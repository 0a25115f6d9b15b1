"""Table ``answer_labels`` of ``governance/answer_labels.py``: the digest of an answer given from labelled material,
its label and when. One SQL implementation for SQLite and PostgreSQL (they differ in the parameter placeholder);
rows older than ``KEEP_S`` are dropped as new ones are written."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from inhouse.governance.labels import Label

KEEP_S = 90 * 86_400
_LABELS = list(Label)


class SqlAnswerLabels:
    """Table ``answer_labels`` (digest, label rank, time) in the main database: SQLite and PostgreSQL differ only in
    the parameter ``placeholder``."""

    def __init__(self, db: Any, *, placeholder: str = "?", clock: Callable[[], float] = time.time,
                 keep_s: float = KEEP_S) -> None:
        self._db = db  # query_one / transaction, as both database helpers offer them
        self._placeholder = placeholder
        self._clock = clock
        self._keep_s = keep_s

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._placeholder)

    def record(self, digests: Iterable[str], label: Label) -> None:
        """Remember ``digests`` at ``label`` (a digest already known keeps the higher of the two)."""
        now = self._clock()
        with self._db.transaction() as conn:
            for d in dict.fromkeys(digests):
                conn.execute(self._sql(
                    "INSERT INTO answer_labels (digest, label_rank, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at, label_rank = CASE"
                    " WHEN excluded.label_rank > answer_labels.label_rank THEN excluded.label_rank"
                    " ELSE answer_labels.label_rank END"), (d, label.rank, now))
            conn.execute(self._sql("DELETE FROM answer_labels WHERE created_at < ?"), (now - self._keep_s,))

    def highest(self, digests: Sequence[str]) -> Label | None:
        """The highest label among ``digests`` remembered, None when none is."""
        if not digests:
            return None
        marks = ", ".join("?" for _ in digests)
        row = self._db.query_one(self._sql(f"SELECT MAX(label_rank) AS r FROM answer_labels WHERE digest IN ({marks})"),
                                 tuple(digests))
        rank = row["r"] if row is not None else None
        return _LABELS[int(rank)] if rank is not None else None
