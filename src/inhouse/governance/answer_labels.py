"""The labels of answers given from labelled material, found again when such an answer comes back.

Chat completions are stateless: a client sends the whole conversation every time. An answer grounded on a
confidential document (or given in a conversation declared confidential) is plain text in the next request's
history, and nothing in it says where it came from: "make it shorter", sent to a cloud model, would carry the
confidential answer out. So every local answer whose label is above ``public`` is remembered by a digest of its text
(whitespace-insensitive: clients trim), and the egress router counts the labels of the assistant messages it finds
again in a request's history (``AnswerLabels`` is one of its ``LabelSource``). The text itself is never stored.

The digest is global, not per user: a confidential answer pasted by someone else is the same text. Answers shorter
than ``MIN_CHARS`` non-space characters are not remembered ("Yes." would mark every later "Yes."). The table is
``store/answer_labels.py``. A ``StoreUnavailable`` while looking up fails the egress decision
closed (the router's rule for a label source), never open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from inhouse.governance.egress.router import conversation_label, document_labels
from inhouse.governance.labels import Label, label_of_item, max_label

if TYPE_CHECKING:
    from inhouse.store.answer_labels import SqlAnswerLabels

MIN_CHARS = 16


def answer_label(body: Mapping[str, Any], passages: Sequence[object], *known: Label | None) -> Label:
    """What a local answer to chat ``body`` may hold: the conversation's declared label, the attached documents',
    the passages' it was grounded on and any ``known`` besides (the egress decision's, the earlier answers')."""
    return max_label([conversation_label(body, Label.PUBLIC), *document_labels(body),
                      *(label_of_item(x) for x in passages), *(k for k in known if k is not None)])


def answer_digest(text: str) -> str | None:
    """The digest an answer is remembered by; None for one too short to tell apart."""
    words = text.split()
    if sum(len(w) for w in words) < MIN_CHARS:
        return None
    return hashlib.sha256(" ".join(words).encode()).hexdigest()


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
