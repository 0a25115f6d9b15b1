"""The prefix cache is scoped to a cache owner: a request reuses (or waits for) the KV of its own owner's requests
only, so its cached tokens and its time to first token tell nothing about another user's prompt. The owner crosses
the engine's process boundary with the request."""

from __future__ import annotations

import asyncio

import pytest

from inhouse.config import EngineSettings
from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.engine.process import EngineRecipe, ProcessEngine, RestartPolicy
from inhouse.engine.protocol import EngineClient, StepPlan
from inhouse.engine.scheduler import Scheduler, SchedulerConfig
from inhouse.testing.fakes import build_fake_engine, build_fake_engine_in_child

PROMPT = list(range(100, 160))  # 60 tokens: a system prompt, then the confidential passage


def _scheduler() -> Scheduler:
    return Scheduler(SchedulerConfig(n_slots=4, n_ctx=4096, max_running=4, max_waiting=8, step_token_budget=512,
                                     prefill_chunk=64))


def _run(s: Scheduler, rid: str, prompt: list[int], owner: str | None) -> StepPlan:
    """Admit one request, finish it after its first token; the plan that admitted it."""
    s.add(rid, prompt, 4, cache_owner=owner)
    plan = s.schedule()
    s.update({i.request_id: 7 for i in plan.items if i.sample})
    s.finish(rid)
    return plan


def test_another_owners_identical_prompt_takes_nothing_from_the_cache() -> None:
    s = _scheduler()
    _run(s, "alice-1", PROMPT, "user:alice")
    bob = _run(s, "bob-1", PROMPT, "user:bob")
    (item,) = bob.items
    assert item.pos0 == 0 and len(item.tokens) == len(PROMPT), "bob computes his whole prompt"
    assert not [op for op in bob.kv_ops if op.kind == "cp"]
    assert s.stats().prefix_cache_hits == 0
    again = _run(s, "alice-2", [*PROMPT, 1, 2], "user:alice")
    (item,) = again.items
    assert item.pos0 == len(PROMPT) and s.stats().prefix_cache_hit_tokens == len(PROMPT), "alice's own entry is reused"


def test_cached_tokens_are_reported_for_the_same_owner_only() -> None:
    s = _scheduler()
    _run(s, "a", PROMPT, "user:alice")
    s.add("b", [*PROMPT[:40], 9, 9], 4, cache_owner="user:bob")
    s.add("c", [*PROMPT[:40], 9, 9], 4, cache_owner="user:alice")
    s.schedule()
    assert (s.cached_tokens("b"), s.cached_tokens("c")) == (0, 40)


def test_a_running_request_of_another_owner_is_neither_copied_nor_waited_for() -> None:
    s = Scheduler(SchedulerConfig(n_slots=4, n_ctx=4096, max_running=4, max_waiting=8, step_token_budget=200,
                                  prefill_chunk=64))
    long = [t % 250 for t in range(300)]  # two steps of prefill
    s.add("alice", long, 4, cache_owner="user:alice")
    s.schedule()
    s.update({})
    # Bob's identical prompt would wait for alice's prefill and then copy it: a delay that reveals the match.
    s.add("bob", long, 4, cache_owner="user:bob")
    s.add("alice-again", long, 4, cache_owner="user:alice")
    plan = s.schedule()
    assert "bob" in [i.request_id for i in plan.items] and "alice-again" not in [i.request_id for i in plan.items]
    assert not [op for op in plan.kv_ops if op.kind == "cp"]
    assert s.cached_tokens("bob") == 0


def test_owner_less_requests_share_only_among_themselves() -> None:
    s = _scheduler()
    _run(s, "lib-1", PROMPT, None)
    _run(s, "owned", PROMPT, "key:key_x")
    assert s.stats().prefix_cache_hits == 0
    _run(s, "lib-2", PROMPT, None)
    assert s.stats().prefix_cache_hit_tokens == len(PROMPT) - 1


def _cached(engine: EngineClient, rid: str, owner: str | None, prompt: list[int]) -> int:
    """The cached tokens the last delta of one request reports."""
    async def go() -> int:
        request = GenerationRequest(rid, prompt, SamplingParams(max_tokens=2, temperature=0.0), cache_owner=owner)
        deltas = [d async for d in engine.generate(request)]
        assert deltas[-1].finish_reason is not None
        return deltas[-1].n_cached_tokens

    return asyncio.run(asyncio.wait_for(go(), 30))


def test_the_engine_reports_cached_tokens_per_owner() -> None:
    engine = build_fake_engine()
    try:
        assert _cached(engine, "r1", "user:alice", PROMPT) == 0
        assert _cached(engine, "r2", "user:bob", PROMPT) == 0
        assert _cached(engine, "r3", "user:alice", PROMPT) == len(PROMPT) - 1
        assert engine.stats().prefix_cache_hit_tokens == len(PROMPT) - 1  # the metric counts alice's own hit only
    finally:
        engine.close()


@pytest.mark.timeout(60)
def test_the_owner_crosses_the_process_boundary() -> None:
    recipe = EngineRecipe("fake-model", None, EngineSettings(), 2048, {}, build=build_fake_engine_in_child)
    engine = ProcessEngine(recipe, policy=RestartPolicy(backoff_s=0.05, max_backoff_s=0.2, wait_s=20.0,
                                                        stop_timeout_s=5.0))
    try:
        assert _cached(engine, "r1", "user:alice", PROMPT) == 0
        assert _cached(engine, "r2", "user:bob", PROMPT) == 0
        assert _cached(engine, "r3", "user:alice", PROMPT) == len(PROMPT) - 1
    finally:
        engine.close()
