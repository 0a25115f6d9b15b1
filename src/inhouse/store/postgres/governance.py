"""``PostgresGovernanceStore``: the ``GovernanceStore`` shared by several inhouse nodes.

Outside a transaction every call is one statement on a pooled connection. ``transaction()`` takes one connection,
begins, and takes the governance advisory lock, so changes are serialised across nodes as SQLite's write lock
serialises them across processes (the checks the services make inside a change, such as the number of a user's
active keys, stay true until the commit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inhouse.errors import Conflict
from inhouse.governance.store import GroupRecord, KeyRecord, StoredKey, UserRecord
from inhouse.store.postgres.database import Params, PostgresDatabase, lock_id
from inhouse.store.rows import (
    STORED_KEY_SQL,
    group_from_row,
    key_from_row,
    scopes_text,
    stored_key_from_row,
    user_from_row,
)

GOVERNANCE_LOCK = lock_id("governance")


class PostgresGovernanceStore:
    def __init__(self, db: PostgresDatabase, *, conn: Any = None) -> None:
        self._db = db
        self._conn = conn  # set: bound to this transaction's connection

    @contextmanager
    def transaction(self) -> Iterator[PostgresGovernanceStore]:
        if self._conn is not None:  # already inside one: join it
            yield self
            return
        with self._db.transaction(lock=GOVERNANCE_LOCK) as conn:
            yield PostgresGovernanceStore(self._db, conn=conn)

    def _all(self, sql: str, params: Params = None) -> list[dict[str, Any]]:
        if self._conn is not None:
            return list(self._conn.execute(sql, params).fetchall())
        return self._db.query(sql, params)

    def _one(self, sql: str, params: Params = None) -> dict[str, Any] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _run(self, sql: str, params: Params = None) -> int:
        """Run one statement; the rows it changed."""
        if self._conn is not None:
            return int(self._conn.execute(sql, params).rowcount)
        return self._db.execute(sql, params)

    def _insert_unique(self, sql: str, params: Params, conflict: str) -> None:
        import psycopg

        try:
            if self._conn is not None:
                with self._conn.transaction():  # a savepoint: the outer transaction survives the violation
                    self._conn.execute(sql, params)
            else:
                self._run(sql, params)
        except psycopg.errors.UniqueViolation:
            raise Conflict(conflict, param="name") from None

    # -- API keys --------------------------------------------------------------------------------------------

    def insert_key(self, key: KeyRecord, secret_hash: str) -> None:
        self._run(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, role, user_id, created_at, expires_at, revoked_at,"
            " last_used_at, rpm_limit, tokens_per_day_limit, scopes)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (key.id, key.name, key.prefix, secret_hash, key.role, key.user_id, key.created_at, key.expires_at,
             key.revoked_at, key.last_used_at, key.rpm_limit, key.tokens_per_day_limit, scopes_text(key)))

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = self._one("SELECT * FROM api_keys WHERE id = %s", (key_id,))
        return None if row is None else key_from_row(row)

    def stored_key(self, key_id: str) -> StoredKey | None:
        row = self._one(STORED_KEY_SQL.format(p="%s"), (key_id,))
        return None if row is None else stored_key_from_row(row)

    def list_keys(self, *, include_revoked: bool = True, user_id: str | None = None) -> list[KeyRecord]:
        where, params = [], []
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        sql = "SELECT * FROM api_keys" + (" WHERE " + " AND ".join(where) if where else "")
        return [key_from_row(r) for r in self._all(sql + " ORDER BY created_at, id", params)]

    def count_keys(self, *, active_at: float | None = None, user_id: str | None = None) -> int:
        where: list[str] = []
        params: list[Any] = []
        if active_at is not None:
            where.append("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > %s)")
            params.append(active_at)
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        sql = "SELECT count(*) AS n FROM api_keys" + (" WHERE " + " AND ".join(where) if where else "")
        row = self._one(sql, params)
        return int(row["n"]) if row else 0

    def revoke_key(self, key_id: str, at: float) -> bool:
        return self._run("UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                             (at, key_id)) > 0

    def revoke_user_keys(self, user_id: str, at: float) -> list[str]:
        rows = self._all("UPDATE api_keys SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL RETURNING id",
                         (at, user_id))
        return sorted(r["id"] for r in rows)

    def set_key_limits(self, key_id: str, rpm_limit: int | None, tokens_per_day_limit: int | None) -> None:
        self._run("UPDATE api_keys SET rpm_limit = %s, tokens_per_day_limit = %s WHERE id = %s",
                  (rpm_limit, tokens_per_day_limit, key_id))

    def touch_key(self, key_id: str, at: float) -> None:
        self._run("UPDATE api_keys SET last_used_at = %s WHERE id = %s", (at, key_id))

    # -- users -----------------------------------------------------------------------------------------------

    def insert_user(self, user: UserRecord) -> None:
        self._insert_unique(
            "INSERT INTO users (id, name, display_name, role, disabled, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (user.id, user.name, user.display_name, user.role, user.disabled, user.created_at),
            f"A user named '{user.name}' already exists.")

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._one("SELECT * FROM users WHERE id = %s", (user_id,))
        return None if row is None else user_from_row(row)

    def find_user(self, ref: str) -> UserRecord | None:
        row = self._one("SELECT * FROM users WHERE id = %s OR lower(name) = lower(%s)", (ref, ref))
        return None if row is None else user_from_row(row)

    def list_users(self) -> list[UserRecord]:
        return [user_from_row(r) for r in self._all("SELECT * FROM users ORDER BY lower(name) COLLATE \"C\"")]

    def update_user(self, user: UserRecord) -> None:
        self._run("UPDATE users SET role = %s, disabled = %s, display_name = %s WHERE id = %s",
                  (user.role, user.disabled, user.display_name, user.id))

    def delete_user(self, user_id: str) -> None:
        self._run("DELETE FROM users WHERE id = %s", (user_id,))  # memberships cascade

    # -- groups and memberships -----------------------------------------------------------------------------

    def insert_group(self, group: GroupRecord) -> None:
        self._insert_unique("INSERT INTO user_groups (id, name, created_at) VALUES (%s, %s, %s)",
                            (group.id, group.name, group.created_at), f"A group named '{group.name}' already exists.")

    def get_group(self, group_id: str) -> GroupRecord | None:
        row = self._one("SELECT * FROM user_groups WHERE id = %s", (group_id,))
        return None if row is None else group_from_row(row)

    def find_group(self, ref: str) -> GroupRecord | None:
        row = self._one("SELECT * FROM user_groups WHERE id = %s OR lower(name) = lower(%s)", (ref, ref))
        return None if row is None else group_from_row(row)

    def list_groups(self) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._all("SELECT * FROM user_groups ORDER BY lower(name) COLLATE \"C\"")]

    def delete_group(self, group_id: str) -> None:
        self._run("DELETE FROM user_groups WHERE id = %s", (group_id,))  # memberships cascade

    def add_member(self, group_id: str, user_id: str, at: float) -> bool:
        return self._run("INSERT INTO group_members (group_id, user_id, added_at) VALUES (%s, %s, %s)"
                             " ON CONFLICT DO NOTHING", (group_id, user_id, at)) > 0

    def remove_member(self, group_id: str, user_id: str) -> bool:
        return self._run("DELETE FROM group_members WHERE group_id = %s AND user_id = %s",
                             (group_id, user_id)) > 0

    def members(self, group_id: str) -> list[UserRecord]:
        return [user_from_row(r) for r in self._all(
            "SELECT u.* FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = %s"
            " ORDER BY lower(u.name) COLLATE \"C\"", (group_id,))]

    def groups_of(self, user_id: str) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._all(
            "SELECT g.* FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = %s"
            " ORDER BY lower(g.name) COLLATE \"C\"", (user_id,))]

    # -- token usage -----------------------------------------------------------------------------------------

    def add_usage(self, key_id: str, day: int, tokens: int) -> None:
        self._run("INSERT INTO key_usage (key_id, day, tokens, requests) VALUES (%s, %s, %s, 1)"
                  " ON CONFLICT (key_id, day) DO UPDATE SET tokens = key_usage.tokens + excluded.tokens,"
                  " requests = key_usage.requests + 1", (key_id, day, tokens))

    def usage(self, key_id: str, day: int) -> tuple[int, int]:
        row = self._one("SELECT tokens, requests FROM key_usage WHERE key_id = %s AND day = %s", (key_id, day))
        return (0, 0) if row is None else (int(row["tokens"]), int(row["requests"]))
