"""Rows of the governance tables as records, for every SQL store (SQLite and PostgreSQL share the columns)."""

from __future__ import annotations

import json
from typing import Any, cast

from inhouse.governance.store import GroupRecord, KeyRecord, UserRecord
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
