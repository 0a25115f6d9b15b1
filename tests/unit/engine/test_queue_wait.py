"""The queue-wait bound (``engine.max_queue_wait_s``): the scheduler expires requests never admitted in time, the
drain rate estimates waits and Retry-After from injected times, and the engine turns both into ``Overloaded``
before a request's first delta. Time is a fake clock everywhere: nothing here sleeps to make a request expire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from inhouse.engine.drain import DrainRate
from inhouse.engine.engine import Engine
from inhouse.engine.params import Delta, GenerationRequest, SamplingParams
from inhouse.engine.scheduler import Scheduler, SchedulerConfig
from inhouse.errors import Overloaded
from inhouse.testing.fakes import build_fake_engine


def config(**kw: int) -> SchedulerConfig:
    base = {"n_slots": 1, "n_ctx": 4096, "max_running": 1, "max_waiting": 8, "step_token_budget": 512,
            "prefill_chunk": 64}
    return SchedulerConfig(**{**base, **kw})


# -- the scheduler ---------------------------------------------------------------------------------------------


def test_requests_never_admitted_expire_at_the_bound_and_leave_the_queue() -> None:
    s = Scheduler(config())
    s.add("a", [1, 2], 4, now=0.0)
    s.schedule()  # a runs; the only seat is taken
    s.add("b", [3], 4, now=1.0)
    s.add("c", [4], 4, now=5.0)
    assert s.expire_waiting(now=10.9, max_wait_s=10.0) == []
    assert s.expire_waiting(now=11.0, max_wait_s=10.0) == ["b"]
    assert s.n_waiting == 1 and s.stats().rejected_queue_timeout == 1
    s.add("b", [3], 4, now=11.0)  # its id is free again: nothing of it is left behind
    assert s.expire_waiting(now=100.0, max_wait_s=0.0) == []  # 0: no bound
    assert s.expire_waiting(now=100.0, max_wait_s=10.0) == ["c", "b"]
    assert (s.n_running, s.n_waiting, s.stats().rejected_queue_timeout) == (1, 0, 3)


def test_a_preempted_request_has_streamed_already_and_never_expires() -> None:
    # Two requests that cannot both grow in 40 cells: the newer is preempted back to the queue.
    s = Scheduler(config(n_slots=2, max_running=2, n_ctx=40))
    s.add("old", list(range(1, 17)), 16, now=0.0)
    s.add("new", list(range(20, 36)), 16, now=0.0)
    preempted: list[str] = []
    for _ in range(30):
        plan = s.schedule()
        preempted += plan.preempted
        s.update({i.request_id: 7 for i in plan.items if i.sample})
        if preempted:
            break
    assert preempted == ["new"] and s.n_waiting == 1
    assert s.expire_waiting(now=1e6, max_wait_s=1.0) == []


def test_queue_ahead_counts_waiting_requests_beyond_the_free_seats() -> None:
    s = Scheduler(config(n_slots=2, max_running=2))
    assert s.queue_ahead == -2
    s.add("a", [1], 4)
    s.add("b", [2], 4)
    assert s.queue_ahead == 0  # both will get a seat; a third would be first in line
    s.add("c", [3], 4)
    s.schedule()
    assert (s.n_running, s.queue_ahead) == (2, 1)


# -- the drain rate ----------------------------------------------------------------------------------------------


def test_drain_rate_is_unknown_until_enough_requests_left() -> None:
    d = DrainRate(window_s=60.0, min_samples=3)
    d.record(0.0)
    d.record(1.0)
    assert d.rate(2.0) is None and d.wait_s(5, 2.0) is None
    assert d.book_retry_after_s(5, 2.0, max_wait_s=30.0, fallback_s=2.5) == 2.5
    d.record(2.0)
    assert d.rate(3.0) == pytest.approx(1.0)  # 3 departures since t=0
    assert d.wait_s(4, 3.0) == pytest.approx(5.0)


def test_drain_rate_counts_from_when_the_engine_became_busy_not_from_a_burst_of_departures() -> None:
    d = DrainRate(window_s=60.0, min_samples=3)
    d.busy(0.0)  # 16 requests admitted together at 0 ...
    for i in range(16):
        d.record(8.0 + i / 100)  # ... leave together 8 s later
    assert d.rate(8.5) == pytest.approx(16 / 8.5)  # not 16 in 0.15 s
    for t in range(9, 101):
        d.record(float(t))
    assert d.rate(100.0) == pytest.approx(61 / 60)  # busy for longer than the window: the window's departures
    d.busy(200.0)  # idle, then busy again: what came before says nothing of the rate since
    assert d.rate(200.5) is None


def test_drain_rate_falls_when_the_engine_stalls_and_forgets_old_departures() -> None:
    d = DrainRate(window_s=60.0, min_samples=3)
    for t in (0.0, 1.0, 2.0, 3.0):
        d.record(t)
    assert d.rate(4.0) == pytest.approx(1.0)
    assert d.rate(40.0) == pytest.approx(0.1)  # nobody left for 37 s: the estimate follows
    assert d.rate(62.5) is None  # only one departure left in the window


def _one_a_second() -> DrainRate:
    d = DrainRate(window_s=60.0, min_samples=1, max_booked=4)
    d.busy(0.0)
    for t in range(1, 11):
        d.record(float(t))  # 10 departures in 10 s: 1 per second at t=10
    return d


def test_retry_after_is_the_wait_beyond_the_bound_and_at_least_one_departure() -> None:
    assert _one_a_second().book_retry_after_s(99, 10.0, max_wait_s=30.0, fallback_s=2.0) == pytest.approx(70.0)
    assert _one_a_second().book_retry_after_s(5, 10.0, max_wait_s=30.0, fallback_s=2.0) == pytest.approx(1.0)
    assert _one_a_second().book_retry_after_s(5, 10.0, max_wait_s=0.0, fallback_s=2.0) == pytest.approx(6.0)


def test_clients_refused_together_are_told_to_come_back_one_departure_apart() -> None:
    d = _one_a_second()
    # The queue past the bound (30 ahead at one a second): each refusal books the next free return.
    assert [d.book_retry_after_s(30, 10.0, max_wait_s=30.0, fallback_s=2.0) for _ in range(3)] == pytest.approx(
        [1.0, 2.0, 3.0])
    # At 11 one more left and the first came back (its booking lapses): a refusal then comes after the two still out.
    d.record(11.0)
    assert d.book_retry_after_s(30, 11.0, max_wait_s=30.0, fallback_s=2.0) == pytest.approx(3.0)
    # At most max_booked (4) count: a client hammering without honouring Retry-After cannot push returns out forever.
    assert [d.book_retry_after_s(30, 11.0, max_wait_s=30.0, fallback_s=2.0) for _ in range(3)] == pytest.approx(
        [4.0, 5.0, 5.0])


# -- the engine ----------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, t: float) -> None:
        with self._lock:
            self.now = t


def engine_with_clock(clock: Callable[[], float], **settings: float) -> Engine:
    return build_fake_engine(script={"long": "x" * 1500, "short": "ok"}, delay_s=0.005, clock=clock,
                             n_cache_slots=0, n_ctx=4096, **{"max_running": 1, **settings})


async def warm_up(engine: Engine, clock: Clock, departures: tuple[float, ...]) -> AsyncIterator[Delta]:
    """Keep one seat busy with a long request from ``clock.now`` on (the engine never goes idle), and run one
    short request to its end at each time of ``departures`` on the other seat. Returns the long stream."""
    anchor = engine.generate(request(engine, "req_anchor", "long", 1500))
    await first(anchor)
    for i, t in enumerate(departures):
        clock.set(t)
        assert [d async for d in engine.generate(request(engine, f"req_{i}", "short", 4))][-1].finish_reason
    return anchor


def request(engine: Engine, rid: str, text: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(rid, engine.tokenize(text), SamplingParams(max_tokens=max_tokens, temperature=0))


async def first(stream: AsyncIterator[Delta]) -> Delta:
    return await stream.__anext__()


def test_a_request_not_admitted_in_time_is_refused_before_its_first_delta() -> None:
    clock = Clock()
    engine = engine_with_clock(clock, max_queue_wait_s=10.0, retry_after_s=3.0)
    try:
        async def go() -> None:
            running = engine.generate(request(engine, "req_long", "long", 1500))
            await first(running)  # it holds the only seat for hundreds of steps
            queued = engine.generate(request(engine, "req_queued", "short", 4))
            waiting = asyncio.ensure_future(first(queued))
            await asyncio.sleep(0.05)
            assert not waiting.done() and engine.stats().waiting == 1
            clock.set(1010.0)  # the bound: expired at the next step
            with pytest.raises(Overloaded) as refused:
                await asyncio.wait_for(waiting, 10)
            assert refused.value.code == "queue_timeout"
            assert refused.value.retry_after_s == 3.0  # nothing has finished yet: the configured fallback
            await running.aclose()  # type: ignore[attr-defined]

        asyncio.run(go())
        stats = engine.stats()
        assert (stats.rejected_queue_timeout, stats.waiting) == (1, 0)
    finally:
        engine.close()


def test_a_request_whose_estimated_wait_exceeds_the_bound_is_refused_at_once() -> None:
    clock = Clock()
    engine = engine_with_clock(clock, max_queue_wait_s=3.5, max_waiting=8, max_running=2)
    try:
        async def go() -> None:
            anchor = await warm_up(engine, clock, (1001.0, 1002.0, 1003.0))
            clock.set(1004.0)  # busy since 1000, 3 departures: 0.75 requests a second
            running = engine.generate(request(engine, "req_long", "long", 1500))
            await first(running)  # both seats taken
            queued = [engine.generate(request(engine, f"req_q{i}", "short", 4)) for i in range(2)]
            waits = [asyncio.ensure_future(first(q)) for q in queued]  # estimated waits 1.3 s and 2.7 s: queued
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in waits) and engine.stats().waiting == 2
            assert engine.stats().queue_wait_estimate_s == pytest.approx(4.0)
            third = engine.generate(request(engine, "req_q2", "short", 4))
            t0 = time.monotonic()
            with pytest.raises(Overloaded) as refused:  # 4 s estimated, above 3.5 s: at once
                await first(third)
            assert time.monotonic() - t0 < 1.0
            assert refused.value.code == "queue_wait_estimate"
            assert refused.value.retry_after_s == pytest.approx(4 / 3)  # one departure (4 s - 3.5 s is less)
            for w in waits:
                w.cancel()  # closes their streams: aborted in the engine
            await asyncio.gather(*waits, return_exceptions=True)
            await running.aclose()  # type: ignore[attr-defined]
            await anchor.aclose()  # type: ignore[attr-defined]

        asyncio.run(go())
        stats = engine.stats()
        assert (stats.rejected_wait_estimate, stats.rejected_queue_timeout) == (1, 0)
    finally:
        engine.close()


def test_a_full_queue_answers_with_a_retry_after_from_the_throughput() -> None:
    clock = Clock()
    # No time bound: the count only.
    engine = engine_with_clock(clock, max_queue_wait_s=0.0, max_waiting=1, max_running=2)
    try:
        async def go() -> None:
            anchor = await warm_up(engine, clock, (1002.0, 1004.0, 1006.0, 1008.0))
            clock.set(1010.0)  # busy since 1000, 4 departures: 0.4 a second
            running = engine.generate(request(engine, "req_long", "long", 1500))
            await first(running)
            queued = engine.generate(request(engine, "req_q", "short", 4))
            waiting = asyncio.ensure_future(first(queued))
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded) as refused:
                await first(engine.generate(request(engine, "req_full", "short", 4)))
            assert refused.value.code == "overloaded"
            assert refused.value.retry_after_s == pytest.approx(5.0)  # 2 ahead (the waiting one, then itself)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            await running.aclose()  # type: ignore[attr-defined]
            await anchor.aclose()  # type: ignore[attr-defined]

        asyncio.run(go())
    finally:
        engine.close()
