"""The tamper-evident audit log: an append-only, hash-chained SQLite table with a signed head.

Every record holds ``prev_hash`` (the ``hash`` of the record before it; 64 zeros for the first) and
``hash = sha256(canonical JSON of its fields + prev_hash)``. Changing, removing, inserting or reordering
records breaks the chain where it happened. A chain can still be cut at the end, or recomputed from some
point on, by whoever can write the file; so the head ``(seq, hash)`` is also written to a separate file,
``audit.head``, authenticated with HMAC-SHA256 under a key kept in ``audit.key`` (0600). ``verify()``
recomputes the chain from the first record and compares its end with the signed head.

Writes are serialised (a lock in the process, SQLite's write lock across processes) and each is one
transaction with ``synchronous=FULL``. The head file is replaced (atomically) inside that transaction,
before the commit: if either write fails, the record is rolled back and ``AuditUnavailable`` is raised,
so the caller's action fails. Before appending, the current tail is compared with the signed head; if
they differ (truncation, forged appends) every further append is refused until an operator runs ``reseal``
(which is itself recorded). The one ordinary mismatch, a process killed between the head write and the commit,
needs no operator: the head file carries its record, and ``recover`` finishes the append. See docs/governance.md.

The hash covers the stored column values exactly (the JSON columns as their canonical text), so a third
party can check an export without the key: re-serialise ``documents``/``redactions``/``details`` with
``canonical_json`` and hash as ``record_hash`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from inhouse.errors import AuditStorageFull, AuditUnavailable, InvalidRequest, is_storage_full
from inhouse.governance.events import SecurityEvent

log = logging.getLogger(__name__)

GENESIS = "0" * 64
Kind = Literal["request", "security"]
BreakKind = Literal[
    "modified", "deleted", "inserted", "reordered", "truncated", "head_signature_invalid", "head_missing"
]
RESEALED = "audit.resealed"
MODEL_LOADED = "model.loaded"
ENGINE_CRASHED = "engine.crashed"  # a model's engine process died (reason: the signal); details say what followed
# Outcome of the write-ahead record of a generation request (its final record follows when it ends).
STARTED = "started"
# Outcome of the final record written for a request whose process stopped before it ended (see close_interrupted).
INTERRUPTED = "interrupted"

# Hashed, in this order of columns (the order does not matter for the hash: keys are sorted).
FIELDS = ("seq", "ts", "kind", "action", "request_id", "actor_key_id", "user_id", "resource", "model",
          "location", "label", "documents", "redactions", "outcome", "reason", "details", "prev_hash")
_JSON_FIELDS = ("documents", "redactions", "details")
# Keys of ``SecurityEvent.details`` that have a column of their own: lifted out of ``details`` into it
# (``destination`` is the egress policy's word for ``location``).
LIFTED_DETAILS = {"request_id": "request_id", "model": "model", "location": "location", "destination": "location",
                  "label": "label", "documents": "documents", "redactions": "redactions", "reason": "reason"}
# Defence in depth: whatever a caller puts in ``details``, these never reach the log.
_FORBIDDEN_DETAIL_KEYS = frozenset({"secret", "password", "api_key", "token", "secret_hash", "key_secret"})
_REDACTION_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_MAX_DETAILS_CHARS = 64_000
_MAX_TEXT = 500
_HEAD_MAC_CONTEXT = b"inhouse-audit-head-v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    seq          INTEGER PRIMARY KEY,   -- 1, 2, 3 … with no gaps
    ts           TEXT NOT NULL,         -- UTC, '2026-01-31T12:00:00.000000Z' (sorts as text)
    kind         TEXT NOT NULL,         -- 'request' | 'security'
    action       TEXT NOT NULL,         -- 'chat:create', 'key.created', 'model.loaded', …
    request_id   TEXT,
    actor_key_id TEXT,
    user_id      TEXT,
    resource     TEXT,
    model        TEXT,
    location     TEXT,                  -- where it ran: 'local' or an external provider's name
    label        TEXT,                  -- effective sensitivity label of the data involved
    documents    TEXT NOT NULL,         -- JSON list of document / chunk ids
    redactions   TEXT NOT NULL,         -- JSON {kind: count}; never the values
    outcome      TEXT NOT NULL,
    reason       TEXT,
    details      TEXT NOT NULL,         -- JSON object
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts);
CREATE INDEX IF NOT EXISTS audit_records_action ON audit_records (action);
CREATE INDEX IF NOT EXISTS audit_records_actor ON audit_records (actor_key_id);
CREATE INDEX IF NOT EXISTS audit_records_request ON audit_records (request_id);
-- Our own code never updates or deletes; these make a bug (or a careless tool) fail loudly. They are no
-- protection against someone who can write the file: the chain and the signed head are.
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the hashed fields (``FIELDS``, as stored, ``prev_hash`` included)."""
    payload = {name: fields[name] for name in FIELDS}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def format_ts(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_RELATIVE_RE = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, *, now: float | None = None) -> str:
    """'7d', '12h', '30m' (relative to now) or an ISO date/time (UTC if no zone) → the ``ts`` format."""
    text = text.strip()
    m = _RELATIVE_RE.fullmatch(text)
    now_s = time.time() if now is None else now
    if m:
        return format_ts(now_s - int(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"'since' must be like 7d, 12h, 30m or an ISO date, not {text[:40]!r}.",
                             param="since") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_ts(when.timestamp())


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

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in FIELDS}
        out["documents"] = list(self.documents)
        out["hash"] = self.hash
        return out


def _row_to_record(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"], ts=row["ts"], kind=row["kind"], action=row["action"], request_id=row["request_id"],
        actor_key_id=row["actor_key_id"], user_id=row["user_id"], resource=row["resource"], model=row["model"],
        location=row["location"], label=row["label"], documents=tuple(json.loads(row["documents"])),
        redactions=json.loads(row["redactions"]), outcome=row["outcome"], reason=row["reason"],
        details=json.loads(row["details"]), prev_hash=row["prev_hash"], hash=row["hash"],
    )


@dataclass(frozen=True)
class VerifyReport:
    """The result of ``AuditLog.verify``. ``first_broken_seq`` is None when no record is to blame (a bad or
    missing head file)."""

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


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


@dataclass
class _HeadState:
    head: Head | None = None
    problem: str | None = None  # why the head file cannot be trusted
    missing: bool = False
    record: dict[str, Any] | None = None  # the head's record itself (written before its commit: see _recover)


def _check_text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"audit field {name} must be a string")
    return value[:_MAX_TEXT]


def _check_details(value: Any, path: str = "details") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be strings")
            if k.lower() in _FORBIDDEN_DETAIL_KEYS:
                raise ValueError(f"{path}.{k}: secrets must never be written to the audit log")
            _check_details(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for v in value:
            _check_details(v, path)


def _redactions(value: Mapping[str, int] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, count in (value or {}).items():
        # Counts by kind only: a kind that looks like data (an address, a number) is refused.
        if not isinstance(kind, str) or not _REDACTION_KIND_RE.fullmatch(kind):
            raise ValueError("redaction kinds must be short names such as 'EMAIL' (never values)")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"redaction count for {kind!r} must be a non-negative integer")
        out[kind] = count
    return out


class AuditLog:
    """The audit log of one data directory. Implements ``AuditSink`` (``record``) for security events and
    ``record_request`` for API requests. Thread-safe; several processes may append to the same files."""

    def __init__(self, path: Path | str, *, key_path: Path | None = None, head_path: Path | None = None,
                 clock: Any = time.time, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_path = key_path or self.path.parent / "audit.key"
        self.head_path = head_path or self.path.parent / "audit.head"
        self._clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._conn = self._connect()
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"The audit log {self.path} cannot be opened: {exc}") from exc
        try:
            self.recover()
        except (AuditUnavailable, sqlite3.Error, OSError) as exc:
            log.warning("audit log recovery postponed to the next append: %s", exc)

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed record survives a power cut, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
        return conn

    # -- writing ----------------------------------------------------------------------------------------

    def record(self, event: SecurityEvent) -> None:
        """``AuditSink``: one security record. Raises ``AuditUnavailable`` if it cannot be written."""
        details = dict(event.details)
        lifted = {LIFTED_DETAILS[k]: details.pop(k) for k in list(details) if k in LIFTED_DETAILS}
        self.append(
            kind="security", action=event.action, actor_key_id=event.actor_key_id,
            user_id=event.actor_user_id, resource=event.resource, outcome=event.outcome, details=details,
            at=event.at, **lifted,
        )

    def record_request(
        self, *, action: str, outcome: str, request_id: str | None = None, actor_key_id: str | None = None,
        user_id: str | None = None, resource: str | None = None, model: str | None = None,
        location: str | None = None, label: str | None = None, documents: Sequence[str] = (),
        redactions: Mapping[str, int] | None = None, reason: str | None = None,
        details: Mapping[str, Any] | None = None, at: float | None = None,
    ) -> AuditRecord:
        """One request-level record (``outcome`` 'started' for the write-ahead record of a generation)."""
        return self.append(
            kind="request", action=action, outcome=outcome, request_id=request_id, actor_key_id=actor_key_id,
            user_id=user_id, resource=resource, model=model, location=location, label=label,
            documents=documents, redactions=redactions, reason=reason, details=details, at=at,
        )

    def append(
        self, *, kind: Kind, action: str, outcome: str, request_id: str | None = None,
        actor_key_id: str | None = None, user_id: str | None = None, resource: str | None = None,
        model: str | None = None, location: str | None = None, label: str | None = None,
        documents: Sequence[str] = (), redactions: Mapping[str, int] | None = None, reason: str | None = None,
        details: Mapping[str, Any] | None = None, at: float | None = None,
    ) -> AuditRecord:
        """Append one record and re-sign the head, in one transaction. Bad arguments (a programming error)
        raise ``ValueError``/``TypeError``; a failed write raises ``AuditUnavailable``."""
        if kind not in ("request", "security"):
            raise ValueError(f"unknown audit record kind {kind!r}")
        if not action or not isinstance(action, str):
            raise ValueError("an audit record needs an action")
        docs = [str(d)[:_MAX_TEXT] for d in documents]
        detail_map = dict(details or {})
        _check_details(detail_map)
        fields: dict[str, Any] = {
            "ts": format_ts(self._clock() if at is None else at), "kind": kind, "action": action[:200],
            "request_id": _check_text("request_id", request_id),
            "actor_key_id": _check_text("actor_key_id", actor_key_id),
            "user_id": _check_text("user_id", user_id), "resource": _check_text("resource", resource),
            "model": _check_text("model", model), "location": _check_text("location", location),
            "label": _check_text("label", label), "documents": canonical_json(docs),
            "redactions": canonical_json(_redactions(redactions)), "outcome": str(outcome)[:100],
            "reason": _check_text("reason", reason), "details": canonical_json(detail_map),
        }
        if len(fields["details"]) > _MAX_DETAILS_CHARS:
            raise ValueError(f"audit details are larger than {_MAX_DETAILS_CHARS} characters")
        return self._write(fields, check_head=True)

    def reseal(self, reason: str, *, actor_key_id: str | None = None) -> AuditRecord:
        """Re-anchor the signed head on the current tail after an operator has examined a mismatch (a crash
        between the head write and the commit, or a tampering already reported). The old and new head go
        into a security record, so a reseal is itself evidence. Creates a key if there is none."""
        if not reason.strip():
            raise InvalidRequest("A reseal needs a reason.", param="reason")
        state = self._read_head()
        previous = None if state.head is None else {"seq": state.head.seq, "hash": state.head.hash}
        details = {"previous_head": previous, "previous_head_problem": state.problem,
                   "key_created": not self.key_path.exists()}
        fields = {
            "ts": format_ts(self._clock()), "kind": "security", "action": RESEALED, "request_id": None,
            "actor_key_id": actor_key_id, "user_id": None, "resource": "audit", "model": None, "location": None,
            "label": None, "documents": "[]", "redactions": "{}", "outcome": "success",
            "reason": reason.strip()[:_MAX_TEXT], "details": canonical_json(details),
        }
        return self._write(fields, check_head=False)

    def recover(self) -> bool:
        """Finish the append a crash interrupted, if any (also done before every append). True if it did.

        The signed head holds its record, written (fsync, rename) before the record's commit. A process killed
        between the two leaves a head one record past the tail; that record is in the head file, signed, and
        follows the tail exactly, so it is inserted now: the log reads as if the commit had happened, and no
        operator step is needed after an ordinary crash. Anything else that does not match stays refused."""
        with self._lock:
            if self._closed:
                raise AuditUnavailable("The audit log is closed.")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                tail = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
                done = self._roll_forward(conn, self._read_head(), Head(tail["seq"], tail["hash"]) if tail else None)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return done

    @staticmethod
    def _roll_forward(conn: sqlite3.Connection, state: _HeadState, tail: Head | None) -> bool:
        """Insert the head's own record when it is exactly the one missing after ``tail`` (inside the caller's
        write transaction). False, changing nothing, in every other case."""
        rec, head = state.record, state.head
        if state.problem or rec is None or head is None or head == tail:
            return False
        if (head.seq != (tail.seq if tail else 0) + 1 or rec.get("seq") != head.seq
                or rec.get("prev_hash") != (tail.hash if tail else GENESIS) or record_hash(rec) != head.hash):
            return False
        conn.execute(f"INSERT INTO audit_records ({', '.join((*FIELDS, 'hash'))})"
                     f" VALUES ({', '.join('?' * (len(FIELDS) + 1))})", [rec[n] for n in FIELDS] + [head.hash])
        log.warning("audit record %d was signed but not committed (the process stopped in between); "
                    "restored from the signed head", head.seq)
        return True

    def _write(self, fields: dict[str, Any], *, check_head: bool) -> AuditRecord:
        with self._lock:
            if self._closed:
                raise AuditUnavailable("The audit log is closed.")
            conn = self._conn
            try:
                # IMMEDIATE: take SQLite's write lock now, so the tail we read is the tail we extend and the
                # head file is written by one process at a time.
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _write_failed("The audit log cannot be written", exc, self.path.parent) from exc
            old_head: Head | None = None
            try:
                tail = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
                tail_head = Head(tail["seq"], tail["hash"]) if tail else None
                if check_head:
                    state = self._read_head()
                    if self._roll_forward(conn, state, tail_head):
                        tail_head = state.head
                    if state.problem or state.head != tail_head:
                        raise AuditUnavailable(
                            "The audit log does not match its signed head "
                            f"({state.problem or 'head ' + _show(state.head) + ', tail ' + _show(tail_head)}). "
                            "Nothing can be recorded, so nothing is allowed: run `inhouse audit verify`, "
                            "then `inhouse audit reseal` once the cause is understood.")
                    old_head = state.head
                row = {"seq": tail_head.seq + 1 if tail_head else 1,
                       "prev_hash": tail_head.hash if tail_head else GENESIS, **fields}
                row["hash"] = record_hash(row)
                conn.execute(
                    f"INSERT INTO audit_records ({', '.join((*FIELDS, 'hash'))})"
                    f" VALUES ({', '.join('?' * (len(FIELDS) + 1))})",
                    [row[name] for name in (*FIELDS, "hash")],
                )
                self._write_head(Head(row["seq"], row["hash"]), row)
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | OSError):
                    raise _write_failed("The audit record could not be written", exc, self.path.parent) from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                # The head already names the record that was not committed: put the old one back.
                with contextlib.suppress(OSError):
                    if old_head is not None:
                        self._write_head(old_head)
                    elif check_head:
                        self.head_path.unlink(missing_ok=True)
                raise _write_failed("The audit record could not be committed", exc, self.path.parent) from exc
            return _row_to_record(row)

    # -- key and head -----------------------------------------------------------------------------------

    def _key(self, *, create: bool) -> bytes | None:
        try:
            return bytes.fromhex(self.key_path.read_text().strip())
        except FileNotFoundError:
            if not create:
                return None
        except ValueError:
            return None
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it just now
            return bytes.fromhex(self.key_path.read_text().strip())
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return bytes.fromhex(self.key_path.read_text().strip())

    @staticmethod
    def _mac(key: bytes, head: Head) -> str:
        msg = _HEAD_MAC_CONTEXT + f"\n{head.seq}\n{head.hash}".encode()
        return hmac.new(key, msg, hashlib.sha256).hexdigest()

    def _read_head(self) -> _HeadState:
        try:
            raw = self.head_path.read_text()
        except FileNotFoundError:
            return _HeadState(missing=True)
        except OSError as exc:
            return _HeadState(problem=f"the head file cannot be read: {exc}")
        try:
            data = json.loads(raw)
            head = Head(int(data["seq"]), str(data["hash"]))
            mac = str(data["mac"])
            record = data.get("record")
            if record is not None and (not isinstance(record, dict) or set(record) != set(FIELDS)):
                record = None  # not ours: never inserted (and its hash would not match anyway)
        except (ValueError, KeyError, TypeError, AttributeError):
            return _HeadState(problem="the head file is not a valid signed head")
        key = self._key(create=False)
        if key is None:
            return _HeadState(head=head, problem="the audit key is missing or unreadable")
        if not hmac.compare_digest(mac, self._mac(key, head)):
            return _HeadState(head=head, problem="the head signature is invalid")
        return _HeadState(head=head, record=record)

    def _write_head(self, head: Head, record: Mapping[str, Any] | None = None) -> None:
        """The signed head; with ``record`` (the head's own record, hashed into ``head.hash``) so a crash before
        the commit can be finished by ``recover`` instead of needing a reseal."""
        key = self._key(create=True)
        assert key is not None
        signed: dict[str, Any] = {"seq": head.seq, "hash": head.hash, "mac": self._mac(key, head)}
        if record is not None:
            signed["record"] = {name: record[name] for name in FIELDS}
        body = json.dumps(signed, ensure_ascii=False) + "\n"
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.head_path)  # atomic: a reader sees the old head or the new one
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.head_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)

    def head(self) -> Head | None:
        """The signed head, if present and valid."""
        state = self._read_head()
        return None if state.problem else state.head

    # -- reading ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        # A connection of its own, so a long verify or export never holds up the writers.
        conn = self._connect(readonly=True)
        try:
            yield conn
        finally:
            conn.close()

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute("SELECT count(*) FROM audit_records").fetchone()[0])

    def records(
        self, *, since: str | None = None, until: str | None = None, action: str | None = None,
        actor: str | None = None, kind: str | None = None, after_seq: int = 0, limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every given filter (``since``/``until`` in the ``ts`` format, see ``parse_since``)."""
        return list(self.iter_records(since=since, until=until, action=action, actor=actor, kind=kind,
                                      after_seq=after_seq, limit=limit, newest_first=newest_first))

    def iter_records(
        self, *, since: str | None = None, until: str | None = None, action: str | None = None,
        actor: str | None = None, kind: str | None = None, after_seq: int = 0, limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[AuditRecord]:
        where: list[str] = ["seq > ?"]
        params: list[Any] = [after_seq]
        for column, op, value in (("ts", ">=", since), ("ts", "<", until), ("action", "=", action),
                                  ("actor_key_id", "=", actor), ("kind", "=", kind)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = (f"SELECT * FROM audit_records WHERE {' AND '.join(where)}"
               f" ORDER BY seq {'DESC' if newest_first else 'ASC'}")
        if limit is not None:
            sql += f" LIMIT {max(0, int(limit))}"
        with self._reader() as conn:
            for row in conn.execute(sql, params):
                yield _row_to_record(row)

    def unfinished(self) -> list[AuditRecord]:
        """``started`` records with no final record of the same request after them: requests that were running
        when the process stopped (or are running now, in a server sharing this log)."""
        sql = ("SELECT * FROM audit_records s WHERE s.kind = 'request' AND s.outcome = ? AND s.request_id IS NOT NULL"
               " AND NOT EXISTS (SELECT 1 FROM audit_records f WHERE f.request_id = s.request_id AND f.seq > s.seq"
               " AND f.kind = 'request' AND f.outcome != ?) ORDER BY s.seq")
        with self._reader() as conn:
            return [_row_to_record(r) for r in conn.execute(sql, (STARTED, STARTED))]

    def close_interrupted(self, reason: str = "the server stopped before the request finished") -> list[AuditRecord]:
        """Give every unfinished request its final record, outcome ``interrupted`` (``inhouse serve`` does this
        when it starts, before it serves: nothing of an earlier process can still be running then)."""
        return [self.record_request(action=rec.action, outcome=INTERRUPTED, request_id=rec.request_id,
                                    actor_key_id=rec.actor_key_id, user_id=rec.user_id, resource=rec.resource,
                                    model=rec.model, location=rec.location, label=rec.label,
                                    documents=rec.documents, reason=reason, details={"started_seq": rec.seq})
                for rec in self.unfinished()]

    def export(self, since: str | None = None) -> Iterator[dict[str, Any]]:
        """Records as JSON-ready dicts, oldest first (``inhouse audit export`` writes one per line)."""
        for rec in self.iter_records(since=since):
            yield rec.to_dict()

    def verify(self) -> VerifyReport:
        """Recompute the chain from genesis and compare its end with the signed head."""
        with self._reader() as conn:
            for attempt in range(2):
                conn.execute("BEGIN")
                total, tail = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM audit_records").fetchone()
                state = self._read_head()
                # A writer signs the head just before it commits: a head ahead of our snapshot may be a
                # commit in flight. Wait for any writer (take and drop the write lock), then look again.
                if state.head is None or state.head.seq <= tail or attempt == 1:
                    break
                conn.execute("COMMIT")
                self._wait_for_writers()
            try:
                rows = (dict(r) for r in conn.execute("SELECT * FROM audit_records ORDER BY seq"))
                return check_chain(rows, total=int(total), head_state=state)
            finally:
                conn.execute("COMMIT")

    def _wait_for_writers(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            if not self._closed:
                self._conn.execute("BEGIN IMMEDIATE")  # blocks (busy_timeout) while another writer commits
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _write_failed(what: str, exc: BaseException, directory: Path) -> AuditUnavailable:
    if is_storage_full(exc, directory):
        return AuditStorageFull(f"{what}: the disk is full (nothing was recorded, so nothing was done; retry when "
                                "space is freed).")
    return AuditUnavailable(f"{what}: {exc}")


def _show(head: Head | None) -> str:
    return "none" if head is None else f"#{head.seq} {head.hash[:12]}"


def _origin_of(row: Mapping[str, Any], upper: int) -> int | None:
    """The position ``s`` at which this (intact) record was written, if it now sits elsewhere."""
    probe = dict(row)
    for s in range(1, upper + 1):
        if s != row["seq"]:
            probe["seq"] = s
            if record_hash(probe) == row["hash"]:
                return s
    return None


def check_chain(rows: Iterable[Mapping[str, Any]], *, total: int, head_state: Any) -> VerifyReport:
    """Walk ``rows`` (stored column values, ordered by seq) and report the first break.

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
    state: _HeadState = head_state
    head = None if state.problem else state.head
    expect_total = head.seq if head is not None else None
    upper = max(total, state.head.seq if state.head else 0) + 1
    expected, prev, prev_prev = 1, GENESIS, None
    hash_at_head: str | None = None
    reseals = 0

    def broken(seq: int | None, kind: BreakKind, message: str) -> VerifyReport:
        return VerifyReport(False, total, state.head.seq if state.head else None, seq, kind, message, reseals)

    for row in rows:
        seq = row["seq"]
        if seq != expected:
            return broken(expected, "deleted", f"record {expected} is missing (the next one is {seq})")
        if record_hash(row) != row["hash"]:
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
        if head is not None and seq == head.seq:
            hash_at_head = row["hash"]
        expected += 1
    last = expected - 1
    if state.problem:
        return broken(None, "head_signature_invalid", f"{state.problem}: truncation cannot be ruled out")
    if head is None:
        if last == 0:
            return VerifyReport(True, 0, None, message="the log is empty")
        return broken(None, "head_missing", "the signed head file is missing: truncation cannot be ruled out")
    if last < head.seq:
        return broken(last + 1, "truncated", f"the chain ends at record {last} but the signed head is record "
                                             f"{head.seq}: records {last + 1}..{head.seq} were removed")
    if hash_at_head != head.hash:
        return broken(head.seq, "modified", f"the chain was recomputed: record {head.seq} differs from the "
                                            "signed head (the first forged record may be earlier)")
    if last > head.seq:
        return broken(head.seq + 1, "inserted", f"records {head.seq + 1}..{last} were added after the signed "
                                                f"head (record {head.seq})")
    return VerifyReport(True, total, head.seq, reseals=reseals)


__all__ = [
    "GENESIS", "INTERRUPTED", "MODEL_LOADED", "RESEALED", "STARTED", "AuditLog", "AuditRecord", "Head", "VerifyReport",
    "canonical_json", "check_chain", "format_ts", "parse_since", "record_hash",
]
