"""How fast an engine's queue drains, and what that means for a request that would wait behind it.

A waiting request is admitted when a running one leaves the batch. So the wait of a request with ``ahead``
requests queued in front of it (beyond the free running seats) is about ``(ahead + 1) / rate``, where ``rate`` is
the number of requests that finished per second recently. ``DrainRate`` measures that rate over a sliding window
from times the caller passes in (no clock of its own, so tests inject time); the engine uses it for two answers:

* ``wait_s(ahead)``: the estimated queue wait of a new request, compared with ``engine.max_queue_wait_s`` to
  refuse up front a request that would most likely time out in the queue anyway;
* ``book_retry_after_s(ahead, max_wait_s)``: the ``Retry-After`` of a refusal: the time until the queue in front
  of a new request would have drained to what can be admitted within the bound, and at least the time one request
  takes to leave (``1 / rate``), so a client that honours it comes back when it can be served. The clients already
  refused and told to come back later count as queued in front of it: each refusal books the next free return,
  one departure after the last. Without that, every client refused at the bound got the same 1-2 s, and most came
  back to a queue still at the bound (7 refusals per served stream in the 64-client soak). A booking lapses at its
  time (the client came back, or gave up), and at most ``max_booked`` count, so a client that hammers without
  honouring Retry-After cannot push everyone else's return out without limit.

The rate counts the requests that left over the last ``window_s`` seconds and divides by the time the engine was
busy in that window: ``min(window_s, now - busy_since)``, where ``busy_since`` is when it last went from idle to
working (``busy``, which also forgets the departures before the idle time). Not by the time since the oldest
departure: requests admitted together leave together, and a burst of 16 departures within a second is not 16
requests a second (the first soak with the bound measured exactly that overestimate). When the engine stalls,
the rate falls with time instead of keeping its last value. Before ``min_samples`` departures the rate is unknown
(None): nothing is refused on an estimate, and a refusal's Retry-After is the configured fallback
(``engine.retry_after_s``). Design: docs/reliability.md#overload.
"""

from __future__ import annotations

import heapq
from collections import deque


class DrainRate:
    """Requests that left the running batch per second, over a sliding window of injected times."""

    def __init__(self, window_s: float = 60.0, min_samples: int = 3, max_booked: int = 64) -> None:
        if window_s <= 0 or min_samples < 1 or max_booked < 0:
            raise ValueError("window_s must be > 0, min_samples >= 1 and max_booked >= 0")
        self._window_s = window_s
        self._min_samples = min_samples
        self._max_booked = max_booked
        self._times: deque[float] = deque()
        self._busy_since: float | None = None
        self._booked: list[float] = []  # a heap of the times refused clients were told to come back

    def busy(self, now: float) -> None:
        """The engine went from idle to working at ``now``: the rate counts from here (idle time is no
        throughput, and departures before it say nothing of the rate since)."""
        self._busy_since = now
        self._times.clear()

    def record(self, now: float) -> None:
        """One request left the running batch (finished, failed or aborted) at ``now``."""
        self._times.append(now)
        self._prune(now)

    def rate(self, now: float) -> float | None:
        """Requests per second over the window, or None while fewer than ``min_samples`` are in it."""
        self._prune(now)
        if len(self._times) < self._min_samples:
            return None
        since = self._busy_since if self._busy_since is not None else self._times[0]
        span = max(min(self._window_s, now - since), 1e-3)
        return len(self._times) / span

    def wait_s(self, ahead: int, now: float) -> float | None:
        """Estimated queue wait of a request with ``ahead`` requests queued in front of it (None: unknown)."""
        rate = self.rate(now)
        return None if rate is None else (ahead + 1) / rate

    def book_retry_after_s(self, ahead: int, now: float, *, max_wait_s: float, fallback_s: float) -> float:
        """When a refused request should come back, booked: the wait beyond the bound of a request behind the
        ``ahead`` queued ones and the clients already told to come back before it, at least one departure."""
        rate = self.rate(now)
        if rate is None:
            return fallback_s
        while self._booked and self._booked[0] <= now:
            heapq.heappop(self._booked)
        wait = (ahead + 1 + len(self._booked)) / rate
        beyond = wait - max_wait_s if max_wait_s > 0 else wait
        retry = max(1.0 / rate, beyond)
        if len(self._booked) < self._max_booked:
            heapq.heappush(self._booked, now + retry)
        return retry

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window_s:
            self._times.popleft()
