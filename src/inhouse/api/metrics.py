"""Prometheus metrics of one app: a private ``CollectorRegistry`` (never the global default one, so two
apps in one process — tests — do not collide).

Latencies are measured at the edge, where the client feels them; engine counters are read from
``EngineClient.stats()`` at scrape time by a custom collector, so the engine keeps no Prometheus objects.

Several processes serving one app (a cluster's ingress replicas) each count their own HTTP series (and their
parse-worker stops and the writes they keep while a store is away); with a ``SeriesExchange``
(``cluster/metrics_board.py``) a scrape of any of them answers the HTTP series summed over all of them (``Family``:
a metric family as plain data; ``merge_families`` sums them). The engine series are not exchanged: each process
already reads them summed over the model's replicas.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from inhouse.engine.params import Delta
    from inhouse.engine.protocol import EngineClient, EngineStats

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
_WAKE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)

# (metric name, help, EngineStats attribute); counters get the `_total` suffix from prometheus_client.
_ENGINE_GAUGES = (
    ("inhouse_queue_depth", "Requests waiting for a sequence slot.", "waiting"),
    ("inhouse_running_sequences", "Sequences in the running batch.", "running"),
    ("inhouse_queue_wait_estimate_seconds", "The queue wait a new request would have now, estimated from the recent "
     "throughput (0 while a seat is free or nothing has been measured yet).", "queue_wait_estimate_s"),
)
_ENGINE_COUNTERS = (
    ("inhouse_engine_steps", "Decode steps run.", "steps"),
    ("inhouse_engine_multi_sequence_steps", "Steps whose batch held more than one sequence.",
     "multi_sequence_steps"),
    ("inhouse_prefix_cache_hits", "Requests that reused a cached prompt prefix.", "prefix_cache_hits"),
    ("inhouse_prefix_cache_queries", "Prefix cache look-ups.", "prefix_cache_queries"),
    ("inhouse_prefix_cache_hit_tokens", "Prompt tokens not recomputed thanks to the prefix cache.",
     "prefix_cache_hit_tokens"),
    ("inhouse_engine_aborted", "Requests aborted inside the engine.", "aborted"),
    ("inhouse_engine_preempted", "Sequences preempted to free KV cache.", "preempted"),
    ("inhouse_queue_rejected", "Requests refused because the queue was full.", "rejected_queue_full"),
    ("inhouse_queue_timeouts", "Requests answered 429 because they were not admitted within engine.max_queue_wait_s.",
     "rejected_queue_timeout"),
    ("inhouse_queue_wait_refused", "Requests answered 429 at once because their estimated queue wait exceeded "
     "engine.max_queue_wait_s.", "rejected_wait_estimate"),
)


Sample = tuple[str, tuple[tuple[str, str], ...], float]  # sample name (with its suffix), sorted labels, value


@dataclass(frozen=True)
class Family:
    """One metric family as plain data, to cross process boundaries (pickled as it is)."""

    name: str  # without the counter's ``_total`` (prometheus_client's convention)
    documentation: str
    type: str  # counter, histogram, gauge
    samples: tuple[Sample, ...]


def families_of(collector: CollectorRegistry | Collector) -> list[Family]:
    """What ``collector`` holds now, without the ``_created`` timestamps (a sum of creation times means nothing)."""
    return [Family(m.name, m.documentation, m.type,
                   tuple((s.name, tuple(sorted(s.labels.items())), float(s.value)) for s in m.samples
                         if not s.name.endswith("_created")))
            for m in collector.collect()]


def metrics_of(families: Iterable[Family]) -> Iterator[Metric]:
    for f in families:
        metric = Metric(f.name, f.documentation, f.type)
        for name, labels, value in f.samples:
            metric.add_sample(name, dict(labels), value)
        yield metric


def merge_families(snapshots: Iterable[Iterable[Family]]) -> list[Family]:
    """The sum, sample by sample (same family, sample name and labels), of several processes' families; families
    and samples in the order first seen. Counters and histograms (buckets, ``_count``, ``_sum``) add up."""
    heads: dict[str, Family] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in snapshots:
        for f in families:
            heads.setdefault(f.name, f)
            values = sums.setdefault(f.name, {})
            for name, labels, value in f.samples:
                values[(name, labels)] = values.get((name, labels), 0.0) + value
    return [Family(name, head.documentation, head.type,
                   tuple((s, labels, v) for (s, labels), v in sums[name].items()))
            for name, head in heads.items()]


class SeriesExchange(Protocol):
    """Where the processes serving one app pool their HTTP series (cluster mode: ``cluster/metrics_board.py``)."""

    def attach(self, snapshot: Callable[[], list[Family]]) -> None:
        """``snapshot`` returns this process's HTTP series now; the exchange publishes it as often as it likes."""
        ...

    def merged(self) -> list[Family]:
        """This process's series (taken now) summed with the others'; raises when they cannot be had."""
        ...


class _HttpSeries(Collector):
    """The HTTP series at scrape time: this process's, or their sum over the exchange's processes. When the
    exchange fails, the scrape still answers (the engine series) without them, never with a partial sum: a
    counter summed over fewer processes would go backwards."""

    def __init__(self, own: CollectorRegistry, exchange: SeriesExchange | None) -> None:
        self._own = own
        self._exchange = exchange

    def describe(self) -> list[Metric]:
        return []  # registering must not call the exchange (its processes may not be up yet)

    def collect(self) -> Iterator[Metric]:
        if self._exchange is None:
            yield from self._own.collect()
            return
        try:
            families = self._exchange.merged()
        except Exception:
            log.exception("could not read the HTTP series of the other processes: left out of this scrape")
            return
        yield from metrics_of(families)


class EngineStatsCollector(Collector):
    def __init__(self, engines: Callable[[], Iterable[EngineClient]]) -> None:
        self._engines = engines

    def collect(self) -> Iterator[Metric]:
        stats: list[EngineStats] = []
        up: list[tuple[str, bool]] = []
        try:
            for engine in self._engines():
                stats.append(engine.stats())
                up.append((engine.model_name, engine.healthy()))
        except Exception:  # a scrape must never fail because a model is unloading
            log.exception("could not read engine stats")
        healthy = GaugeMetricFamily("inhouse_engine_healthy", "1 while the model's engine serves, 0 while it "
                                    "restarts after a crash or stays down.", labels=["model"])
        for model, ok in up:
            healthy.add_metric([model], 1.0 if ok else 0.0)
        yield healthy
        crashes = CounterMetricFamily("inhouse_engine_crashes", "Deaths of a model's engine process, by signal "
                                      "(or 'exit N').", labels=["model", "signal"])
        for s in stats:
            for reason, n in sorted(s.crashes.items()):
                crashes.add_metric([s.model, reason], float(n))
        yield crashes
        for name, help_, attr in _ENGINE_GAUGES:
            g = GaugeMetricFamily(name, help_, labels=["model"])
            for s in stats:
                g.add_metric([s.model], float(getattr(s, attr)))
            yield g
        for name, help_, attr in _ENGINE_COUNTERS:
            c = CounterMetricFamily(name, help_, labels=["model"])
            for s in stats:
                c.add_metric([s.model], float(getattr(s, attr)))
            yield c


class ParseStopsCollector(Collector):
    """Files that stopped a parse worker (``kb/parse/isolated.py``), by why, at scrape time."""

    def __init__(self, stops: Callable[[], Mapping[str, int]]) -> None:
        self._stops = stops

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("inhouse_parse_worker_stops", "Files that stopped a parse worker: a crash (by "
                                     "signal), 'timeout' (no progress) or 'memory' (over kb.parse_memory_mb); each "
                                     "file was refused, the server went on. 'lost': a worker killed from outside "
                                     "(OOM killer), the file not blamed.", labels=["reason"])
        for reason, n in sorted(self._stops().items()):
            family.add_metric([reason], float(n))
        yield family


class WaitingWritesCollector(Collector):
    """Writes kept in this process's memory because their store could not take them (the database away, the disk
    full, a lock held elsewhere): above 0, something is down, and a crash now would lose them."""

    def __init__(self, waiting: Callable[[], Mapping[str, int]]) -> None:
        self._waiting = waiting

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("inhouse_writes_waiting", "Final audit records ('audit') and token charges "
                                   "('usage') kept in memory until their store can be written again.",
                                   labels=["kind"])
        for kind, n in sorted(self._waiting().items()):
            family.add_metric([kind], float(n))
        yield family


class Metrics:
    """The app's metric objects. ``engines`` lists the loaded engines at scrape time; ``exchange`` sums the HTTP
    series with those of the app's other processes; ``parse_stops`` counts files that stopped a parse worker;
    ``waiting`` the writes kept in memory while their store is away."""

    def __init__(self, engines: Callable[[], Iterable[EngineClient]], *,
                 exchange: SeriesExchange | None = None,
                 parse_stops: Callable[[], Mapping[str, int]] = dict,
                 waiting: Callable[[], Mapping[str, int]] = dict) -> None:
        self.http = CollectorRegistry(auto_describe=True)  # this process's HTTP series
        r = self.http
        self.ttft = Histogram("inhouse_time_to_first_token_seconds",
                              "From request arrival to the first generated token, seen at the edge.",
                              ["model"], buckets=_TTFT_BUCKETS, registry=r)
        self.itl = Histogram("inhouse_inter_token_latency_seconds",
                             "Time between two generated tokens of one request, seen at the edge.",
                             ["model"], buckets=_ITL_BUCKETS, registry=r)
        self.requests_total = Counter("inhouse_requests", "HTTP requests by route template and status.",
                                      ["route", "status"], registry=r)
        self.generated_tokens = Counter("inhouse_generated_tokens", "Tokens generated.", ["model"],
                                        registry=r)
        self.prompt_tokens = Counter("inhouse_prompt_tokens", "Prompt tokens received.", ["model"],
                                     registry=r)
        self.requests_aborted = Counter("inhouse_requests_aborted",
                                        "Requests abandoned by their client before the end.", ["model"],
                                        registry=r)
        self.model_wake = Histogram("inhouse_model_wake_seconds",
                                    "Time a request waited for its model to load (after idle release or a cold "
                                    "start).", ["model"], buckets=_WAKE_BUCKETS, registry=r)
        # Where chat requests ran ('local' or a configured provider: a bounded set), for the admin charts.
        self.requests_by_destination = Counter("inhouse_requests_by_destination",
                                               "Chat requests by where the egress policy ran them.",
                                               ["destination"], registry=r)
        # Counted per process too, so exchanged with the HTTP series: a scrape that one of several ingress replicas
        # answers must not show that replica's parse-worker stops or kept writes as everyone's.
        r.register(ParseStopsCollector(parse_stops))
        r.register(WaitingWritesCollector(waiting))
        self.registry = CollectorRegistry(auto_describe=True)  # what a scrape answers
        self.registry.register(_HttpSeries(self.http, exchange))
        self.registry.register(EngineStatsCollector(engines))
        if exchange is not None:
            exchange.attach(lambda: families_of(self.http))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, model: str, start_s: float) -> GenerationTimer:
        return GenerationTimer(self, model, start_s)


class GenerationTimer:
    """Edge timings and token counts of one generation: ``on_delta`` for every delta, ``finish`` once at the end.
    It only measures; what else happens when a generation ends is ``openai/serving.py``'s finish step."""

    def __init__(self, metrics: Metrics, model: str, start_s: float) -> None:
        self._m = metrics
        self._model = model
        self._itl = metrics.itl.labels(model)  # looked up once: ``on_delta`` runs for every token
        self._start = start_s
        self._last: float | None = None
        self._done = False

    def on_delta(self, delta: Delta) -> None:
        if not delta.token_ids:
            return
        now = time.perf_counter()
        if self._last is None:
            self._m.ttft.labels(self._model).observe(now - self._start)
        else:
            # Several tokens in one delta: spread the gap evenly (the engine emits one per step normally).
            gap = (now - self._last) / len(delta.token_ids)
            for _ in delta.token_ids:
                self._itl.observe(gap)
        self._last = now

    def finish(self, *, n_prompt: int, n_generated: int, aborted: bool = False) -> None:
        if self._done:
            return
        self._done = True
        self._m.prompt_tokens.labels(self._model).inc(n_prompt)
        self._m.generated_tokens.labels(self._model).inc(n_generated)
        if aborted:
            self._m.requests_aborted.labels(self._model).inc()
