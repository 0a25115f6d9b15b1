"""Users, groups and memberships: the directory that API keys, ACLs and PII redaction (names) read.

Each change is one method, one database transaction and one ``SecurityEvent`` recorded inside that
transaction before the commit: if the audit sink raises, nothing changes. A user's keys are revoked when
the user is deleted; a disabled user's keys stop authenticating on the next request (``KeyStore``
reads the user on every request).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.governance import events
from inhouse.governance.events import AuditSink, security_event
from inhouse.types import Actor, Role

if TYPE_CHECKING:
    import sqlite3

    from inhouse.store.db import Database

ROLES: tuple[Role, ...] = ("admin", "member")
# Login-like names: safe in URLs, logs and CLI arguments; e-mail addresses fit.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_MAX_DISPLAY_CHARS = 200


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


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"A {what} name has 1 to 64 characters: letters, digits and . _ @ + - (starting with a letter or "
            "digit).", param="name",
        )
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; use 'admin' or 'member'.", param="role")
    return cast(Role, role)


def _check_display(display_name: str) -> str:
    display_name = display_name.strip()
    if not display_name or len(display_name) > _MAX_DISPLAY_CHARS or not display_name.isprintable():
        raise InvalidRequest(f"A display name has 1 to {_MAX_DISPLAY_CHARS} printable characters.",
                             param="display_name")
    return display_name


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(id=row["id"], name=row["name"], display_name=row["display_name"],
                      role=cast(Role, row["role"]), disabled=bool(row["disabled"]), created_at=row["created_at"])


def _group(row: sqlite3.Row) -> GroupRecord:
    return GroupRecord(id=row["id"], name=row["name"], created_at=row["created_at"])


class UserDirectory:
    """Create, change and remove users and groups. Thread-safe through ``Database``."""

    def __init__(self, db: Database, *, audit: AuditSink, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    # -- users ---------------------------------------------------------------------------------------

    def create_user(self, name: str, *, display_name: str | None = None, role: str = "member",
                    by: Actor | None = None) -> UserRecord:
        name = check_name(name, "user")
        user = UserRecord(id=f"usr_{secrets.token_hex(8)}", name=name,
                          display_name=_check_display(display_name if display_name is not None else name),
                          role=check_role(role), disabled=False, created_at=self._clock())
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"A user named '{name}' already exists.", param="name")
            conn.execute(
                "INSERT INTO users (id, name, display_name, role, disabled, created_at) VALUES (?, ?, ?, ?, 0, ?)",
                (user.id, user.name, user.display_name, user.role, user.created_at),
            )
            self._record(events.USER_CREATED, by, user.id, {"name": name, "role": user.role})
        return user

    def get_user(self, user_id: str) -> UserRecord:
        row = self._db.query_one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"No user with id '{user_id}'.", param="user_id")
        return _user(row)

    def find_user(self, ref: str) -> UserRecord:
        """A user by id (``usr_…``) or by name (case-insensitive), for the CLI."""
        row = self._db.query_one("SELECT * FROM users WHERE id = ? OR name = ?", (ref, ref))
        if row is None:
            raise NotFound(f"No user '{ref}'.", param="user")
        return _user(row)

    def list_users(self) -> list[UserRecord]:
        return [_user(r) for r in self._db.query("SELECT * FROM users ORDER BY name")]

    def update_user(self, user_id: str, *, role: str | None = None, disabled: bool | None = None,
                    display_name: str | None = None, by: Actor | None = None) -> UserRecord:
        """Change role, disabled flag and/or display name. No change → no event."""
        new_role = check_role(role) if role is not None else None
        new_display = _check_display(display_name) if display_name is not None else None
        with self._db.transaction():
            before = self.get_user(user_id)
            if by is not None and by.user_id == user_id and (new_role == "member" or disabled):
                # An admin locking themselves out by accident is a support call; make it deliberate.
                raise Conflict("You may not demote or disable yourself; ask another admin.", param="user_id")
            after = UserRecord(
                id=before.id, name=before.name,
                display_name=new_display if new_display is not None else before.display_name,
                role=new_role if new_role is not None else before.role,
                disabled=disabled if disabled is not None else before.disabled,
                created_at=before.created_at,
            )
            changes = {k: {"before": getattr(before, k), "after": getattr(after, k)}
                       for k in ("role", "disabled", "display_name") if getattr(before, k) != getattr(after, k)}
            if not changes:
                return before
            self._db.execute("UPDATE users SET role = ?, disabled = ?, display_name = ? WHERE id = ?",
                             (after.role, int(after.disabled), after.display_name, user_id))
            self._record(events.USER_UPDATED, by, user_id, {"name": before.name, "changes": changes})
        return after

    def delete_user(self, user_id: str, *, by: Actor | None = None) -> UserRecord:
        """Remove a user and their memberships; revoke their keys (kept, revoked, for the record)."""
        with self._db.transaction() as conn:
            user = self.get_user(user_id)
            if by is not None and by.user_id == user_id:
                raise Conflict("You may not delete yourself; ask another admin.", param="user_id")
            revoked = [r["id"] for r in conn.execute(
                "SELECT id FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY id", (user_id,))]
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                         (self._clock(), user_id))
            groups = [r["name"] for r in conn.execute(
                "SELECT g.name FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = ?"
                " ORDER BY g.name", (user_id,))]
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))  # memberships cascade
            self._record(events.USER_DELETED, by, user_id,
                         {"name": user.name, "revoked_keys": revoked, "groups": groups})
        return user

    # -- groups --------------------------------------------------------------------------------------

    def create_group(self, name: str, *, by: Actor | None = None) -> GroupRecord:
        name = check_name(name, "group")
        group = GroupRecord(id=f"grp_{secrets.token_hex(8)}", name=name, created_at=self._clock())
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM user_groups WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"A group named '{name}' already exists.", param="name")
            conn.execute("INSERT INTO user_groups (id, name, created_at) VALUES (?, ?, ?)",
                         (group.id, group.name, group.created_at))
            self._record(events.GROUP_CREATED, by, group.id, {"name": name})
        return group

    def get_group(self, group_id: str) -> GroupRecord:
        row = self._db.query_one("SELECT * FROM user_groups WHERE id = ?", (group_id,))
        if row is None:
            raise NotFound(f"No group with id '{group_id}'.", param="group_id")
        return _group(row)

    def find_group(self, ref: str) -> GroupRecord:
        row = self._db.query_one("SELECT * FROM user_groups WHERE id = ? OR name = ?", (ref, ref))
        if row is None:
            raise NotFound(f"No group '{ref}'.", param="group")
        return _group(row)

    def list_groups(self) -> list[GroupRecord]:
        return [_group(r) for r in self._db.query("SELECT * FROM user_groups ORDER BY name")]

    def delete_group(self, group_id: str, *, by: Actor | None = None) -> GroupRecord:
        with self._db.transaction() as conn:
            group = self.get_group(group_id)
            members = [r["user_id"] for r in conn.execute(
                "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY user_id", (group_id,))]
            conn.execute("DELETE FROM user_groups WHERE id = ?", (group_id,))
            self._record(events.GROUP_DELETED, by, group_id, {"name": group.name, "members": members})
        return group

    def add_member(self, group_id: str, user_id: str, *, by: Actor | None = None) -> bool:
        """Add ``user_id`` to the group; False (and no event) when already a member."""
        with self._db.transaction() as conn:
            group, user = self.get_group(group_id), self.get_user(user_id)
            if conn.execute("SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
                            (group_id, user_id)).fetchone():
                return False
            conn.execute("INSERT INTO group_members (group_id, user_id, added_at) VALUES (?, ?, ?)",
                         (group_id, user_id, self._clock()))
            self._record(events.MEMBERSHIP_ADDED, by, group_id,
                         {"group": group.name, "user_id": user_id, "user": user.name})
        return True

    def remove_member(self, group_id: str, user_id: str, *, by: Actor | None = None) -> None:
        """Remove ``user_id`` from the group; NotFound when they are not a member."""
        with self._db.transaction() as conn:
            group, user = self.get_group(group_id), self.get_user(user_id)
            gone = conn.execute("DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                                (group_id, user_id)).rowcount
            if not gone:
                raise NotFound(f"User '{user.name}' is not a member of '{group.name}'.", param="user_id")
            self._record(events.MEMBERSHIP_REMOVED, by, group_id,
                         {"group": group.name, "user_id": user_id, "user": user.name})

    def members(self, group_id: str) -> list[UserRecord]:
        self.get_group(group_id)
        return [_user(r) for r in self._db.query(
            "SELECT u.* FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.name",
            (group_id,))]

    def groups_of(self, user_id: str) -> list[GroupRecord]:
        return [_group(r) for r in self._db.query(
            "SELECT g.* FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = ?"
            " ORDER BY g.name", (user_id,))]

    def _record(self, action: str, by: Actor | None, resource: str, details: dict[str, Any]) -> None:
        # Called inside the transaction, before the commit: a sink that raises undoes the action.
        self._audit.record(security_event(action, by, resource, details, at=self._clock()))
