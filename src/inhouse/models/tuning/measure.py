"""Short, repeatable measurements of a real engine in-process, for ``inhouse tune`` (and its report).

One ``measure_engine`` call loads the model with the given settings and runs three small workloads:

* **decode**: one stream, a short prompt, ``decode_tokens`` greedy tokens: tokens/s between the first and
  the last token, and the p95 gap between tokens (what one user feels);
* **prefill**: one ``prefill_tokens`` prompt, one token out: prompt tokens/s to the first token;
* **aggregate**: ``concurrency`` streams with distinct prompts, all sent at once: generated tokens per
  second of wall time (prefills included — that is what a loaded server delivers), and the p95 gap under
  load.

Each workload runs ``repeats`` times and keeps its best figure: on a shared machine the noise is one-sided
(other work only ever slows us down), so the best of a few short runs is the most stable estimate.
Prompts start with a unique number so the prefix cache never turns a measurement into a cache hit.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inhouse.config import EngineSettings
from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.errors import EngineFailure

_TEXT = (
    "The quarterly report covers sales, hiring and the new warehouse. Our team reviewed the contracts, "
    "checked the invoices against the purchase orders and found three discrepancies that need a decision. "
    "Please summarise the open questions, propose owners and suggest a deadline for each of them. "
)


@dataclass(frozen=True)
class Workload:
    concurrency: int = 8
    decode_tokens: int = 64
    prefill_tokens: int = 256
    aggregate_prompt_tokens: int = 96
    aggregate_tokens: int = 32
    repeats: int = 2


@dataclass(frozen=True)
class Measurement:
    decode_tok_s: float
    prefill_tok_s: float
    aggregate_tok_s: float
    itl_p95_ms: float  # single stream
    aggregate_itl_p95_ms: float  # under the aggregate load
    load_s: float
    concurrency: int
    foreign_load_cores: float = 0.0  # CPU other processes took while this was measured (see hardware.py)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


Measure = Callable[[str, Path, EngineSettings, int, Workload], Measurement]


def p95(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def prompt_tokens(engine: Any, n_tokens: int, serial: int) -> list[int]:
    """About ``n_tokens`` tokens of plain business text, made unique by ``serial`` at the very start."""
    head = engine.tokenize(f"Request {serial}. ", add_special=True)
    body = engine.tokenize(_TEXT * (1 + n_tokens // 40), add_special=False)
    return (head + body)[: max(n_tokens, len(head) + 1)]


async def _run_one(engine: Any, rid: str, tokens: list[int], max_tokens: int) -> tuple[float, list[float]]:
    """Submit one greedy request; return (submit time, arrival time of every generated token)."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    times: list[float] = []
    async for delta in engine.generate(GenerationRequest(rid, tokens, params, arrival_s=t0)):
        if delta.error:
            raise EngineFailure(f"measurement request failed: {delta.error}")
        now = time.perf_counter()
        times.extend(now for _ in delta.token_ids)
    return t0, times


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def run_workload(engine: Any, work: Workload, serials: itertools.count[int]) -> dict[str, float]:
    """The three workloads once each on a loaded engine; figures in tokens/s and milliseconds."""
    _, times = await _run_one(engine, f"dec{next(serials)}", prompt_tokens(engine, 24, next(serials)),
                              work.decode_tokens)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    decode = (len(times) - 1) / span if span > 0 else 0.0
    itl = p95(_gaps(times)) * 1000

    tokens = prompt_tokens(engine, work.prefill_tokens, next(serials))
    t0, times = await _run_one(engine, f"pre{next(serials)}", tokens, 1)
    prefill = len(tokens) / (times[0] - t0) if times and times[0] > t0 else 0.0

    jobs = [_run_one(engine, f"agg{next(serials)}", prompt_tokens(engine, work.aggregate_prompt_tokens,
                                                                  next(serials)), work.aggregate_tokens)
            for _ in range(work.concurrency)]
    start = time.perf_counter()
    results = await asyncio.gather(*jobs)
    wall = time.perf_counter() - start
    generated = sum(len(ts) for _, ts in results)
    gaps = [g for _, ts in results for g in _gaps(ts)]
    return {"decode_tok_s": decode, "prefill_tok_s": prefill, "aggregate_tok_s": generated / wall if wall else 0.0,
            "itl_p95_ms": itl, "aggregate_itl_p95_ms": p95(gaps) * 1000}


def measure_engine(name: str, path: Path, settings: EngineSettings, n_ctx: int, work: Workload) -> Measurement:
    """Load ``path`` with ``settings``, warm it up, run the workloads ``work.repeats`` times, keep the best."""
    from inhouse.engine.process import EngineRecipe, start_engine
    from inhouse.hardware.cpu import cpu_sample, foreign_load

    t0 = time.perf_counter()
    # Where `serve` runs it (a child process unless engine.isolation = "thread"): tune measures what serve runs.
    engine = start_engine(EngineRecipe(name, path, settings, n_ctx))
    load_s = time.perf_counter() - t0
    serials = itertools.count(int(time.time() * 1000) % 1_000_000)
    try:
        async def session() -> list[dict[str, float]]:
            await _run_one(engine, "warm", prompt_tokens(engine, 16, next(serials)), 4)  # page the weights in
            return [await run_workload(engine, work, serials) for _ in range(max(1, work.repeats))]

        before = cpu_sample()
        runs = asyncio.run(session())
        load = foreign_load(before, cpu_sample())
    finally:
        engine.close()
    return Measurement(
        decode_tok_s=max(r["decode_tok_s"] for r in runs),
        prefill_tok_s=max(r["prefill_tok_s"] for r in runs),
        aggregate_tok_s=max(r["aggregate_tok_s"] for r in runs),
        itl_p95_ms=min(r["itl_p95_ms"] for r in runs),
        aggregate_itl_p95_ms=min(r["aggregate_itl_p95_ms"] for r in runs),
        load_s=load_s,
        concurrency=work.concurrency,
        foreign_load_cores=load,
    )
