"""``AffinityRouter``: Ray Serve's public request-router extension (``ray.serve.request_router.RequestRouter``)
applying ``routing.preference``.

Serve builds one router per deployment handle, in the process that holds the handle (the ingress replica), and
calls ``choose_replicas`` for every request. Each returned rank is tried in order: the first replica whose queue is
below ``max_ongoing_requests`` (Serve probes and caches queue lengths) gets the request, so a full home replica
spills to the next choice; when every rank is full Serve backs off and asks again. The affinity key travels as the
``affinity_key`` keyword argument of ``ModelServer.generate``; calls without one (tokenize, describe) go to the
least loaded replica, and a call with a ``replica_id`` keyword (``stats`` of one replica, for ``inhouse cluster
status`` and the metrics) goes to that replica; while that replica is not among the running ones (starting, or
dead but still named) it goes to any, and the caller drops the answer (``remote.replica_stats``: it names another
replica). Answering "none" instead would park the call in Serve's routing loop for good: the loop notices a
cancelled call only when a rank is offered, so a call for a dead replica was never dropped, kept the router busy and
made ``serve.shutdown`` wait forever.
"""

from __future__ import annotations

import random
from typing import Any

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from inhouse.cluster.routing import POLICIES, Policy, preference
from inhouse.errors import InvalidRequest


class AffinityRouter(RequestRouter):
    """Routes equal affinity keys to the same replica (rendezvous hashing), spilling in a fixed order when full."""

    def initialize_state(self, **kwargs: Any) -> None:
        policy = kwargs.get("policy", "affinity")
        if policy not in POLICIES:
            raise InvalidRequest(f"Unknown routing policy {policy!r}; one of {', '.join(POLICIES)}.")
        self._policy: Policy = policy
        self._rng = random.Random()

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        key = None
        if pending_request is not None:
            pinned = pending_request.kwargs.get("replica_id")
            if isinstance(pinned, str):  # a call for one replica (its stats): that one or, while it is absent, any
                return [[by_id[pinned]]] if pinned in by_id else [list(by_id.values())]
            value = pending_request.kwargs.get("affinity_key")
            key = value if isinstance(value, str) else None
        ranks = preference(key, list(by_id), policy=getattr(self, "_policy", "affinity"),
                           rng=getattr(self, "_rng", None))
        return [[by_id[r] for r in rank] for rank in ranks]
