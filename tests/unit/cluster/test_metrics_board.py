"""The HTTP metrics of several ingress replicas summed (``cluster/metrics_board.py``, ``api/metrics.py``): the sum
of counters and histograms, the board's counter semantics (a late older series is ignored, a member that went quiet
keeps its totals, one that comes back is not counted twice), /metrics through an exchange, and the ingress side's
publishing over a stand-in handle."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from inhouse.api.metrics import Family, Metrics, families_of, merge_families
from inhouse.cluster.metrics_board import REPORTING, BoardExchange, SeriesBoard


def _metrics(requests: int, ttft: list[float]) -> Metrics:
    m = Metrics(lambda: [])
    for _ in range(requests):
        m.requests_total.labels(route="/v1/chat/completions", status="200").inc()
    for t in ttft:
        m.ttft.labels("fake").observe(t)
    return m


def _value(families: list[Family], sample: str, **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return next(v for f in families for name, ls, v in f.samples if name == sample and ls == want)


def test_counters_and_histograms_add_up_sample_by_sample() -> None:
    a, b = families_of(_metrics(3, [0.1]).http), families_of(_metrics(4, [0.1, 7.0]).http)
    total = merge_families([a, b])
    assert _value(total, "inhouse_requests_total", route="/v1/chat/completions", status="200") == 7
    assert _value(total, "inhouse_time_to_first_token_seconds_count", model="fake") == 3
    assert _value(total, "inhouse_time_to_first_token_seconds_bucket", model="fake", le="0.25") == 2
    assert _value(total, "inhouse_time_to_first_token_seconds_bucket", model="fake", le="+Inf") == 3
    assert _value(total, "inhouse_time_to_first_token_seconds_sum", model="fake") == pytest.approx(7.2)
    assert not any(name.endswith("_created") for f in total for name, _, _ in f.samples)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _requests(board_families: list[Family]) -> float:
    return _value(board_families, "inhouse_requests_total", route="/v1/chat/completions", status="200")


def test_the_board_sum_never_goes_backwards() -> None:
    clock = _Clock()
    board = SeriesBoard(stale_after_s=15, clock=clock)
    board.publish("a", 2, families_of(_metrics(5, []).http))
    board.publish("a", 1, families_of(_metrics(3, []).http))  # an older series arriving late: ignored
    board.publish("b", 1, families_of(_metrics(4, []).http))
    merged = board.merged()
    assert _requests(merged) == 9 and _value(merged, REPORTING) == 2
    clock.now += 10
    board.publish("a", 3, families_of(_metrics(6, []).http))
    clock.now += 10  # b silent for 20 s: retired, its 4 requests stay in the sum
    merged = board.merged()
    assert _requests(merged) == 10 and _value(merged, REPORTING) == 1
    board.publish("b", 2, families_of(_metrics(50, []).http))  # b was stalled, not dead: not counted twice
    assert _requests(board.merged()) == 10
    clock.now += 20  # every member gone: the total is kept
    merged = board.merged()
    assert _requests(merged) == 10 and _value(merged, REPORTING) == 0


def test_a_retired_members_gauges_leave_the_sum_and_its_counters_stay() -> None:
    """The writes a dead replica kept are taken over (and reported) by its successor: its gauge must not stay in
    the sum for ever, as its counters do."""
    clock = _Clock()
    board = SeriesBoard(stale_after_s=15, clock=clock)
    kept = {"audit": 2, "usage": 1}
    board.publish("a", 1, families_of(Metrics(lambda: [], waiting=lambda: kept, parse_stops=lambda: {"crash": 1}).http))
    board.publish("b", 1, families_of(Metrics(lambda: [], waiting=lambda: {"audit": 1}).http))
    merged = board.merged()
    assert _value(merged, "inhouse_writes_waiting", kind="audit") == 3
    assert _value(merged, "inhouse_parse_worker_stops_total", reason="crash") == 1
    clock.now += 10
    board.publish("b", 2, families_of(Metrics(lambda: [], waiting=lambda: {"audit": 0}).http))
    clock.now += 10  # a silent for 20 s: retired
    merged = board.merged()
    assert _value(merged, "inhouse_writes_waiting", kind="audit") == 0  # b's alone
    assert not any(ls == (("kind", "usage"),) for f in merged for _, ls, _ in f.samples)
    assert _value(merged, "inhouse_parse_worker_stops_total", reason="crash") == 1  # a counter: kept


class _Exchange:
    def __init__(self, others: list[Family] | None, fail: bool = False) -> None:
        self._others, self._fail = others or [], fail
        self.snapshot: Any = None

    def attach(self, snapshot: Any) -> None:
        self.snapshot = snapshot

    def merged(self) -> list[Family]:
        if self._fail:
            raise ConnectionError("board gone")
        return merge_families([self.snapshot(), self._others])


def test_metrics_answer_the_sum_over_the_exchange() -> None:
    exchange = _Exchange(families_of(_metrics(40, [0.5]).http))
    m = Metrics(lambda: [], exchange=exchange)
    m.requests_total.labels(route="/v1/chat/completions", status="200").inc(2)
    text = m.render().decode()
    assert re.search(r'^inhouse_requests_total\{route="/v1/chat/completions",status="200"\} 42\.0$', text, re.M)
    assert re.search(r'^inhouse_time_to_first_token_seconds_count\{model="fake"\} 1\.0$', text, re.M)
    assert "# TYPE inhouse_requests_total counter" in text


def test_kept_writes_and_parse_stops_are_exchanged_with_the_http_series() -> None:
    """Counted per process, like the HTTP series: a scrape answered by one replica shows every replica's."""
    other = Metrics(lambda: [], waiting=lambda: {"audit": 3}, parse_stops=lambda: {"timeout": 2})
    m = Metrics(lambda: [], exchange=_Exchange(families_of(other.http)), waiting=lambda: {"audit": 1, "usage": 0},
                parse_stops=lambda: {"timeout": 1})
    text = m.render().decode()
    assert re.search(r'^inhouse_writes_waiting\{kind="audit"\} 4\.0$', text, re.M), text
    assert re.search(r'^inhouse_parse_worker_stops_total\{reason="timeout"\} 3\.0$', text, re.M), text
    assert text.count("# TYPE inhouse_writes_waiting gauge") == 1


def test_a_failing_exchange_leaves_the_http_series_out_and_the_scrape_answers() -> None:
    m = Metrics(lambda: [], exchange=_Exchange(None, fail=True))
    m.requests_total.labels(route="/v1/models", status="200").inc()
    text = m.render().decode()
    assert "inhouse_requests_total" not in text  # one process's count is not the total
    assert "inhouse_engine_healthy" in text


class _Handle:
    """The board deployment as an ingress replica sees it."""

    def __init__(self) -> None:
        self.board = SeriesBoard()
        self.published: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        for name in ("publish", "merged"):
            setattr(self, name, _Call(self, name))


class _Call:
    def __init__(self, handle: _Handle, name: str) -> None:
        self._h, self._name = handle, name

    def remote(self, key: str, seq: int, families: list[Family]) -> Any:
        with self._h.lock:
            self._h.published.append((key, seq))
            self._h.board.publish(key, seq, families)
            out = self._h.board.merged() if self._name == "merged" else None

        class _R:
            def result(self, timeout_s: float | None = None) -> Any:
                return out
        return _R()


def test_each_ingress_publishes_in_the_background_and_a_scrape_reads_the_sum() -> None:
    handle = _Handle()
    exchanges = [BoardExchange(handle, f"ingress-{i}", interval_s=0.05) for i in range(2)]  # type: ignore[arg-type]
    metrics = [Metrics(lambda: [], exchange=e) for e in exchanges]
    try:
        metrics[0].requests_total.labels(route="/v1/models", status="200").inc(3)
        metrics[1].requests_total.labels(route="/v1/models", status="200").inc(4)
        deadline = time.monotonic() + 5
        while len({k for k, _ in handle.published}) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        text = metrics[0].render().decode()
        assert re.search(r'^inhouse_requests_total\{route="/v1/models",status="200"\} 7\.0$', text, re.M), text
        assert re.search(rf"^{REPORTING} 2\.0$", text, re.M)
        by_key: dict[str, list[int]] = {}
        for key, seq in handle.published:
            by_key.setdefault(key, []).append(seq)
        assert all(seqs == sorted(seqs) for seqs in by_key.values())
    finally:
        for e in exchanges:
            e.close()
