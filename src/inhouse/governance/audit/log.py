"""The tamper-evident audit log: an append-only hash chain (``chain.py``) with a signed head (``head.py``), kept
by an ``AuditStore`` (``store.py``: SQLite in the embedded install, PostgreSQL for several nodes).

Every record holds ``prev_hash`` (the ``hash`` of the record before it; 64 zeros for the first) and
``hash = sha256(canonical JSON of its fields + prev_hash)``. Changing, removing, inserting or reordering
records breaks the chain where it happened. A chain can still be cut at the end, or recomputed from some
point on, by whoever can write the database; so the head ``(seq, hash)`` is also stored apart from the rows,
authenticated with HMAC-SHA256 under a key kept in ``audit.key`` (0600). ``verify()`` recomputes the chain
from the first record and compares its end with the signed head.

Writes are serialised by the store and each is one transaction in which the head is replaced before the
commit: if either write fails, the record is rolled back and ``AuditUnavailable`` is raised (``AuditStorageFull``
when the disk is full), so the caller's action fails. Before appending, the current tail is compared with the
signed head; if they differ (truncation, forged appends) every further append is refused until an operator runs
``reseal`` (which is itself recorded). The one ordinary mismatch, a process killed between the head write and the
commit (possible where the head is a file), needs no operator: the head carries its record, and ``recover`` (run
when the log is opened and before every append) finishes the append. An append this process was told failed is
never finished that way (``_refused``): its caller was answered that nothing was recorded. The store puts the
previous head back when a commit fails; should that fail too, the next append takes the refused record's place.
See docs/governance.md.

A record that can no longer refuse its action (the final record of a finished stream or a disconnect: the answer is
out; of a request whose ``started`` record is written: its change is committed) is not dropped when the store cannot
be written for now (the database away, the disk full, a lock held elsewhere): ``record_finished_request`` keeps it
in memory, with its own time, and it is written before the next record that can be, so it lands in the chain in
order once the store is back. At most ``MAX_KEPT`` wait. The server also appends each to a local file
(``take_over_kept``: ``audit.waiting.jsonl`` in the data directory, fsynced; one file a process, named by it, for a
cluster's ingress replicas), so a process that dies before the store is back loses none: the next ``serve`` (the
next ingress replica to start on the host) writes those not in the chain yet (a crash half-way through writing them
duplicates nothing), before it closes the requests left unfinished as interrupted.

A command's run (``inhouse ingest``) is a request too, but not the server's: its ``started`` record names the process
that writes it (``this_process()``: host, pid and the pid's start time), so ``close_interrupted`` leaves a run
that is still going alone (the server starting meanwhile, another command) and closes one whose process is gone (a
``kill -9``, a power cut) at the next ``serve`` or ``ingest``. What such a run changed is in the knowledge index's
run journal (written in each change's own transaction); the caller passes it in (``documents_of``), so the closing
record names exactly those documents.

Where several nodes share the chain, every ``started`` record names its process too: a cluster's ingress replica that
died is replaced by one with another node name, which closes its predecessor's requests by that process being gone.
Two processes closing the same request at once write one record: the check that it is still open runs inside the
append, under the chain's lock.

The hash covers the stored column values exactly (the JSON columns as their canonical text), so a third
party can check an export without the key: see ``chain.py``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inhouse.errors import AuditStorageFull, AuditStoreUnavailable, AuditUnavailable, InvalidRequest
from inhouse.governance.audit.chain import (
    FIELDS,
    GENESIS,
    RESEALED,
    AuditRecord,
    Head,
    Kind,
    VerifyReport,
    canonical_json,
    check_chain,
    format_ts,
    record_from_row,
    record_hash,
)
from inhouse.governance.audit.head import HeadSigner, HeadState, show
from inhouse.governance.audit.store import AuditAppend, AuditStore, GroupCount, RecordQuery
from inhouse.governance.backlog import Backlog, Spool
from inhouse.governance.events import SecurityEvent
from inhouse.governance.process import still_running, this_process

log = logging.getLogger(__name__)

MODEL_LOADED = "model.loaded"
ENGINE_CRASHED = "engine.crashed"  # a model's engine process died (reason: the signal); details say what followed
# Outcome of the write-ahead record of a generation request (its final record follows when it ends).
STARTED = "started"
# Outcome of the final record written for a request whose process stopped before it ended (see close_interrupted).
INTERRUPTED = "interrupted"
# A record names at most this many documents (a long ingest run: the rest are counted in its details).
MAX_RECORD_DOCUMENTS = 5_000
# Final records kept in memory while the store cannot be written (a record is ~1 KB).
MAX_KEPT = 10_000
# The columns of a kept record (``AuditLog._fields``): what a line of the spool must hold.
_KEPT_FIELDS = frozenset({"ts", "kind", "action", "request_id", "actor_key_id", "user_id", "resource", "model",
                          "location", "label", "documents", "redactions", "outcome", "reason", "details"})
# ``verify``'s pauses between looks that found the head ahead of the rows (an append in flight), before the settled
# look: most such windows end within the first few milliseconds; the lock is needed only under steady appends.
_VERIFY_PAUSES_S = (0.002, 0.005, 0.01, 0.02, 0.05)
# Refused appends remembered (``AuditLog._refused``): a head left behind is the last one or close to it.
_MAX_REFUSED = 64

# Keys of ``SecurityEvent.details`` that have a column of their own: lifted out of ``details`` into it
# (``destination`` is the egress policy's word for ``location``).
LIFTED_DETAILS = {"request_id": "request_id", "model": "model", "location": "location", "destination": "location",
                  "label": "label", "documents": "documents", "redactions": "redactions", "reason": "reason"}
# Defence in depth: whatever a caller puts in ``details``, these never reach the log.
_FORBIDDEN_DETAIL_KEYS = frozenset({"secret", "password", "api_key", "token", "secret_hash", "key_secret"})
_REDACTION_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_MAX_DETAILS_CHARS = 64_000
_MAX_TEXT = 500


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
    """The audit log of one installation. Implements ``AuditSink`` (``record``) for security events and
    ``record_request`` for API requests. Thread-safe; several processes (and, on PostgreSQL, several nodes) may
    append to the same chain.

    ``node``: this process's node name where several nodes share the chain. Its ``started`` records carry it
    (``details.node``), and ``close_interrupted`` then closes only this node's requests, never those another node
    is still serving. None (the embedded install): one server per chain, every unfinished request is its own."""

    def __init__(self, store: AuditStore, *, key_path: Path, clock: Callable[[], float] = time.time,
                 node: str | None = None) -> None:
        self.store = store
        self.key_path = key_path
        self.node = node or None
        self._process: dict[str, Any] | None = None  # this process, as its started records name it (with a node)
        self._signer = HeadSigner(key_path)
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._kept: Backlog[dict[str, Any]] = Backlog(MAX_KEPT)  # final records' fields waiting for the store
        self._spool: Spool | None = None  # where kept records are also written (take_over_kept)
        # The heads of appends this process was told failed: never rolled forward (``_roll_forward``), even where
        # the store could not put its previous head back (a head file on a disk that filled up meanwhile).
        self._refused: deque[Head] = deque(maxlen=_MAX_REFUSED)
        try:
            self.recover()
        except AuditUnavailable as exc:
            log.warning("audit log recovery postponed to the next append: %s", exc)

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
        if outcome == STARTED and self.node is not None:  # several nodes: the process too (see close_interrupted)
            if self._process is None:
                self._process = this_process()
            details = {"process": self._process, **(details or {}), "node": self.node}
        return self.append(
            kind="request", action=action, outcome=outcome, request_id=request_id, actor_key_id=actor_key_id,
            user_id=user_id, resource=resource, model=model, location=location, label=label,
            documents=documents, redactions=redactions, reason=reason, details=details, at=at,
        )

    def record_finished_request(self, **request: Any) -> bool:
        """``record_request`` for a record whose action has happened already (a finished stream, a disconnect, a
        change committed). When the store cannot be written for now, the record is kept with its time and written
        before the next one. True: written; False: kept. ``AuditUnavailable`` only when ``MAX_KEPT`` are waiting
        already or the failure is of another kind."""
        if request.get("outcome") == STARTED:
            raise ValueError("a started record must be written before its action, never kept")
        fields = self._fields(kind="request", **{"at": self._clock(), **request})
        try:
            self._append(fields)
        except (AuditStoreUnavailable, AuditStorageFull):
            if not self._kept.keep(fields, then=lambda _: self._spool_write([fields], append=True)):
                raise
            log.error("the audit record of request %s is kept until the audit store can be written (%d waiting)",
                      request.get("request_id"), len(self._kept))
            return False
        return True

    @property
    def waiting(self) -> int:
        """Final records kept in memory, not yet in the store."""
        return len(self._kept)

    def take_over_kept(self, spool: Path, *, per_process: bool = False) -> int:
        """From now on, also append kept records to ``spool`` (one JSON object a line, fsynced; ``inhouse serve``
        calls this with ``audit.waiting.jsonl`` in its data directory), and take over those a previous process left
        there: each is kept, to be written before anything else, unless it is in the chain already
        (``_written_already``: a crash while they were being written, or another process closed the request).
        ``per_process``: processes share the data directory (a cluster's ingress replicas), so this one's file is
        named by its process, and those of processes that are gone are taken over. How many records were taken
        over. Raises ``AuditUnavailable`` when the store cannot say which are written (nothing is taken over then;
        the spool is used all the same)."""
        self._spool = Spool.of_this_process(spool, "audit records") if per_process else Spool(spool, "audit records")
        orphans = self._spool.orphans(spool)
        if not self._spool.path.exists() and not orphans:
            return 0
        self._spool.claim_orphans(spool, orphans)
        # Every well-formed final record: not only those of requests with a `started` record (a relayed external
        # request has no id, a client gone from a route that is not a generation wrote no `started` record).
        kept = [fields for fields in self._spool.read()
                if set(fields) == _KEPT_FIELDS and all(v is None or isinstance(v, str) for v in fields.values())
                and fields["kind"] == "request" and fields["outcome"] != STARTED and fields["ts"]]
        written = self._written_already(kept)
        taken: list[dict[str, Any]] = []
        for fields in kept:
            key = _request_key(fields)
            if key not in written:
                written.add(key)  # once
                taken.append(fields)
        self._kept.take_over(taken, then=lambda kept: self._spool_write(kept, append=False))
        if taken:
            log.warning("%d audit records kept by a previous process are taken over from %s", len(taken),
                        spool.parent)
        return len(taken)

    def _written_already(self, kept: Sequence[Mapping[str, Any]]) -> set[Any]:
        """The ``_request_key`` of each kept record the chain holds already: a request with an id that has a final
        record (its own, or ``interrupted`` by another process); one without an id, by a record with exactly its
        fields (its time is to the microsecond)."""
        found: set[Any] = set()
        for rid in {fields["request_id"] for fields in kept} - {None}:
            if any(row["outcome"] != STARTED for row in self.store.rows(RecordQuery(kind="request", request_id=rid))):
                found.add(rid)
        anonymous = [fields["ts"] for fields in kept if fields["request_id"] is None]
        if anonymous:
            found.update(_request_key(row) for row in self.store.rows(RecordQuery(since=min(anonymous), kind="request"))
                         if row["request_id"] is None)
        return found

    def _spool_write(self, records: list[dict[str, Any]], *, append: bool) -> None:
        """Add ``records`` to the spool, or make it hold exactly them (none: no file)."""
        if self._spool is not None:
            (self._spool.append if append else self._spool.replace)(records)

    def _write_kept(self) -> None:
        """Write the kept records, oldest first, before anything newer; ``AuditUnavailable`` if the store still
        cannot be written (they stay kept). Once none is left, the spool goes (a crash before that is harmless:
        their requests are finished in the chain now)."""
        written = self._kept.flush(lambda fields: self._write(fields, check_head=True),
                                   emptied=lambda: self._spool_write([], append=False))
        if written:
            log.warning("%d audit records kept while the audit store could not be written are now written", written)

    def _append(self, fields: dict[str, Any]) -> AuditRecord:
        self._write_kept()
        record = self._write(fields, check_head=True)
        assert record is not None
        return record

    def append(
        self, *, kind: Kind, action: str, outcome: str, request_id: str | None = None,
        actor_key_id: str | None = None, user_id: str | None = None, resource: str | None = None,
        model: str | None = None, location: str | None = None, label: str | None = None,
        documents: Sequence[str] = (), redactions: Mapping[str, int] | None = None, reason: str | None = None,
        details: Mapping[str, Any] | None = None, at: float | None = None,
    ) -> AuditRecord:
        """Append one record and re-sign the head, in one transaction. Bad arguments (a programming error)
        raise ``ValueError``/``TypeError``; a failed write raises ``AuditUnavailable``."""
        return self._append(self._fields(
            kind=kind, action=action, outcome=outcome, request_id=request_id, actor_key_id=actor_key_id,
            user_id=user_id, resource=resource, model=model, location=location, label=label, documents=documents,
            redactions=redactions, reason=reason, details=details, at=at))

    def _fields(
        self, *, kind: Kind, action: str, outcome: str, request_id: str | None = None,
        actor_key_id: str | None = None, user_id: str | None = None, resource: str | None = None,
        model: str | None = None, location: str | None = None, label: str | None = None,
        documents: Sequence[str] = (), redactions: Mapping[str, int] | None = None, reason: str | None = None,
        details: Mapping[str, Any] | None = None, at: float | None = None,
    ) -> dict[str, Any]:
        """A record's checked columns, its time fixed (``at``, else now)."""
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
        return fields

    def reseal(self, reason: str, *, actor_key_id: str | None = None) -> AuditRecord:
        """Re-anchor the signed head on the current tail after an operator has examined a mismatch (a crash
        between the head write and the commit, or a tampering already reported). The old and new head go
        into a security record, so a reseal is itself evidence. Creates a key if there is none."""
        if not reason.strip():
            raise InvalidRequest("A reseal needs a reason.", param="reason")
        state = self._head_state(self.store.read_head)
        previous = None if state.head is None else {"seq": state.head.seq, "hash": state.head.hash}
        details = {"previous_head": previous, "previous_head_problem": state.problem,
                   "key_created": not self.key_path.exists()}
        fields = {
            "ts": format_ts(self._clock()), "kind": "security", "action": RESEALED, "request_id": None,
            "actor_key_id": actor_key_id, "user_id": None, "resource": "audit", "model": None, "location": None,
            "label": None, "documents": "[]", "redactions": "{}", "outcome": "success",
            "reason": reason.strip()[:_MAX_TEXT], "details": canonical_json(details),
        }
        record = self._write(fields, check_head=False)
        assert record is not None
        return record

    def recover(self) -> bool:
        """Finish the append a crash interrupted, if any (also done before every append). True if it did.

        The signed head holds its record. Where the head is written before the record commits (a file), a process
        killed between the two leaves a head one record past the tail; that record is in the head, signed, and
        follows the tail exactly, so it is inserted now: the log reads as if the commit had happened, and no
        operator step is needed after an ordinary crash. Anything else that does not match stays refused."""
        if self._closed:
            raise AuditUnavailable("The audit log is closed.")
        with self.store.appending() as tx:
            return self._roll_forward(tx, self._head_state(tx.read_head), tx.tail())

    @staticmethod
    def _next_after(state: HeadState, tail: Head | None) -> bool:
        """Whether the signed head holds exactly the record that would follow ``tail``, signed but not in the rows."""
        rec, head = state.record, state.head
        if state.problem or rec is None or head is None or head == tail:
            return False
        return (head.seq == (tail.seq if tail else 0) + 1 and rec.get("seq") == head.seq
                and rec.get("prev_hash") == (tail.hash if tail else GENESIS) and record_hash(rec) == head.hash)

    def _roll_forward(self, tx: AuditAppend, state: HeadState, tail: Head | None) -> bool:
        """Insert the head's own record when it is exactly the one missing after ``tail`` (inside the append
        ``tx``), unless this process was told that append failed (``_refused``: its caller was answered "nothing was
        recorded"). False, changing nothing, in every other case."""
        if not self._next_after(state, tail) or state.head in self._refused:
            return False
        rec, head = state.record, state.head
        assert rec is not None and head is not None
        tx.insert({**{name: rec[name] for name in FIELDS}, "hash": head.hash})
        log.warning("audit record %d was signed but not committed (the process stopped in between); "
                    "restored from the signed head", head.seq)
        return True

    def _write(self, fields: dict[str, Any], *, check_head: bool,
               unless: Callable[[], bool] | None = None) -> AuditRecord | None:
        """``unless``: checked under the chain's lock, before anything is written; True: write nothing (None)."""
        if self._closed:
            raise AuditUnavailable("The audit log is closed.")
        row: dict[str, Any] | None = None
        try:
            with self.store.appending() as tx:
                if unless is not None and unless():
                    return None
                tail = tx.tail()
                if check_head:
                    state = self._head_state(tx.read_head)
                    if self._roll_forward(tx, state, tail):
                        tail = state.head
                    # A head still holding a refused append (its store could not put the previous one back) is
                    # one past the tail: this record takes that place, and its head replaces that one.
                    refused_head = state.head in self._refused and self._next_after(state, tail)
                    if (state.problem or state.head != tail) and not refused_head:
                        raise AuditUnavailable(
                            "The audit log does not match its signed head "
                            f"({state.problem or 'head ' + show(state.head) + ', tail ' + show(tail)}). "
                            "Nothing can be recorded, so nothing is allowed: run `inhouse audit verify`, "
                            "then `inhouse audit reseal` once the cause is understood.")
                row = {"seq": tail.seq + 1 if tail else 1, "prev_hash": tail.hash if tail else GENESIS, **fields}
                row["hash"] = record_hash(row)
                tx.insert(row)
                tx.write_head(self._signer.sign(Head(row["seq"], row["hash"]), row))
        except AuditUnavailable:
            if row is not None:  # its head may have been written: never to be rolled forward
                self._refused.append(Head(row["seq"], row["hash"]))
            raise
        assert row is not None
        return record_from_row(row)

    # -- the head ---------------------------------------------------------------------------------------

    def _head_state(self, read: Callable[[], str | None]) -> HeadState:
        try:
            text = read()
        except OSError as exc:
            return HeadState(problem=f"the head file cannot be read: {exc}")
        return self._signer.check(text)

    def head(self) -> Head | None:
        """The signed head, if present and valid."""
        state = self._head_state(self.store.read_head)
        return None if state.problem else state.head

    # -- reading ----------------------------------------------------------------------------------------

    def count(self) -> int:
        return self.store.count()

    def records(
        self, *, since: str | None = None, until: str | None = None, action: str | None = None,
        actor: str | None = None, kind: str | None = None, document: str | None = None, after_seq: int = 0,
        limit: int | None = None, newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every given filter (``since``/``until`` in the ``ts`` format, see ``parse_since``;
        ``document``: records naming that document id, e.g. everyone its passages were given to)."""
        return list(self.iter_records(since=since, until=until, action=action, actor=actor, kind=kind,
                                      document=document, after_seq=after_seq, limit=limit,
                                      newest_first=newest_first))

    def iter_records(
        self, *, since: str | None = None, until: str | None = None, action: str | None = None,
        actor: str | None = None, kind: str | None = None, location: str | None = None, label: str | None = None,
        outcome: str | None = None, document: str | None = None, after_seq: int = 0, limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[AuditRecord]:
        query = RecordQuery(since=since, until=until, action=action, actor=actor, kind=kind, location=location,
                            label=label, outcome=outcome, document=document, after_seq=after_seq,
                            limit=None if limit is None else max(0, int(limit)), newest_first=newest_first)
        for row in self.store.rows(query):
            yield record_from_row(row)

    def group_counts(self, columns: Sequence[str], *, since: str | None = None) -> list[GroupCount]:
        """Records since ``since`` counted by the values of ``columns`` (``FIELDS`` names), by the database."""
        return self.store.group_counts(RecordQuery(since=since), columns)

    def unfinished(self) -> list[AuditRecord]:
        """``started`` records with no final record of the same request after them: requests that were running
        when their process stopped (or are running now, in a server sharing this log)."""
        return [record_from_row(row) for row in self.store.rows(RecordQuery(unfinished=STARTED))]

    def close_interrupted(self, *, processes_only: bool = False,
                          documents_of: Callable[[str], Sequence[tuple[str, str]]] | None = None) -> list[AuditRecord]:
        """Give every unfinished request of this node its final record, outcome ``interrupted`` (``inhouse serve``
        does this when it starts, before it serves: no request of this node's server can still be running then).
        A request whose record names its process (``this_process``: a command's run; any request where several
        nodes share the chain) is closed once that process is gone, whichever node it was on (a pid on another host
        cannot be checked from here: left alone); one that names none, only by its own node. ``processes_only``:
        only those that name their process (a command, or a cluster's ingress replica, may not close the requests of
        a server that is running). ``documents_of``: a request id's committed changes, (document id, action) in order
        (the run journal): the closing record names those documents and counts them by action."""
        self._write_kept()  # the requests whose final records were kept are not interrupted
        closed = []
        for rec in self.unfinished():
            process = rec.details.get("process")
            if isinstance(process, dict):
                if still_running(process):
                    continue
                # A server's request among several nodes, or a command's run (`inhouse ingest`: details.via "cli").
                server = "node" in rec.details and rec.details.get("via") != "cli"
                reason = (f"the server's process ({process.get('pid')}) stopped before the request finished" if server
                          else f"the command's process ({process.get('pid')}) stopped before the run finished")
            elif processes_only or (self.node is not None and rec.details.get("node") not in (None, self.node)):
                continue
            else:
                reason = "the server stopped before the request finished"
            documents, details = list(rec.documents), {"started_seq": rec.seq}
            if documents_of is not None and rec.request_id:
                changes = documents_of(rec.request_id)
                documents += [d for d in dict.fromkeys(doc_id for doc_id, _ in changes) if d not in documents]
                details.update(changed_documents(changes, len(documents)))
            fields = self._fields(
                kind="request", action=rec.action, outcome=INTERRUPTED, request_id=rec.request_id,
                actor_key_id=rec.actor_key_id, user_id=rec.user_id, resource=rec.resource, model=rec.model,
                location=rec.location, label=rec.label, documents=documents[:MAX_RECORD_DOCUMENTS], reason=reason,
                details=details, at=None)
            closed_meanwhile = functools.partial(self._closed_already, rec.request_id)  # by another process
            written = self._write(fields, check_head=True, unless=closed_meanwhile)
            if written is not None:
                closed.append(written)
        return closed

    def _closed_already(self, request_id: str | None) -> bool:
        """Whether ``request_id`` has no started record without a final one any more (another process closed it)."""
        return not list(self.store.rows(RecordQuery(unfinished=STARTED, request_id=request_id, limit=1)))

    def export(self, since: str | None = None, *, document: str | None = None) -> Iterator[dict[str, Any]]:
        """Records as JSON-ready dicts, oldest first (``inhouse audit export`` writes one per line)."""
        for rec in self.iter_records(since=since, document=document):
            yield rec.to_dict()

    def verify(self) -> VerifyReport:
        """Recompute the chain from genesis and compare its end with the signed head.

        A writer may sign the head just before it commits (the SQLite store's head file): a head ahead of the
        snapshot may be a commit in flight, not a cut. So such a look is not walked: after a pause (the commit ends)
        verify looks again; under steady appends the next one may be in flight by then, so after ``_VERIFY_PAUSES_S``
        the last look is a settled snapshot, taken with no append in flight (the write lock, held for a moment)."""
        for pause in _VERIFY_PAUSES_S:
            with self.store.snapshot() as snap:
                state = self._head_state(snap.read_head)
                if state.head is None or state.head.seq <= snap.last_seq:
                    return check_chain(snap.rows(), total=snap.total, head=state.head, head_problem=state.problem)
            time.sleep(pause)
        with self.store.snapshot(settled=True) as snap:
            state = self._head_state(snap.read_head)
            return check_chain(snap.rows(), total=snap.total, head=state.head, head_problem=state.problem)

    def close(self) -> None:
        if self._kept and not self._closed:
            try:
                self._write_kept()
            except AuditUnavailable as exc:
                log.error("%d kept audit records could not be written before closing (their requests will be "
                          "closed as interrupted at the next start): %s", len(self._kept), exc.message)
        with self._lock:
            if not self._closed:
                self._closed = True
                self.store.close()


def _request_key(fields: Mapping[str, Any]) -> Any:
    """What names a final record's request: its id; without one (a relayed external request), all its columns."""
    rid = fields["request_id"]
    return rid if rid is not None else tuple(fields[name] for name in sorted(_KEPT_FIELDS))


def changed_documents(changes: Sequence[tuple[str, str]], listed: int) -> dict[str, int]:
    """A run's changes counted by action (added, replaced, moved, relabelled, removed), and how many of the ``listed``
    documents a record leaves out (``MAX_RECORD_DOCUMENTS``)."""
    counts: dict[str, int] = {}
    for _, action in changes:
        counts[action] = counts.get(action, 0) + 1
    return {**counts, "documents_not_listed": max(0, listed - MAX_RECORD_DOCUMENTS)}


__all__ = ["ENGINE_CRASHED", "FIELDS", "INTERRUPTED", "LIFTED_DETAILS", "MAX_RECORD_DOCUMENTS", "MODEL_LOADED",
           "STARTED", "AuditLog", "changed_documents", "parse_since"]
