"""``SqliteGovernanceStore``: the ``GovernanceStore`` of the embedded install, tables of ``inhouse.db``.

One ``Database`` (one connection and its lock) holds every statement; ``transaction()`` is SQLite's write
transaction, so governance changes are serialised with every other writer of the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inhouse.errors import Conflict
from inhouse.governance.store import GroupRecord, KeyRecord, StoredKey, UserRecord
from inhouse.store.rows import (
    STORED_KEY_SQL,
    group_from_row,
    key_from_row,
    scopes_text,
    stored_key_from_row,
    user_from_row,
)
from inhouse.store.sqlite.database import Database


class SqliteGovernanceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def transaction(self) -> Iterator[SqliteGovernanceStore]:
        # The thread holding the transaction holds the connection's lock: this same store joins it.
        with self._db.transaction():
            yield self

    # -- API keys --------------------------------------------------------------------------------------------

    def insert_key(self, key: KeyRecord, secret_hash: str) -> None:
        self._db.execute(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, role, user_id, created_at, expires_at, revoked_at,"
            " last_used_at, rpm_limit, tokens_per_day_limit, scopes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.prefix, secret_hash, key.role, key.user_id, key.created_at, key.expires_at,
             key.revoked_at, key.last_used_at, key.rpm_limit, key.tokens_per_day_limit, scopes_text(key)))

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = self._db.query_one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else key_from_row(row)

    def stored_key(self, key_id: str) -> StoredKey | None:
        row = self._db.query_one(STORED_KEY_SQL.format(p="?"), (key_id,))
        return None if row is None else stored_key_from_row(row)

    def list_keys(self, *, include_revoked: bool = True, user_id: str | None = None) -> list[KeyRecord]:
        where, params = [], []
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = "SELECT * FROM api_keys" + (" WHERE " + " AND ".join(where) if where else "")
        return [key_from_row(r) for r in self._db.query(sql + " ORDER BY created_at, id", params)]

    def count_keys(self, *, active_at: float | None = None, user_id: str | None = None) -> int:
        where: list[str] = []
        params: list[Any] = []
        if active_at is not None:
            where.append("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)")
            params.append(active_at)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = "SELECT count(*) FROM api_keys" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self._db.scalar(sql, params))

    def revoke_key(self, key_id: str, at: float) -> bool:
        return self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                (at, key_id)) > 0

    def revoke_user_keys(self, user_id: str, at: float) -> list[str]:
        with self._db.transaction() as conn:
            ids = [r["id"] for r in conn.execute(
                "SELECT id FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY id", (user_id,))]
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (at, user_id))
        return ids

    def set_key_limits(self, key_id: str, rpm_limit: int | None, tokens_per_day_limit: int | None) -> None:
        self._db.execute("UPDATE api_keys SET rpm_limit = ?, tokens_per_day_limit = ? WHERE id = ?",
                         (rpm_limit, tokens_per_day_limit, key_id))

    def touch_key(self, key_id: str, at: float) -> None:
        self._db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    # -- users -----------------------------------------------------------------------------------------------

    def insert_user(self, user: UserRecord) -> None:
        try:
            self._db.execute(
                "INSERT INTO users (id, name, display_name, role, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (user.id, user.name, user.display_name, user.role, int(user.disabled), user.created_at))
        except sqlite3.IntegrityError:
            raise Conflict(f"A user named '{user.name}' already exists.", param="name") from None

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._db.query_one("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else user_from_row(row)

    def find_user(self, ref: str) -> UserRecord | None:
        row = self._db.query_one("SELECT * FROM users WHERE id = ? OR name = ?", (ref, ref))
        return None if row is None else user_from_row(row)

    def list_users(self) -> list[UserRecord]:
        return [user_from_row(r) for r in self._db.query("SELECT * FROM users ORDER BY name")]

    def update_user(self, user: UserRecord) -> None:
        self._db.execute("UPDATE users SET role = ?, disabled = ?, display_name = ? WHERE id = ?",
                         (user.role, int(user.disabled), user.display_name, user.id))

    def delete_user(self, user_id: str) -> None:
        self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))  # memberships cascade

    # -- groups and memberships -----------------------------------------------------------------------------

    def insert_group(self, group: GroupRecord) -> None:
        try:
            self._db.execute("INSERT INTO user_groups (id, name, created_at) VALUES (?, ?, ?)",
                             (group.id, group.name, group.created_at))
        except sqlite3.IntegrityError:
            raise Conflict(f"A group named '{group.name}' already exists.", param="name") from None

    def get_group(self, group_id: str) -> GroupRecord | None:
        row = self._db.query_one("SELECT * FROM user_groups WHERE id = ?", (group_id,))
        return None if row is None else group_from_row(row)

    def find_group(self, ref: str) -> GroupRecord | None:
        row = self._db.query_one("SELECT * FROM user_groups WHERE id = ? OR name = ?", (ref, ref))
        return None if row is None else group_from_row(row)

    def list_groups(self) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._db.query("SELECT * FROM user_groups ORDER BY name")]

    def delete_group(self, group_id: str) -> None:
        self._db.execute("DELETE FROM user_groups WHERE id = ?", (group_id,))  # memberships cascade

    def add_member(self, group_id: str, user_id: str, at: float) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO group_members (group_id, user_id, added_at) VALUES (?, ?, ?)",
                                (group_id, user_id, at)) > 0

    def remove_member(self, group_id: str, user_id: str) -> bool:
        return self._db.execute("DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                                (group_id, user_id)) > 0

    def members(self, group_id: str) -> list[UserRecord]:
        return [user_from_row(r) for r in self._db.query(
            "SELECT u.* FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.name",
            (group_id,))]

    def groups_of(self, user_id: str) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._db.query(
            "SELECT g.* FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = ?"
            " ORDER BY g.name", (user_id,))]

    # -- token usage -----------------------------------------------------------------------------------------

    def add_usage(self, key_id: str, day: int, tokens: int) -> None:
        self._db.execute(
            "INSERT INTO key_usage (key_id, day, tokens, requests) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (key_id, day) DO UPDATE SET tokens = tokens + excluded.tokens, requests = requests + 1",
            (key_id, day, tokens))

    def usage(self, key_id: str, day: int) -> tuple[int, int]:
        row = self._db.query_one("SELECT tokens, requests FROM key_usage WHERE key_id = ? AND day = ?", (key_id, day))
        return (0, 0) if row is None else (int(row["tokens"]), int(row["requests"]))
