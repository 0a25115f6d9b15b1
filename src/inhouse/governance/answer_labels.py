"""The labels of answers given from labelled material, found again when such an answer comes back.

Chat completions are stateless: a client sends the whole conversation every time. An answer grounded on a
confidential document (or given in a conversation declared confidential) is plain text in the next request's
history, and nothing in it says where it came from: "make it shorter", sent to a cloud model, would carry the
confidential answer out. So every local answer whose label is above ``public`` is remembered by a digest of its text
(whitespace-insensitive: clients trim), and the egress router counts the labels of the answers it finds again in a
request (``AnswerLabels`` is one of its ``LabelSource``). The text itself is never stored.

Found again wherever it is, not only as an assistant turn: pasted into a user or system message, returned as a tool
result (an agent that asked inhouse), or pasted inside a longer message. For that last case an answer of
``WINDOW`` tokens or more (a token is a word or one CJK character; punctuation aside) is also remembered by windows
of ``WINDOW`` tokens every ``WINDOW`` tokens, and a message is looked up by every window of its text, its lines and
its paragraphs: an answer pasted whole anywhere in a message has a remembered window inside it.

The digest is global, not per user: a confidential answer pasted by someone else is the same text. Answers shorter
than ``MIN_CHARS`` non-space characters are not remembered ("Yes." would mark every later "Yes."). The table is
``store/answer_labels.py``. A ``StoreUnavailable`` while looking up fails the egress decision
closed (the router's rule for a label source), never open.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from inhouse.governance.egress.router import conversation_label, document_labels
from inhouse.governance.labels import Label, label_of_item, max_label
from inhouse.governance.pii.redact import message_texts, unescaped

if TYPE_CHECKING:
    from inhouse.store.answer_labels import SqlAnswerLabels

MIN_CHARS = 16
# Tokens per window. 16 words are rarely shared by chance; 16 CJK characters are about one sentence.
WINDOW = 16
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# A token is a word or one CJK character; punctuation is not one (a pasted answer is often quoted or bracketed).
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+")
_LOOKUP_BATCH = 500  # digests per query (SQLite's parameter limit is far above it)


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


def window_digests(text: str, *, every: int = 1) -> list[str]:
    """Digests of the ``WINDOW``-token windows of ``text`` starting every ``every`` tokens (and the last one)."""
    tokens = _TOKEN.findall(text)
    if len(tokens) < WINDOW:
        return []
    starts = {*range(0, len(tokens) - WINDOW + 1, every), len(tokens) - WINDOW}
    return [hashlib.sha256(("window\n" + " ".join(tokens[i:i + WINDOW])).encode()).hexdigest()
            for i in sorted(starts)]


class AnswerLabels:
    """What the serving layer and the egress router use: ``remember`` after a local answer, and, as a label source,
    the labels of the earlier answers a request holds."""

    def __init__(self, store: SqlAnswerLabels) -> None:
        self._store = store

    def remember(self, texts: Iterable[str], label: Label) -> None:
        if label <= Label.PUBLIC:
            return  # nothing to keep: public text may go anywhere
        digests: list[str] = []
        for text in texts:
            whole = answer_digest(text)
            if whole is not None:
                digests += [whole, *window_digests(text, every=WINDOW)]
        if digests:
            self._store.record(digests, label)

    def remember_derived(self, texts: Iterable[str], sources: Iterable[object], messages: object = None) -> Label:
        """Remember text an assistant returns outside chat completions (a support answer, a trip plan, the schedule
        chat's reply) at the highest of ``sources`` (the labels of the passages it was made from; missing is
        confidential) and of the earlier answers found in ``messages`` (what the model read besides). Returns that
        label. Raises as the store does: the caller must not hand out text whose label was not kept."""
        earlier = self.of_history(messages)
        label = max_label([*(label_of_item(s) for s in sources), *([earlier] if earlier is not None else [])])
        self.remember(texts, label)
        return label

    def of_history(self, messages: object) -> Label | None:
        """The highest label of the remembered answers found in ``messages``, whatever their role."""
        if not isinstance(messages, list):
            return None
        digests = list(dict.fromkeys(_lookup_digests(_texts(messages))))
        found = [self._store.highest(digests[i:i + _LOOKUP_BATCH])
                 for i in range(0, len(digests), _LOOKUP_BATCH)]
        return max((f for f in found if f is not None), default=None)

    def __call__(self, body: Mapping[str, Any]) -> list[Label]:
        found = self.of_history(body.get("messages"))
        return [found] if found is not None else []


def _texts(messages: list[Any]) -> list[str]:
    """Every message's text (any role: a pasted answer is the same text), its text parts joined as one answer,
    and the decoded form of JSON-escaped text (a tool result)."""
    out = message_texts([m for m in messages if isinstance(m, Mapping)])
    for m in messages:
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list):
            parts = [str(p["text"]) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
            if len(parts) > 1:
                out.append("".join(parts))
    return out + [d for d in map(unescaped, out) if d is not None]


def _lookup_digests(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        pieces = {text, *re.split(r"\n\s*\n", text), *text.splitlines()}
        yield from (d for d in map(answer_digest, pieces) if d is not None)
        yield from window_digests(text)
