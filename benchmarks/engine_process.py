"""The cost of the process boundary: the engine in a child process (``engine.isolation = "process"``, what
``inhouse serve`` runs) against the same engine in this process (``"thread"``), in one run.

    .venv/bin/python -m benchmarks.engine_process --model smollm2-135m

Both sides are driven the same way, through ``EngineClient`` from an asyncio loop in this process (as
``inhouse tune`` does; no HTTP, so only the boundary differs): single-stream greedy decode of ``--tokens``
tokens, then ``--clients`` streams of ``--aggregate-tokens`` at once. Rounds alternate which side goes first,
each round loads a fresh engine per side, every run first waits for a quiet machine, and the best of the rounds
counts on each side (interference only ever slows a run). Printed as ratios:

* decode, child ÷ in-process (target ≥ 0.97);
* overhead per token, 1/child − 1/in-process (target ≤ 0.3 ms);
* aggregate at 8 clients, child ÷ in-process (target: unchanged within noise, 0.95–1.05).

Writes ``benchmarks/results/engine-process-<model>-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.modelref import resolve_model

DECODE_TEXT = "Count from 1 to 1000, one number after another, separated by commas. Do not stop."
RESULTS = Path(__file__).resolve().parent / "results"
_serial = itertools.count()


async def stream_times(engine: Any, prompt: list[int], n: int) -> list[float]:
    """Arrival time of every generated token of one greedy request (``ignore_eos``: exactly ``n``)."""
    from inhouse.engine.params import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
    times: list[float] = []
    async for d in engine.generate(GenerationRequest(f"bench{next(_serial)}", prompt, params)):
        if d.error:
            raise RuntimeError(d.error)
        now = time.perf_counter()
        times.extend(now for _ in d.token_ids)
    return times


def served_settings(**overrides: Any) -> Any:
    """``EngineSettings`` with ``overrides`` and ``weight_buffers`` resolved against the hardware probe (cached
    per machine and build), as ``inhouse serve`` resolves it: the engine refuses an unresolved ``auto``."""
    from inhouse.bootstrap import build_probe
    from inhouse.config import EngineSettings, load_settings
    from inhouse.hardware.weights import resolve_engine_settings

    es, _ = resolve_engine_settings(EngineSettings(**overrides), build_probe(load_settings()).current())
    return es


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


async def decode_rate(engine: Any, n: int) -> float:
    return rate(await stream_times(engine, engine.tokenize(f"{next(_serial)}. {DECODE_TEXT}"), n))


async def aggregate_rate(engine: Any, clients: int, n: int) -> float:
    prompts = [engine.tokenize(f"Client {i} ({next(_serial)}). {DECODE_TEXT}") for i in range(clients)]
    start = time.perf_counter()
    runs = await asyncio.gather(*(stream_times(engine, p, n) for p in prompts))
    return sum(len(r) for r in runs) / (time.perf_counter() - start)


def measure_side(isolation: str, model: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from inhouse.engine.process import EngineRecipe, start_engine

    settings = served_settings(isolation=isolation, n_threads=args.threads, n_threads_batch=args.threads)
    t0 = time.perf_counter()
    engine = start_engine(EngineRecipe(model, path, settings, min(settings.n_ctx, 8192)))
    load_s = time.perf_counter() - t0
    try:
        async def session() -> tuple[float, float]:
            await decode_rate(engine, 8)  # page the weights in
            decode = max([await decode_rate(engine, args.tokens) for _ in range(2)])
            return decode, await aggregate_rate(engine, args.clients, args.aggregate_tokens)

        a = snapshot()
        decode, aggregate = asyncio.run(session())
        load = foreign_cores(a, snapshot())
        tokenize_us = tokenize_latency_us(engine)
    finally:
        engine.close()
    return {"isolation": isolation, "weight_buffers": settings.weight_buffers, "decode_tok_s": decode,
            "aggregate_tok_s": aggregate, "load_s": load_s,
            "tokenize_us": tokenize_us, "foreign_cores": load}


def tokenize_latency_us(engine: Any, n: int = 200) -> float:
    """Median time of one ``tokenize`` of a chat-sized prompt (~1,000 characters): ChatService calls it once
    per request, so through the child it is one round trip per request."""
    text = (DECODE_TEXT + " ") * 12
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        engine.tokenize(text)
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2] * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.engine_process", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir", type=Path, default=None, help="inhouse data dir (default: inhouse's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--aggregate-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="n_threads (0: physical cores, as serve)")
    parser.add_argument("--quiet", type=float, default=0.15, help="foreign load (cores) above which a run is "
                        "repeated and, if it stays, marked contended")
    parser.add_argument("--attempts", type=int, default=3)
    args = parser.parse_args(argv)
    from inhouse.config import load_settings

    data_dir = args.data_dir or load_settings().data_dir
    ref = resolve_model(args.model, data_dir)
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for isolation in (("thread", "process") if r % 2 == 0 else ("process", "thread")):
            for _ in range(args.attempts):  # a run under foreign load is repeated, then kept marked
                waited, load = wait_for_quiet(threshold_cores=args.quiet, max_wait_s=120)
                run = measure_side(isolation, ref.serve_name, ref.path, args)
                run.update(round=r, contended=run["foreign_cores"] > args.quiet)
                runs.append(run)
                print(f"round {r} {isolation:7s}: decode {run['decode_tok_s']:7.1f} tok/s, {args.clients} clients "
                      f"{run['aggregate_tok_s']:7.1f} tok/s, load {run['load_s']:.2f} s, foreign load "
                      f"{run['foreign_cores']:.2f} cores{' CONTENDED' if run['contended'] else ''} "
                      f"(before: {load:.2f} after {waited:.0f} s)", flush=True)
                if not run["contended"]:
                    break

    def best(isolation: str, key: str) -> float:
        clean = [x for x in runs if x["isolation"] == isolation and not x["contended"]]
        return max(x[key] for x in clean or [x for x in runs if x["isolation"] == isolation])

    inproc, child = best("thread", "decode_tok_s"), best("process", "decode_tok_s")
    agg_in, agg_child = best("thread", "aggregate_tok_s"), best("process", "aggregate_tok_s")
    summary = {
        "decode_tok_s": {"in_process": inproc, "child": child},
        "decode_ratio": child / inproc,
        "overhead_ms_per_token": 1000 / child - 1000 / inproc,
        "aggregate_tok_s": {"in_process": agg_in, "child": agg_child},
        "aggregate_ratio": agg_child / agg_in,
        "tokenize_us": {"in_process": min(x["tokenize_us"] for x in runs if x["isolation"] == "thread"),
                        "child": min(x["tokenize_us"] for x in runs if x["isolation"] == "process")},
        "max_foreign_cores": max(x["foreign_cores"] for x in runs),
        "contended_runs": sum(x["contended"] for x in runs),
    }
    print(f"\n{ref.serve_name}: best of {args.rounds} rounds each")
    print(f"  decode       child {child:7.1f} / in-process {inproc:7.1f} tok/s = {summary['decode_ratio']:.3f}"
          f"  (target >= 0.97) {'PASS' if summary['decode_ratio'] >= 0.97 else 'MISS'}")
    print(f"  overhead     {summary['overhead_ms_per_token']:+.3f} ms/token  (target <= 0.3) "
          f"{'PASS' if summary['overhead_ms_per_token'] <= 0.3 else 'MISS'}")
    print(f"  {args.clients} clients    child {agg_child:7.1f} / in-process {agg_in:7.1f} tok/s = "
          f"{summary['aggregate_ratio']:.3f}  (target 0.95-1.05) "
          f"{'PASS' if 0.95 <= summary['aggregate_ratio'] <= 1.05 else 'MISS'}")
    print(f"  tokenize (~1,000 chars, median): child {summary['tokenize_us']['child']:.0f} µs / in-process "
          f"{summary['tokenize_us']['in_process']:.0f} µs (one round trip per request)")
    print(f"  foreign load during the runs: at most {summary['max_foreign_cores']:.2f} cores; "
          f"{summary['contended_runs']} contended run(s) left out where a clean one exists")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"engine-process-{ref.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"model": ref.serve_name, "args": {k: str(v) for k, v in vars(args).items()},
                               "summary": summary, "runs": runs}, indent=2))
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
