"""The labels of answers given from labelled material, found again when such an answer comes back.

Chat completions are stateless: a client sends the whole conversation every time. An answer grounded on a
confidential document (or given in a conversation declared confidential) is plain text in the next request's
history, and nothing in it says where it came from: "make it shorter", sent to a cloud model, would carry the
confidential answer out. So every local answer whose label is above ``public`` is remembered by a digest of its text
(whitespace-insensitive: clients trim), and the egress router counts the labels of the assistant messages it finds
again in a request's history (``AnswerLabels`` is one of its ``LabelSource``). The text itself is never stored.

The digest is global, not per user: a confidential answer pasted by someone else is the same text. Answers shorter
than ``MIN_CHARS`` non-space characters are not remembered ("Yes." would mark every later "Yes."). Rows older than
``KEEP_S`` are dropped as new ones are written. A ``StoreUnavailable`` while looking up fails the egress decision
closed (the router's rule for a label source), never open.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from inhouse.governance.labels import Label

MIN_CHARS = 16
KEEP_S = 90 * 86_400
_LABELS = list(Label)


def answer_digest(text: str) -> str | None:
    """The digest an answer is remembered by; None for one too short to tell apart."""
    words = text.split()
    if sum(len(w) for w in words) < MIN_CHARS:
        return None
    return hashlib.sha256(" ".join(words).encode()).hexdigest()


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


class AnswerLabels:
    """What the serving layer and the egress router use: ``remember`` after a local answer, and, as a label source,
    the labels of the earlier answers a request's history holds."""

    def __init__(self, store: SqlAnswerLabels) -> None:
        self._store = store

    def remember(self, texts: Iterable[str], label: Label) -> None:
        if label <= Label.PUBLIC:
            return  # nothing to keep: public text may go anywhere
        digests = [d for d in (answer_digest(t) for t in texts) if d is not None]
        if digests:
            self._store.record(digests, label)

    def of_history(self, messages: object) -> Label | None:
        """The highest label of the earlier answers (assistant messages) in ``messages``."""
        if not isinstance(messages, list):
            return None
        digests = [d for d in (answer_digest(t) for t in _assistant_texts(messages)) if d is not None]
        return self._store.highest(digests)

    def __call__(self, body: Mapping[str, Any]) -> list[Label]:
        found = self.of_history(body.get("messages"))
        return [found] if found is not None else []


def _assistant_texts(messages: list[Any]) -> list[str]:
    out: list[str] = []
    for m in messages:
        if not isinstance(m, Mapping) or m.get("role") != "assistant":
            continue
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):  # content parts: the text ones, as one answer and each alone
            parts = [str(p["text"]) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
            out += ["".join(parts), *parts] if len(parts) > 1 else parts
    return out
