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

import bisect
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from inhouse.governance.pii.normalise import normalise

KINDS = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IBAN", "IP", "HOST", "URL", "SECRET", "PERSON")
# Everything but PERSON has a fixed format; the ≥ 0.99 recall target is about these.
STRUCTURED_KINDS = KINDS[:-1]
# Kinds that are never sent out, whatever the label allows (refused or answered locally: see the router).
NEVER_SENT_KINDS = frozenset({"SECRET"})
_SECRET_PREFIX = "inhouse_secret_"
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*)_(\d+)>")
# The longest placeholder we mint ("<BANK_CARD_99999>"); a held-back stream tail is never longer.
MAX_PLACEHOLDER_CHARS = 24


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

        # The recognisers read the plain form (full-width digits, odd spaces, zero-width characters: normalise.py);
        # findings are mapped back to the original, which is what gets replaced.
        plain = normalise(text)
        raw = analyze(self._analyzer(), plain.text if plain else text, threshold=self._threshold)
        ranked = sorted(raw, key=lambda r: (-r.score, -(r.end - r.start), r.start))
        # Kept findings in text order never overlap, so only the two next to a finding's start can overlap it
        # (comparing each with all the kept ones was quadratic on a prompt of thousands of values).
        kept: list[Finding] = []
        starts: list[int] = []
        for r in ranked:
            i = bisect.bisect_right(starts, r.start)
            if all(r.end <= k.start or r.start >= k.end for k in kept[max(0, i - 1):i + 1]):
                name = str((r.recognition_metadata or {}).get("recognizer_name", ""))
                detail = name[len(_SECRET_PREFIX):] if name.startswith(_SECRET_PREFIX) else None
                kept.insert(i, Finding(r.entity_type, r.start, r.end, r.score, detail))
                starts.insert(i, r.start)
        if plain:
            kept = [replace(f, start=s, end=e) for f in kept for s, e in [plain.span(f.start, f.end)]]
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
        """``text`` with its values replaced. A text whose JSON escapes (``\\u5bc6``) still hide a value after
        that is replaced in its decoded form, which then goes instead: the provider reads the same characters."""
        out = self._redact(text, session)
        hidden = unescaped(out)
        if hidden is not None and self.analyze(hidden):
            out = self._redact(hidden, session)
        return out

    def _redact(self, text: str, session: RedactionSession) -> str:
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
        return [_rewrite(dict(m), "message", lambda t: self.redact(t, session)) for m in messages]

    def redact_field(self, name: str, value: Any, session: RedactionSession) -> Any:
        """A forwarded request field (``tools``, ``response_format``, ``stop``, ``tool_choice``) with its free
        text redacted; its structure is kept (see ``field_texts``)."""
        return _rewrite(value, _FIELD_PLACES.get(name, "value"), lambda t: self.redact(t, session))


# Where a key is structure rather than content, by the place of the object that holds it. Only there: the same
# names elsewhere (a tool parameter called "id", a schema property called "type") are content and are scanned.
_STRUCTURE_AT = {
    "message": frozenset({"role", "tool_call_id"}),
    "part": frozenset({"type"}),  # a content part's {"type": "text"}
    "tool_call": frozenset({"id", "type"}),
    "tool": frozenset({"type"}),  # {"type": "function", "function": …}
    "response_format": frozenset({"type"}),  # {"type": "json_schema", …}
    "tool_choice": frozenset({"type"}),
}
# The values JSON Schema's "type" keyword takes: kept as structure wherever they appear under "type".
_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_FIELD_PLACES = {"tools": "tools", "response_format": "response_format", "tool_choice": "tool_choice"}


def _schema_type(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v in _SCHEMA_TYPES for v in value)
    return isinstance(value, str) and value in _SCHEMA_TYPES


def _rewrite(value: Any, place: str, text: Callable[[str], str]) -> Any:
    """``value`` with ``text`` applied to every content string; ``place`` says which object ``value`` is."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list | tuple):
        inner = {"messages": "message", "tools": "tool", "content": "part", "tool_calls": "tool_call"}.get(place)
        return [_rewrite(v, inner if inner and isinstance(v, Mapping) else "value", text) for v in value]
    if not isinstance(value, Mapping):
        return value
    keep = _STRUCTURE_AT.get(place, frozenset())
    out: dict[Any, Any] = {}
    for k, v in value.items():
        if (k in keep and isinstance(v, str)) or (k == "type" and _schema_type(v)):
            out[k] = v
        elif place == "message" and k in ("content", "tool_calls"):
            out[k] = _rewrite(v, k, text)
        else:
            out[k] = _rewrite(v, "value", text)
    return out


def _collect(value: Any, place: str) -> list[str]:
    out: list[str] = []

    def keep(t: str) -> str:
        out.append(t)
        return t

    _rewrite(value, place, keep)
    return out


def message_texts(messages: Iterable[Any]) -> list[str]:
    """Every content string of chat messages (what ``redact_messages`` would rewrite)."""
    return _collect(list(messages), "messages")


def field_texts(name: str, value: Any) -> list[str]:
    """Every free-text string of a forwarded request field (what ``redact_field`` would rewrite)."""
    return _collect(value, _FIELD_PLACES.get(name, "value"))


# JSON string escapes. A tool result written by json.dumps (ensure_ascii: every Chinese character as \uXXXX) is
# read as Chinese by the provider's model, and as ASCII noise by the patterns and the markers.
_ESCAPE = re.compile(r'\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|["\\/bfnrt])')
_UNICODE_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape_one(m: re.Match[str]) -> str:
    s = m.group(0)
    if s[1] != "u":
        return _SIMPLE[s[1]]
    units = [int(s[i + 2:i + 6], 16) for i in range(0, len(s), 6)]
    if len(units) == 2:
        return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
    return chr(units[0]) if not 0xD800 <= units[0] <= 0xDFFF else s


def unescaped(text: str) -> str | None:
    """``text`` with its JSON escapes decoded in place (twice-encoded JSON too), when it holds a ``\\uXXXX``
    escape; else None. For scanning: what the provider's model reads."""
    if "\\u" not in text or not _UNICODE_ESCAPE.search(text):
        return None
    out = text
    for _ in range(3):  # JSON inside a JSON string inside …: each level doubles the backslashes
        out = _ESCAPE.sub(_unescape_one, out)
        if not _UNICODE_ESCAPE.search(out):
            break
    return out if out != text else None


def scan_forms(texts: Iterable[str]) -> list[str]:
    """What the scans read for ``texts``: each text, or its decoded form when JSON escapes hide characters."""
    return [unescaped(t) or t for t in texts]
