"""The continuous-batching scheduler: a pure state machine (no model, no threads, no I/O, no clock).

Like vLLM v1's scheduler, every request has ``tokens`` (prompt + generated so far) and ``n_computed``, how
many of them sit in its slot's KV cache at positions ``0 .. n_computed-1``. Prefill and decode are the same
operation: feed ``tokens[n_computed:]``; decoding is the case of one token left. An item samples only when
its chunk reaches the end of ``tokens``.

One ``schedule()`` builds one ``StepPlan`` (one ``llama_decode``):

1. pending aborts free their slots (``rm`` at position 0);
2. running requests, oldest admission first: every decoding request gets its token, then prefilling requests
   get chunks — at most ``step_token_budget`` tokens in all, and at most ``prefill_chunk`` prompt tokens
   whenever somebody decodes (chunked prefill keeps other streams flowing), fewer when the steps are slow:
   ``prefill_step_s`` caps such a step by time too, from the per-token cost of the steps executed so far
   (engine/pacing.py; the engine reports each step with ``observe_step``);
   the prompt tokens of a step are split between the prompts being prefilled, running or being admitted
   (``split_prefill``): the one that arrived first is sure of half of them, the rest go to the short prompts
   (at most ``step_token_budget`` tokens left), shortest first, then to the long ones in arrival order. So a
   short prompt is admitted and prefilled at once next to a long one instead of waiting for its whole
   prefill (a minute on a 7B: past the queue-wait bound, the server answered "busy" with its seats free); a
   lone prompt still takes the whole room; a long prompt waits for the long one before it; nothing starves;
3. waiting requests are admitted FIFO into a slot chosen by the prefix cache (longest common prefix with
   the KV of idle slots, kept after a request finishes, or of running slots, shared by ``cp``); a request whose
   prompt shares a prefix that a running request is still prefilling waits for it (its whole prompt, as for
   the ``n`` choices of one request, or at least ``SHARE_MIN_TOKENS``), then takes it by ``cp`` instead of
   computing it a second time; the requests behind it are not held up, nor by a prompt that gets no room in
   this step (shorter or older ones took it). Only KV of the same ``cache_owner``
   counts (an idle entry keeps its request's owner): a request never reuses, nor waits for, another owner's
   prefix, so neither its cached tokens nor its time to first token tell anything about another user's prompt;
4. KV cells are counted conservatively (a cell shared by two sequences counts twice), so the plan always
   fits in ``n_ctx``; room is made by evicting idle slots (least recently used first), then by shortening
   a prefill chunk, and only when not one token fits by preempting running requests (newest admission
   first) back to the front of the waiting queue, to be recomputed later.

``update()`` applies what the backend computed; ``finish()`` turns a request's slot into an idle prefix-cache
entry. ``expire_waiting(now, max_wait_s)`` removes the requests that were never admitted and have waited longer
than the bound (the engine answers them 429). ``observe_step(step_s, …)`` tells it how long the last step took.
Time is passed in, never read: the scheduler keeps no clock. All state changes happen in these calls, from one
thread (the engine's lock guards them).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from inhouse.engine.pacing import PrefillPacer
from inhouse.engine.protocol import BatchItem, KvOp, StepPlan
from inhouse.errors import ContextLengthExceeded, InvalidRequest, Overloaded

_LCP_BLOCK = 256
SHARE_MIN_TOKENS = 32  # a prefix still being prefilled by another request that is worth waiting for
KEEP_IDLE_TAIL = 32  # most tokens of an idle prefix-cache entry that a request may cut off by reusing it in place


@dataclass(frozen=True)
class SchedulerConfig:
    n_slots: int  # sequence ids 0..n_slots-1 available in the backend (llama.cpp seq ids)
    n_ctx: int  # total KV cells shared by all sequences (unified KV cache)
    max_running: int  # most requests running at once (<= n_slots)
    max_waiting: int  # bounded admission: a full waiting queue rejects at once
    step_token_budget: int  # most tokens in one step (one llama_decode call)
    prefill_chunk: int  # most prompt tokens per step (summed over requests) while any request decodes
    retry_after_s: float = 1.0
    prefill_step_s: float = 0.0  # while any request decodes, prompt tokens are also capped to fit this step time

    def __post_init__(self) -> None:
        if self.n_slots < 1 or self.n_ctx < 2 or self.step_token_budget < 1 or self.prefill_chunk < 1:
            raise ValueError(f"invalid scheduler config: {self}")
        if not 1 <= self.max_running <= self.n_slots:
            raise ValueError(f"max_running must be in 1..{self.n_slots} (n_slots), got {self.max_running}")
        if self.max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {self.max_waiting}")
        if self.prefill_step_s < 0:
            raise ValueError(f"prefill_step_s must be >= 0, got {self.prefill_step_s}")


@dataclass
class SchedulerStats:
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prefix_cache_hit_tokens: int = 0
    preempted: int = 0
    aborted: int = 0
    rejected_queue_full: int = 0
    rejected_queue_timeout: int = 0  # never admitted within the queue-wait bound (expire_waiting)
    kv_cells_used: int = 0


@dataclass(eq=False)
class _Request:
    request_id: str
    tokens: list[int]
    max_new_tokens: int
    n_computed: int = 0
    slot: int = -1
    admitted: int = -1  # admission order: higher is newer; preemption picks the highest
    n_cached: int = 0  # prompt tokens taken from the prefix cache at the first admission (usage reporting)
    reuse_prefix: bool = True  # False: every position is computed (prompt log-probabilities need their logits)
    queued_s: float = 0.0  # when add() queued it (the caller's clock), for the queue-wait bound
    n_prompt: int = 0  # prompt tokens as added (the rest of ``tokens`` was generated)
    arrival: int = 0  # add() order: the prompt room's split (split_prefill) favours the earliest
    cache_owner: str | None = None  # its KV is a prefix only for requests of the same owner (None: owner-less ones)


@dataclass
class _Idle:
    """A finished request's slot, kept as a prefix-cache entry."""

    tokens: list[int]  # never mutated once idle
    last_used: int  # step counter, for LRU eviction
    n_prompt: int = 0  # how many of ``tokens`` were its prompt (the rest, its answer)
    cache_owner: str | None = None  # the finished request's: only requests of this owner reuse the entry


class _Admission(enum.Enum):
    ADMITTED = "admitted"
    BLOCKED = "blocked"  # no seat, no KV room, or the decodes took the whole step: the requests behind it wait too
    LATER = "later"  # no prompt room for it (older or shorter prompts took it): a shorter one behind it may go


@dataclass
class _Build:
    """What one ``schedule()`` call has put in its plan so far."""

    rm_ops: list[KvOp]
    cp_ops: list[KvOp]
    items: dict[str, BatchItem]
    decodes: set[str]
    cleared: set[int]  # slots with an rm(slot, 0) in this plan
    budget_left: int
    prefill_used: int = 0
    preempted_any: bool = False
    # Slots a cp of this plan reads from. Every rm runs before every cp, so these are never cleared, cut back or
    # reused for the rest of the step: the copy would read an emptied slot.
    cp_sources: set[int] = field(default_factory=set)
    admitted: set[str] = field(default_factory=set)  # requests admitted by this plan: each keeps its item

    @property
    def planned_tokens(self) -> int:
        return sum(len(i.tokens) for i in self.items.values())


def split_prefill(room: int, demands: Sequence[int], long_from: int) -> list[int]:
    """How many of a step's ``room`` prompt tokens each prompt being prefilled gets; ``demands`` (the tokens each
    still needs) are in arrival order, and a prompt needing more than ``long_from`` tokens is long.

    The prompt that arrived first is sure of half the room (all of it when alone), whatever else arrives: it
    finishes at worst twice as slowly as alone, so nothing starves (each prompt becomes the first in time). The
    rest goes to the short prompts, shortest first (the earlier between equals), then to the long ones in arrival
    order. So a short prompt next to a long one is prefilled at once; equal prompts go one after the other
    (sharing would answer all of them as late as the last); and a long prompt waits for the long one before it
    (sharing would delay the first answer as much as it brings the second one closer).
    """
    shares = [0] * len(demands)
    if not demands:
        return shares
    left = max(0, room)
    shares[0] = min(demands[0], (left + 1) // 2)
    left -= shares[0]
    short = sorted((i for i, d in enumerate(demands) if d <= long_from), key=lambda i: (demands[i], i))
    for i in short + [i for i, d in enumerate(demands) if d > long_from]:
        give = min(demands[i] - shares[i], left)
        shares[i] += give
        left -= give
    return shares


def _lcp(a: list[int], b: list[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``. Compares blocks with C-speed
    slice equality first: prompts of thousands of tokens are matched against every slot at admission."""
    n = min(len(a), len(b), limit)
    i = 0
    while i + _LCP_BLOCK <= n and a[i : i + _LCP_BLOCK] == b[i : i + _LCP_BLOCK]:
        i += _LCP_BLOCK
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Scheduler:
    """Decides, step by step, which tokens of which requests llama.cpp decodes together."""

    def __init__(self, config: SchedulerConfig) -> None:
        self._cfg = config
        self._waiting: deque[_Request] = deque()
        self._running: dict[str, _Request] = {}  # insertion order = admission order
        self._by_id: dict[str, _Request] = {}  # waiting and running
        self._slot_owner: list[str | None] = [None] * config.n_slots
        self._idle: dict[int, _Idle] = {}
        self._pending_aborts: dict[str, None] = {}  # ordered set of running requests to drop next step
        self._inflight: list[BatchItem] = []  # items of the last plan, until update()
        self._step = 0
        self._admissions = 0
        self._arrivals = 0
        self._stats = SchedulerStats()
        self._pacer = PrefillPacer(config.prefill_step_s)

    # -- requests ------------------------------------------------------------------------------------

    def add(self, request_id: str, prompt_tokens: Sequence[int], max_new_tokens: int, *,
            reuse_prefix: bool = True, now: float = 0.0, cache_owner: str | None = None) -> None:
        cfg = self._cfg
        if not prompt_tokens:
            raise InvalidRequest("The prompt is empty.", param="messages")
        if request_id in self._by_id:
            raise InvalidRequest(f"Request id '{request_id}' is already in use.")
        if max_new_tokens < 1:
            raise InvalidRequest("'max_tokens' must be at least 1.", param="max_tokens")
        if len(prompt_tokens) + 1 > cfg.n_ctx:
            raise ContextLengthExceeded(len(prompt_tokens), cfg.n_ctx, max_tokens=max_new_tokens)
        # Requests that the next step will admit into a free running seat are not "waiting" in the sense of
        # the bound: max_waiting counts requests queued beyond the running capacity.
        free_seats = max(0, cfg.max_running - len(self._running))
        if len(self._waiting) >= cfg.max_waiting + free_seats:
            self._stats.rejected_queue_full += 1
            raise Overloaded(
                f"The server is busy: {len(self._waiting)} requests are waiting. Retry shortly.",
                retry_after_s=cfg.retry_after_s,
            )
        self._arrivals += 1
        req = _Request(request_id, list(prompt_tokens), max_new_tokens, reuse_prefix=reuse_prefix, queued_s=now,
                       n_prompt=len(prompt_tokens), cache_owner=cache_owner, arrival=self._arrivals)
        self._waiting.append(req)
        self._by_id[request_id] = req

    def expire_waiting(self, now: float, max_wait_s: float) -> list[str]:
        """Remove and return the requests queued at ``now - max_wait_s`` or earlier that were never admitted (a
        preempted request has streamed already: it is never expired). ``max_wait_s`` <= 0: none expire."""
        if max_wait_s <= 0 or not self._waiting:
            return []
        expired = [r for r in self._waiting if r.admitted < 0 and now - r.queued_s >= max_wait_s]
        for req in expired:
            self._waiting.remove(req)
            del self._by_id[req.request_id]
        self._stats.rejected_queue_timeout += len(expired)
        return [r.request_id for r in expired]

    def abort(self, request_id: str) -> None:
        req = self._by_id.get(request_id)
        if req is None or request_id in self._pending_aborts:
            return
        self._stats.aborted += 1
        if request_id in self._running:
            self._pending_aborts[request_id] = None  # its KV is freed by the next plan
        else:
            self._waiting.remove(req)
            del self._by_id[request_id]

    def finish(self, request_id: str) -> None:
        req = self._by_id.pop(request_id, None)
        if req is None:
            return
        self._pending_aborts.pop(request_id, None)  # the request ended anyway; its KV is still valid
        if request_id not in self._running:
            self._waiting.remove(req)
            return
        del self._running[request_id]
        self._slot_owner[req.slot] = None
        if req.n_computed > 0:
            # The last sampled token was never fed back, so the KV holds tokens[:n_computed] only.
            self._idle[req.slot] = _Idle(req.tokens[: req.n_computed], self._step, min(req.n_prompt, req.n_computed),
                                         req.cache_owner)

    def at_context_limit(self, request_id: str) -> bool:
        """True when the request cannot grow any more: the engine must finish it with "length"."""
        req = self._by_id.get(request_id)
        return req is not None and len(req.tokens) >= self._cfg.n_ctx

    def cached_tokens(self, request_id: str) -> int:
        """Prompt tokens the request took from the prefix cache instead of computing them."""
        req = self._by_id.get(request_id)
        return req.n_cached if req is not None else 0

    # -- introspection -------------------------------------------------------------------------------

    @property
    def n_waiting(self) -> int:
        return len(self._waiting)

    @property
    def queue_ahead(self) -> int:
        """How many waiting requests a new one would queue behind; negative: a running seat is free for it."""
        return len(self._waiting) - max(0, self._cfg.max_running - len(self._running))

    @property
    def n_running(self) -> int:
        return len(self._running) - len(self._pending_aborts)

    def has_work(self) -> bool:
        return bool(self._waiting or self._running)

    def stats(self) -> SchedulerStats:
        s = self._stats
        return SchedulerStats(
            prefix_cache_queries=s.prefix_cache_queries,
            prefix_cache_hits=s.prefix_cache_hits,
            prefix_cache_hit_tokens=s.prefix_cache_hit_tokens,
            preempted=s.preempted,
            aborted=s.aborted,
            rejected_queue_full=s.rejected_queue_full,
            rejected_queue_timeout=s.rejected_queue_timeout,
            kv_cells_used=self._kv_cells(),
        )

    # -- the step ------------------------------------------------------------------------------------

    def schedule(self) -> StepPlan:
        # A plan never followed by update() (the backend failed) is treated as not executed.
        self._inflight = []
        self._step += 1
        plan = StepPlan()
        b = _Build(
            rm_ops=[],
            cp_ops=[],
            items={},
            decodes=set(),
            cleared=set(),
            budget_left=self._cfg.step_token_budget,
        )
        self._emit_aborts(plan, b)
        self._schedule_running(plan, b)
        if not b.preempted_any:  # re-admitting what was just preempted would only thrash
            self._admit_waiting(b)
        plan.kv_ops = b.rm_ops + b.cp_ops  # removals first: a cp target must be empty (and no rm hits a cp source)
        plan.items = list(b.items.values())
        plan.n_decode_tokens = len(b.decodes)
        assert self._kv_cells() + b.planned_tokens <= self._cfg.n_ctx, "KV accounting broke"
        self._inflight = plan.items
        return plan

    def observe_step(self, step_s: float, prompt_tokens: int, decode_tokens: int) -> None:
        """An executed step took ``step_s`` seconds for ``prompt_tokens`` + ``decode_tokens`` (the plan's
        ``n_prompt_tokens`` / ``n_decode_tokens``): the time cap of the next prefill chunks learns from it."""
        self._pacer.observe(step_s, prompt_tokens, decode_tokens)

    def prefill_cap(self, decode_tokens: int) -> int:
        """Most prompt tokens a step with ``decode_tokens`` decoding requests may carry now."""
        return self._pacer.prompt_cap(self._cfg.prefill_chunk, decode_tokens)

    def update(self, sampled: Mapping[str, int]) -> None:
        inflight, self._inflight = self._inflight, []
        for item in inflight:
            req = self._running.get(item.request_id)
            if req is None or req.slot != item.slot or req.n_computed != item.pos0:
                continue
            req.n_computed += len(item.tokens)
            if item.sample:
                token = sampled.get(item.request_id)
                if token is not None:
                    req.tokens.append(token)
                # Without a token the request has nothing left to feed; _schedule_running rewinds it.

    # -- internals -----------------------------------------------------------------------------------

    def _kv_cells(self) -> int:
        return sum(r.n_computed for r in self._running.values()) + sum(
            len(i.tokens) for i in self._idle.values()
        )

    def _free_cells(self, b: _Build) -> int:
        return self._cfg.n_ctx - self._kv_cells() - b.planned_tokens

    def _clear_slot(self, slot: int, b: _Build) -> None:
        if slot not in b.cleared:
            b.rm_ops.append(KvOp("rm", slot, p0=0))
            b.cleared.add(slot)

    def _emit_aborts(self, plan: StepPlan, b: _Build) -> None:
        for rid in self._pending_aborts:
            req = self._running.pop(rid)
            del self._by_id[rid]
            self._slot_owner[req.slot] = None
            self._clear_slot(req.slot, b)
            plan.aborted.append(rid)
        self._pending_aborts.clear()

    def _evict_lru_idle(self, b: _Build) -> bool:
        candidates = [s for s in self._idle if s not in b.cp_sources]
        if not candidates:
            return False
        slot = min(candidates, key=lambda s: (self._idle[s].last_used, s))
        del self._idle[slot]
        self._clear_slot(slot, b)
        return True

    def _preempt(self, req: _Request, plan: StepPlan, b: _Build) -> None:
        del self._running[req.request_id]
        b.items.pop(req.request_id, None)
        b.decodes.discard(req.request_id)
        self._slot_owner[req.slot] = None
        self._clear_slot(req.slot, b)
        req.slot = -1
        req.n_computed = 0
        # In front of the queue; preempting newest first and pushing each to the front keeps older ones first.
        self._waiting.appendleft(req)
        plan.preempted.append(req.request_id)
        b.preempted_any = True
        self._stats.preempted += 1

    def _make_room(self, req: _Request, want: int, plan: StepPlan, b: _Build) -> int:
        """Free cells for ``want`` new tokens of running ``req``; return how many fit (maybe fewer, or 0).

        Idle prefix-cache entries go first until the whole chunk fits. Running requests newer than ``req``
        are preempted only while not even one token fits: a shorter prefill chunk costs nothing, while a
        preempted request must recompute its whole KV later.
        """
        while self._free_cells(b) < want and self._evict_lru_idle(b):
            pass
        while self._free_cells(b) < 1:
            newer = [r for r in self._running.values() if r is not req and r.admitted > req.admitted]
            if not newer:
                break
            self._preempt(max(newer, key=lambda r: r.admitted), plan, b)
        return max(0, min(want, self._free_cells(b)))

    def _add_item(self, req: _Request, n: int, b: _Build, *, decode: bool) -> None:
        start = req.n_computed
        b.items[req.request_id] = BatchItem(
            request_id=req.request_id,
            slot=req.slot,
            tokens=tuple(req.tokens[start : start + n]),
            pos0=start,
            sample=start + n == len(req.tokens),
        )
        b.budget_left -= n
        if decode:
            b.decodes.add(req.request_id)
        else:
            b.prefill_used += n

    def _prefill_room(self, b: _Build) -> int:
        if b.decodes:
            return min(b.budget_left, self.prefill_cap(len(b.decodes)) - b.prefill_used)
        return b.budget_left

    def _schedule_running(self, plan: StepPlan, b: _Build) -> None:
        for req in list(self._running.values()):
            if req.n_computed >= len(req.tokens):
                # update() got no token for it (a backend that broke its contract): re-feed the last token.
                req.n_computed = len(req.tokens) - 1
                b.rm_ops.append(KvOp("rm", req.slot, p0=req.n_computed))
        order = list(self._running.values())
        for req in order:
            if req.request_id in self._running and len(req.tokens) - req.n_computed == 1:  # not preempted meanwhile
                self._serve_running(req, min(1, b.budget_left), plan, b, decode=True)
        # Prompt chunks, once the decodes are in: the room left split between the prefilling requests.
        prefilling = [r for r in order if r.request_id in self._running and len(r.tokens) - r.n_computed > 1]
        shares = self._split(self._prefill_room(b), prefilling)
        for req in prefilling:  # admission order: an older request may preempt a newer one for room
            if req.request_id in self._running:
                self._serve_running(req, min(shares[req.request_id], self._prefill_room(b)), plan, b, decode=False)

    def _split(self, room: int, prefilling: list[_Request], demand: dict[str, int] | None = None) -> dict[str, int]:
        """``split_prefill`` of ``room`` between ``prefilling`` requests (by arrival), each needing the rest of its
        tokens unless ``demand`` says otherwise."""
        by_arrival = sorted(prefilling, key=lambda r: r.arrival)
        needs = [(demand or {}).get(r.request_id, len(r.tokens) - r.n_computed) for r in by_arrival]
        shares = split_prefill(room, needs, self._cfg.step_token_budget)
        return {r.request_id: n for r, n in zip(by_arrival, shares, strict=True)}

    def _serve_running(self, req: _Request, want: int, plan: StepPlan, b: _Build, *, decode: bool) -> None:
        if want <= 0:
            return
        n = self._make_room(req, want, plan, b)
        if n >= 1:
            self._add_item(req, n, b, decode=decode)
        elif len(self._running) > 1:
            # Nothing newer is left to preempt: this request is the newest, so it yields.
            self._preempt(req, plan, b)
        # else: the only running request cannot fit at all; add() and at_context_limit() keep
        # this from happening when the engine honours them.

    def _admit_waiting(self, b: _Build) -> None:
        """Admit FIFO until one does not fit; requests waiting for a shared prefix, or getting no prompt room in
        this step, are stepped over (they keep their place in the queue)."""
        deferred: list[_Request] = []
        long_waits = False  # a long prompt got no room: the long ones behind it get none either
        while self._waiting:
            req = self._waiting[0]
            if (long_waits and self._surely_long(req)) or self._prefix_in_progress(req):
                deferred.append(self._waiting.popleft())
                continue
            outcome = self._try_admit(req, b)
            if outcome is _Admission.LATER:
                long_waits = long_waits or self._surely_long(req)
                deferred.append(self._waiting.popleft())
                continue
            if outcome is _Admission.BLOCKED:
                break
            self._waiting.popleft()
        self._waiting.extendleft(reversed(deferred))

    def _surely_long(self, req: _Request) -> bool:
        """Whether ``req``'s prompt is long for ``split_prefill`` whatever prefix of it the cache holds: lengths only,
        so a queue of long prompts is not matched against every slot at every step while they wait."""
        owner = req.cache_owner
        cached = max([len(i.tokens) for i in self._idle.values() if i.cache_owner == owner and req.reuse_prefix]
                     + [r.n_computed for r in self._running.values() if r.cache_owner == owner and req.reuse_prefix]
                     + [0])
        return len(req.tokens) - cached > self._cfg.step_token_budget

    def _admission_room(self, req: _Request, demand: int, b: _Build) -> tuple[int, dict[str, int]]:
        """The prompt tokens ``req`` gets if admitted now with ``demand`` still to compute — its part of the step's
        prompt room split anew with the prefilling requests (``split_prefill``) — and the chunks already planned
        that must shrink for it: request id -> tokens it keeps (0: no chunk this step; a request admitted by this
        plan keeps at least one token, its item is what places it)."""
        prefilling = [r for r in self._running.values() if r.request_id not in b.decodes
                      and (r.request_id in b.items or len(r.tokens) - r.n_computed > 1)]
        shares = self._split(b.prefill_used + self._prefill_room(b), [*prefilling, req], {req.request_id: demand})
        keep: dict[str, int] = {}
        for r in prefilling:
            item = b.items.get(r.request_id)
            k = max(1, shares[r.request_id]) if r.request_id in b.admitted else shares[r.request_id]
            if item is not None and len(item.tokens) > k:
                keep[r.request_id] = k
        freed = sum(len(b.items[rid].tokens) - k for rid, k in keep.items())
        return min(shares[req.request_id], self._prefill_room(b) + freed), keep

    def _cut_back(self, keep: Mapping[str, int], b: _Build) -> None:
        for rid, k in keep.items():
            item = b.items[rid]
            # A shorter chunk only frees cells: the KV room checked for the longer one still holds.
            if k > 0:
                sample = item.pos0 + k == len(self._running[rid].tokens)
                b.items[rid] = replace(item, tokens=item.tokens[:k], sample=sample)
            else:
                del b.items[rid]  # a running request: its KV stays, it continues next step
            b.budget_left += len(item.tokens) - k
            b.prefill_used -= len(item.tokens) - k

    def _prefix_in_progress(self, req: _Request) -> bool:
        """Whether a running request is still prefilling a prefix of ``req``'s prompt worth waiting for."""
        if not req.reuse_prefix or req.admitted >= 0:  # a preempted request is not held back again
            return False
        cap = len(req.tokens) - 1
        for r in self._running.values():
            if r.request_id in self._pending_aborts or r.n_computed >= cap or r.cache_owner != req.cache_owner:
                continue
            shared = _lcp(r.tokens, req.tokens, cap)
            if shared > r.n_computed and (shared == cap or shared - r.n_computed >= SHARE_MIN_TOKENS):
                return True
        return False

    def _placement(self, req: _Request, lcp: int, src: int, b: _Build, *, in_place: bool
                   ) -> tuple[int, list[int]] | None:
        """The slot for ``req`` and the idle entries to evict for its room, or None when it does not fit now.
        ``in_place``: reuse the idle entry ``src`` itself (cut back to ``lcp``); otherwise a free slot or the least
        recently used other idle entry, with ``lcp`` tokens copied from ``src`` when ``lcp`` > 0. The sources of
        the plan's copies are never the target nor evicted."""
        cfg = self._cfg
        cells = self._kv_cells() + b.planned_tokens
        if in_place:
            target = src
            cells -= len(self._idle[src].tokens) - lcp
        else:
            empty = [s for s in range(cfg.n_slots) if self._slot_owner[s] is None and s not in self._idle]
            others = [s for s in self._idle if not (lcp > 0 and s == src) and s not in b.cp_sources]
            if empty:
                target = empty[0]
            elif others:
                target = min(others, key=lambda s: (self._idle[s].last_used, s))
                cells -= len(self._idle[target].tokens)
            else:
                return None
            cells += lcp
        # Admission never preempts, and waits until the whole rest of the prompt plus the first sampled
        # token fit: admitting into the last few cells would only get the request preempted again at once.
        # Dropping prefix-cache entries to make that room is cheap; a copy's source stays for the copy.
        need = len(req.tokens) - lcp + 1
        keep = ({target, src} if lcp > 0 else {target}) | b.cp_sources
        evict: list[int] = []
        for s in sorted((s for s in self._idle if s not in keep), key=lambda s: (self._idle[s].last_used, s)):
            if cfg.n_ctx - cells >= need:
                break
            evict.append(s)
            cells -= len(self._idle[s].tokens)
        return (target, evict) if cfg.n_ctx - cells >= need else None

    def _try_admit(self, req: _Request, b: _Build) -> _Admission:
        if len(self._running) >= self._cfg.max_running:
            return _Admission.BLOCKED
        if b.prefill_used + self._prefill_room(b) <= 0:  # the decodes took the whole step
            return _Admission.BLOCKED
        cap = len(req.tokens) - 1  # at least one token must be fed to get logits
        # Prefix cache: the longest common prefix with the KV of any slot of the same owner. Ties prefer an idle slot
        # (no copy, and its cells are reused rather than duplicated), then the most recently used one, then the
        # lowest slot.
        best: tuple[int, int, int, int] = (0, 0, 0, 0)  # (lcp, is_idle, recency, -slot)
        if req.reuse_prefix:
            owner = req.cache_owner
            for slot, idle in self._idle.items():
                if idle.cache_owner == owner:
                    best = max(best, (_lcp(idle.tokens, req.tokens, cap), 1, idle.last_used, -slot))
            for r in self._running.values():
                if r.cache_owner == owner:
                    best = max(best, (_lcp(r.tokens, req.tokens, min(cap, r.n_computed)), 0, 0, -r.slot))
        lcp, from_idle, src = best[0], best[1] == 1, -best[3]
        n, keep = self._admission_room(req, len(req.tokens) - lcp, b)
        if n <= 0:
            return _Admission.LATER
        src_idle = src if from_idle and lcp > 0 else None
        # An idle entry is cut back in place when little of it is lost (the same conversation's next turn) or
        # only its answer is (the same prompt again: a regenerated answer replaces it); a request that shares just a
        # template header or a system prompt with it copies that prefix into another slot instead, so that entry
        # (another conversation) stays cached, unless the copy does not fit.
        entry = self._idle[src_idle] if src_idle is not None else None
        can_cut = entry is not None and src not in b.cp_sources  # a copy planned this step still reads it
        placement = None
        if entry is not None and (not can_cut or (len(entry.tokens) - lcp > KEEP_IDLE_TAIL
                                                  and lcp < entry.n_prompt - 1)):
            placement = self._placement(req, lcp, src, b, in_place=False)
        if placement is None and (can_cut or entry is None):
            placement = self._placement(req, lcp, src, b, in_place=can_cut)
        if placement is None:
            return _Admission.BLOCKED
        target, evict = placement
        in_place = target == src_idle
        # Commit.
        self._cut_back(keep, b)
        for s in evict:
            del self._idle[s]
            self._clear_slot(s, b)
        if in_place:
            del self._idle[target]
            b.rm_ops.append(KvOp("rm", target, p0=lcp))
        else:
            self._idle.pop(target, None)
            # Cleared even when believed empty: cheap, and safe if a failed step left stale cells behind.
            self._clear_slot(target, b)
            if lcp > 0:
                b.cp_ops.append(KvOp("cp", target, p1=lcp, src=src))
                b.cp_sources.add(src)
        self._stats.prefix_cache_queries += 1
        if lcp > 0:
            self._stats.prefix_cache_hits += 1
            self._stats.prefix_cache_hit_tokens += lcp
        req.slot = target
        req.n_computed = lcp
        if req.admitted < 0:  # a preempted request's re-admission reuses its own KV: not a cache hit for usage
            req.n_cached = min(lcp, len(req.tokens))
        self._admissions += 1
        req.admitted = self._admissions
        self._slot_owner[target] = req.request_id
        self._running[req.request_id] = req
        self._add_item(req, n, b, decode=False)
        b.admitted.add(req.request_id)
        return _Admission.ADMITTED
