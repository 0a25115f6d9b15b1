"""Prefix-affinity placement (``cluster/routing.py``) and the Serve router over it, with fake replicas."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from inhouse.cluster.routing import preference
from inhouse.errors import InvalidRequest

REPLICAS = ["r-a", "r-b", "r-c"]


def home(key: str, replicas: list[str]) -> str:
    return preference(key, replicas)[0][0]


def test_a_key_always_gets_the_same_order_of_single_replica_ranks() -> None:
    ranks = preference("conversation-1", REPLICAS)
    assert all(len(rank) == 1 for rank in ranks)
    assert sorted(r for rank in ranks for r in rank) == sorted(REPLICAS)
    assert preference("conversation-1", list(reversed(REPLICAS))) == ranks  # independent of the listing order


def test_keys_spread_over_replicas() -> None:
    counts = Counter(home(f"key-{i}", REPLICAS) for i in range(3000))
    assert set(counts) == set(REPLICAS)
    assert min(counts.values()) > 800, counts


def test_removing_a_replica_moves_only_its_own_keys() -> None:
    keys = [f"key-{i}" for i in range(2000)]
    before = {k: home(k, REPLICAS) for k in keys}
    after = {k: home(k, ["r-a", "r-c"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "r-b" for k in moved)
    # ... and a key of the removed replica goes to what was its second choice (where it spilled to before)
    assert all(after[k] == preference(k, REPLICAS)[1][0] for k in moved)


def test_no_key_is_one_rank_of_every_replica_and_random_is_a_shuffle() -> None:
    assert preference(None, REPLICAS) == [REPLICAS]
    assert preference("k", []) == []
    orders = {tuple(r[0] for r in preference("k", REPLICAS, policy="random", rng=random.Random(s)))
              for s in range(30)}
    assert len(orders) > 1 and all(sorted(o) == sorted(REPLICAS) for o in orders)


# -- the Serve router over it (Ray's RequestRouter subclass, driven with stand-ins for replicas and requests) ----


def _router(policy: str = "affinity") -> Any:
    from inhouse.cluster.router import AffinityRouter

    router = AffinityRouter.__new__(AffinityRouter)  # Serve's constructor wants a live deployment
    router.initialize_state(policy=policy)
    return router


def _replica(unique_id: str) -> Any:
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=unique_id))


def _request(**kwargs: Any) -> Any:
    return SimpleNamespace(kwargs=kwargs, args=[])


def _choose(router: Any, replicas: list[Any], request: Any) -> list[list[str]]:
    ranks = asyncio.run(router.choose_replicas(replicas, request))
    return [[r.replica_id.unique_id for r in rank] for rank in ranks]


def test_the_router_ranks_by_the_affinity_key_argument() -> None:
    replicas = [_replica(r) for r in REPLICAS]
    ranks = _choose(_router(), replicas, _request(affinity_key="conv"))
    assert ranks == preference("conv", REPLICAS)
    assert _choose(_router(), replicas, _request()) == [REPLICAS]  # tokenize, describe: least loaded
    assert _choose(_router(), replicas, None) == [REPLICAS]


def test_a_call_for_one_replica_goes_there_or_to_any_while_it_is_absent() -> None:
    replicas = [_replica(r) for r in REPLICAS]
    assert _choose(_router(), replicas, _request(replica_id="r-b", affinity_key="x")) == [["r-b"]]
    # Never no rank at all: Serve would keep the call (and a cancelled one) in its routing loop for good.
    assert _choose(_router(), replicas, _request(replica_id="gone")) == [REPLICAS]


def test_the_router_refuses_an_unknown_policy() -> None:
    with pytest.raises(InvalidRequest, match="Unknown routing policy"):
        _router("round-robin")


def test_replica_stats_keep_only_answers_of_the_replica_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from inhouse.cluster import remote

    class _Answer:
        def __init__(self, value: Any) -> None:
            self.value, self.cancelled = value, False

        def result(self, timeout_s: float | None = None) -> Any:
            if isinstance(self.value, BaseException):
                raise self.value
            return self.value

        def cancel(self) -> None:
            self.cancelled = True

    # r-a answers itself; r-b is dead but still named, so the router gave its call to r-a; r-c times out.
    answers = {"r-a": _Answer({"replica": "r-a", "served": 3}), "r-b": _Answer({"replica": "r-a", "served": 3}),
               "r-c": _Answer(TimeoutError())}
    handle = SimpleNamespace(stats=SimpleNamespace(remote=lambda replica_id: answers[replica_id]))
    monkeypatch.setattr(remote, "replica_ids", lambda app, deployment: ["r-a", "r-b", "r-c"])
    assert remote.replica_stats(handle, "app", "model-m", timeout_s=1) == [  # type: ignore[arg-type]
        {"replica": "r-a", "served": 3}]
    assert answers["r-c"].cancelled
