"""Security events: the one seam between the services that change who may do what and the audit log.

Every security action (a user, group or key created, changed or removed; a membership changed; a role
changed) goes through exactly one service method, and that method calls ``AuditSink.record`` once,
inside its database transaction and before the commit. If ``record`` raises, the action fails and its
transaction rolls back: an action that cannot be audited does not happen.

``details`` never holds secrets (no API key secrets, no hashes); it holds ids, names and the old/new
values of what changed. The audit log implements ``AuditSink``; ``NullAuditSink`` is for tests and
tools that run without one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from inhouse.types import Actor

Outcome = Literal["success", "failure", "denied"]

# The catalogue of security actions emitted by the identity services (``resource`` says which object).
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"  # role and/or disabled changed; details hold before/after
USER_DELETED = "user.deleted"
GROUP_CREATED = "group.created"
GROUP_DELETED = "group.deleted"
MEMBERSHIP_ADDED = "group.member_added"
MEMBERSHIP_REMOVED = "group.member_removed"
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
KEY_UPDATED = "key.updated"  # quota limits changed; details hold before/after

SECURITY_ACTIONS: frozenset[str] = frozenset({
    USER_CREATED, USER_UPDATED, USER_DELETED,
    GROUP_CREATED, GROUP_DELETED, MEMBERSHIP_ADDED, MEMBERSHIP_REMOVED,
    KEY_CREATED, KEY_REVOKED, KEY_UPDATED,
})


@dataclass(frozen=True)
class SecurityEvent:
    """One security action. ``actor_*`` are None for actions taken outside a request (CLI, bootstrap)."""

    action: str  # one of SECURITY_ACTIONS (other modules may add their own, e.g. "login")
    actor_key_id: str | None
    actor_user_id: str | None
    resource: str  # the id of the object acted on: 'usr_…', 'grp_…', 'key_…'
    outcome: Outcome = "success"
    details: dict[str, Any] = field(default_factory=dict)  # ids, names, before/after; never secrets
    at: float = field(default_factory=time.time)  # unix seconds


def security_event(action: str, by: Actor | None, resource: str, details: dict[str, Any], *,
                   at: float | None = None) -> SecurityEvent:
    """A successful security action taken by ``by`` (None: the local CLI or start-up, not a request)."""
    return SecurityEvent(
        action=action,
        actor_key_id=by.key_id if by is not None else None,
        actor_user_id=by.user_id if by is not None else None,
        resource=resource,
        details=details,
        at=time.time() if at is None else at,
    )


class AuditSink(Protocol):
    def record(self, event: SecurityEvent) -> None:
        """Persist the event durably, or raise: a raise makes the action fail and roll back."""


class NullAuditSink:
    """Records nothing. For tests and for tools that run without an audit log."""

    def record(self, event: SecurityEvent) -> None:
        return None


class MemoryAuditSink:
    """Keeps events in a list; ``fail_with`` makes every ``record`` raise (for rollback tests)."""

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []
        self.fail_with: BaseException | None = None

    def record(self, event: SecurityEvent) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append(event)
