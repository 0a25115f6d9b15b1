"""Load harness: many concurrent streaming clients against one server for a bounded time, with the server's RSS,
open files and threads sampled over the run.

Used by the CI load test (``tests/integration/test_load.py``, seconds) and the soak benchmark
(``python -m benchmarks.soak``, 30 minutes, with a chart). Talks to 127.0.0.1 only and stops by itself.

What counts:

* a **5xx** or any status other than 200 and 429 is a failure;
* a **429** must carry ``Retry-After``; the client waits that long (at most until the run's end) and goes on (a
  refusal, not a failure); the Retry-After values are kept (``retry_after_s``);
* a **broken stream** is a 200 whose event stream ends without ``data: [DONE]`` or breaks off;
* a **connection error** is any transport error (refused, reset, timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from inhouse.testing.server_process import ProcSample, sample_process

PROMPTS = ("Write a short poem about the sea.", "Explain what a database index is.", "List three fruits.",
           "Describe a lighthouse at night.", "Give two tips for writing clear e-mails.")


@dataclass
class LoadReport:
    clients: int
    duration_s: float
    completed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    refusals_without_retry_after: int = 0
    retry_after_s: list[float] = field(default_factory=list)
    refusal_codes: Counter[str] = field(default_factory=Counter)
    broken_streams: int = 0
    connection_errors: int = 0
    tokens: int = 0
    samples: list[ProcSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    @property
    def unexpected_statuses(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in (200, 429))

    def rss_growth_mb(self, warmup_s: float = 0.0) -> float:
        """RSS at the end minus RSS after ``warmup_s`` (the first sample past it)."""
        after = [s for s in self.samples if s.t_s >= warmup_s] or self.samples
        return after[-1].rss_mb - after[0].rss_mb if after else 0.0

    @property
    def ok(self) -> bool:
        return (self.unexpected_statuses == 0 and self.broken_streams == 0 and self.connection_errors == 0
                and self.refusals_without_retry_after == 0)

    def to_dict(self, warmup_s: float = 0.0) -> dict[str, Any]:
        rss = [s.rss_mb for s in self.samples]
        return {"ok": self.ok, "clients": self.clients, "duration_s": self.duration_s, "completed": self.completed,
                "statuses": dict(sorted(self.statuses.items())), "server_errors": self.server_errors,
                "refused_429": self.statuses.get(429, 0),
                "refusals_without_retry_after": self.refusals_without_retry_after,
                "refusal_codes": dict(sorted(self.refusal_codes.items())),
                "retry_after_s": _spread(self.retry_after_s),
                "broken_streams": self.broken_streams, "connection_errors": self.connection_errors,
                "tokens": self.tokens, "rss_mb_first": round(rss[0], 1) if rss else None,
                "rss_mb_max": round(max(rss), 1) if rss else None, "rss_mb_last": round(rss[-1], 1) if rss else None,
                "rss_growth_after_warmup_mb": round(self.rss_growth_mb(warmup_s), 1),
                "open_files_max": max((s.open_files for s in self.samples), default=None),
                "threads_max": max((s.threads for s in self.samples), default=None),
                "errors": self.errors[:10]}


async def _client(http: httpx.AsyncClient, i: int, model: str, deadline: float, report: LoadReport,
                  max_tokens: int) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1
        body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i * 1000 + n,
                "messages": [{"role": "user", "content": PROMPTS[(i + n) % len(PROMPTS)]}],
                "stream_options": {"include_usage": True}}
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                report.statuses[r.status_code] += 1
                if r.status_code == 429:
                    retry = r.headers.get("retry-after")
                    if retry is None:
                        report.refusals_without_retry_after += 1
                    else:
                        report.retry_after_s.append(float(retry))
                    report.refusal_codes[_error_code(await r.aread())] += 1
                    await asyncio.sleep(max(0.0, min(float(retry or 1), deadline - time.monotonic())))
                    continue
                if r.status_code != 200:
                    report.errors.append(f"{r.status_code}: {(await r.aread())[:200]!r}")
                    continue
                done = False
                async for line in r.aiter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: ") and '"usage"' in line:
                        usage = json.loads(line[6:]).get("usage") or {}
                        report.tokens += int(usage.get("completion_tokens") or 0)
                if done:
                    report.completed += 1
                else:
                    report.broken_streams += 1
        except httpx.HTTPError as exc:
            report.connection_errors += 1
            report.errors.append(f"{type(exc).__name__}: {exc}"[:200])


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def run_load(url: str, key: str, *, model: str, clients: int = 64, duration_s: float = 20.0, max_tokens: int = 48,
             pid: int | None = None, sample_every_s: float = 1.0, timeout_s: float = 120.0,
             report: LoadReport | None = None) -> LoadReport:
    """``clients`` streaming clients for ``duration_s`` (each finishes its last stream); samples ``pid``. Counts
    into ``report`` when given, so a caller that is interrupted still has what was counted so far."""
    report = report if report is not None else LoadReport(clients, duration_s)
    stop = threading.Event()
    t0 = time.monotonic()

    def sampler() -> None:
        while not stop.is_set() and pid is not None:
            try:
                report.samples.append(sample_process(pid, time.monotonic() - t0))
            except OSError:
                return
            stop.wait(sample_every_s)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                     timeout=timeout_s) as http:
            deadline = time.monotonic() + duration_s
            await asyncio.gather(*(_client(http, i, model, deadline, report, max_tokens) for i in range(clients)))

    try:
        asyncio.run(main())
    finally:
        stop.set()
        thread.join(5)
        if pid is not None:
            with contextlib.suppress(OSError):
                report.samples.append(sample_process(pid, time.monotonic() - t0))
    return report


def healthy(url: str, key: str, model: str) -> bool:
    """Ready, and answers a short chat completion."""
    try:
        if httpx.get(url + "/ready", timeout=10).status_code != 200:
            return False
        r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                       json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
        return r.status_code == 200
    except httpx.HTTPError:
        return False
