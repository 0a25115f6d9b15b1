"""The scheduler as a pure state machine: example tests for each rule, then hypothesis drives random
sequences of add/abort/step/finish against a model of llama.cpp's KV memory and checks every plan."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from inhouse.engine.protocol import KvOp, StepPlan
from inhouse.engine.scheduler import KEEP_IDLE_TAIL, Scheduler, SchedulerConfig, split_prefill
from inhouse.errors import ContextLengthExceeded, InvalidRequest, Overloaded


class Harness:
    """Runs a scheduler against a model of the backend and checks every plan it produces.

    The KV model holds the tokens of each slot (cells are counted per sequence, which is what the scheduler
    promises: a conservative bound on llama.cpp's shared cells). It also tracks what the test knows of each
    request, independently of the scheduler's own bookkeeping.
    """

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.s = Scheduler(cfg)
        self.kv: list[list[int]] = [[] for _ in range(cfg.n_slots)]
        self.tokens: dict[str, list[int]] = {}
        self.max_new: dict[str, int] = {}
        self.n_generated: dict[str, int] = {}
        self.slot_of: dict[str, int] = {}  # running requests, as the plans reveal them
        self.computed: dict[str, int] = {}  # tokens of a running request in its slot's KV
        self.aborted: set[str] = set()
        self.finished: set[str] = set()
        self.preempted: list[str] = []
        self.plans: list[StepPlan] = []
        self.idle_copies_with_company = 0  # steps copying from an idle entry while admitting another request
        self.owner: dict[str, str | None] = {}  # each request's cache owner
        self.kv_owner: list[str | None] = [None] * cfg.n_slots  # whose prompt the tokens of each slot came from

    # -- driving ---------------------------------------------------------------------------------

    def add(self, rid: str, prompt: Sequence[int], max_new: int = 8, owner: str | None = None) -> None:
        self.s.add(rid, prompt, max_new, cache_owner=owner)
        self.owner[rid] = owner
        self.tokens[rid] = list(prompt)
        self.max_new[rid] = max_new
        self.n_generated[rid] = 0

    def abort(self, rid: str) -> None:
        self.s.abort(rid)
        if rid in self.tokens and rid not in self.finished:
            self.aborted.add(rid)

    @property
    def gone(self) -> set[str]:
        return self.aborted | self.finished

    def step(
        self,
        sample: Callable[[str], int] = lambda rid: 7,
        stop: Callable[[str], bool] = lambda rid: False,
    ) -> StepPlan:
        plan = self.s.schedule()
        self.check_and_apply(plan)
        sampled = {i.request_id: sample(i.request_id) for i in plan.items if i.sample}
        self.s.update(sampled)
        for rid, tok in sampled.items():
            self.tokens[rid].append(tok)
            self.n_generated[rid] += 1
            # The engine's rules: EOS/stop, max_tokens, or the context is full.
            if self.n_generated[rid] >= self.max_new[rid] or self.s.at_context_limit(rid) or stop(rid):
                self.s.finish(rid)
                self.finished.add(rid)
                del self.slot_of[rid]
                del self.computed[rid]
        for i in plan.items:
            if i.request_id in self.computed:
                self.computed[i.request_id] = len(self.kv[i.slot])
        assert self.s.stats().kv_cells_used == sum(len(k) for k in self.kv)
        self.plans.append(plan)
        return plan

    def drain(self, max_steps: int = 10_000, **kw: Callable[[str], object]) -> int:
        for n in range(max_steps):
            if not self.s.has_work():
                return n
            self.step(**kw)  # type: ignore[arg-type]
        raise AssertionError(f"still busy after {max_steps} steps: liveness broken")

    # -- the invariants of one plan ----------------------------------------------------------------

    def check_and_apply(self, plan: StepPlan) -> None:
        cfg = self.cfg
        assert plan.n_tokens <= cfg.step_token_budget
        for rid in plan.aborted:
            assert rid in self.aborted
            self.slot_of.pop(rid)
            self.computed.pop(rid)
        for rid in plan.preempted:
            assert rid not in self.gone
            self.slot_of.pop(rid)
            self.computed.pop(rid)
            self.preempted.append(rid)
        assert not set(plan.aborted) & set(plan.preempted)
        cps = [op for op in plan.kv_ops if op.kind == "cp"]
        idle_sources = {op.src for op in cps} - {op.slot for op in cps} - set(self.slot_of.values())
        if idle_sources and len([i for i in plan.items if i.request_id not in self.slot_of]) > 1:
            self.idle_copies_with_company += 1
        # KV ops: removals before copies; a copy lands in an empty slot and copies cells that exist.
        seen_cp = False
        for op in plan.kv_ops:
            assert 0 <= op.slot < cfg.n_slots
            if op.kind == "rm":
                assert not seen_cp, "rm after cp"
                del self.kv[op.slot][op.p0 :]
                if not self.kv[op.slot]:
                    self.kv_owner[op.slot] = None
            else:
                seen_cp = True
                assert 0 <= op.src < cfg.n_slots and op.src != op.slot
                assert self.kv[op.slot] == [], "cp into a slot that holds tokens"
                assert 0 < op.p1 <= len(self.kv[op.src])
                self.kv[op.slot] = list(self.kv[op.src][: op.p1])
                self.kv_owner[op.slot] = self.kv_owner[op.src]
        # Running requests that stay (with or without an item) still have their KV intact.
        for rid, slot in self.slot_of.items():
            assert self.kv[slot] == self.tokens[rid][: self.computed[rid]], f"KV of {rid} damaged"
        running_before = dict(self.slot_of)
        ids = [i.request_id for i in plan.items]
        slots = [i.slot for i in plan.items]
        assert len(set(ids)) == len(ids) and len(set(slots)) == len(slots)
        decode_ids: set[str] = set()
        for item in plan.items:
            rid = item.request_id
            assert rid not in self.gone, f"{rid} came back after it ended"
            assert rid in self.tokens
            assert 0 <= item.slot < cfg.n_slots and item.tokens
            if rid in running_before:
                assert item.slot == running_before[rid], "a running request changed slot"
                assert item.pos0 == self.computed[rid], "positions not contiguous"
                if len(self.tokens[rid]) - self.computed[rid] == 1:
                    decode_ids.add(rid)
            else:
                assert item.slot not in running_before.values(), "slot shared by two requests"
                if item.pos0 > 0:
                    assert self.kv_owner[item.slot] == self.owner.get(rid), "KV reused across cache owners"
                self.slot_of[rid] = item.slot
            # The slot holds exactly the request's tokens before pos0 (prefix cache included).
            assert self.kv[item.slot] == self.tokens[rid][: item.pos0]
            end = item.pos0 + len(item.tokens)
            assert list(item.tokens) == self.tokens[rid][item.pos0 : end]
            assert item.sample == (end == len(self.tokens[rid]))
        assert len(set(self.slot_of.values())) == len(self.slot_of), "a slot holds two requests"
        if decode_ids:
            prefill = sum(len(i.tokens) for i in plan.items if i.request_id not in decode_ids)
            assert prefill <= cfg.prefill_chunk
        assert sum(len(k) for k in self.kv) + plan.n_tokens <= cfg.n_ctx, "KV overflow"
        for item in plan.items:
            self.kv[item.slot].extend(item.tokens)
            self.kv_owner[item.slot] = self.owner.get(item.request_id)
            self.computed[item.request_id] = item.pos0  # advanced after update()


def config(**kw: int | float) -> SchedulerConfig:
    base: dict[str, int | float] = dict(
        n_slots=4, n_ctx=4096, max_running=4, max_waiting=8, step_token_budget=512, prefill_chunk=64
    )
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


def ids_of(plan: StepPlan) -> list[str]:
    return [i.request_id for i in plan.items]


# -- add() -----------------------------------------------------------------------------------------


def test_add_rejects_bad_requests() -> None:
    s = Scheduler(config(n_ctx=16))
    with pytest.raises(InvalidRequest):
        s.add("a", [], 4)
    with pytest.raises(ContextLengthExceeded) as exc:
        s.add("a", list(range(16)), 4)  # 16 + 1 > 16: no room to generate anything
    assert (exc.value.n_prompt, exc.value.n_ctx) == (16, 16)
    s.add("a", list(range(15)), 4)
    with pytest.raises(InvalidRequest):
        s.add("a", [1], 4)
    assert s.n_waiting == 1


def test_full_queue_rejects_at_once() -> None:
    s = Scheduler(config(max_running=1, n_slots=1, max_waiting=2, retry_after_s=3.0))
    s.add("a", [1], 4)  # will take the free running seat
    s.add("b", [1], 4)
    s.add("c", [1], 4)
    with pytest.raises(Overloaded) as exc:
        s.add("d", [1], 4)
    assert exc.value.retry_after_s == 3.0
    assert s.stats().rejected_queue_full == 1
    s.schedule()
    assert (s.n_running, s.n_waiting) == (1, 2)
    with pytest.raises(Overloaded):
        s.add("d", [1], 4)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        config(max_running=5)  # more than n_slots


# -- budget, decodes first, chunked prefill ------------------------------------------------------


def test_prefill_uses_whole_budget_when_nobody_decodes() -> None:
    h = Harness(config())
    h.add("a", list(range(1500)))
    sizes = [h.step().n_tokens for _ in range(3)]
    assert sizes == [512, 512, 476]
    assert h.plans[-1].items[0].sample and not h.plans[0].items[0].sample


def test_long_prompt_is_chunked_while_another_request_decodes() -> None:
    h = Harness(config())
    h.add("a", [5] * 10, max_new=1000)
    h.step()  # a: whole prompt, samples its first token
    h.add("b", list(range(1500)), max_new=4)
    steps = 0
    while h.n_generated["b"] == 0:
        plan = h.step()
        steps += 1
        # a decodes in every step, first; b's prompt never takes more than prefill_chunk.
        assert plan.items[0].request_id == "a" and len(plan.items[0].tokens) == 1
        b_tokens = sum(len(i.tokens) for i in plan.items if i.request_id == "b")
        assert 0 < b_tokens <= 64
    assert steps == -(-1500 // 64)


def test_decodes_are_never_starved_by_a_prefill() -> None:
    h = Harness(config(step_token_budget=3, prefill_chunk=3))
    for rid in ("a", "b", "c"):
        h.add(rid, [1], max_new=6)
    h.step()
    h.add("p", list(range(100)), max_new=2)
    for _ in range(4):
        plan = h.step()
        # The budget barely covers the three decodes: each gets its token, the prompt waits.
        assert [(i.request_id, len(i.tokens)) for i in plan.items] == [("a", 1), ("b", 1), ("c", 1)]
    h.drain()
    assert h.finished == {"a", "b", "c", "p"}


# -- prefix cache ----------------------------------------------------------------------------------


def test_prefix_cache_reuses_an_idle_slot() -> None:
    h = Harness(config())
    prompt = list(range(100, 120))
    h.add("a", prompt, max_new=3)
    h.drain()
    slot_a = h.plans[0].items[0].slot
    assert h.kv[slot_a] == [*prompt, 7, 7]  # the final sampled token was never fed
    h.add("b", [*prompt[:15], 1, 2, 3])
    plan = h.step()
    assert KvOp("rm", slot_a, p0=15) in plan.kv_ops
    (item,) = plan.items
    assert (item.slot, item.pos0, item.tokens) == (slot_a, 15, (1, 2, 3))
    st_ = h.s.stats()
    assert (st_.prefix_cache_queries, st_.prefix_cache_hits, st_.prefix_cache_hit_tokens) == (2, 1, 15)
    assert (h.s.cached_tokens("b"), h.s.cached_tokens("a")) == (15, 0)  # reported per request in usage


@pytest.mark.parametrize("shared", [1, 255, 256, 257, 700])
def test_long_prefixes_are_matched_exactly(shared: int) -> None:
    h = Harness(config(step_token_budget=2048))
    prompt = [i % 50 for i in range(1000)]
    h.add("a", prompt, max_new=1)
    h.drain()
    h.add("b", [*prompt[:shared], 99, 98])
    plan = h.step()
    assert plan.items[0].pos0 == shared
    assert h.s.stats().prefix_cache_hit_tokens == shared


def test_follow_up_turn_reuses_the_whole_conversation() -> None:
    h = Harness(config())
    h.add("a", [9] * 30, max_new=4)
    h.drain()
    history = h.tokens["a"]  # prompt + 4 generated
    h.add("b", [*history, 1, 2])
    plan = h.step()
    (item,) = plan.items
    assert item.pos0 == 33 and item.tokens == (7, 1, 2)  # only the last reply token and the new turn


def test_a_shared_header_does_not_wipe_another_conversation() -> None:
    """Two conversations that share only the chat template's first tokens both stay cached: the second copies the
    header into a free slot instead of cutting the first one's entry back to it (which made every returning turn
    of a replica's other conversations a miss)."""
    h = Harness(config())
    header = [5] * 7
    one, two = [*header, *range(100, 160)], [*header, *range(200, 260)]
    h.add("a", one, max_new=2)
    h.drain()
    slot_a = h.plans[0].items[0].slot
    h.add("b", two, max_new=2)
    plan = h.step()
    (item,) = plan.items
    assert item.slot != slot_a and item.pos0 == 7
    assert KvOp("cp", item.slot, p1=7, src=slot_a) in plan.kv_ops
    assert not [op for op in plan.kv_ops if op.slot == slot_a]  # the first conversation's entry is untouched
    h.drain()
    h.add("a2", [*h.tokens["a"], 1, 2])
    plan = h.step()
    assert plan.items[0].slot == slot_a and plan.items[0].pos0 == len(one) + 1


def test_the_same_prompt_again_replaces_the_entrys_answer_in_place() -> None:
    """A regenerated answer (the whole prompt shared, only the old answer differs) takes the entry in place:
    keeping the old answer's entry would only grow the cells every decode step attends over."""
    h = Harness(config())
    prompt = [*range(100, 150)]
    h.add("a", prompt, max_new=60)
    h.drain()
    slot_a = h.plans[0].items[0].slot
    h.add("b", prompt, max_new=2)
    plan = h.step()
    assert plan.items[0].slot == slot_a and plan.items[0].pos0 == len(prompt) - 1
    assert KvOp("rm", slot_a, p0=len(prompt) - 1) in plan.kv_ops


def test_a_shared_header_reuses_the_entry_in_place_when_a_copy_does_not_fit() -> None:
    h = Harness(config(n_ctx=160, n_slots=2, max_running=1))
    header = [5] * 7
    h.add("a", [*header, *range(100, 180)], max_new=2)
    h.drain()
    slot_a = h.plans[0].items[0].slot
    h.add("b", [*header, *range(200, 270)], max_new=2)  # 87 + 7 copied cells next to a's 88 would exceed 160
    plan = h.step()
    assert plan.items[0].slot == slot_a and plan.items[0].pos0 == 7
    assert KvOp("rm", slot_a, p0=7) in plan.kv_ops


@pytest.mark.parametrize(
    ("case", "n_ctx", "n_slots", "second"),
    [
        ("lru target", 4096, 3, list(range(300, 330))),  # the only free seat is the LRU entry: the copy's source
        ("eviction", 100, 4, list(range(300, 330))),  # its room would come from evicting the copy's source
        ("in place", 100, 4, [*range(10, 15), *range(300, 330)]),  # no room to copy: it would cut the entry back
    ],
)
def test_a_copys_source_survives_the_other_admissions_of_its_step(
    case: str, n_ctx: int, n_slots: int, second: list[int]
) -> None:
    """Every rm of a plan runs before every cp: a slot a planned copy reads from must not be cleared or cut back
    by a later admission of the same step (the backend refused the whole step, failing every request in it)."""
    h = Harness(config(n_ctx=n_ctx, n_slots=n_slots, max_running=2))
    header = list(range(10, 18))
    h.add("a", [*header, *range(100, 150)], max_new=2)
    h.drain()
    slot_a = h.plans[0].items[0].slot
    if case == "lru target":
        h.add("b", list(range(200, 240)), max_new=2)  # a newer entry: slot_a is the least recently used
        h.drain()
    h.add("x", [*header, *range(60, 70)], max_new=2)  # shares only the header: copied from slot_a
    h.add("y", second, max_new=2)
    plan = h.step()  # Harness checks that every cp reads cells that exist
    assert KvOp("cp", h.slot_of["x"], p1=len(header), src=slot_a) in plan.kv_ops
    assert not [op for op in plan.kv_ops if op.kind == "rm" and op.slot == slot_a]
    h.drain()
    assert h.finished >= {"x", "y"}


def test_prefix_cache_copies_from_a_running_slot() -> None:
    h = Harness(config())
    system = list(range(200, 212))
    h.add("a", [*system, 1, 1], max_new=100)
    h.step()
    h.add("b", [*system, 2, 2, 2], max_new=100)
    plan = h.step()
    slot_a = h.slot_of["a"]
    slot_b = h.slot_of["b"]
    assert slot_a != slot_b
    cp = [op for op in plan.kv_ops if op.kind == "cp"]
    assert cp == [KvOp("cp", slot_b, p1=12, src=slot_a)]
    item_b = next(i for i in plan.items if i.request_id == "b")
    assert (item_b.pos0, item_b.tokens) == (12, (2, 2, 2))


def test_prefix_is_capped_so_one_token_is_fed() -> None:
    h = Harness(config())
    h.add("a", [4] * 10, max_new=2)
    h.drain()
    slot = h.plans[0].items[0].slot
    kv = list(h.kv[slot])  # 11 tokens: prompt + first reply token
    h.add("b", kv)
    plan = h.step()
    (item,) = plan.items
    assert KvOp("rm", slot, p0=10) in plan.kv_ops
    assert (item.slot, item.pos0, item.tokens, item.sample) == (slot, 10, (kv[-1],), True)


def test_least_recently_used_idle_slot_is_evicted() -> None:
    h = Harness(config(n_slots=2, max_running=1))
    for rid, tok in (("a", 1), ("b", 2)):
        h.add(rid, [tok] * 5, max_new=1)
        h.drain()
    slot_a = h.plans[0].items[0].slot
    h.add("c", [3] * 5, max_new=1)
    plan = h.step()
    assert plan.kv_ops[0] == KvOp("rm", slot_a, p0=0)
    assert plan.items[0].slot == slot_a


# -- abort -----------------------------------------------------------------------------------------


def test_abort_waiting_request_disappears() -> None:
    h = Harness(config(n_slots=1, max_running=1))
    h.add("a", [1, 2], max_new=5)
    h.add("b", [3, 4])
    h.step()
    h.abort("b")
    h.abort("b")  # idempotent
    h.abort("nobody")
    assert h.s.n_waiting == 0
    h.drain()
    assert "b" not in {rid for p in h.plans for rid in ids_of(p)}
    assert all("b" not in p.aborted for p in h.plans)
    assert h.s.stats().aborted == 1


def test_abort_running_request_frees_its_slot_in_the_next_step() -> None:
    h = Harness(config())
    h.add("a", [1, 2, 3], max_new=50)
    h.add("b", [4, 5, 6], max_new=50)
    h.step()
    slot_a = h.slot_of["a"]
    h.abort("a")
    assert h.s.n_running == 1
    plan = h.step()
    assert plan.aborted == ["a"]
    assert KvOp("rm", slot_a, p0=0) in plan.kv_ops
    assert ids_of(plan) == ["b"]
    h.drain()
    assert all("a" not in ids_of(p) for p in h.plans[1:])
    assert h.kv[slot_a] == []


def test_plan_without_update_counts_as_not_executed() -> None:
    s = Scheduler(config())
    s.add("a", [1, 2, 3], 5)
    first = s.schedule()  # the backend failed: the engine calls no update()
    again = s.schedule()
    assert again.items == first.items  # the same tokens again, from the same position
    s.update({"a": 9})
    assert s.schedule().items[0].tokens == (9,)


# -- KV pressure: preemption -----------------------------------------------------------------------


def test_newest_request_is_preempted_and_readmitted() -> None:
    h = Harness(config(n_ctx=32, n_slots=2, max_running=2))
    h.add("old", [1] * 10, max_new=15)
    h.add("new", [2] * 10, max_new=15)
    while not h.preempted:
        plan = h.step()
    assert h.preempted == ["new"]
    assert "old" in ids_of(plan) and "new" not in ids_of(plan)
    assert h.s.n_waiting == 1
    generated_before = len(h.tokens["new"]) - 10
    assert generated_before > 0
    h.drain()
    assert h.finished == {"old", "new"}
    assert h.n_generated["new"] == 15  # kept its generated tokens across the preemption
    assert h.s.stats().preempted == 1
    assert h.s.stats().prefix_cache_queries == 3  # the re-admission is a query too


def test_only_running_request_is_never_preempted() -> None:
    h = Harness(config(n_ctx=12, n_slots=1, max_running=1))
    h.add("a", [1] * 6, max_new=100)
    h.drain()
    assert not h.preempted
    assert len(h.tokens["a"]) == 12  # stopped by at_context_limit()
    assert h.s.at_context_limit("a") is False  # finished: unknown now


# -- one prompt's prefill holds up no other prompt ----------------------------------------------------

SERVE_DEFAULTS: dict[str, int | float] = dict(
    n_slots=20, n_ctx=8192, max_running=16, max_waiting=64, step_token_budget=512, prefill_chunk=64
)


def sizes_of(plan: StepPlan) -> dict[str, int]:
    return {i.request_id: len(i.tokens) for i in plan.items}


def with_a_decoding_stream(decoding: bool) -> Harness:
    h = Harness(config(**SERVE_DEFAULTS))
    if decoding:
        h.add("a", [5] * 20, max_new=4000)
        h.step()  # a decodes from now on: a step's prompt tokens are capped by prefill_chunk (64)
    return h


@pytest.mark.parametrize("decoding", [True, False])
def test_a_short_prompt_is_prefilled_at_once_next_to_a_long_one(decoding: bool) -> None:
    # It used to wait for the long prompt's whole prefill (55 steps, each ~1 s on a 7B): past the queue-wait bound, it
    # was refused "busy" with 14 of 16 running seats free.
    h = with_a_decoding_stream(decoding)
    h.add("b", list(range(1000, 4500)), max_new=8)
    h.step()
    h.add("c", list(range(5000, 5012)), max_new=8)
    plan = h.step()
    room = 64 if decoding else 512
    sizes = sizes_of(plan)
    assert sizes["c"] == 12 and h.n_generated["c"] == 1, "c's whole prompt, and its first token, in one step"
    assert sizes["b"] == room - 12, "the step's prompt room stays full"
    assert sizes.get("a") == (1 if decoding else None) and plan.items[0].request_id == ("a" if decoding else "b")
    assert h.s.n_waiting == 0


@pytest.mark.parametrize("decoding", [True, False])
def test_a_lone_long_prompt_still_takes_the_whole_room(decoding: bool) -> None:
    h = with_a_decoding_stream(decoding)
    h.add("b", list(range(1000, 4500)), max_new=8)
    room = 64 if decoding else 512
    steps = 0
    while h.n_generated["b"] == 0:
        sizes = sizes_of(h.step())
        steps += 1
        assert sizes["b"] == min(room, 3500 - (steps - 1) * room)
    assert steps == -(-3500 // room)


def test_the_long_prompt_keeps_its_share_while_short_ones_keep_coming() -> None:
    h = with_a_decoding_stream(True)
    h.add("b", list(range(1000, 2500)), max_new=4)
    steps = 0
    while h.n_generated["b"] == 0:
        h.add(f"c{steps}", list(range(5000 + 40 * steps, 5030 + 40 * steps)), max_new=2)  # a new chat every step
        sizes = sizes_of(h.step())
        steps += 1
        assert sizes[f"c{steps - 1}"] == 30 and sizes["b"] == min(64 - 30, 1500 - (steps - 1) * 34)
    assert steps == -(-1500 // 34)
    h.drain()


def test_equal_prompts_go_one_after_the_other_and_the_first_keeps_half() -> None:
    h = with_a_decoding_stream(True)
    h.add("b", list(range(1000, 2500)), max_new=4)
    h.step()
    for k in range(7):
        h.add(f"c{k}", list(range(5000 + 100 * k, 5100 + 100 * k)), max_new=4)
    # Sharing the room between equal prompts would answer all of them as late as the last one.
    assert sizes_of(h.step()) == {"a": 1, "b": 32, "c0": 32}
    assert h.s.n_waiting == 6
    while h.n_generated["b"] == 0:
        left = 1500 - h.computed["b"]
        assert sizes_of(h.step())["b"] >= min(32, left)
    h.drain()
    assert {"b", *(f"c{k}" for k in range(7))} <= h.finished


def test_a_long_prompt_waits_for_the_long_one_before_it_and_holds_up_nobody() -> None:
    h = with_a_decoding_stream(True)
    h.add("b", list(range(1000, 3000)), max_new=4)
    h.step()
    h.add("l", list(range(6000, 7000)), max_new=4)  # long too (> step_token_budget): sharing would only delay b
    h.add("c", list(range(5000, 5012)), max_new=4)  # short, behind l in the queue
    assert sizes_of(h.step()) == {"a": 1, "b": 52, "c": 12}, "c steps past l"
    assert h.s.n_waiting == 1
    while "l" not in sizes_of(h.step()):
        pass
    assert h.n_generated["b"] == 1, "l starts in the step that ends b's prompt (with the room b leaves)"
    h.drain()
    assert {"b", "l", "c"} <= h.finished


def test_a_prompt_of_up_to_a_step_shares_the_room_and_the_first_keeps_half() -> None:
    h = with_a_decoding_stream(True)
    h.add("b", list(range(1000, 4500)), max_new=4)
    h.step()
    h.add("m", list(range(6000, 6500)), max_new=4)  # 500 tokens: not long (step_token_budget 512)
    assert sizes_of(h.step()) == {"a": 1, "b": 32, "m": 32}, "the first keeps half, the short one gets the rest"
    while h.n_generated["m"] == 0:
        sizes = sizes_of(h.step())
        assert sizes["b"] >= 32 and sizes["b"] + sizes["m"] == 64
    h.drain()
    assert {"b", "m"} <= h.finished


def test_a_short_newcomer_gets_in_even_when_a_step_carries_two_prompt_tokens() -> None:
    # Paced steps of a big model carry a few prompt tokens only; a running chunk gives way, the newcomer's stays.
    h = Harness(config(prefill_chunk=2))
    h.add("a", [5] * 3, max_new=1000)
    h.step()
    h.add("b", list(range(1000, 2000)), max_new=2)
    h.step()
    h.add("x", list(range(3000, 3100)), max_new=2)
    assert sizes_of(h.step()) == {"a": 1, "b": 1, "x": 1}
    h.add("c", [9], max_new=2)
    assert sizes_of(h.step()) == {"a": 1, "b": 1, "c": 1}, "x (running, needing more than c) sits this step out"
    h.drain()
    assert {"b", "x", "c"} <= h.finished


@pytest.mark.parametrize(
    ("room", "demands", "shares"),
    [
        (64, [3488], [64]),  # alone: the whole room
        (64, [3488, 12], [52, 12]),  # a short prompt whole, the long one the rest
        (64, [12, 3488], [12, 52]),
        (64, [100, 100, 100], [64, 0, 0]),  # equal prompts one after the other
        (64, [3000, 2000], [64, 0]),  # long prompts in arrival order
        (64, [3000, 500, 100], [32, 0, 32]),  # the first keeps half, the shortest prompt gets the rest
        (64, [3000, 12, 12, 12, 12], [32, 12, 12, 8, 0]),
        (64, [10, 20], [10, 20]),
        (8, [100, 100, 100], [8, 0, 0]),
        (1, [5, 5], [1, 0]),
        (0, [5, 600], [0, 0]),
        (64, [], []),
    ],
)
def test_split_prefill_examples(room: int, demands: list[int], shares: list[int]) -> None:
    assert split_prefill(room, demands, long_from=512) == shares


@given(room=st.integers(0, 700), demands=st.lists(st.integers(1, 900), max_size=8), long_from=st.integers(1, 600))
def test_split_prefill_keeps_half_for_the_first_then_serves_the_short_ones(
    room: int, demands: list[int], long_from: int
) -> None:
    shares = split_prefill(room, demands, long_from)
    assert all(0 <= s <= d for s, d in zip(shares, demands, strict=True))
    assert sum(shares) == min(room, sum(demands)), "room left that a prompt could have used"
    if not demands:
        return
    sure = min(demands[0], -(-room // 2))
    assert shares[0] >= sure, "the first prompt is sure of half the room: it cannot starve"
    beyond = [s - (sure if i == 0 else 0) for i, s in enumerate(shares)]
    # The line after the first's half: short prompts shortest first (earlier between equals), then long ones in order.
    line = [(0, d, i) if d <= long_from else (1, 0, i) for i, d in enumerate(demands)]
    for j in range(len(demands)):
        if beyond[j] > 0:  # j got room beyond the first's half: every prompt before it in line has all it needs
            assert all(shares[i] == demands[i] for i in range(len(demands)) if line[i] < line[j])


# -- hypothesis: random workloads --------------------------------------------------------------------


OWNERS = st.sampled_from(["user:a", "user:a", "user:a", "user:b", None])


class SchedulerMachine(RuleBasedStateMachine):
    h: Harness

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.rejected: set[str] = set()

    @initialize(
        n_slots=st.integers(1, 5),
        running_frac=st.floats(0, 1),
        # Small sizes chunk and preempt often; large ones admit several long prompts in one step, next to entries
        # longer than KEEP_IDLE_TAIL (their shared headers are copied, not cut back).
        n_ctx=st.one_of(st.integers(8, 64), st.integers(128, 256)),
        max_waiting=st.integers(0, 4),
        budget=st.one_of(st.integers(1, 40), st.integers(64, 200)),
        chunk=st.one_of(st.integers(1, 16), st.integers(32, 100)),
    )
    def setup(
        self, n_slots: int, running_frac: float, n_ctx: int, max_waiting: int, budget: int, chunk: int
    ) -> None:
        max_running = 1 + round(running_frac * (n_slots - 1))
        self.h = Harness(
            SchedulerConfig(
                n_slots=n_slots,
                n_ctx=n_ctx,
                max_running=max_running,
                max_waiting=max_waiting,
                step_token_budget=budget,
                prefill_chunk=chunk,
            )
        )

    # A small vocabulary makes shared prefixes (and so prefix-cache hits) common.
    # Most requests have one owner (shared prefixes stay common); the others copy them (the prefix-cache probe).
    @rule(prompt=st.lists(st.integers(0, 3), min_size=0, max_size=20), max_new=st.integers(1, 24), owner=OWNERS)
    def add(self, prompt: list[int], max_new: int, owner: str | None) -> None:
        self._add(prompt, max_new, owner)

    @rule(header=st.integers(1, 12), tail=st.integers(KEEP_IDLE_TAIL, KEEP_IDLE_TAIL + 8), max_new=st.integers(1, 4),
          owner=OWNERS)
    def add_long(self, header: int, tail: int, max_new: int, owner: str | None) -> None:
        """A long prompt that shares only a header with the others: its entry is copied from, not cut back."""
        self._add([*range(10, 10 + header), 100 + self.n, *range(50, 50 + tail)], max_new, owner)

    @rule(data=st.data(), suffix=st.lists(st.integers(0, 3), max_size=5), max_new=st.integers(1, 24), owner=OWNERS)
    def add_follow_up(self, data: st.DataObject, suffix: list[int], max_new: int, owner: str | None) -> None:
        """A next turn: an earlier request's tokens (finished or not) plus a few more, maybe by another owner."""
        base = data.draw(st.sampled_from(sorted(self.h.tokens) or [""]))
        self._add(self.h.tokens.get(base, []) + suffix, max_new, owner)

    def _add(self, prompt: list[int], max_new: int, owner: str | None = None) -> None:
        h = self.h
        rid = f"r{self.n}"
        self.n += 1
        free_seats = max(0, h.cfg.max_running - len(h.slot_of))  # seats held by pending aborts count
        try:
            h.add(rid, prompt, max_new, owner)
        except ContextLengthExceeded:
            assert len(prompt) + 1 > h.cfg.n_ctx
            self.rejected.add(rid)
        except InvalidRequest:
            assert not prompt
            self.rejected.add(rid)
        except Overloaded:
            assert h.s.n_waiting >= h.cfg.max_waiting + free_seats
            self.rejected.add(rid)
        else:
            assert prompt and len(prompt) + 1 <= h.cfg.n_ctx

    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        self.h.abort(data.draw(st.sampled_from([*sorted(self.h.tokens), "unknown"])))

    @rule(seed=st.integers(0, 2**16), n=st.integers(1, 4))
    def step(self, seed: int, n: int) -> None:
        rng = random.Random(seed)
        for _ in range(n):
            self.h.step(sample=lambda rid: rng.randrange(4), stop=lambda rid: rng.random() < 0.05)

    @invariant()
    def counts_agree(self) -> None:
        h = self.h
        live = set(h.tokens) - h.gone
        assert h.s.n_waiting + h.s.n_running == len(live)
        assert h.s.n_running <= h.cfg.max_running

    def teardown(self) -> None:
        h = getattr(self, "h", None)
        if h is None:
            return
        rng = random.Random(0)
        h.drain(sample=lambda rid: rng.randrange(4), stop=lambda rid: rng.random() < 0.05)
        stats = h.s.stats()
        # Shown by --hypothesis-show-statistics: the workloads do reach the interesting paths.
        event(f"preempted: {bool(stats.preempted)}")
        event(f"prefix cache hit: {bool(stats.prefix_cache_hits)}")
        event(f"copy from running slot: {any(op.kind == 'cp' for p in h.plans for op in p.kv_ops)}")
        event(f"copy from an idle entry next to another admission: {bool(h.idle_copies_with_company)}")
        event(f"running request aborted: {any(p.aborted for p in h.plans)}")
        assert h.gone == set(h.tokens), "a request neither finished nor was aborted"
        assert h.s.n_waiting == h.s.n_running == 0


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- a prefix another request is still computing ----------------------------------------------------


def test_identical_prompts_wait_for_the_first_and_copy_its_prompt() -> None:
    # The n choices of one request: one prefill, the others share its KV.
    h = Harness(config(prefill_chunk=64, step_token_budget=64))
    prompt = list(range(10, 150))  # three steps of prefill
    for rid in ("a", "b", "c"):
        h.add(rid, prompt, max_new=4)
    h.add("other", [5] * 20, max_new=4)
    first = h.step()
    # b and c wait for a's prefill; 'other' is not held up by them, and shares the step's room with a's prefill.
    assert [(i.request_id, len(i.tokens)) for i in first.items] == [("a", 44), ("other", 20)]
    while len(h.tokens["a"]) == len(prompt):
        plan = h.step()
        assert not {"b", "c"} & set(ids_of(plan))
        assert "other" in ids_of(plan) or h.s.n_waiting == 3
    admit = h.step()
    cps = [op for op in admit.kv_ops if op.kind == "cp"]
    assert sorted(op.p1 for op in cps) == [len(prompt) - 1] * 2, "each copies all but the last prompt token"
    for rid in ("b", "c"):
        item = next(i for i in admit.items if i.request_id == rid)
        assert (item.pos0, item.tokens, item.sample) == (len(prompt) - 1, (prompt[-1],), True)
    assert h.s.stats().prefix_cache_hit_tokens == 2 * (len(prompt) - 1)
    h.drain()


def test_a_short_shared_start_is_not_waited_for() -> None:
    h = Harness(config(prefill_chunk=64, step_token_budget=512))
    h.add("a", [*range(10, 20), *([1] * 100)], max_new=2)
    h.add("b", [*range(10, 20), *([2] * 100)], max_new=2)  # 10 shared tokens: below SHARE_MIN_TOKENS
    assert sorted(ids_of(h.step())) == ["a", "b"]


def test_prompt_logprob_requests_never_take_a_cached_prefix() -> None:
    h = Harness(config())
    prompt = list(range(10, 60))
    h.add("a", prompt, max_new=2)
    h.drain()
    h.s.add("b", prompt, 2, reuse_prefix=False)
    h.tokens["b"], h.max_new["b"], h.n_generated["b"] = list(prompt), 2, 0
    plan = h.step()
    (item,) = plan.items
    assert item.pos0 == 0 and not [op for op in plan.kv_ops if op.kind == "cp"]
    assert h.s.stats().prefix_cache_hits == 0
