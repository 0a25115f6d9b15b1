"""``GovernanceStore``: where users, groups, memberships, API keys and token usage are kept, and their records.

The services (``KeyStore``, ``UserDirectory``, ``QuotaService``) hold the rules: validation, who may do what, the
security event of each change. A store only keeps rows. A change is made inside ``transaction()``: the store it
yields sees and writes one transaction, serialised with every other governance change (SQLite's write lock, an
advisory lock in PostgreSQL), and rolled back when the block raises, for instance because the audit record of
the change could not be written. Calls outside a transaction stand alone.

Names of users and groups are unique regardless of ASCII case, and ``find_*`` matches them that way. Lists are
ordered as documented on each method, so every implementation answers alike (``inhouse.testing.store_contract``
checks it).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from inhouse.types import Role


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
    # Quota overrides: None takes the governance default, 0 means unlimited.
    rpm_limit: int | None = None
    tokens_per_day_limit: int | None = None
    scopes: tuple[str, ...] | None = None  # the only actions this key may perform (None: any its role allows)

    def to_dict(self) -> dict[str, object]:
        """The public view of a key (never its hash)."""
        return {
            "id": self.id, "object": "api_key", "name": self.name, "prefix": self.prefix, "role": self.role,
            "user_id": self.user_id, "created_at": self.created_at, "expires_at": self.expires_at,
            "revoked_at": self.revoked_at, "last_used_at": self.last_used_at,
            "rpm_limit": self.rpm_limit, "tokens_per_day_limit": self.tokens_per_day_limit,
            "scopes": None if self.scopes is None else list(self.scopes),
        }

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class UserRecord:
    id: str
    name: str
    display_name: str
    role: Role
    disabled: bool
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupRecord:
    id: str
    name: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredKey:
    """What authentication needs in one read: the key, its hash, and its user (None: no user, or deleted)."""

    key: KeyRecord
    secret_hash: str
    user: UserRecord | None


class GovernanceStore(Protocol):
    def transaction(self) -> AbstractContextManager[GovernanceStore]:
        """A store bound to one write transaction, serialised with every other governance change."""
        ...

    # -- API keys --------------------------------------------------------------------------------------------
    def insert_key(self, key: KeyRecord, secret_hash: str) -> None: ...
    def get_key(self, key_id: str) -> KeyRecord | None: ...
    def stored_key(self, key_id: str) -> StoredKey | None: ...
    def list_keys(self, *, include_revoked: bool = True, user_id: str | None = None) -> list[KeyRecord]:
        """Ordered by creation time, then id."""
        ...
    def count_keys(self, *, active_at: float | None = None, user_id: str | None = None,
                   active_since: float | None = None) -> int:
        """All keys, or (``active_at``) those neither revoked nor expired at that time, or (``active_since``) those
        usable at some time since then (revoked or expired later, or not at all); of one user or of all."""
        ...
    def revoke_key(self, key_id: str, at: float) -> bool:
        """Set ``revoked_at`` unless already set; True when this call revoked it."""
        ...
    def revoke_user_keys(self, user_id: str, at: float) -> list[str]:
        """Revoke the user's unrevoked keys; their ids, sorted."""
        ...
    def set_key_limits(self, key_id: str, rpm_limit: int | None, tokens_per_day_limit: int | None) -> None: ...
    def touch_key(self, key_id: str, at: float) -> None:
        """Record ``last_used_at``."""
        ...

    # -- users -----------------------------------------------------------------------------------------------
    def insert_user(self, user: UserRecord) -> None:
        """``Conflict`` when the name (any case) is taken."""
        ...
    def get_user(self, user_id: str) -> UserRecord | None: ...
    def find_user(self, ref: str) -> UserRecord | None:
        """By id, or by name in any ASCII case."""
        ...
    def list_users(self) -> list[UserRecord]:
        """Ordered by name, case-insensitively."""
        ...
    def update_user(self, user: UserRecord) -> None:
        """Write role, disabled flag and display name of ``user.id``."""
        ...
    def delete_user(self, user_id: str) -> None:
        """The user and their memberships (their keys stay: revoke them first)."""
        ...

    # -- groups and memberships -----------------------------------------------------------------------------
    def insert_group(self, group: GroupRecord) -> None:
        """``Conflict`` when the name (any case) is taken."""
        ...
    def get_group(self, group_id: str) -> GroupRecord | None: ...
    def find_group(self, ref: str) -> GroupRecord | None: ...
    def list_groups(self) -> list[GroupRecord]:
        """Ordered by name, case-insensitively."""
        ...
    def delete_group(self, group_id: str) -> None:
        """The group and its memberships."""
        ...
    def add_member(self, group_id: str, user_id: str, at: float) -> bool:
        """False when already a member."""
        ...
    def remove_member(self, group_id: str, user_id: str) -> bool:
        """False when not a member."""
        ...
    def members(self, group_id: str) -> list[UserRecord]:
        """Ordered by name, case-insensitively."""
        ...
    def groups_of(self, user_id: str) -> list[GroupRecord]:
        """Ordered by name, case-insensitively."""
        ...

    # -- token usage per key and UTC day (days since the epoch) ---------------------------------------------
    def add_usage(self, key_id: str, day: int, tokens: int) -> None:
        """Add ``tokens`` and one request to the key's count for ``day``."""
        ...
    def usage(self, key_id: str, day: int) -> tuple[int, int]:
        """(tokens, requests) of the key on ``day``; (0, 0) when none."""
        ...
