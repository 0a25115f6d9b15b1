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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, cast

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.governance import events
from inhouse.governance.events import AuditSink, security_event
from inhouse.governance.store import GovernanceStore, GroupRecord, UserRecord
from inhouse.types import Actor, Role

ROLES: tuple[Role, ...] = ("admin", "member")
# Login-like names: safe in URLs, logs and CLI arguments; e-mail addresses fit.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_MAX_DISPLAY_CHARS = 200


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


class GroupGrants(Protocol):
    """What else names groups (the knowledge base's access lists, by name): a deleted group's name is taken off
    them, so that a group created later under the same name does not inherit what was shared with this one."""

    def forget_group(self, name: str) -> Mapping[str, Sequence[str]]:
        """Take ``name`` off every access list; what named it (e.g. ``{"collections": [...], "documents": [...]}``)."""
        ...


class UserDirectory:
    """Create, change and remove users and groups, over a ``GovernanceStore``. Thread-safe.

    ``grants``: what names groups on access lists, told when a group is deleted (the composition root adds the
    knowledge base)."""

    def __init__(self, store: GovernanceStore, *, audit: AuditSink, clock: Callable[[], float] = time.time,
                 grants: Sequence[GroupGrants] = ()) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.grants: list[GroupGrants] = list(grants)

    # -- users ---------------------------------------------------------------------------------------

    def create_user(self, name: str, *, display_name: str | None = None, role: str = "member",
                    by: Actor | None = None) -> UserRecord:
        name = check_name(name, "user")
        user = UserRecord(id=f"usr_{secrets.token_hex(8)}", name=name,
                          display_name=_check_display(display_name if display_name is not None else name),
                          role=check_role(role), disabled=False, created_at=self._clock())
        with self._store.transaction() as tx:
            if tx.find_user(name) is not None:
                raise Conflict(f"A user named '{name}' already exists.", param="name")
            tx.insert_user(user)
            self._record(events.USER_CREATED, by, user.id, {"name": name, "role": user.role})
        return user

    def get_user(self, user_id: str) -> UserRecord:
        return _user(self._store, user_id)

    def find_user(self, ref: str) -> UserRecord:
        """A user by id (``usr_…``) or by name (case-insensitive), for the CLI."""
        user = self._store.find_user(ref)
        if user is None:
            raise NotFound(f"No user '{ref}'.", param="user")
        return user

    def list_users(self) -> list[UserRecord]:
        return self._store.list_users()

    def update_user(self, user_id: str, *, role: str | None = None, disabled: bool | None = None,
                    display_name: str | None = None, by: Actor | None = None) -> UserRecord:
        """Change role, disabled flag and/or display name. No change → no event."""
        new_role = check_role(role) if role is not None else None
        new_display = _check_display(display_name) if display_name is not None else None
        with self._store.transaction() as tx:
            before = _user(tx, user_id)
            if by is not None and by.user_id == user_id and (new_role == "member" or disabled):
                # An admin locking themselves out by accident is a support call; make it deliberate.
                raise Conflict("You may not demote or disable yourself; ask another admin.", param="user_id")
            after = replace(
                before, display_name=new_display if new_display is not None else before.display_name,
                role=new_role if new_role is not None else before.role,
                disabled=disabled if disabled is not None else before.disabled,
            )
            changes = {k: {"before": getattr(before, k), "after": getattr(after, k)}
                       for k in ("role", "disabled", "display_name") if getattr(before, k) != getattr(after, k)}
            if not changes:
                return before
            tx.update_user(after)
            self._record(events.USER_UPDATED, by, user_id, {"name": before.name, "changes": changes})
        return after

    def delete_user(self, user_id: str, *, by: Actor | None = None) -> UserRecord:
        """Remove a user and their memberships; revoke their keys (kept, revoked, for the record)."""
        with self._store.transaction() as tx:
            user = _user(tx, user_id)
            if by is not None and by.user_id == user_id:
                raise Conflict("You may not delete yourself; ask another admin.", param="user_id")
            revoked = tx.revoke_user_keys(user_id, self._clock())
            groups = [g.name for g in tx.groups_of(user_id)]
            tx.delete_user(user_id)
            self._record(events.USER_DELETED, by, user_id,
                         {"name": user.name, "revoked_keys": revoked, "groups": groups})
        return user

    # -- groups --------------------------------------------------------------------------------------

    def create_group(self, name: str, *, by: Actor | None = None) -> GroupRecord:
        name = check_name(name, "group")
        group = GroupRecord(id=f"grp_{secrets.token_hex(8)}", name=name, created_at=self._clock())
        with self._store.transaction() as tx:
            if tx.find_group(name) is not None:
                raise Conflict(f"A group named '{name}' already exists.", param="name")
            tx.insert_group(group)
            self._record(events.GROUP_CREATED, by, group.id, {"name": name})
        return group

    def get_group(self, group_id: str) -> GroupRecord:
        return _group(self._store, group_id)

    def find_group(self, ref: str) -> GroupRecord:
        group = self._store.find_group(ref)
        if group is None:
            raise NotFound(f"No group '{ref}'.", param="group")
        return group

    def list_groups(self) -> list[GroupRecord]:
        return self._store.list_groups()

    def check_groups(self, names: Iterable[str], *, param: str = "access") -> list[str]:
        """The groups an access list is to name, as the directory spells them (by name or id); ``InvalidRequest``
        naming those that are no group: such a name admits nobody now, and whoever joins a group created later
        under it."""
        return [g.name for g in self.resolve_groups(names, param=param)]

    def resolve_groups(self, names: Iterable[str], *, param: str = "access") -> list[GroupRecord]:
        """``check_groups``, as the groups themselves (each once): for ``recheck_groups`` once the list is written."""
        found: dict[str, GroupRecord] = {}
        unknown = []
        for name in names:
            group = self._store.find_group(name) if isinstance(name, str) else None
            if group is None:
                unknown.append(str(name))
            else:
                found.setdefault(group.id, group)
        if unknown:
            listed = ", ".join(repr(n[:64]) for n in unknown[:10])
            raise InvalidRequest(f"No group {listed}: an access list names existing groups (create the group first).",
                                 code="unknown_group", param=param)
        return list(found.values())

    def recheck_groups(self, groups: Sequence[GroupRecord], take_off: Callable[[list[str]], object]) -> list[str]:
        """After an access list naming ``groups`` (``resolve_groups``) was written: the names of those deleted since
        they were checked, handed to ``take_off`` to take them off that list. The list and the directory may be in
        two databases, so the check before the write cannot hold the deletion off: the groups are read again here,
        in a transaction serialised with ``delete_group``'s (which takes the name off every list before it
        commits). A deletion after this one finds the list written and takes the name off; one before it is seen
        here. A group created meanwhile under the same name is another group: the name goes all the same."""
        if not groups:
            return []
        with self._store.transaction() as tx:
            gone = [g.name for g in groups if tx.get_group(g.id) is None]
            if gone:
                take_off(gone)  # in the transaction, as in delete_group: a group of that name made next waits
        return gone

    def delete_group(self, group_id: str, *, by: Actor | None = None) -> GroupRecord:
        """Delete the group and take its name off every access list (``grants``), naming them in the record. Those
        lists are changed first: if that fails the group stays, still named on them; if the record then fails, the
        group stays and the lists no longer name it (less access, never more)."""
        with self._store.transaction() as tx:
            group = _group(tx, group_id)
            members = sorted(u.id for u in tx.members(group_id))
            tx.delete_group(group_id)
            named: dict[str, list[str]] = {}
            for grants in self.grants:
                for kind, ids in grants.forget_group(group.name).items():
                    named.setdefault(kind, []).extend(ids)
            self._record(events.GROUP_DELETED, by, group_id, {"name": group.name, "members": members,
                                                              "access_lists": _listed(named)})
        return group

    def add_member(self, group_id: str, user_id: str, *, by: Actor | None = None) -> bool:
        """Add ``user_id`` to the group; False (and no event) when already a member."""
        with self._store.transaction() as tx:
            group, user = _group(tx, group_id), _user(tx, user_id)
            if not tx.add_member(group_id, user_id, self._clock()):
                return False
            self._record(events.MEMBERSHIP_ADDED, by, group_id,
                         {"group": group.name, "user_id": user_id, "user": user.name})
        return True

    def remove_member(self, group_id: str, user_id: str, *, by: Actor | None = None) -> None:
        """Remove ``user_id`` from the group; NotFound when they are not a member."""
        with self._store.transaction() as tx:
            group, user = _group(tx, group_id), _user(tx, user_id)
            if not tx.remove_member(group_id, user_id):
                raise NotFound(f"User '{user.name}' is not a member of '{group.name}'.", param="user_id")
            self._record(events.MEMBERSHIP_REMOVED, by, group_id,
                         {"group": group.name, "user_id": user_id, "user": user.name})

    def members(self, group_id: str) -> list[UserRecord]:
        self.get_group(group_id)
        return self._store.members(group_id)

    def groups_of(self, user_id: str) -> list[GroupRecord]:
        return self._store.groups_of(user_id)

    def _record(self, action: str, by: Actor | None, resource: str, details: dict[str, Any]) -> None:
        # Called inside the transaction, before the commit: a sink that raises undoes the action.
        self._audit.record(security_event(action, by, resource, details, at=self._clock()))


# Ids of the access lists a deleted group was taken off, named in its record; the rest are counted.
_MAX_LISTED = 500


def _listed(named: Mapping[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {kind: ids[:_MAX_LISTED] for kind, ids in named.items()}
    out.update({f"{kind}_not_listed": len(ids) - _MAX_LISTED for kind, ids in named.items() if len(ids) > _MAX_LISTED})
    return out


def _user(store: GovernanceStore, user_id: str) -> UserRecord:
    user = store.get_user(user_id)
    if user is None:
        raise NotFound(f"No user with id '{user_id}'.", param="user_id")
    return user


def _group(store: GovernanceStore, group_id: str) -> GroupRecord:
    group = store.get_group(group_id)
    if group is None:
        raise NotFound(f"No group with id '{group_id}'.", param="group_id")
    return group


__all__ = ["ROLES", "GroupGrants", "GroupRecord", "UserDirectory", "UserRecord", "check_name", "check_role"]
