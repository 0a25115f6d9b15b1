"""API keys: created once, shown once, stored only as a SHA-256 hash.

A secret reads ``ih_<suffix>_<random>``; the key's id is ``key_<suffix>``, so authentication is one
primary-key lookup followed by a constant-time hash comparison (no scan, no timing oracle on the
table). SHA-256 rather than a slow KDF is right here: the random part has 256 bits of entropy, so there
is nothing to brute-force, and every request pays the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from inhouse.errors import AuthenticationFailed, InvalidRequest, NotFound
from inhouse.types import Actor, Role

if TYPE_CHECKING:
    import sqlite3

    from inhouse.store.db import Database

SECRET_PREFIX = "ih_"
_SUFFIX_BYTES = 8  # 16 hex characters
_RANDOM_BYTES = 32  # token_urlsafe(32) gives 43 characters
MAX_SECRET_CHARS = 200
# Parsed with a whitelist regex before anything touches the database: whatever arrives in a header
# (empty, huge, non-ASCII, quotes) fails here with AuthenticationFailed.
_SECRET_RE = re.compile(r"ih_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
# last_used_at is bookkeeping, not security: write it at most once a minute per key.
_LAST_USED_RESOLUTION_S = 60.0
_ROLES = ("admin", "member")


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    role: Role
    user_id: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _row_to_record(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        role=cast(Role, row["role"]),
        user_id=row["user_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class KeyStore:
    """Create, list, revoke and check API keys. Thread-safe through ``Database``."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def create_key(
        self, name: str, *, role: Role = "member", expires_at: float | datetime | None = None
    ) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the secret, which is not stored and cannot be shown again."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("A key name must have 1 to 200 characters.", param="name")
        if role not in _ROLES:
            raise InvalidRequest(f"Unknown role {role!r}; use 'admin' or 'member'.", param="role")
        exp = expires_at.timestamp() if isinstance(expires_at, datetime) else expires_at
        now = self._clock()
        if exp is not None and exp <= now:
            raise InvalidRequest("'expires_at' is in the past.", param="expires_at")
        suffix = secrets.token_hex(_SUFFIX_BYTES)
        secret = f"{SECRET_PREFIX}{suffix}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
        record = KeyRecord(
            id=f"key_{suffix}", name=name, prefix=f"{SECRET_PREFIX}{suffix}", role=role, user_id=None,
            created_at=now, expires_at=exp, revoked_at=None, last_used_at=None,
        )
        self._db.execute(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, role, user_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.id, record.name, record.prefix, hash_secret(secret), role, None, now, exp),
        )
        return record, secret

    def authenticate(self, secret: object) -> Actor:
        """The actor of a valid, unrevoked, unexpired key. Anything else raises AuthenticationFailed."""
        fail = AuthenticationFailed("Invalid API key. Pass a valid key as 'Authorization: Bearer <key>'.")
        if not isinstance(secret, str) or len(secret) > MAX_SECRET_CHARS:
            raise fail
        m = _SECRET_RE.fullmatch(secret)
        if m is None:
            raise fail
        row = self._db.query_one("SELECT * FROM api_keys WHERE id = ?", (f"key_{m.group(1)}",))
        # Hash even when the id is unknown so both failures take the same time.
        presented = hash_secret(secret)
        stored = row["secret_hash"] if row is not None else "0" * 64
        if not hmac.compare_digest(presented, stored) or row is None:
            raise fail
        record = _row_to_record(row)
        now = self._clock()
        if record.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        if record.last_used_at is None or now - record.last_used_at >= _LAST_USED_RESOLUTION_S:
            self._db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, record.id))
        return Actor(key_id=record.id, name=record.name, role=record.role, user_id=record.user_id)

    def get(self, key_id: str) -> KeyRecord:
        row = self._db.query_one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        if row is None:
            raise NotFound(f"No API key with id '{key_id}'.", param="key_id")
        return _row_to_record(row)

    def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        sql = "SELECT * FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return [_row_to_record(r) for r in self._db.query(sql + " ORDER BY created_at, id")]

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (idempotent: revoking twice keeps the first time). Unknown id → NotFound."""
        self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self._clock(), key_id)
        )
        return self.get(key_id)

    def count(self, *, active_only: bool = False) -> int:
        if not active_only:
            return int(self._db.scalar("SELECT count(*) FROM api_keys"))
        now = self._clock()
        return int(self._db.scalar(
            "SELECT count(*) FROM api_keys"
            " WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
            (now,),
        ))

    def ensure_admin_key(self, name: str = "initial admin") -> str | None:
        """On first start (no key at all) create an admin key and return its secret; else None."""
        with self._db.transaction() as conn:
            # Inside the write transaction so two servers starting together create only one key.
            if conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]:
                return None
            _, secret = self.create_key(name, role="admin")
            return secret
