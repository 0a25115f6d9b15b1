"""API keys: created once, shown once, stored only as a SHA-256 hash; bound to a user or standalone.

A secret reads ``ih_<suffix>_<random>``; the key's id is ``key_<suffix>``, so authentication is one
primary-key lookup followed by a constant-time hash comparison (no scan, no timing oracle on the
table). SHA-256 rather than a slow KDF is right here: the random part has 256 bits of entropy, so there
is nothing to brute-force, and every request pays the hash.

A key bound to a user acts with the narrower of its own role and its user's role, and with the user's
groups. Both are read on every request, so demoting, disabling or deleting a user, or removing them
from a group, takes effect on their next request. Keys created without a user work as before.
Creating, changing and revoking keys records one ``SecurityEvent`` inside the same transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from inhouse.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, StorageFull, Unavailable
from inhouse.governance import events
from inhouse.governance.acl import KEY_SCOPES
from inhouse.governance.events import AuditSink, NullAuditSink, security_event
from inhouse.governance.quotas import DAY_S
from inhouse.governance.store import GovernanceStore, KeyRecord
from inhouse.types import Actor, Role

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
_RANK = {"member": 0, "admin": 1}
_DEFAULT_MAX_KEYS_PER_USER = 50
# A key verified this recently may still read /metrics while the governance store is away (``recently_verified``):
# a scrape during a database outage is when an operator needs it most. Nothing else is served on it.
OUTAGE_GRACE_S = 600.0
_RECENT_KEYS = 1024


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _check_scopes(scopes: list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if scopes is None:
        return None
    if isinstance(scopes, str) or not scopes or any(s not in KEY_SCOPES for s in scopes):
        raise InvalidRequest(f"'scopes' must be a non-empty list of: {', '.join(sorted(KEY_SCOPES))}.",
                             param="scopes")
    return tuple(sorted(set(scopes)))


def narrower(a: Role, b: Role) -> Role:
    return a if _RANK[a] <= _RANK[b] else b


def _check_limit(value: int | None, param: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidRequest(f"'{param}' must be a whole number >= 0 (0: unlimited) or null.", param=param)
    return value


class KeyStore:
    """Create, list, revoke and check API keys, over a ``GovernanceStore``. Thread-safe."""

    def __init__(self, store: GovernanceStore, *, clock: Callable[[], float] = time.time,
                 audit: AuditSink | None = None, max_keys_per_user: int = _DEFAULT_MAX_KEYS_PER_USER) -> None:
        self._store = store
        self._clock = clock
        self._audit: AuditSink = audit if audit is not None else NullAuditSink()
        self._max_keys_per_user = max_keys_per_user
        self._recent: OrderedDict[str, tuple[Actor, float]] = OrderedDict()  # secret hash -> actor, when verified
        self._recent_lock = threading.Lock()

    def create_key(
        self,
        name: str,
        *,
        role: Role | None = None,
        expires_at: float | datetime | None = None,
        user_id: str | None = None,
        rpm_limit: int | None = None,
        tokens_per_day_limit: int | None = None,
        scopes: list[str] | tuple[str, ...] | None = None,
        by: Actor | None = None,
        counting_today: bool = False,
    ) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the secret, which is not stored and cannot be shown again.
        ``counting_today`` (a key made by a key, ``POST /v1/keys``): the user's keys usable at any time of the quota
        day (UTC) count toward ``max_keys_per_user``, revoked ones too; else revoking a spent key and minting a fresh
        one would renew a daily token budget without end.

        ``role`` defaults to the user's role (``member`` for a key without a user) and may not exceed it.
        """
        with self._store.transaction() as tx:
            record, secret = self._insert_key(tx, name, role=role, expires_at=expires_at, user_id=user_id,
                                              rpm_limit=rpm_limit, tokens_per_day_limit=tokens_per_day_limit,
                                              scopes=scopes, counting_today=counting_today)
            self._record(events.KEY_CREATED, by, record.id, {
                "name": record.name, "role": record.role, "user_id": record.user_id,
                "expires_at": record.expires_at, "rpm_limit": rpm_limit,
                "tokens_per_day_limit": tokens_per_day_limit,
                **({"scopes": list(record.scopes)} if record.scopes is not None else {}),
            })
        return record, secret

    def _insert_key(
        self, tx: GovernanceStore, name: str, *, role: Role | None, expires_at: float | datetime | None,
        user_id: str | None, rpm_limit: int | None, tokens_per_day_limit: int | None,
        scopes: list[str] | tuple[str, ...] | None = None, counting_today: bool = False,
    ) -> tuple[KeyRecord, str]:
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidRequest("A key name must have 1 to 200 printable characters.", param="name")
        if role is not None and role not in _ROLES:
            raise InvalidRequest(f"Unknown role {role!r}; use 'admin' or 'member'.", param="role")
        _check_limit(rpm_limit, "rpm_limit")
        _check_limit(tokens_per_day_limit, "tokens_per_day_limit")
        key_scopes = _check_scopes(scopes)
        exp = expires_at.timestamp() if isinstance(expires_at, datetime) else expires_at
        now = self._clock()
        if exp is not None and exp <= now:
            raise InvalidRequest("'expires_at' is in the past.", param="expires_at")
        if key_scopes is not None:
            # A scoped key is made for places like a public web page (the support widget): with an admin's role it
            # would answer anonymous visitors with an admin's clearance (restricted documents, every session).
            if role == "admin":
                raise InvalidRequest("A key limited to scopes cannot be an admin key.", param="role")
            role = "member"
        if user_id is not None:
            user = tx.get_user(user_id)
            if user is None:
                raise NotFound(f"No user with id '{user_id}'.", param="user_id")
            if user.disabled:
                raise InvalidRequest("This user is disabled; enable them before creating keys.", param="user_id")
            if role is None:
                role = user.role
            elif _RANK[role] > _RANK[user.role]:
                raise InvalidRequest("A key cannot have a higher role than its user.", param="role")
            n_active = tx.count_keys(active_at=now, user_id=user_id)
            if n_active >= self._max_keys_per_user:
                raise Conflict(f"This user already has {n_active} active keys (the most allowed); revoke one first.")
            day_start = now // DAY_S * DAY_S
            n_today = tx.count_keys(active_since=day_start, user_id=user_id) if counting_today else 0
            if n_today >= self._max_keys_per_user:
                raise Conflict(f"This user has had {n_today} keys today, the most allowed: a revoked key counts until "
                               "midnight UTC, as its token budget does. Ask an administrator for a key now.")
        role = role or "member"
        suffix = secrets.token_hex(_SUFFIX_BYTES)
        secret = f"{SECRET_PREFIX}{suffix}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
        record = KeyRecord(
            id=f"key_{suffix}", name=name, prefix=f"{SECRET_PREFIX}{suffix}", role=role, user_id=user_id,
            created_at=now, expires_at=exp, revoked_at=None, last_used_at=None,
            rpm_limit=rpm_limit, tokens_per_day_limit=tokens_per_day_limit, scopes=key_scopes,
        )
        tx.insert_key(record, hash_secret(secret))
        return record, secret

    def authenticate(self, secret: object) -> Actor:
        """The actor of a valid, unrevoked, unexpired key of an enabled user (or of no user).

        Anything else raises AuthenticationFailed. The user's role and groups are read now, not cached.
        """
        fail = AuthenticationFailed("Invalid API key. Pass a valid key as 'Authorization: Bearer <key>'.")
        if not isinstance(secret, str) or len(secret) > MAX_SECRET_CHARS:
            raise fail
        m = _SECRET_RE.fullmatch(secret)
        if m is None:
            raise fail
        stored_key = self._store.stored_key(f"key_{m.group(1)}")
        # Hash even when the id is unknown so both failures take the same time.
        presented = hash_secret(secret)
        stored = stored_key.secret_hash if stored_key is not None else "0" * 64
        if not hmac.compare_digest(presented, stored) or stored_key is None:
            raise fail
        record, user = stored_key.key, stored_key.user
        now = self._clock()
        if record.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        role = record.role
        groups: frozenset[str] = frozenset()
        if record.user_id is not None:
            if user is None:  # deleted users have their keys revoked; this is belt and braces
                raise AuthenticationFailed("The user of this API key no longer exists.", code="revoked_api_key")
            if user.disabled:
                raise AuthenticationFailed("The user of this API key is disabled.", code="user_disabled")
            role = narrower(record.role, user.role)
            groups = frozenset(g.name for g in self._store.groups_of(record.user_id))
        if record.last_used_at is None or now - record.last_used_at >= _LAST_USED_RESOLUTION_S:
            # Bookkeeping: a full, read-only or lost store fails the requests that must write, not this check.
            with contextlib.suppress(StorageFull, Unavailable):
                self._store.touch_key(record.id, now)
        scopes = None if record.scopes is None else frozenset(record.scopes)
        if scopes is not None:
            # A scoped key is a member key whatever its row says: releases before cbdadec let an admin make one
            # (a widget key on a public page answering visitors with an admin's clearance), and such rows remain.
            role = "member"
        actor = Actor(key_id=record.id, name=record.name, role=role, user_id=record.user_id, groups=groups,
                      scopes=scopes)
        with self._recent_lock:
            self._recent[presented] = (actor, now)
            self._recent.move_to_end(presented)
            while len(self._recent) > _RECENT_KEYS:
                self._recent.popitem(last=False)
        return actor

    def recently_verified(self, secret: str) -> Actor | None:
        """The actor ``authenticate`` gave for ``secret`` in this process within ``OUTAGE_GRACE_S``, or None: only
        for what may be read while the store cannot be asked (``api.auth``: /metrics). A key revoked here since
        is forgotten at once; one revoked on another node meanwhile is trusted for at most the grace period."""
        if not isinstance(secret, str) or _SECRET_RE.fullmatch(secret) is None:
            return None
        with self._recent_lock:
            found = self._recent.get(hash_secret(secret))
        if found is None or self._clock() - found[1] > OUTAGE_GRACE_S:
            return None
        return found[0]

    def _forget_verified(self, key_id: str) -> None:
        with self._recent_lock:
            for h in [h for h, (actor, _) in self._recent.items() if actor.key_id == key_id]:
                del self._recent[h]

    def get(self, key_id: str) -> KeyRecord:
        return self._get(self._store, key_id)

    @staticmethod
    def _get(store: GovernanceStore, key_id: str) -> KeyRecord:
        record = store.get_key(key_id)
        if record is None:
            raise NotFound(f"No API key with id '{key_id}'.", param="key_id")
        return record

    def list_keys(self, *, include_revoked: bool = True, user_id: str | None = None) -> list[KeyRecord]:
        """All keys, or those of one user."""
        return self._store.list_keys(include_revoked=include_revoked, user_id=user_id)

    def revoke(self, key_id: str, *, by: Actor | None = None) -> KeyRecord:
        """Revoke a key (idempotent: revoking twice keeps the first time and records one event).

        Unknown id → NotFound."""
        with self._store.transaction() as tx:
            self._get(tx, key_id)
            changed = tx.revoke_key(key_id, self._clock())
            record = self._get(tx, key_id)
            if changed:
                self._record(events.KEY_REVOKED, by, key_id, {"name": record.name, "user_id": record.user_id})
        self._forget_verified(key_id)
        return record

    def set_limits(self, key_id: str, *, rpm_limit: int | None, tokens_per_day_limit: int | None,
                   by: Actor | None = None) -> KeyRecord:
        """Set a key's quota overrides (None: the governance default, 0: unlimited)."""
        _check_limit(rpm_limit, "rpm_limit")
        _check_limit(tokens_per_day_limit, "tokens_per_day_limit")
        with self._store.transaction() as tx:
            before = self._get(tx, key_id)
            if (before.rpm_limit, before.tokens_per_day_limit) == (rpm_limit, tokens_per_day_limit):
                return before
            tx.set_key_limits(key_id, rpm_limit, tokens_per_day_limit)
            self._record(events.KEY_UPDATED, by, key_id, {
                "rpm_limit": {"before": before.rpm_limit, "after": rpm_limit},
                "tokens_per_day_limit": {"before": before.tokens_per_day_limit, "after": tokens_per_day_limit},
            })
            return self._get(tx, key_id)

    def count(self, *, active_only: bool = False) -> int:
        return self._store.count_keys(active_at=self._clock() if active_only else None)

    def ensure_admin_key(self, name: str = "initial admin") -> str | None:
        """On first start (no key at all) create an admin key and return its secret; else None."""
        with self._store.transaction() as tx:
            # Inside the write transaction so two servers starting together create only one key.
            if tx.count_keys():
                return None
            record, secret = self._insert_key(tx, name, role="admin", expires_at=None, user_id=None,
                                              rpm_limit=None, tokens_per_day_limit=None)
            self._record(events.KEY_CREATED, None, record.id,
                         {"name": record.name, "role": record.role, "user_id": None, "initial": True})
            return secret

    def _record(self, action: str, by: Actor | None, resource: str, details: dict[str, object]) -> None:
        # Inside the transaction, before the commit: a sink that raises undoes the action.
        self._audit.record(security_event(action, by, resource, dict(details), at=self._clock()))


__all__ = ["SECRET_PREFIX", "KeyRecord", "KeyStore", "hash_secret", "narrower"]
