"""The one permission check: ``allowed(actor, action, resource)``.

Two layers, evaluated in order:

1. **Role → action.** Every action in ``ACTIONS`` names the least role that may perform it
   (``public`` < ``member`` < ``admin``). Admins may do everything; an action not in the catalogue is
   refused (fail closed).
2. **Resource.** When the caller names a resource, a member may act on it only if it is theirs
   (``owner_user_id``), or it shares one of their groups, or it is the very key they are calling with.
   Admins pass. Collections (knowledge) will be ``Resource("collection", id, owner, groups)``.

Callers that look things up by id must answer "not found" when this check fails, never "forbidden":
whoever may not see a resource must not learn that it exists (see ``api/auth.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from inhouse.errors import PermissionDenied
from inhouse.types import Actor

Need = Literal["public", "member", "admin"]

# The catalogue of actions. A route may only declare an action listed here (a meta-test checks it).
ACTIONS: dict[str, Need] = {
    "health:read": "public",
    "models:read": "member",
    "chat:create": "member",
    "completions:create": "member",
    "responses:create": "member",  # the Responses API (runs like chat:create)
    "responses:read": "member",  # the caller's own stored responses
    "responses:write": "member",  # delete them
    # Metrics carry no content, only counts; a scraper gets a member key (or metrics_public).
    "metrics:read": "member",
    "me:read": "member",  # who am I, my groups, my quota
    "openapi:read": "member",  # the API description (/openapi.json): routes and shapes, no data
    "own_keys:read": "member",  # list the caller's own keys
    "own_keys:manage": "member",  # create / revoke the caller's own keys
    "users:read": "admin",
    "users:manage": "admin",
    "groups:read": "admin",
    "groups:manage": "admin",
    "keys:read": "admin",
    "keys:manage": "admin",
    "audit:read": "admin",  # list, verify and report on the audit log
    # Company knowledge: the role check only; which collections/documents is decided in kb (access.py).
    "embeddings:create": "member",
    "kb:read": "member",  # search, list and read collections and documents the caller may access
    "kb:write": "member",  # upload, relabel and delete documents in collections the caller may access
    "kb:manage": "admin",  # create collections, change their access lists, delete them
    # The web UI: page shells and static assets carry no data (the pages call the API with the user's key).
    "web:read": "public",
    "web:signin": "public",  # the no-JavaScript sign-in form: checks a key and says what is wrong with it
    "conversations:read": "member",  # the caller's own chat history
    "conversations:write": "member",
    # Assistants (minutes, outline, support, schedule): each runs the model as the caller, with their rights.
    "apps:use": "member",
    # The customer-service assistant alone: what a widget's scoped key (scopes ["apps:support"]) may call.
    "apps:support": "member",
}

# Scopes a key may be limited to (``KeyStore.create_key(scopes=…)``): action names of the catalogue.
KEY_SCOPES: frozenset[str] = frozenset({"apps:support"})

# Actions that use a model and therefore count against the per-key quotas (requests/minute, tokens/day).
METERED_ACTIONS: frozenset[str] = frozenset({
    "chat:create", "completions:create", "responses:create", "embeddings:create", "apps:use", "apps:support",
})

_RANK: dict[Need, int] = {"public": 0, "member": 1, "admin": 2}


@dataclass(frozen=True)
class Resource:
    """Something an actor acts on. ``groups`` are group NAMES, like ``Actor.groups``."""

    kind: str  # 'key', 'user', 'group', 'collection', …
    id: str
    owner_user_id: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)


def role_allows(actor: Actor | None, action: str) -> bool:
    """Layer 1 only: may this actor's role perform ``action`` at all?"""
    need = ACTIONS.get(action)
    if need is None:
        return False
    if need == "public":
        return True
    if actor is None:
        return False
    if actor.scopes is not None and action not in actor.scopes:
        return False  # a scoped key (a widget's) may call only the actions it was issued for
    return _RANK[actor.role] >= _RANK[need]


def may_access(actor: Actor, resource: Resource) -> bool:
    """Layer 2 only: is ``resource`` the actor's own, shared through a group, or the calling key itself?"""
    if actor.is_admin:
        return True
    if actor.user_id is not None and resource.owner_user_id == actor.user_id:
        return True
    if resource.kind == "key" and resource.id == actor.key_id:
        return True
    return bool(actor.groups & resource.groups)


def allowed(actor: Actor | None, action: str, resource: Resource | None = None) -> bool:
    """May ``actor`` perform ``action`` (on ``resource``, when given)? Unknown actions: no."""
    if not role_allows(actor, action):
        return False
    if resource is None or ACTIONS[action] == "public":
        return True
    assert actor is not None  # role_allows refuses a missing actor for non-public actions
    return may_access(actor, resource)


def refusal(actor: Actor | None, action: str) -> str:
    """Why ``actor`` may not perform ``action`` at all: its scopes (a widget's key), or its role."""
    if actor is not None and actor.scopes is not None and action not in actor.scopes:
        return (f"Your key is limited to {', '.join(sorted(actor.scopes))}: it may not perform '{action}'.")
    return f"Your key may not perform '{action}' (needs role {ACTIONS.get(action)})."


def require_allowed(actor: Actor | None, action: str, resource: Resource | None = None) -> None:
    """``allowed`` or raise PermissionDenied (callers hiding ids translate it to NotFound)."""
    if not allowed(actor, action, resource):
        need = ACTIONS.get(action)
        if need is None:
            raise PermissionDenied(f"Unknown action '{action}'.")
        if not role_allows(actor, action):
            raise PermissionDenied(refusal(actor, action))
        kind = resource.kind if resource is not None else "resource"
        raise PermissionDenied(f"Your key may not perform '{action}' on this {kind}.")
