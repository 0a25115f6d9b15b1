"""The affinity key of a request: which earlier requests share its prompt prefix; and its cache owner: whose.

A conversation's requests all start with the same rendered prefix (the system prompt and the first user turn), so
a digest of ``model | system prompt | first user turn`` names the conversation without storing anything. A cluster
(``inhouse.cluster``) sends equal keys to the same replica, whose prefix cache then holds that prefix. A text
completion has no turns: its key is the digest of the model and the first tokens of its prompt.

The engine reuses a prefix only between requests of the same cache owner (``GenerationRequest.cache_owner``): the
cached tokens in the usage and the time to first token would otherwise tell one user, token by token, what another
user's prompt holds. The owner is part of the affinity key too: two owners' equal prefixes gain nothing on the same
replica now, and one key per owner spreads the users of a common system prompt over the replicas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.types import Actor

# Prompt tokens of a text completion that name its prefix (a shared instruction or few-shot block starts there).
COMPLETION_PREFIX_TOKENS = 64


def cache_owner_of(actor: Actor) -> str:
    """Whose prefix cache ``actor``'s requests share: its user's (every key of one user), else its key's."""
    return f"user:{actor.user_id}" if actor.user_id else f"key:{actor.key_id}"


def chat_affinity_key(model: str, messages: Sequence[Mapping[str, Any]], *, owner: str | None = None) -> str:
    """``model | owner | system (and developer) prompt | first user turn``, digested. Later turns do not change it, so
    every request of one conversation gets the same key."""
    system = [m.get("content") for m in messages if m.get("role") in ("system", "developer")]
    first_user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    return _digest(model, owner, json.dumps([system, first_user], ensure_ascii=False, sort_keys=True, default=str))


def completion_affinity_key(model: str, tokens: Sequence[int], *, owner: str | None = None) -> str:
    """The model, the owner and the first ``COMPLETION_PREFIX_TOKENS`` prompt tokens, digested."""
    return _digest(model, owner, ",".join(map(str, tokens[:COMPLETION_PREFIX_TOKENS])))


def _digest(model: str, owner: str | None, rest: str) -> str:
    scope = "" if owner is None else f"{owner}|"
    return hashlib.blake2b(f"{model}|{scope}{rest}".encode(), digest_size=12).hexdigest()
