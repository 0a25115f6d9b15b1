"""PII redaction before egress, and re-identification of the answer.

``Redactor`` finds e-mail addresses (any domain, internal ones included), phone numbers (CN mobile and
``+CC``), PRC resident ID numbers, bank cards, IBANs, IP addresses, internal host names and URLs, secrets
(by kind: ``credentials.py``) and directory names with Microsoft Presidio (pattern recognisers
only, over a blank spaCy pipeline: see ``pii_recognizers``), and replaces each value with a placeholder
such as ``<EMAIL_1>``. The placeholders belong to one ``RedactionSession`` (one request): the same value
gets the same placeholder in every message, and ``restore`` maps placeholders in the provider's answer
back to the values. The mapping lives in memory for the request only; reports carry counts by kind,
never values.

Presidio is imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IBAN", "IP", "HOST", "URL", "SECRET", "PERSON")
# Everything but PERSON has a fixed format; the ≥ 0.99 recall target is about these.
STRUCTURED_KINDS = KINDS[:-1]
# Kinds that are never sent out, whatever the label allows (refused or answered locally: see the router).
NEVER_SENT_KINDS = frozenset({"SECRET"})
_SECRET_PREFIX = "inhouse_secret_"
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*)_(\d+)>")
# The longest placeholder we mint ("<BANK_CARD_99999>"); a held-back stream tail is never longer.
MAX_PLACEHOLDER_CHARS = 24
# Keys of a chat message that are structure, not content: never scanned, never rewritten.
_STRUCTURAL_KEYS = frozenset({"role", "type", "id", "tool_call_id"})


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    score: float
    detail: str | None = None  # for SECRET: which kind of secret (``password``, ``private_key``…)


@dataclass(frozen=True)
class ScanResult:
    """What a scan found, as counts (never values): by kind, and the SECRET findings by kind of secret."""

    kinds: dict[str, int]
    secrets: dict[str, int]

    @property
    def never_sent(self) -> bool:
        return any(k in NEVER_SENT_KINDS for k in self.kinds)


@dataclass
class RedactionSession:
    """Placeholders of one request. In memory only; dropped with the request."""

    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _by_placeholder: dict[str, str] = field(default_factory=dict)
    _next: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)  # replacements made, by kind

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._by_value.get(key)
        if found is None:
            self._next[kind] += 1
            found = f"<{kind}_{self._next[kind]}>"
            self._by_value[key] = found
            self._by_placeholder[found] = value
        self.counts[kind] += 1
        return found

    def assigned(self, kind: str, value: str) -> str:
        """The placeholder already given to ``value`` (KeyError if none)."""
        return self._by_value[(kind, value)]

    def restore(self, text: str) -> str:
        """Placeholders of this session back to their values; anything else is left as it is."""
        if "<" not in text or not self._by_placeholder:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)

    def report(self) -> dict[str, int]:
        """Counts by kind, e.g. ``{"EMAIL": 2}``: what an audit record may hold."""
        return dict(sorted(self.counts.items()))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class StreamRestorer:
    """Restores placeholders in a stream of text chunks, even when a placeholder is split across chunks.

    A trailing ``<`` that is not closed yet (and short enough to become a placeholder) is held back until
    the next chunk decides it; ``finish`` releases whatever is left.
    """

    def __init__(self, session: RedactionSession) -> None:
        self._session = session
        self._pending = ""

    def feed(self, chunk: str) -> str:
        text = self._pending + chunk
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:] and len(text) - cut < MAX_PLACEHOLDER_CHARS \
                and re.fullmatch(r"<[A-Z_0-9]*", text[cut:]):
            self._pending = text[cut:]
            text = text[:cut]
        else:
            self._pending = ""
        return self._session.restore(text)

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        return self._session.restore(text)


class Redactor:
    """Find and replace PII. Thread-safe; build once (Presidio's set-up takes about a second)."""

    def __init__(self, *, names: Callable[[], Iterable[str]] | Iterable[str] = (),
                 score_threshold: float = 0.4, internal_domains: Iterable[str] = ()) -> None:
        if callable(names):
            self._names: Callable[[], Iterable[str]] = names
        else:
            fixed = tuple(names)
            self._names = lambda: fixed
        self._threshold = score_threshold
        self._internal_domains = tuple(internal_domains)
        self._engine: Any = None  # presidio's AnalyzerEngine, built on first use
        self._anonymizer: Any = None
        self._lock = threading.Lock()

    def _analyzer(self) -> Any:
        with self._lock:
            if self._engine is None:
                from inhouse.governance.pii.recognizers import build_analyzer

                self._engine = build_analyzer(self._names, self._internal_domains)
            return self._engine

    def _anonymizer_engine(self) -> Any:
        with self._lock:
            if self._anonymizer is None:
                from inhouse.governance.pii.recognizers import build_anonymizer

                self._anonymizer = build_anonymizer()
            return self._anonymizer

    def warm_up(self) -> None:
        """Build the analyzer now (start-up) instead of on the first request."""
        self.analyze("warm up")

    def analyze(self, text: str) -> list[Finding]:
        """Non-overlapping findings, in text order. When two overlap, the higher score (then the longer
        span) wins: an IBAN is not also a card, an ID number not also a phone."""
        if not text:
            return []
        from inhouse.governance.pii.recognizers import analyze

        raw = analyze(self._analyzer(), text, threshold=self._threshold)
        ranked = sorted(raw, key=lambda r: (-r.score, -(r.end - r.start), r.start))
        kept: list[Finding] = []
        for r in ranked:
            if all(r.end <= k.start or r.start >= k.end for k in kept):
                name = str((r.recognition_metadata or {}).get("recognizer_name", ""))
                detail = name[len(_SECRET_PREFIX):] if name.startswith(_SECRET_PREFIX) else None
                kept.append(Finding(r.entity_type, r.start, r.end, r.score, detail))
        return sorted(kept, key=lambda f: f.start)

    def inspect(self, texts: Iterable[str]) -> ScanResult:
        """Counts of findings by kind, and of secrets by kind of secret, over ``texts`` (never the values)."""
        kinds: Counter[str] = Counter()
        secrets: Counter[str] = Counter()
        for text in texts:
            for f in self.analyze(text):
                kinds[f.kind] += 1
                if f.kind == "SECRET":
                    secrets[f.detail or "secret"] += 1
        return ScanResult(dict(sorted(kinds.items())), dict(sorted(secrets.items())))

    def scan(self, texts: Iterable[str]) -> dict[str, int]:
        """Counts of findings by kind over ``texts`` (values are not returned)."""
        return self.inspect(texts).kinds

    def redact(self, text: str, session: RedactionSession) -> str:
        findings = self.analyze(text)
        if not findings:
            return text
        from inhouse.governance.pii.recognizers import anonymize

        # Placeholders are assigned first, in text order, so <EMAIL_1> is the conversation's first address.
        for f in findings:
            session.placeholder(f.kind, text[f.start:f.end])
        spans = [(f.kind, f.start, f.end, f.score) for f in findings]
        return anonymize(self._anonymizer_engine(), text, spans, session.assigned)

    def redact_messages(self, messages: Iterable[Mapping[str, Any]], session: RedactionSession,
                        ) -> list[dict[str, Any]]:
        """Chat messages with every content string (text parts, names, tool-call arguments) redacted."""
        return [self.redact_value(dict(m), session) for m in messages]

    def redact_value(self, value: Any, session: RedactionSession) -> Any:
        """A JSON value with every string but the structural ones redacted (keys are kept)."""
        if isinstance(value, str):
            return self.redact(value, session)
        if isinstance(value, Mapping):
            return {k: v if k in _STRUCTURAL_KEYS else self.redact_value(v, session) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v, session) for v in value]
        return value


def message_texts(messages: Iterable[Any]) -> list[str]:
    """Every content string of chat messages, or of other JSON values (what ``redact_messages`` and
    ``redact_value`` would rewrite)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if k not in _STRUCTURAL_KEYS:
                    walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for m in messages:
        walk(m)
    return out
