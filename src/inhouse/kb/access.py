"""Who may see which knowledge: the one rule, in Python (for single lookups) and as data for the store's SQL.

A document is visible to an actor when all three hold:

1. **Collection ACL.** The actor is an admin, or one of its groups, or its key id, is on the collection's list.
2. **Document ACL** (optional narrowing). When the document has its own list, the actor must be on it too.
3. **Label clearance.** Admins are cleared for everything. Members are cleared up to ``confidential``: within a
   collection they may access they see ``public``, ``internal`` and ``confidential`` documents. A ``restricted``
   document is need-to-know: a member sees it only when the document's *own* list names them (one of their
   groups or their key), i.e. collection membership alone is never enough. A missing label counts as
   ``confidential`` (``governance.labels``).

The store applies exactly this inside the SQL of both keyword and vector search (``SqliteIndexStore``), and
``tests/unit/kb/test_retrieve_acl.py`` checks the SQL against :func:`may_see` with hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

from inhouse.governance.labels import Label
from inhouse.types import Actor

# The highest label a member sees on collection membership alone.
MEMBER_CLEARANCE = Label.CONFIDENTIAL


@dataclass(frozen=True)
class AccessScope:
    """What the store needs to know of an actor to filter rows. Built fresh for every request."""

    is_admin: bool
    key_id: str
    groups: frozenset[str]
    clearance: Label

    @classmethod
    def of(cls, actor: Actor) -> AccessScope:
        if not isinstance(actor, Actor):  # the actor is required: never a None that could mean "everyone"
            raise TypeError("an Actor is required to read the knowledge base")
        return cls(
            is_admin=actor.is_admin,
            key_id=actor.key_id,
            groups=frozenset(actor.groups),
            clearance=Label.RESTRICTED if actor.is_admin else MEMBER_CLEARANCE,
        )


@dataclass(frozen=True)
class Acl:
    """An access list: group names and key ids."""

    groups: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()

    def admits(self, scope: AccessScope) -> bool:
        return scope.key_id in self.keys or bool(scope.groups & self.groups)

    def to_dict(self) -> dict[str, list[str]]:
        return {"groups": sorted(self.groups), "keys": sorted(self.keys)}


def may_access_collection(scope: AccessScope, acl: Acl) -> bool:
    return scope.is_admin or acl.admits(scope)


def may_see(scope: AccessScope, collection_acl: Acl, document_acl: Acl | None, label: Label) -> bool:
    """The rule above, for one document."""
    if scope.is_admin:
        return True
    if not collection_acl.admits(scope):
        return False
    named = document_acl is not None and document_acl.admits(scope)
    if document_acl is not None and not named:
        return False
    return label <= scope.clearance or named
