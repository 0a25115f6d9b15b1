"""Tuned inhouse vs the untuned PyTorch baseline, same GGUF, same prompts, greedy decoding.

    .venv/bin/python -m benchmarks.tuned_vs_baseline --model smollm2-135m [--data-dir D]

The inhouse side is the engine `inhouse serve` would run: the model's tuned profile applied when one matches
this CPU (``inhouse tune MODEL`` writes it), in-process, no HTTP. The baseline is
``benchmarks/baseline_transformers.py`` (transformers + torch FP32 on the same GGUF) in its own process and
virtualenv (``--baseline-python``, default ``.venv-bench/bin/python``, created with the pinned packages when
missing). The two sides run one after the other, each after waiting for the machine to be quiet; the foreign
CPU load each ran under is recorded.
Prints the ratios tuned ÷ baseline (target: ≥ 4× decode) and writes JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.results import RESULTS_DIR, write_results

ROOT = Path(__file__).resolve().parent
TEXT = ("The quarterly report covers sales, hiring and the new warehouse. Our team reviewed the contracts, "
        "checked the invoices against the purchase orders and found three discrepancies that need a decision. "
        "Please summarise the open questions, propose owners and suggest a deadline for each of them. ")


def prompts(concurrency: int) -> dict[str, Any]:
    """The texts both sides tokenize (each with its own tokenizer of the same GGUF vocabulary)."""
    return {
        "decode_prompt": "Request 1. " + TEXT[:120],
        "prefill_prompt": "Request 2. " + (TEXT * 6)[:1100],  # about 250 tokens
        "aggregate_prompts": [f"Request {10 + i}. " + (TEXT * 2)[: 380 + 7 * i] for i in range(concurrency)],
    }


def measure_inhouse(model: str, data_dir: Path | None, texts: dict[str, Any], decode_tokens: int,
                    aggregate_tokens: int, repeats: int) -> dict[str, Any]:
    from inhouse.bootstrap import build_services, engine_settings_for
    from inhouse.config import load_settings
    from inhouse.engine.params import GenerationRequest, SamplingParams
    from inhouse.engine.process import EngineRecipe, start_engine

    settings = load_settings(**({"data_dir": data_dir} if data_dir else {}))
    services = build_services(settings)
    try:
        spec = services.registry.resolve(model, require_present=True)
        assert spec.path is not None
        match = services.profiles.match(spec.sha256)
        eff = engine_settings_for(spec, settings, services.probe, services.profiles,
                                  lambda n, s: services.registry.verified_path(n, s))
        es, path, choice, n_ctx = eff.settings, eff.path, eff.weights, eff.n_ctx
        print(f"inhouse: weight buffers {choice.value} ({choice.reason})", file=sys.stderr)
        t0 = time.perf_counter()
        engine = start_engine(EngineRecipe(model, path, es, n_ctx))  # where serve runs it
        load_s = time.perf_counter() - t0
    finally:
        services.close()
    serial = iter(range(10**9))

    async def one(text: str, n: int) -> tuple[float, list[float], int]:
        tokens = engine.tokenize(text)
        params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
        start = time.perf_counter()
        times: list[float] = []
        async for d in engine.generate(GenerationRequest(f"b{next(serial)}", tokens, params)):
            assert d.error is None, d.error
            times.extend(time.perf_counter() for _ in d.token_ids)
        return start, times, len(tokens)

    async def session() -> dict[str, Any]:
        await one("warm up", 2)
        best = {"decode_tok_s": 0.0, "prefill_tok_s": 0.0, "aggregate_tok_s": 0.0, "prefill_tokens": 0}
        for _ in range(repeats):
            _, ts, _ = await one(texts["decode_prompt"], decode_tokens)
            best["decode_tok_s"] = max(best["decode_tok_s"], (len(ts) - 1) / (ts[-1] - ts[0]))
            # A prefix-cache hit would not be a prefill: make the long prompt new each repeat.
            start, ts, n = await one(f"{next(serial)} " + texts["prefill_prompt"], 1)
            best["prefill_tok_s"] = max(best["prefill_tok_s"], n / (ts[0] - start))
            best["prefill_tokens"] = n
            start = time.perf_counter()
            runs = await asyncio.gather(*(one(f"{next(serial)} " + t, aggregate_tokens)
                                          for t in texts["aggregate_prompts"]))
            wall = time.perf_counter() - start
            best["aggregate_tok_s"] = max(best["aggregate_tok_s"], sum(len(r[1]) for r in runs) / wall)
        return best

    try:
        out = asyncio.run(session())
    finally:
        engine.close()
    return {**out, "load_s": load_s, "weights": path.name, "weight_buffers": choice.to_dict(),
            "tuned_profile": match.status,
            "profile": match.profile.describe() if match.applies and match.profile else None,
            "gguf": str(spec.path)}


def measure_baseline(python: str, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run([python, "-m", "benchmarks.baseline_transformers"], input=json.dumps(job),
                          capture_output=True, text=True, timeout=timeout_s, cwd=ROOT.parent)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"the baseline failed (exit {proc.returncode}); is torch==2.13.0 + transformers + gguf "
                         f"+ accelerate installed for {python}?\n{tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


BENCH_VENV = ROOT.parent / ".venv-bench"
# Exactly the CPU build of torch (an unpinned install pulls a multi-GB CUDA build); the rest as the extra lists.
BENCH_PACKAGES = ("torch==2.13.0", "transformers", "gguf", "accelerate", "numpy")


def ensure_bench_venv(venv: Path = BENCH_VENV) -> Path:
    """The baseline's own virtualenv (torch is never an inhouse dependency), created on first use."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import torch, transformers, gguf, accelerate"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} for the PyTorch baseline (one time; torch==2.13.0 CPU build, ~1 min from the pip "
          "cache) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *BENCH_PACKAGES], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", type=Path, default=None, help="inhouse data dir (profiles, model cache)")
    ap.add_argument("--baseline-python", default=None,
                    help="Python with torch==2.13.0 + transformers + gguf + accelerate (default: .venv-bench, "
                    "created with them on first use)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--aggregate-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-wait-quiet", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    baseline_python = args.baseline_python or str(ensure_bench_venv())
    texts = prompts(args.concurrency)
    say = print
    sides: dict[str, dict[str, Any]] = {}
    for side in ("inhouse", "baseline"):
        waited, load = wait_for_quiet(max_wait_s=args.max_wait_quiet, say=say)
        say(f"measuring {side} (machine load before: {load:.2f} cores, waited {waited:.0f} s) …")
        a = snapshot()
        if side == "inhouse":
            result = measure_inhouse(args.model, args.data_dir, texts, args.decode_tokens, args.aggregate_tokens,
                                     args.repeats)
            gguf = result["gguf"]
        else:
            job = {"gguf": gguf, **texts, "decode_tokens": args.decode_tokens,
                   "aggregate_tokens": args.aggregate_tokens, "repeats": args.repeats, "threads": 0}
            result = measure_baseline(baseline_python, job, timeout_s=1800)
        result["foreign_load_cores"] = round(foreign_cores(a, snapshot()), 2)
        sides[side] = result

    keys = ("decode_tok_s", "prefill_tok_s", "aggregate_tok_s")
    ratios = {k: sides["inhouse"][k] / sides["baseline"][k] if sides["baseline"][k] else None for k in keys}
    labels = {"decode_tok_s": "decode tok/s (1 stream)", "prefill_tok_s": "prefill tok/s",
              "aggregate_tok_s": f"aggregate tok/s ({args.concurrency} clients)"}
    print(f"\n{args.model}: tuned inhouse ({sides['inhouse']['weights']}, profile: "
          f"{sides['inhouse']['tuned_profile']}) vs transformers {sides['baseline'].get('torch')} FP32")
    print(f"{'':32} {'inhouse':>10} {'baseline':>10} {'ratio':>8}")
    for k in keys:
        r = ratios[k]
        print(f"{labels[k]:32} {sides['inhouse'][k]:10.1f} {sides['baseline'][k]:10.1f} "
              f"{(f'{r:.1f}x' if r else '-'):>8}")
    verdict = "MET" if (ratios["decode_tok_s"] or 0) >= 4 else "NOT MET"
    print(f"target: decode >= 4x baseline: {verdict}; foreign load inhouse "
          f"{sides['inhouse']['foreign_load_cores']} / baseline {sides['baseline']['foreign_load_cores']} cores")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = write_results({"model": args.model, "concurrency": args.concurrency, "inhouse": sides["inhouse"],
                         "baseline": sides["baseline"], "ratios": ratios, "decode_target_4x": verdict},
                        args.out or RESULTS_DIR / f"tuned_vs_baseline-{args.model}-{stamp}.json")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
