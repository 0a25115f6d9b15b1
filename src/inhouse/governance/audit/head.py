"""The signed head of the audit chain: ``(seq, hash)`` of the last record, authenticated with HMAC-SHA256.

The chain alone cannot show that records were cut from its end, or that it was recomputed from some point on by
whoever can write the database. So every append also stores the head ``{"seq", "hash", "mac", "record"}`` (JSON
text), ``mac = HMAC-SHA256(key, b"inhouse-audit-head-v1\\n<seq>\\n<hash>")`` as lowercase hex, under a key kept in
a file of its own (``<data_dir>/audit.key``, 64 hex characters, mode 0600, created on first use). The store keeps
the head text where it keeps the chain's companion data (a file beside ``audit.db``, a row in PostgreSQL); every
node writing one chain holds the same key.

``record`` is the head's own record (its ``FIELDS``; their hash is ``hash``, which the MAC covers). Where the head
is written before the row commits (the SQLite store's file), a process killed in between leaves a head one record
past the tail: ``AuditLog.recover`` inserts that record, and no operator is needed after an ordinary crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.governance.audit.chain import FIELDS, Head

_HEAD_MAC_CONTEXT = b"inhouse-audit-head-v1"


@dataclass(frozen=True)
class HeadState:
    """The stored head as read: ``problem`` says why it cannot be trusted (then ``head`` is what it claims)."""

    head: Head | None = None
    problem: str | None = None
    missing: bool = False
    record: dict[str, Any] | None = None  # the head's own record, as signed (see ``AuditLog.recover``)


def show(head: Head | None) -> str:
    return "none" if head is None else f"#{head.seq} {head.hash[:12]}"


class HeadSigner:
    """Signs and checks heads with the key in ``key_path``."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path

    def key(self, *, create: bool) -> bytes | None:
        try:
            return bytes.fromhex(self.key_path.read_text().strip())
        except FileNotFoundError:
            if not create:
                return None
        except ValueError:
            return None
        self.key_path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a process starting at the same moment (two
        # ingress replicas of a fresh cluster) sees no key or the whole key, never an empty file it would sign with.
        tmp = self.key_path.with_name(f".{self.key_path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process created it just now: theirs is the key
                os.link(tmp, self.key_path)
        finally:
            tmp.unlink(missing_ok=True)
        return bytes.fromhex(self.key_path.read_text().strip())

    @staticmethod
    def mac(key: bytes, head: Head) -> str:
        msg = _HEAD_MAC_CONTEXT + f"\n{head.seq}\n{head.hash}".encode()
        return hmac.new(key, msg, hashlib.sha256).hexdigest()

    def sign(self, head: Head, record: Mapping[str, Any] | None = None) -> str:
        """The head's stored text (creates the key when there is none), with ``record``: the head's own record."""
        key = self.key(create=True)
        assert key is not None
        signed: dict[str, Any] = {"seq": head.seq, "hash": head.hash, "mac": self.mac(key, head)}
        if record is not None:
            signed["record"] = {name: record[name] for name in FIELDS}
        return json.dumps(signed, ensure_ascii=False) + "\n"

    def check(self, text: str | None) -> HeadState:
        """What a stored head text says, and whether it can be trusted."""
        if text is None:
            return HeadState(missing=True)
        try:
            data = json.loads(text)
            head = Head(int(data["seq"]), str(data["hash"]))
            mac = str(data["mac"])
            record = data.get("record")
            if record is not None and (not isinstance(record, dict) or set(record) != set(FIELDS)):
                record = None  # not ours: never inserted (and its hash would not match anyway)
        except (ValueError, KeyError, TypeError, AttributeError):
            return HeadState(problem="the head file is not a valid signed head")
        key = self.key(create=False)
        if key is None:
            return HeadState(head=head, problem="the audit key is missing or unreadable")
        if not hmac.compare_digest(mac, self.mac(key, head)):
            return HeadState(head=head, problem="the head signature is invalid")
        return HeadState(head=head, record=record)
