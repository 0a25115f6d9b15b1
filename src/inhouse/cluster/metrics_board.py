"""The HTTP metrics of several ingress replicas, summed: a scrape of /metrics reaches one replica (Serve's proxy
picks it) and answers for all of them.

Each ingress replica counts its own HTTP series (requests, time to first token, inter-token latency, tokens, wake
time) in its own process. With ``cluster.ingress_replicas`` > 1, ``cluster/app.py`` deploys one ``MetricsBoard``
replica on the head and each ingress gets a ``BoardExchange`` (the ``api.metrics.SeriesExchange`` of its app):

* every ``PUBLISH_INTERVAL_S`` the replica publishes its whole series (cumulative values, as plain ``Family``
  data) under its own key (Serve's replica id and a random token of this process, so a restarted process is a
  new member, never a continuation), with a sequence number;
* a scrape publishes the scraping replica's series taken at that moment and gets back the board's sum, so the one
  answer comes from one place: the board keeps each member's latest series (an older sequence number arriving late
  is ignored), so every member's part only grows and so does the sum.

Prometheus counters must never go backwards (a decrease reads as a restart and ``rate()`` counts the whole value
again). So a member that stops publishing (its replica died, or was replaced) is not dropped: after
``STALE_AFTER_S`` its last series is folded into the board's ``retired`` total, which stays in every sum; it only
stops counting as live (``inhouse_ingress_replicas_reporting``). Its gauges (``inhouse_writes_waiting``) are not
kept: they say what it held, and its successor takes that over and reports it. A retired member that publishes again
(a replica that was stalled, not dead) is ignored from then on: its later requests are not counted, which leaves the
sum flat, never lower and never counted twice. What the board cannot keep is its own state: if the board's replica
itself dies, Serve starts a new one, the live members republish within a second, and the retired totals are gone,
which Prometheus sees as one counter reset. When the board cannot be reached a scrape leaves the HTTP series out
rather than answer one replica's counts as the total (``api.metrics``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inhouse.api.metrics import Family, merge_families
from inhouse.cluster.remote import call_replica

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0
STALE_AFTER_S = 15.0
REPORTING = "inhouse_ingress_replicas_reporting"


@dataclass
class _Member:
    seq: int
    families: list[Family]
    seen_s: float


class SeriesBoard:
    """The board's state, without Ray: each live member's latest series, and the retired members' total."""

    def __init__(self, *, stale_after_s: float = STALE_AFTER_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._live: dict[str, _Member] = {}
        self._retired: list[Family] = []
        self._retired_keys: set[str] = set()

    def publish(self, key: str, seq: int, families: list[Family]) -> None:
        now = self._clock()
        if key in self._retired_keys:
            return
        member = self._live.get(key)
        if member is None or seq > member.seq:
            self._live[key] = _Member(seq, families, now)
        self._sweep(now)

    def merged(self) -> list[Family]:
        """The retired total plus every live member's latest series, and how many members are live."""
        self._sweep(self._clock())
        total = merge_families([self._retired, *(m.families for m in self._live.values())])
        reporting = Family(REPORTING, "Ingress replicas whose HTTP series are in this sum (they published within "
                           f"the last {self._stale_after_s:g} s).", "gauge",
                           ((REPORTING, (), float(len(self._live))),))
        return [*total, reporting]

    def _sweep(self, now: float) -> None:
        gone = [k for k, m in self._live.items() if now - m.seen_s > self._stale_after_s]
        for key in gone:
            # A gauge says what the member holds now, and it holds nothing any more (the writes it kept are taken
            # over by the replica that replaces it, which reports them): only counters and histograms are kept.
            kept = [f for f in self._live.pop(key).families if f.type != "gauge"]
            self._retired = merge_families([self._retired, kept])
            self._retired_keys.add(key)
            log.info("ingress %s stopped publishing its metrics: its totals are kept, it no longer counts as live",
                     key)


class MetricsBoard:
    """A Serve deployment class (one replica, on the head): ``SeriesBoard`` behind Serve calls."""

    def __init__(self) -> None:
        self._board = SeriesBoard()

    async def publish(self, key: str, seq: int, families: list[Family]) -> None:
        self._board.publish(key, seq, families)

    async def merged(self, key: str, seq: int, families: list[Family]) -> list[Family]:
        self._board.publish(key, seq, families)
        return self._board.merged()


class BoardExchange:
    """An ingress replica's side (``api.metrics.SeriesExchange``): publishes in the background every
    ``interval_s`` and, for a scrape, publishes and reads the sum in one call."""

    def __init__(self, handle: DeploymentHandle, replica: str, *, interval_s: float = PUBLISH_INTERVAL_S,
                 timeout_s: float = 5.0) -> None:
        self._handle = handle
        self._key = f"{replica}/{uuid.uuid4().hex[:8]}"
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._seq = 0
        self._snapshot: Callable[[], list[Family]] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def attach(self, snapshot: Callable[[], list[Family]]) -> None:
        self._snapshot = snapshot
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="metrics-publish", daemon=True)
            self._thread.start()

    def _taken(self) -> tuple[int, list[Family]]:
        """The next sequence number and the series, taken together (a later number never holds older values)."""
        assert self._snapshot is not None, "attach() first"
        with self._lock:
            self._seq += 1
            return self._seq, self._snapshot()

    def _call(self, method: str) -> object:
        seq, families = self._taken()
        return call_replica(self._handle, method, self._key, seq, families, what="the metrics board",
                            timeout_s=self._timeout_s)

    def merged(self) -> list[Family]:
        families: list[Family] = self._call("merged")  # type: ignore[assignment]
        return families

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._call("publish")
            except Exception as exc:
                if not self._failing:
                    log.warning("publishing this ingress's metrics failed (retrying every %g s): %s",
                                self._interval_s, exc)
                self._failing = True
            else:
                self._failing = False

    def close(self) -> None:
        self._stop.set()
