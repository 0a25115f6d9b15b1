"""Prefix-affinity placement, without Ray: which replica a request's affinity key belongs to, and which comes next.

Rendezvous (highest-random-weight) hashing: every replica gets a score ``digest(key | replica id)`` and the replicas
are tried in descending score order. The first is the key's home (its prefix cache holds the conversation); when it
is full the request spills to the second, and so on. When a replica comes or goes only the keys whose home it was
move, and no table has to be shared between the ingress replicas: they all compute the same order.

``AffinityRouter`` (``cluster/router.py``) applies this inside Ray Serve; the logic lives here so it is tested with
plain strings.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Literal

Policy = Literal["affinity", "random"]
POLICIES: tuple[Policy, ...] = ("affinity", "random")


def score(key: str, replica: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}|{replica}".encode(), digest_size=8).digest(), "big")


def preference(key: str | None, replicas: Sequence[str], *, policy: Policy = "affinity",
               rng: random.Random | None = None) -> list[list[str]]:
    """The ranks to try, most preferred first: one replica per rank for a key (home, then the spill order); one rank
    of every replica (least loaded wins) for a request without a key or under the ``random`` policy (a shuffled
    order, for comparison in benchmarks)."""
    if not replicas:
        return []
    if policy == "random":
        order = list(replicas)
        (rng or random).shuffle(order)
        return [[r] for r in order]
    if key is None:
        return [list(replicas)]
    return [[r] for r in sorted(replicas, key=lambda r: score(key, r), reverse=True)]
