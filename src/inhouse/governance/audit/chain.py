"""The hash chain of the audit log: the pure code a third party re-implements to check an export.

Nothing here touches a database, a file or a key. ``inhouse audit export`` writes one JSON object per line, oldest
first; this module is everything needed to check such an export (the signed head, which needs the key, is
``head.py``'s business).

**A record** has the 17 fields of ``FIELDS`` plus its ``hash``:

    seq, ts, kind, action, request_id, actor_key_id, user_id, resource, model, location, label,
    documents, redactions, outcome, reason, details, prev_hash

``seq`` is an integer, 1, 2, 3 … with no gaps. ``ts`` is UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (``format_ts``).
The other fields are text or null, except ``documents`` (a list of ids), ``redactions`` (an object
``{kind: count}``) and ``details`` (an object), which are *stored* as their canonical JSON text (below): the hash
covers that text.

**Canonical JSON** (``canonical_json``): keys sorted by code point, no whitespace (``","`` and ``":"``), non-ASCII
characters written as themselves (not ``\\u`` escapes), then encoded as UTF-8; integers as digits, floats as
Python's shortest round-trip form (``1.5``, ``1e-05``), NaN and infinities refused. This is Python's
``json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``.

**The hash** (``record_hash``) of a record is the lowercase hex SHA-256 of the canonical JSON of the object holding
exactly the 17 fields of ``FIELDS`` with their stored values (so ``documents``, ``redactions`` and ``details`` as
the JSON *strings*, ``prev_hash`` included, ``hash`` excluded).

**The chain:** record 1 has ``prev_hash`` = 64 zeros (``GENESIS``); record *n* has ``prev_hash`` = the ``hash`` of
record *n-1*. To check an export: for each line, replace ``documents``, ``redactions`` and ``details`` by their
canonical JSON text, recompute the hash, compare it with the line's ``hash``, and compare ``prev_hash`` with the
previous line's ``hash``. A chain checked this way proves nothing was changed, inserted, removed or reordered
*inside* it; that nothing was cut from its end needs the signed head (``head.py``).

``check_chain`` is that walk, with the first break classified (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Literal

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "action", "request_id", "actor_key_id", "user_id", "resource", "model",
          "location", "label", "documents", "redactions", "outcome", "reason", "details", "prev_hash")
JSON_FIELDS = ("documents", "redactions", "details")
# The action of the security record an operator's reseal writes (counted by ``check_chain``).
RESEALED = "audit.resealed"

Kind = Literal["request", "security"]
BreakKind = Literal[
    "modified", "deleted", "inserted", "reordered", "truncated", "head_signature_invalid", "head_missing"
]


# (JSON key text + ":", field name) in code-point order: the key order of ``canonical_json``.
_SORTED_KEYS = tuple((json.dumps(name) + ":", name) for name in sorted(FIELDS))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the hashed fields (``FIELDS``, as stored, ``prev_hash`` included).

    The JSON text is joined here rather than by ``canonical_json``: every stored value is text, an integer or
    null, and writing those with the JSON encoder's own string escaper gives the very same bytes at about half
    the cost, which is most of what ``verify`` spends on a long chain. Any other type takes ``canonical_json``."""
    parts = []
    for key, name in _SORTED_KEYS:
        value = fields[name]
        kind = type(value)
        if kind is str:
            parts.append(key + encode_basestring(value))  # json.dumps's own escaper
        elif value is None:
            parts.append(key + "null")
        elif kind is int:
            parts.append(key + int.__repr__(value))
        else:
            return hashlib.sha256(canonical_json({n: fields[n] for n in FIELDS}).encode()).hexdigest()
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode()).hexdigest()


def format_ts(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Head:
    """The last record of the chain, as the signed head names it."""

    seq: int
    hash: str


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: str
    kind: Kind
    action: str
    request_id: str | None
    actor_key_id: str | None
    user_id: str | None
    resource: str | None
    model: str | None
    location: str | None
    label: str | None
    documents: tuple[str, ...]
    redactions: dict[str, int]
    outcome: str
    reason: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    # A damaged record (written behind the log's back: a JSON column that is not JSON of its shape, a BLOB in a
    # text column): each such column's stored value as text. Its typed field holds an empty stand-in.
    damaged: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One line of an export: the JSON fields as values (re-serialise them canonically to hash). A damaged
        record's line carries its damaged columns as stored (text) and ``damaged``, their names: its hash fails."""
        out = {name: getattr(self, name) for name in FIELDS}
        out["documents"] = list(self.documents)
        out["hash"] = self.hash
        if self.damaged:
            out.update(self.damaged)
            out["damaged"] = sorted(self.damaged)
        return out


_TEXT_FIELDS = ("ts", "kind", "action", "request_id", "actor_key_id", "user_id", "resource", "model", "location",
                "label", "outcome", "reason", "prev_hash", "hash")
_NULLABLE = frozenset({"request_id", "actor_key_id", "user_id", "resource", "model", "location", "label", "reason"})


def as_text(value: Any) -> str:
    """A stored value that is not what the column holds, as an export may show it (bytes as an SQL blob literal)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "x'" + bytes(value).hex() + "'"
    return str(value)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def record_from_row(row: Mapping[str, Any]) -> AuditRecord:
    """A record from its stored column values. Never raises on what the columns hold: whoever can write the database
    can put anything there, and the tools that must report it (verify, export, the report) must not crash on it; a
    column that does not hold what the log writes is listed in ``damaged``."""
    values: dict[str, Any] = {"seq": row["seq"]}
    damaged: dict[str, str] = {}
    for name in _TEXT_FIELDS:
        value = row[name]
        if value is None or isinstance(value, str):
            values[name] = value
        else:
            values[name], damaged[name] = None if name in _NULLABLE else "", as_text(value)
    for name in JSON_FIELDS:
        stored = row[name]
        try:  # NaN and the infinities are not JSON (canonical_json refuses them): damage too
            value = json.loads(stored, parse_constant=_not_json) if isinstance(stored, str) else None
        except ValueError:  # JSONDecodeError, _not_json
            value = None
        if name == "documents" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            values[name] = tuple(value)
        elif name != "documents" and isinstance(value, dict):
            values[name] = value
        else:
            values[name], damaged[name] = () if name == "documents" else {}, as_text(stored)
    return AuditRecord(**values, damaged=damaged)


@dataclass(frozen=True)
class VerifyReport:
    """The result of ``AuditLog.verify``. ``first_broken_seq`` is None when no record is to blame (a bad or
    missing head)."""

    ok: bool
    records: int
    head_seq: int | None
    first_broken_seq: int | None = None
    kind: BreakKind | None = None
    message: str = "the chain is intact and ends at the signed head"
    reseals: int = 0  # times an operator re-anchored the head; each is a record in the chain

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "first_broken_seq": self.first_broken_seq, "kind": self.kind, "message": self.message,
                "reseals": self.reseals}


def _hash_of(row: Mapping[str, Any]) -> str | None:
    """``record_hash``, or None for a row holding a value no record holds (a BLOB written behind the log's back):
    such a row matches no hash, it was modified."""
    try:
        return record_hash(row)
    except (TypeError, ValueError):
        return None


def _origin_of(row: Mapping[str, Any], upper: int) -> int | None:
    """The position ``s`` at which this (intact) record was written, if it now sits elsewhere."""
    probe = dict(row)
    for s in range(1, upper + 1):
        if s != row["seq"]:
            probe["seq"] = s
            if _hash_of(probe) == row["hash"]:
                return s
    return None


def check_chain(rows: Iterable[Mapping[str, Any]], *, total: int, head: Head | None,
                head_problem: str | None = None) -> VerifyReport:
    """Walk ``rows`` (stored column values, ordered by seq) against the signed ``head`` and report the first break.

    ``head`` is the head as read (None: there is none); ``head_problem`` says why it cannot be trusted (a bad
    signature, a missing key), in which case only the chain itself is checked.

    Classification of the first break (the attacker can write the database but does not hold the key):
    a gap in ``seq`` → deleted; a record whose hash does not match its content → modified, unless its
    content hashes correctly at another position (it was moved): then inserted / deleted / reordered
    according to whether the log has more / fewer / as many records as the signed head says; an intact
    record that does not link to its predecessor → the predecessor was replaced by a forged record with a
    recomputed hash (modified), or a forged record was inserted before it (two records claim the same
    predecessor); the chain ending before the signed head → truncated; records after the signed head →
    inserted; a chain recomputed up to its end → modified (reported at the signed head: the first forged
    record cannot be told from the chain alone).
    """
    trusted = None if head_problem else head
    expect_total = trusted.seq if trusted is not None else None
    upper = max(total, head.seq if head else 0) + 1
    expected, prev, prev_prev = 1, GENESIS, None
    hash_at_head: str | None = None
    reseals = 0

    def broken(seq: int | None, kind: BreakKind, message: str) -> VerifyReport:
        return VerifyReport(False, total, head.seq if head else None, seq, kind, message, reseals)

    for row in rows:
        seq = row["seq"]
        if seq != expected:
            return broken(expected, "deleted", f"record {expected} is missing (the next one is {seq})")
        if _hash_of(row) != row["hash"]:
            origin = _origin_of(row, upper)
            if origin is None:
                return broken(seq, "modified", f"record {seq} does not match its hash")
            kind: BreakKind
            if expect_total is not None and total != expect_total:
                kind = "inserted" if total > expect_total else "deleted"
            elif expect_total is not None:
                kind = "reordered"
            else:
                kind = "inserted" if origin < seq else "reordered"
            return broken(min(seq, origin), kind, f"record {seq} holds the record written at position {origin}")
        if row["prev_hash"] != prev:
            if prev_prev is not None and row["prev_hash"] == prev_prev:
                return broken(seq - 1, "inserted",
                              f"records {seq - 1} and {seq} both follow record {seq - 2}: {seq - 1} was inserted")
            at = max(1, seq - 1)
            return broken(at, "modified", f"record {seq} does not follow record {seq - 1}: record {at} was "
                                          "replaced (its hash recomputed)" if seq > 1 else
                          "record 1 does not start from the genesis hash")
        if row["action"] == RESEALED and row["kind"] == "security":
            reseals += 1
        prev_prev, prev = row["prev_hash"], row["hash"]
        if trusted is not None and seq == trusted.seq:
            hash_at_head = row["hash"]
        expected += 1
    last = expected - 1
    if head_problem:
        return broken(None, "head_signature_invalid", f"{head_problem}: truncation cannot be ruled out")
    if trusted is None:
        if last == 0:
            return VerifyReport(True, 0, None, message="the log is empty")
        return broken(None, "head_missing", "the signed head file is missing: truncation cannot be ruled out")
    if last < trusted.seq:
        return broken(last + 1, "truncated", f"the chain ends at record {last} but the signed head is record "
                                             f"{trusted.seq}: records {last + 1}..{trusted.seq} were removed")
    if hash_at_head != trusted.hash:
        return broken(trusted.seq, "modified", f"the chain was recomputed: record {trusted.seq} differs from the "
                                               "signed head (the first forged record may be earlier)")
    if last > trusted.seq:
        return broken(trusted.seq + 1, "inserted", f"records {trusted.seq + 1}..{last} were added after the signed "
                                                   f"head (record {trusted.seq})")
    return VerifyReport(True, total, trusted.seq, reseals=reseals)
