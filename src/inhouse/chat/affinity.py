"""The affinity key of a request: which earlier requests share its prompt prefix.

A conversation's requests all start with the same rendered prefix (the system prompt and the first user turn), so
a digest of ``model | system prompt | first user turn`` names the conversation without storing anything. A cluster
(``inhouse.cluster``) sends equal keys to the same replica, whose prefix cache then holds that prefix. A text
completion has no turns: its key is the digest of the model and the first tokens of its prompt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Prompt tokens of a text completion that name its prefix (a shared instruction or few-shot block starts there).
COMPLETION_PREFIX_TOKENS = 64


def chat_affinity_key(model: str, messages: Sequence[Mapping[str, Any]]) -> str:
    """``model | system (and developer) prompt | first user turn``, digested. Later turns do not change it, so every
    request of one conversation gets the same key."""
    system = [m.get("content") for m in messages if m.get("role") in ("system", "developer")]
    first_user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    return _digest(model, json.dumps([system, first_user], ensure_ascii=False, sort_keys=True, default=str))


def completion_affinity_key(model: str, tokens: Sequence[int]) -> str:
    """The model and the first ``COMPLETION_PREFIX_TOKENS`` prompt tokens, digested."""
    return _digest(model, ",".join(map(str, tokens[:COMPLETION_PREFIX_TOKENS])))


def _digest(model: str, rest: str) -> str:
    return hashlib.blake2b(f"{model}|{rest}".encode(), digest_size=12).hexdigest()
