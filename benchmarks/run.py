"""``python -m benchmarks.run``: benchmark `inhouse serve` against llama-cpp-python on one model.

Order of a run (each server is fresh when its block starts, so the prefix-cache "cold" request is cold):
  bandwidth → inhouse: warm-up, prefix, decode (alternating with the in-process baseline), concurrency,
  prefill → bandwidth → llama_cpp.server: the same scenarios → targets, table, JSON, PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.bandwidth import measure_read_bandwidth
from benchmarks.client import ChatTarget, build_client
from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.modelref import ModelRef, resolve_model
from benchmarks.prompts import DECODE_MESSAGES, filler_document, rag_system_prompt
from benchmarks.report import OURS, THEIRS, compute_targets, render_table, write_chart, write_json
from benchmarks.results import RESULTS_DIR
from benchmarks.servers import (
    ServerSpec,
    idle_cpu_pct,
    inhouse_env,
    inhouse_spec,
    llama_cpp_server_spec,
    running_server,
)

SCENARIOS = ("decode", "concurrency", "prefill", "prefix")
N_THREADS = 2


@dataclass(frozen=True)
class QuietPolicy:
    threshold_cores: float = 0.15  # foreign load below which the machine counts as quiet
    max_wait_s: float = 180.0  # then measure anyway, and say so
    retries: int = 2  # a step run under foreign load is repeated this many times at most


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_inproc(job: dict[str, Any], children: set[subprocess.Popen[str]] | None = None) -> dict[str, Any]:
    """The in-process baseline in its own process (see benchmarks/inproc.py). A caller that may be
    interrupted passes ``children`` so that it can kill the process (see ``Runner.kill_children``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.inproc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if children is not None:
        children.add(proc)
    try:
        out, err = proc.communicate(json.dumps(job))
    finally:
        if children is not None:
            children.discard(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process baseline failed (exit {proc.returncode}): {err.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def sized_document(model: ModelRef, tokens: int, seed: int) -> tuple[str, int]:
    """Filler text of about ``tokens`` tokens for this model's tokenizer (calibrated once, then checked)."""
    probe = filler_document(1000, seed)
    counts = run_inproc({"op": "info", "model_path": str(model.path), "texts": {"probe": probe}})["token_counts"]
    words = int(1000 * tokens / max(counts["probe"], 1))
    doc = filler_document(words, seed)
    n = run_inproc({"op": "info", "model_path": str(model.path), "texts": {"doc": doc}})["token_counts"]["doc"]
    return doc, n


def fresh(prompt: str, attempt: int) -> str:
    """The prompt of a repeated attempt starts differently, so no prefix cache has seen it: still cold."""
    return prompt if attempt == 0 else f"(Batch {attempt}.) {prompt}"


def any_attempt(fn: Callable[[], Awaitable[Any]]) -> Callable[[int], Awaitable[Any]]:
    """For steps whose retries need nothing fresh."""
    return lambda _attempt: fn()


class Runner:
    """Runs the selected scenarios on both servers and collects raw results in ``self.res``."""

    def __init__(
        self,
        model: ModelRef,
        cfg: scenarios.BenchConfig,
        only: set[str],
        log_dir: Path,
        data_dir: Path,
        quiet: QuietPolicy,
    ) -> None:
        self.model, self.cfg, self.only, self.log_dir, self.data_dir = model, cfg, only, log_dir, data_dir
        self.quiet = quiet
        self.res: dict[str, Any] = {"bandwidth": [], "errors": [], "servers": {}, "contention": []}
        self.decode_bias: dict[int, float] | None = cfg.logit_bias
        self.eos_ids: list[int] = []
        self.long_prompt = ""
        self.long_prompt_tokens = 0
        self.rag_prompt = ""
        self.children: set[subprocess.Popen[str]] = set()

    def kill_children(self) -> None:
        """Stop a baseline process still running when the run is interrupted (it would hog both cores)."""
        for proc in list(self.children):
            if proc.poll() is None:
                proc.kill()

    # -- helpers ----------------------------------------------------------------------------------

    def _record_failure(self, what: str, exc: BaseException) -> None:
        say(f"!! {what} failed: {exc}")
        self.res["errors"].append(f"{what}: {type(exc).__name__}: {exc}")
        with (self.log_dir / "tracebacks.txt").open("a") as f:
            f.write(f"--- {what}\n{traceback.format_exc()}\n")

    async def measured(self, what: str, coro_fn: Callable[[int], Awaitable[Any]]) -> Any:
        """Wait for a quiet machine, run one scenario step, record the foreign CPU load it ran under.

        A step that ran while other processes took more than the threshold is run again (``coro_fn`` gets
        the attempt number so that it can use a fresh prompt, i.e. stay cold for a prefix cache), up to
        ``retries`` times; the least contended attempt is kept. A failing step is recorded and the run goes
        on: partial numbers beat none."""
        best: tuple[float, Any] | None = None
        for attempt in range(self.quiet.retries + 1):
            waited, _ = await asyncio.to_thread(
                wait_for_quiet, self.quiet.threshold_cores, self.quiet.max_wait_s, 0.5, say
            )
            a = snapshot()
            try:
                out = await coro_fn(attempt)
            except Exception as exc:  # every failure is reported, whatever its type
                self._record_failure(what, exc)
                return best[1] if best else None
            b = snapshot()
            load = foreign_cores(a, b)
            self.res["contention"].append(
                {
                    "step": what,
                    "attempt": attempt,
                    "waited_s": round(waited, 1),
                    "foreign_cores": round(load, 3),
                    "wall_s": round(b.at_s - a.at_s, 2),
                    "kept": False,
                }
            )
            if best is None or load < best[0]:
                best = (load, out)
                for c in self.res["contention"]:
                    if c["step"] == what:
                        c["kept"] = c["attempt"] == attempt
            if load <= self.quiet.threshold_cores:
                break
            say(
                f"  other processes took {load:.2f} cores during {what}"
                + ("; trying again" if attempt < self.quiet.retries else "; keeping the least contended try")
            )
        return best[1] if best else None

    def bandwidth(self, when: str) -> None:
        say(f"measuring read bandwidth ({when}) …")
        wait_for_quiet(self.quiet.threshold_cores, self.quiet.max_wait_s, 0.5, say)
        a = snapshot()
        bw = measure_read_bandwidth(repeats=self.cfg.bandwidth_repeats, threads=N_THREADS)
        load = foreign_cores(a, snapshot())
        self.res["bandwidth"].append({"when": when, **bw.to_dict(), "foreign_cores": round(load, 3)})
        say(f"  {bw.multi_thread_gb_s:.1f} GB/s ({N_THREADS} threads), {bw.single_thread_gb_s:.1f} GB/s (1)")

    def inproc_decode(self, repeats: int | None = None) -> list[dict[str, Any]]:
        job = {
            "op": "decode",
            "model_path": str(self.model.path),
            "messages": DECODE_MESSAGES,
            "max_tokens": self.cfg.decode_tokens,
            "repeats": repeats or self.cfg.decode_repeats,
            "n_ctx": 4096,
            "n_threads": N_THREADS,
            "logit_bias": self.decode_bias,
        }
        runs: list[dict[str, Any]] = run_inproc(job, self.children)["runs"]
        return runs

    def prepare(self) -> None:
        info = run_inproc({"op": "info", "model_path": str(self.model.path), "texts": {}})
        self.eos_ids = info["eos_ids"]
        if self.cfg.logit_bias is not None:  # --ignore-eos: suppress every end-of-turn token everywhere
            self.cfg.logit_bias = {t: -100.0 for t in self.eos_ids}
            self.decode_bias = self.cfg.logit_bias
        if "prefill" in self.only:
            self.long_prompt, self.long_prompt_tokens = sized_document(
                self.model, self.cfg.prefill_prompt_tokens, seed=7
            )
            say(f"prefill prompt: {self.long_prompt_tokens} tokens")
        if "prefix" in self.only:
            doc, n = sized_document(self.model, self.cfg.prefix_prompt_tokens - 60, seed=11)
            self.rag_prompt = rag_system_prompt(doc)
            say(f"RAG prefix document: {n} tokens (+ about 60 of instructions and question)")

    # -- one server block -------------------------------------------------------------------------

    def server_block(self, side: str, spec: ServerSpec) -> None:
        say(f"starting {spec.label} …")
        try:
            with running_server(spec, self.log_dir) as server:
                say(f"  {spec.label} ready on port {server.port} in {server.startup_s:.1f} s")
                self.res["servers"][side] = {
                    "label": spec.label,
                    "argv": spec.argv,
                    "startup_s": server.startup_s,
                    "log": str(server.log_path),
                }
                target = ChatTarget(server.base_url, spec.model, spec.api_key)
                asyncio.run(self._server_scenarios(side, target, server.pid))
        except Exception as exc:
            self._record_failure(f"{spec.label} block", exc)

    async def _server_scenarios(self, side: str, target: ChatTarget, pid: int) -> None:
        cfg = self.cfg
        async with build_client() as client:
            await scenarios.warm_up(client, target)
            if "prefix" in self.only:
                say(f"[{side}] prefix cache: cold then {cfg.prefix_warm_requests} warm requests")
                out = await self.measured(
                    f"prefix {side}", lambda k: scenarios.prefix_cache(client, target, cfg, fresh(self.rag_prompt, k))
                )
                if out:
                    self.res.setdefault("prefix", {})[side] = out
                    say(
                        f"  cold {out['cold_ttft_s']:.3f} s, warm {out['warm_ttft_median_s']:.3f} s "
                        f"(×{out['cold_over_warm'] or 0:.1f}), hit rate {out['hit_rate']}"
                    )
            if "decode" in self.only:
                await self._decode(side, client, target, pid)
            if "concurrency" in self.only:
                say(f"[{side}] concurrency {cfg.clients}, max_tokens {cfg.concurrency_tokens}")
                for n in cfg.clients:
                    load = await self.measured(
                        f"concurrency {side} {n}", any_attempt(partial(scenarios.one_load, client, target, cfg, n))
                    )
                    if load:
                        self.res.setdefault("concurrency", {}).setdefault(side, []).append(load)
                        say(
                            f"  {n:>2} clients: {load['aggregate_tok_s'] or 0:7.1f} tok/s aggregate, "
                            f"TTFT p95 {load['ttft_p95_s'] or 0:6.2f} s, "
                            f"ITL p95 {load['itl_p95_s'] or 0:.3f} s"
                            + (f", {len(load['errors'])} errors: {load['errors'][0]}" if load["errors"] else "")
                        )
            if "prefill" in self.only:
                say(f"[{side}] chunked prefill: stream A + a {self.long_prompt_tokens}-token prompt")
                pre = await self.measured(
                    f"prefill {side}",
                    lambda k: scenarios.prefill_interference(client, target, cfg, fresh(self.long_prompt, k)),
                )
                if pre:
                    pre["b_prompt_tokens_text"] = self.long_prompt_tokens
                    self.res.setdefault("prefill", {})[side] = pre
                    say(
                        f"  B TTFT {pre['b_ttft_s'] or 0:.2f} s; A's longest gap while B prefilled "
                        f"{pre['a_max_gap_during_b_prefill_s'] or 0:.3f} s"
                        + ("" if pre["a_overlapped_b_prefill"] else " (A ended before B's first token)")
                    )

    async def _decode(self, side: str, client: Any, target: ChatTarget, pid: int) -> None:
        dec = self.res.setdefault("decode", {"inproc_runs": [], "ours_runs": [], "theirs_runs": []})
        rounds = self.cfg.decode_rounds if side == OURS else 1
        if side == OURS:
            dec["idle_cpu_pct_ours"] = idle_cpu_pct(pid)
            say(f"[ours] idle server CPU: {dec['idle_cpu_pct_ours']:.1f} %")
        for r in range(rounds):
            if side == OURS:  # the baseline runs between server rounds so drift hits both alike
                say(
                    f"[in-process Llama] decode {r + 1}/{rounds}: "
                    f"{self.cfg.decode_repeats}×{self.cfg.decode_tokens} tokens"
                )
                runs = await self.measured(
                    f"decode in-process {r + 1}", lambda _k: asyncio.to_thread(self.inproc_decode)
                )
                short = [x["n_tokens"] for x in runs or [] if x["n_tokens"] < 0.9 * self.cfg.decode_tokens]
                if short and self.decode_bias is None:
                    # The prompt did not ramble long enough on this model: suppress EOS on all sides instead.
                    say(f"  stopped early ({short} tokens); redoing with EOS suppressed via logit_bias")
                    self.decode_bias = {t: -100.0 for t in self.eos_ids}
                    runs = await self.measured(
                        f"decode in-process {r + 1} (EOS suppressed)",
                        lambda _k: asyncio.to_thread(self.inproc_decode),
                    )
                dec["inproc_runs"].extend(runs or [])
                dec["logit_bias_eos"] = self.decode_bias is not None
                say(f"  {_rates(runs or [])} tok/s")
            say(f"[{side}] decode {r + 1}/{rounds}")
            cfg = replace(self.cfg, logit_bias=self.decode_bias)
            runs = await self.measured(
                f"decode {side} {r + 1}", any_attempt(partial(scenarios.decode_runs, client, target, cfg))
            )
            if runs:
                dec[f"{side}_runs"].extend(runs)
                say(f"  {_rates(runs)} tok/s ({runs[0]['n_tokens']} tokens, counted from {runs[0]['tokens_source']})")

    # -- the whole run ----------------------------------------------------------------------------

    def run(self, skip_theirs: bool, ours_is_baseline: bool = False) -> dict[str, Any]:
        self.prepare()
        if "decode" in self.only:
            self.bandwidth("before")
        if ours_is_baseline:  # harness self-check: both sides are llama_cpp.server
            self.server_block(OURS, llama_cpp_server_spec(self.model.path, n_threads=N_THREADS))
        else:
            self.server_block(OURS, inhouse_spec(self.model.serve_name, self.data_dir))
        if "decode" in self.only:
            self.bandwidth("after inhouse")
        if not skip_theirs:
            self.server_block(THEIRS, llama_cpp_server_spec(self.model.path, n_threads=N_THREADS))
        return self.res


def _rates(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{x['decode_tok_s'] or 0:.1f}" for x in runs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="catalog name (smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b) or a path to a .gguf",
    )
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="small counts, clients 1,2,8 (< 5 min on SmolLM2)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="inhouse data dir holding the models (default: inhouse's default data dir)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where JSON, PNG and server logs go")
    p.add_argument(
        "--ignore-eos",
        action="store_true",
        help="send logit_bias -100 on end-of-turn tokens in every request (both servers)",
    )
    p.add_argument("--skip-baseline-server", action="store_true", help="do not run llama_cpp.server")
    p.add_argument(
        "--ours-server",
        choices=["inhouse", "llama_cpp.server"],
        default="inhouse",
        help="harness self-check only: put llama_cpp.server in inhouse's place (needs a .gguf path)",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.15,
        help="foreign CPU load (cores) under which the machine counts as quiet (default 0.15)",
    )
    p.add_argument(
        "--max-wait-quiet",
        type=float,
        default=None,
        help="longest wait for a quiet machine before each step, seconds (default 180, --quick 30)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="repeat a step measured under foreign load at most this many times (default 2, --quick 1)",
    )
    return p.parse_args(argv)


def default_data_dir() -> Path:
    """inhouse's own default (``INHOUSE_DATA_DIR`` or the XDG data dir), asked of inhouse itself."""
    code = "from inhouse.config import load_settings; print(load_settings().data_dir)"
    env = {**os.environ, **inhouse_env()}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return Path(proc.stdout.strip())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    cfg = scenarios.BenchConfig.quick() if args.quick else scenarios.BenchConfig()
    if args.ignore_eos:
        cfg.logit_bias = {}  # filled with the model's EOS ids once they are known
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    started = dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    if args.ours_server == "llama_cpp.server" and Path(args.model).is_file():
        path = Path(args.model).resolve()
        model = ModelRef(serve_name=path.stem, path=path, label=f"selfcheck-{path.stem.lower()}")
    else:
        model = resolve_model(args.model, data_dir, say)
    out_dir: Path = args.out_dir
    log_dir = out_dir / "logs" / f"{model.label}-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"model {model.serve_name}: {model.path} ({model.size_bytes / 1e6:.0f} MB); scenarios {sorted(only)}")
    quiet = QuietPolicy(
        args.quiet_threshold,
        args.max_wait_quiet if args.max_wait_quiet is not None else (30.0 if args.quick else 180.0),
        args.retries if args.retries is not None else (1 if args.quick else 2),
    )
    runner = Runner(model, cfg, only, log_dir, data_dir, quiet)

    def on_sigterm(signum: int, frame: object) -> None:
        # Kill the baseline first (a worker thread waits on it, and asyncio.run waits for that thread), then
        # unwind with SystemExit through every ``finally``: the servers are stopped, not orphaned.
        runner.kill_children()
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.perf_counter()
    try:
        res = runner.run(skip_theirs=args.skip_baseline_server, ours_is_baseline=args.ours_server == "llama_cpp.server")
    finally:
        runner.kill_children()
    res["meta"] = {
        "model": model.serve_name,
        "model_path": str(model.path),
        "model_bytes": model.size_bytes,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t0,
        "quick": args.quick,
        "scenarios": sorted(only),
        "cpu": cpu_name(),
        "cores": _cores(),
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "config": {k: v for k, v in cfg.__dict__.items() if k != "logit_bias"},
        "ignore_eos": args.ignore_eos,
        "ours_server": args.ours_server,
        "eos_ids": runner.eos_ids,
        "python": platform.python_version(),
    }
    res["targets"] = compute_targets(res)
    base = out_dir / f"{model.label}-{stamp}"
    # Not with_suffix: a model label like "qwen2.5-coder-1.5b" has a dot of its own.
    json_path, png_path = base.parent / f"{base.name}.json", base.parent / f"{base.name}.png"
    write_json(res, json_path)
    write_chart(res, png_path)
    print()
    print(render_table(res))
    print()
    say(f"wrote {json_path} and {png_path} ({res['meta']['duration_s']:.0f} s)")
    return res


def _cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
