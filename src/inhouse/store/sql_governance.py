"""``SqlGovernanceStore``: the ``GovernanceStore`` in SQL, one implementation for SQLite and PostgreSQL.

The two databases hold the same tables and columns. What differs is small and named here as hooks. The parameter
placeholder is ``?`` or ``%s``. Names are unique regardless of case: SQLite declares ``COLLATE NOCASE``, PostgreSQL
keeps a unique index on ``lower(name)`` and sorts it in byte order. A write transaction is SQLite's write lock or a
PostgreSQL transaction holding the governance advisory lock. And the database driver raises its own error on a
unique violation. SQL is written with ``?`` and ``{name_eq}``/``{name_order}`` and adapted once per dialect.

Outside a transaction every call is one statement through the database helper; the store that ``transaction()``
yields runs every statement on that transaction's connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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

Params = Any


class SqlGovernanceStore:
    placeholder = "?"
    name_eq = "name = ?"  # a name in any ASCII case
    name_order = "name"

    def __init__(self, db: Any, *, conn: Any = None) -> None:
        self._db = db  # query / execute, and the dialect's transaction
        self._conn = conn  # set: bound to this transaction's connection

    # -- what each dialect supplies -------------------------------------------------------------------------------

    def begin(self) -> AbstractContextManager[Any]:
        """A write transaction serialised with every other governance change; yields its connection."""
        raise NotImplementedError

    def is_unique_violation(self, exc: Exception) -> bool:
        raise NotImplementedError

    def savepoint(self, conn: Any) -> AbstractContextManager[Any]:
        """Around a statement that may violate a constraint inside a transaction (PostgreSQL aborts the whole
        transaction otherwise; SQLite undoes the statement alone)."""
        return nullcontext()

    # -- plumbing -------------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[SqlGovernanceStore]:
        if self._conn is not None:  # already inside one: join it
            yield self
            return
        with self.begin() as conn:
            yield type(self)(self._db, conn=conn)

    def _sql(self, sql: str) -> str:
        return sql.format(name_eq=self.name_eq, name_order=self.name_order).replace("?", self.placeholder)

    def _all(self, sql: str, params: Params = ()) -> list[Any]:
        if self._conn is not None:
            return list(self._conn.execute(self._sql(sql), params).fetchall())
        return list(self._db.query(self._sql(sql), params))

    def _one(self, sql: str, params: Params = ()) -> Any:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _run(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the rows it changed."""
        if self._conn is not None:
            return int(self._conn.execute(self._sql(sql), params).rowcount)
        return int(self._db.execute(self._sql(sql), params))

    def _insert_unique(self, sql: str, params: Params, conflict: str) -> None:
        try:
            if self._conn is not None:
                with self.savepoint(self._conn):
                    self._conn.execute(self._sql(sql), params)
            else:
                self._db.execute(self._sql(sql), params)
        except Exception as exc:
            if self.is_unique_violation(exc):
                raise Conflict(conflict, param="name") from None
            raise

    # -- API keys -------------------------------------------------------------------------------------------------

    def insert_key(self, key: KeyRecord, secret_hash: str) -> None:
        self._run(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, role, user_id, created_at, expires_at, revoked_at,"
            " last_used_at, rpm_limit, tokens_per_day_limit, scopes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.prefix, secret_hash, key.role, key.user_id, key.created_at, key.expires_at,
             key.revoked_at, key.last_used_at, key.rpm_limit, key.tokens_per_day_limit, scopes_text(key)))

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = self._one("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else key_from_row(row)

    def stored_key(self, key_id: str) -> StoredKey | None:
        row = self._one(STORED_KEY_SQL, (key_id,))
        return None if row is None else stored_key_from_row(row)

    def list_keys(self, *, include_revoked: bool = True, user_id: str | None = None) -> list[KeyRecord]:
        where, params = [], []
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = "SELECT * FROM api_keys" + (" WHERE " + " AND ".join(where) if where else "")
        return [key_from_row(r) for r in self._all(sql + " ORDER BY created_at, id", params)]

    def count_keys(self, *, active_at: float | None = None, user_id: str | None = None,
                   active_since: float | None = None) -> int:
        where: list[str] = []
        params: list[Any] = []
        if active_at is not None:
            where.append("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)")
            params.append(active_at)
        if active_since is not None:
            where.append("(revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)")
            params += [active_since, active_since]
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        row = self._one("SELECT count(*) AS n FROM api_keys" + (" WHERE " + " AND ".join(where) if where else ""),
                        params)
        return int(row["n"])

    def revoke_key(self, key_id: str, at: float) -> bool:
        return self._run("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id)) > 0

    def revoke_user_keys(self, user_id: str, at: float) -> list[str]:
        rows = self._all("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
                         (at, user_id))
        return sorted(r["id"] for r in rows)

    def set_key_limits(self, key_id: str, rpm_limit: int | None, tokens_per_day_limit: int | None) -> None:
        self._run("UPDATE api_keys SET rpm_limit = ?, tokens_per_day_limit = ? WHERE id = ?",
                  (rpm_limit, tokens_per_day_limit, key_id))

    def touch_key(self, key_id: str, at: float) -> None:
        self._run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    # -- users ----------------------------------------------------------------------------------------------------

    def insert_user(self, user: UserRecord) -> None:
        self._insert_unique(
            "INSERT INTO users (id, name, display_name, role, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (user.id, user.name, user.display_name, user.role, user.disabled, user.created_at),
            f"A user named '{user.name}' already exists.")

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else user_from_row(row)

    def find_user(self, ref: str) -> UserRecord | None:
        row = self._one("SELECT * FROM users WHERE id = ? OR {name_eq}", (ref, ref))
        return None if row is None else user_from_row(row)

    def list_users(self) -> list[UserRecord]:
        return [user_from_row(r) for r in self._all("SELECT * FROM users ORDER BY {name_order}")]

    def update_user(self, user: UserRecord) -> None:
        self._run("UPDATE users SET role = ?, disabled = ?, display_name = ? WHERE id = ?",
                  (user.role, user.disabled, user.display_name, user.id))

    def delete_user(self, user_id: str) -> None:
        self._run("DELETE FROM users WHERE id = ?", (user_id,))  # memberships cascade

    # -- groups and memberships -----------------------------------------------------------------------------------

    def insert_group(self, group: GroupRecord) -> None:
        self._insert_unique("INSERT INTO user_groups (id, name, created_at) VALUES (?, ?, ?)",
                            (group.id, group.name, group.created_at), f"A group named '{group.name}' already exists.")

    def get_group(self, group_id: str) -> GroupRecord | None:
        row = self._one("SELECT * FROM user_groups WHERE id = ?", (group_id,))
        return None if row is None else group_from_row(row)

    def find_group(self, ref: str) -> GroupRecord | None:
        row = self._one("SELECT * FROM user_groups WHERE id = ? OR {name_eq}", (ref, ref))
        return None if row is None else group_from_row(row)

    def list_groups(self) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._all("SELECT * FROM user_groups ORDER BY {name_order}")]

    def delete_group(self, group_id: str) -> None:
        self._run("DELETE FROM user_groups WHERE id = ?", (group_id,))  # memberships cascade

    def add_member(self, group_id: str, user_id: str, at: float) -> bool:
        return self._run("INSERT INTO group_members (group_id, user_id, added_at) VALUES (?, ?, ?)"
                         " ON CONFLICT DO NOTHING", (group_id, user_id, at)) > 0

    def remove_member(self, group_id: str, user_id: str) -> bool:
        return self._run("DELETE FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)) > 0

    def members(self, group_id: str) -> list[UserRecord]:
        return [user_from_row(r) for r in self._all(
            "SELECT u.* FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ?"
            " ORDER BY {name_order}", (group_id,))]

    def groups_of(self, user_id: str) -> list[GroupRecord]:
        return [group_from_row(r) for r in self._all(
            "SELECT g.* FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = ?"
            " ORDER BY {name_order}", (user_id,))]

    # -- token usage ----------------------------------------------------------------------------------------------

    def add_usage(self, key_id: str, day: int, tokens: int) -> None:
        self._run("INSERT INTO key_usage (key_id, day, tokens, requests) VALUES (?, ?, ?, 1)"
                  " ON CONFLICT (key_id, day) DO UPDATE SET tokens = key_usage.tokens + excluded.tokens,"
                  " requests = key_usage.requests + 1", (key_id, day, tokens))

    def usage(self, key_id: str, day: int) -> tuple[int, int]:
        row = self._one("SELECT tokens, requests FROM key_usage WHERE key_id = ? AND day = ?", (key_id, day))
        return (0, 0) if row is None else (int(row["tokens"]), int(row["requests"]))
