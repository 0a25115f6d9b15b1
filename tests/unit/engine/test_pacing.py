"""The time cap on prefill chunks (``engine.prefill_step_s``): the pacer's estimate, the scheduler's chunks under
simulated step times (no clock: each step's duration is computed from its tokens and passed in), and the engine's
wiring (it reports every executed step) on the fake backend."""

from __future__ import annotations

import asyncio

import pytest

from inhouse.engine.pacing import MIN_PREFILL_TOKENS, PrefillPacer
from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.engine.protocol import StepPlan
from inhouse.engine.scheduler import Scheduler, SchedulerConfig
from inhouse.testing.fakes import build_fake_engine


def config(**kw: float) -> SchedulerConfig:
    base: dict[str, float] = {"n_slots": 4, "n_ctx": 8192, "max_running": 4, "max_waiting": 8,
                              "step_token_budget": 512, "prefill_chunk": 64, "prefill_step_s": 0.5}
    return SchedulerConfig(**{**base, **kw})  # type: ignore[arg-type]


class Sim:
    """A scheduler whose steps take ``cost_s`` seconds per token (the model the pacer assumes) or a scripted time."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.s = Scheduler(cfg)
        self.cost_s = 0.0

    def step(self, step_s: float | None = None) -> StepPlan:
        plan = self.s.schedule()
        self.s.update({i.request_id: 7 for i in plan.items if i.sample})
        duration = step_s if step_s is not None else self.cost_s * plan.n_tokens
        self.s.observe_step(duration, plan.n_prompt_tokens, plan.n_decode_tokens)
        return plan

    def prompt_tokens_of(self, plan: StepPlan, rid: str) -> int:
        return sum(len(i.tokens) for i in plan.items if i.request_id == rid)


def decoding_and_prefilling(cfg: SchedulerConfig, cost_s: float) -> Sim:
    """Request a decodes; b's 3,000-token prompt has just been admitted."""
    sim = Sim(cfg)
    sim.cost_s = cost_s
    sim.s.add("a", [5] * 20, 10_000)
    sim.step()  # a's prompt (nobody decodes: one whole step); the pacer's first observation
    sim.s.add("b", list(range(100, 3100)), 4)
    return sim


# -- the pacer -------------------------------------------------------------------------------------------------


def test_pacer_is_inert_before_any_step_with_prompt_tokens_and_when_off() -> None:
    p = PrefillPacer(0.5)
    assert p.seconds_per_token is None and p.prompt_cap(64, 3) == 64
    p.observe(2.0, 0, 1)  # a pure decode step is bandwidth-bound: it says nothing about prompt tokens
    assert p.seconds_per_token is None
    off = PrefillPacer(0.0)
    off.observe(10.0, 64, 1)
    assert off.seconds_per_token == pytest.approx(10.0 / 65) and off.prompt_cap(64, 1) == 64


def test_pacer_counts_decode_tokens_as_tokens_of_the_step() -> None:
    p = PrefillPacer(0.5)
    p.observe(1.3, 64, 1)  # 20 ms per token
    assert p.seconds_per_token == pytest.approx(0.02)
    assert p.prompt_cap(64, 1) == 24  # 25 tokens fit 0.5 s; one is the decode
    assert p.prompt_cap(64, 10) == 15
    assert p.prompt_cap(64, 40) == MIN_PREFILL_TOKENS  # the decodes alone take the budget: the prompt still moves
    assert p.prompt_cap(4, 1) == 4  # never above prefill_chunk, even a chunk below the floor


def test_pacer_weighs_big_steps_more_than_small_ones() -> None:
    p = PrefillPacer(0.5)
    p.observe(1.3, 64, 1)  # 20 ms per token
    p.observe(0.12, 1, 1)  # a 2-token step costs a whole weight pass: 60 ms per token
    # A mean of per-step ratios would jump to 32 ms; the ratio of smoothed sums barely moves.
    assert 0.02 < p.seconds_per_token < 0.022  # type: ignore[operator]


# -- the scheduler ---------------------------------------------------------------------------------------------


def test_chunk_shrinks_when_steps_are_slow() -> None:
    sim = decoding_and_prefilling(config(), cost_s=0.028)  # a 7B Q4_0 on 2 cores: 64 tokens take 1.8 s
    chunks = []
    for _ in range(10):
        plan = sim.step()
        assert plan.n_decode_tokens == 1 and plan.items[0].request_id == "a"
        chunks.append(sim.prompt_tokens_of(plan, "b"))
        assert sim.cost_s * plan.n_tokens <= 0.5
    assert chunks == [16] * 10  # int(0.5 / 0.028) = 17 tokens in a step, one of them a's


def test_chunk_grows_back_when_steps_get_fast() -> None:
    sim = decoding_and_prefilling(config(), cost_s=0.05)
    for _ in range(3):
        sim.step()
    assert sim.prompt_tokens_of(sim.step(), "b") == 9
    sim.cost_s = 0.001  # the foreign load is gone (or the context got short again)
    chunks = [sim.prompt_tokens_of(sim.step(), "b") for _ in range(12)]
    assert chunks[0] == 9 and chunks == sorted(chunks) and chunks[-1] == 64


def test_chunk_never_falls_below_the_floor() -> None:
    sim = decoding_and_prefilling(config(), cost_s=1.0)
    for _ in range(5):
        assert sim.prompt_tokens_of(sim.step(), "b") == MIN_PREFILL_TOKENS


def test_time_cap_off_keeps_the_count_cap_alone() -> None:
    sim = decoding_and_prefilling(config(prefill_step_s=0.0), cost_s=1.0)
    for _ in range(5):
        assert sim.prompt_tokens_of(sim.step(), "b") == 64


def test_time_cap_does_not_apply_when_nobody_decodes() -> None:
    sim = Sim(config())
    sim.cost_s = 1.0
    sim.s.add("a", list(range(100, 1600)), 4)
    sizes = [sim.step().n_tokens for _ in range(3)]
    assert sizes == [512, 512, 476]  # the whole step budget every step, however slow the steps are


def test_time_cap_also_bounds_an_admission_while_others_decode() -> None:
    sim = decoding_and_prefilling(config(), cost_s=0.05)  # the estimate exists before b is admitted
    first = sim.step()  # b's admission step: its first chunk is paced like the rest
    assert sim.prompt_tokens_of(first, "b") == 9


def test_cap_on_a_fast_model_does_not_bind() -> None:
    sim = decoding_and_prefilling(config(), cost_s=0.1 / 65)  # SmolLM2: a 64-token step takes ~0.1 s
    for _ in range(5):
        assert sim.prompt_tokens_of(sim.step(), "b") == 64


def test_scheduler_refuses_a_negative_step_time() -> None:
    with pytest.raises(ValueError):
        config(prefill_step_s=-1.0)


# -- the engine reports its steps ------------------------------------------------------------------------------


def run_two(**settings: float) -> list[int]:
    """Stream a decodes while b's 80-token prompt prefills; b's chunk sizes as the backend executed them."""
    engine = build_fake_engine(script={"a": "x" * 400, "b": "ok"}, delay_s=0.02, n_cache_slots=0,
                               max_running=2, prefill_chunk=32, **settings)
    backend = engine.backend

    async def consume(rid: str, prompt: list[int], max_tokens: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async for _ in engine.generate(GenerationRequest(rid, prompt, SamplingParams(max_tokens=max_tokens))):
            pass

    async def go() -> None:
        # b arrives while a decodes: a's 40 tokens take 0.8 s at 20 ms a step, b's prefill at most 0.2 s
        await asyncio.gather(consume("a", engine.tokenize("a"), 40, 0.0),
                             consume("b", engine.tokenize("b" * 79), 2, 0.1))

    try:
        asyncio.run(go())
    finally:
        engine.close()
    plans = backend.plans  # type: ignore[attr-defined]
    return [sum(len(i.tokens) for i in p.items if i.request_id == "b") for p in plans
            if any(i.request_id == "b" and len(i.tokens) > 1 for i in p.items)]


def test_engine_reports_step_times_so_slow_steps_shrink_the_chunk() -> None:
    # 20 ms per step against a budget of 1 ms: the pacer allows the floor only.
    # b's first token is a's (BOS), shared by the prefix cache: 79 tokens to compute.
    assert run_two(prefill_step_s=0.001) == [8] * 9 + [7]
    assert run_two(prefill_step_s=0.0) == [32, 32, 15]
