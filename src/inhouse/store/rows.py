"""Rows of the governance tables as records, for every SQL store (SQLite and PostgreSQL share the columns)."""

from __future__ import annotations

import json
from typing import Any, cast

from inhouse.governance.store import GroupRecord, KeyRecord, StoredKey, UserRecord
from inhouse.types import Role


def key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row["id"], name=row["name"], prefix=row["prefix"], role=cast(Role, row["role"]), user_id=row["user_id"],
        created_at=row["created_at"], expires_at=row["expires_at"], revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"], rpm_limit=row["rpm_limit"],
        tokens_per_day_limit=row["tokens_per_day_limit"],
        scopes=None if row["scopes"] is None else tuple(json.loads(row["scopes"])),
    )


def user_from_row(row: Any) -> UserRecord:
    return UserRecord(id=row["id"], name=row["name"], display_name=row["display_name"],
                      role=cast(Role, row["role"]), disabled=bool(row["disabled"]), created_at=row["created_at"])


def group_from_row(row: Any) -> GroupRecord:
    return GroupRecord(id=row["id"], name=row["name"], created_at=row["created_at"])


def scopes_text(key: KeyRecord) -> str | None:
    return None if key.scopes is None else json.dumps(list(key.scopes))


# A key with its user's columns prefixed ``u_`` (``LEFT JOIN users``): what ``stored_key`` selects (``?``: the key id).
STORED_KEY_SQL = ("SELECT k.*, u.id AS u_id, u.name AS u_name, u.display_name AS u_display_name, u.role AS u_role,"
                  " u.disabled AS u_disabled, u.created_at AS u_created_at"
                  " FROM api_keys k LEFT JOIN users u ON u.id = k.user_id WHERE k.id = ?")


def stored_key_from_row(row: Any) -> StoredKey:
    user = None if row["u_id"] is None else UserRecord(
        id=row["u_id"], name=row["u_name"], display_name=row["u_display_name"], role=cast(Role, row["u_role"]),
        disabled=bool(row["u_disabled"]), created_at=row["u_created_at"])
    return StoredKey(key_from_row(row), row["secret_hash"], user)
