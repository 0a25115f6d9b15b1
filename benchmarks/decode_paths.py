"""Where single-stream decode speed goes between raw llama.cpp and the server (issue 11: on an Intel guest with
AMX the server decoded at 0.16× raw ``Llama``). Every path decodes the same greedy tokens of the same model:

* ``raw``: a bare llama.cpp loop (``llama_decode`` + greedy ``llama_sampler_sample``, nothing else) in a
  non-main thread, with the engine's context parameters (n_ctx 8192, 20 unified sequences, n_batch 512);
* ``inproc``: the engine (scheduler, step thread, samplers, stop handling) in the measuring process, consumed
  by an asyncio loop as ``inhouse tune`` does;
* ``child``: the same engine in its child process (what ``inhouse serve`` runs);
* ``http-thread`` / ``http-process``: ``inhouse serve`` with ``engine.isolation`` thread / process, and an SSE
  client streaming the tokens (the server's event loop, SSE writer, audit and metrics all run meanwhile);

each under ``OMP_WAIT_POLICY`` unset (libgomp spins ~300k iterations before sleeping), ``passive``, ``active``
and ``GOMP_SPINCOUNT=20000``, and with 1 and 2 threads. Each point is a fresh process (OpenMP reads its environment when
llama.cpp loads), runs wait for a quiet machine, rounds interleave the points and the best round counts.

    .venv/bin/python -m benchmarks.decode_paths --model smollm2-135m

Writes ``benchmarks/results/decode-paths-<model>-<time>.json``; the reading is in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.engine_process import DECODE_TEXT, RESULTS, decode_rate, served_settings
from benchmarks.modelref import resolve_model

PATHS = ("raw", "inproc", "child", "http-thread", "http-process")
# OpenMP environment of each point: unset (libgomp spins ~300k iterations at a barrier or between parallel
# regions before it sleeps), passive (sleep at once), active (spin forever), or a short spin.
OMP: dict[str, dict[str, str]] = {"default": {}, "passive": {"OMP_WAIT_POLICY": "passive"},
                                  "active": {"OMP_WAIT_POLICY": "active"}, "spin20k": {"GOMP_SPINCOUNT": "20000"}}


def raw_rates(model_path: Path, threads: int, n: int, runs: int) -> list[float]:
    """A bare llama.cpp decode loop in a non-main thread."""
    import ctypes

    import llama_cpp as L

    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = L.llama_model_load_from_file(str(model_path).encode(), mparams)
    cparams = L.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch, cparams.n_seq_max = 8192, 512, 512, 20
    cparams.kv_unified = True
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = L.llama_init_from_model(model, cparams)
    vocab = L.llama_model_get_vocab(model)
    text = DECODE_TEXT.encode()
    buf = (ctypes.c_int32 * (len(text) + 8))()
    n_prompt = L.llama_tokenize(vocab, text, len(text), buf, len(buf), True, False)
    sampler = L.llama_sampler_init_greedy()
    out: list[float] = []

    def one() -> float:
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        L.llama_decode(ctx, L.llama_batch_get_one(buf, n_prompt))
        token = (ctypes.c_int32 * 1)()
        times = []
        for _ in range(n):
            token[0] = L.llama_sampler_sample(sampler, ctx, -1)
            times.append(time.perf_counter())
            L.llama_decode(ctx, L.llama_batch_get_one(token, 1))
        return (len(times) - 1) / (times[-1] - times[0])

    def loop() -> None:
        one()  # warm-up: page the weights in
        out.extend(one() for _ in range(runs))

    t = threading.Thread(target=loop)
    t.start()
    t.join()
    return out


def engine_rates(isolation: str, serve_name: str, model_path: Path, threads: int, n: int, runs: int) -> list[float]:
    from inhouse.engine.process import EngineRecipe, start_engine

    settings = served_settings(isolation=isolation, n_threads=threads, n_threads_batch=threads)
    engine = start_engine(EngineRecipe(serve_name, model_path, settings, 8192))

    async def session() -> list[float]:
        await decode_rate(engine, 8)
        return [await decode_rate(engine, n) for _ in range(runs)]

    try:
        return asyncio.run(session())
    finally:
        engine.close()


def http_rates(isolation: str, serve_name: str, data_dir: Path, threads: int, n: int, runs: int) -> list[float]:
    from benchmarks.client import ChatTarget, build_client, stream_chat
    from benchmarks.prompts import DECODE_MESSAGES
    from benchmarks.servers import inhouse_spec, running_server

    env = {"INHOUSE_ENGINE__ISOLATION": isolation, "INHOUSE_ENGINE__N_THREADS": str(threads),
           "INHOUSE_ENGINE__N_THREADS_BATCH": str(threads)}
    with running_server(inhouse_spec(serve_name, data_dir, extra_env=env), RESULTS / "logs") as server:
        target = ChatTarget(server.base_url, serve_name)

        async def session() -> list[float]:
            async with build_client() as client:
                await stream_chat(client, target, DECODE_MESSAGES, 8)
                out = []
                for _ in range(runs):
                    res = await stream_chat(client, target, DECODE_MESSAGES, n)
                    if res.error or len(res.chunk_times_s) < 2:
                        raise RuntimeError(res.error or "no tokens")
                    # Tokens from usage (a chunk may carry several when the client fell behind).
                    span = res.chunk_times_s[-1] - res.chunk_times_s[0]
                    out.append((res.n_tokens - 1) / span)
                return out

        return asyncio.run(session())


def worker(args: argparse.Namespace) -> int:
    path = Path(args.model_path)
    if args.path == "raw":
        rates = raw_rates(path, args.threads, args.tokens, args.runs)
    elif args.path in ("inproc", "child"):
        rates = engine_rates("thread" if args.path == "inproc" else "process", args.serve_name, path, args.threads,
                             args.tokens, args.runs)
    else:
        rates = http_rates(args.path.removeprefix("http-"), args.serve_name, Path(args.data_dir), args.threads,
                           args.tokens, args.runs)
    print(json.dumps({"rates": rates}), flush=True)
    return 0


def run_point(path: str, omp: str, threads: int, ref: Any, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))} | OMP[omp]
    cmd = [sys.executable, "-m", "benchmarks.decode_paths", "worker", "--path", path, "--model-path", str(ref.path),
           "--serve-name", ref.serve_name, "--data-dir", str(data_dir), "--threads", str(threads),
           "--tokens", str(args.tokens), "--runs", str(args.runs)]
    for _ in range(3):  # a point measured under foreign load is repeated, then kept marked
        wait_for_quiet(threshold_cores=0.15, max_wait_s=120)
        a = snapshot()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        load = foreign_cores(a, snapshot())
        if proc.returncode != 0:
            raise RuntimeError(f"{path}/{omp}/{threads}: {proc.stderr[-1500:]}")
        if load <= 0.15:
            break
    rates = json.loads(proc.stdout.strip().splitlines()[-1])["rates"]
    return {"path": path, "omp": omp, "threads": threads, "rates": rates, "best": max(rates), "foreign_cores": load,
            "contended": load > 0.15}


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["worker"]:
        wp = argparse.ArgumentParser(prog="benchmarks.decode_paths worker")
        for name in ("--path", "--model-path", "--serve-name", "--data-dir"):
            wp.add_argument(name, required=True)
        for name in ("--threads", "--tokens", "--runs"):
            wp.add_argument(name, type=int, required=True)
        return worker(wp.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="benchmarks.decode_paths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--omp", default=",".join(OMP))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="decodes per point and round (best counts)")
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args(argv)
    from inhouse.config import load_settings

    data_dir = args.data_dir or load_settings().data_dir
    ref = resolve_model(args.model, data_dir)
    points = [(p, o, int(t)) for o in args.omp.split(",") for t in args.threads.split(",")
              for p in args.paths.split(",")]
    results: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for p, o, t in (points if r % 2 == 0 else points[::-1]):
            res = run_point(p, o, t, ref, data_dir, args)
            res["round"] = r
            results.append(res)
            print(f"round {r} {p:12s} omp={o:7s} threads={t}: "
                  f"{' '.join(f'{x:6.1f}' for x in res['rates'])} tok/s  (foreign {res['foreign_cores']:.2f})",
                  flush=True)
    best: dict[tuple[str, str, int], float] = {}
    for res in results:
        key = (res["path"], res["omp"], res["threads"])
        best[key] = max(best.get(key, 0.0), res["best"])
    paths = args.paths.split(",")
    print(f"\n{ref.serve_name}: best decode tok/s (÷ raw in the same row)")
    print(f"{'omp':16s} {'threads':>7s} " + " ".join(f"{p:>18s}" for p in paths))
    for o in args.omp.split(","):
        for t in map(int, args.threads.split(",")):
            raw = best.get(("raw", o, t))
            cells = []
            for p in paths:
                v = best.get((p, o, t))
                cells.append(f"{v:7.1f}" + (f" ({v / raw:4.2f})" if raw and v is not None else "       ")
                             if v is not None else "-")
            print(f"{o:16s} {t:7d} " + " ".join(f"{c:>18s}" for c in cells))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"decode-paths-{ref.label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"model": ref.serve_name, "args": {k: str(v) for k, v in vars(args).items()},
                               "best": [{"path": k[0], "omp": k[1], "threads": k[2], "tok_s": v}
                                        for k, v in best.items()],
                               "runs": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
