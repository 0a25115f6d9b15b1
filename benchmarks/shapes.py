"""``python -m benchmarks.shapes``: the seed's model sizes through ``inhouse serve``, on synthetic weights.

    python -m benchmarks.shapes --model llama2-7b-shape --quant q4_0
    python -m benchmarks.shapes --model llama2-13b-shape --quant q4_k_m --clients 1,4,8
    python -m benchmarks.shapes --model qwen2.5-7b-shape --quant q8_0 --profile both

One run: generate the shape file (``shapegen.py``; deterministic, so it can always be made again) → register
it with ``inhouse models add`` in the run's own data dir → measure read bandwidth → the in-process baseline
(llama-cpp-python ``Llama`` on the same file, same threads: decode, prefill, load, peak RSS) → ``inhouse
serve`` (load time and RSS, a 1.5k-token RAG prompt cold and warm, decode, 1/4/8 concurrent clients, the
longest stall of a decoding stream while another prompt prefills) → KV cache per 1k tokens in f16 and q8_0
(formula from the header and llama.cpp's own accounting) → JSON in ``benchmarks/results/`` → the shape
file is deleted (``--keep`` keeps it). Run it alone on the machine (foreign load skews every figure).
``--steps`` runs a subset of the server steps (``prefix,decode,clients,stall``).

The decode ratio against the baseline is measured in pairs (``--paired-rounds``): one server and one
in-process run per round, alternating, while the server stays loaded; this machine's speed drifts by 10-15 %
within minutes, which a baseline measured before the server puts straight into the ratio.

``--profile tuned`` runs ``inhouse tune`` first with a reduced candidate set (the model's own weights only,
one repeat: threads, attention/KV, batch and prefill chunk within ``--tune-budget-s``; docs/capacity.md
says why) and serves with the profile; ``both`` measures defaults and tuned in the same run.
``--weight-buffers amx,repack`` measures AMX on and off (the hardware probe's ``engine.weight_buffers``)
where the CPU has AMX; elsewhere ``amx`` is recorded as not available and skipped (``repack,plain``
measures llama.cpp's CPU weight repacking on and off on any CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import scenarios, shapegen
from benchmarks.client import ChatTarget, build_client
from benchmarks.modelref import ModelRef
from benchmarks.prompts import RAG_QUESTIONS
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.run import N_THREADS, QuietPolicy, Runner, run_inproc, say
from benchmarks.servers import inhouse_env, inhouse_spec, running_server

SHAPES_DIR = Path.home() / ".cache" / "inhouse-bench" / "shapes"
WEIGHT_BUFFERS_ENV = "INHOUSE_ENGINE__WEIGHT_BUFFERS"  # the hardware probe's setting: auto|amx|repack|plain
SERVER_STEPS = ("prefix", "decode", "clients", "stall")
PAIRED_MARGIN_BYTES = 2 * 2**30  # RAM left free when the in-process copy is loaded next to the server


def tree_pids(root: int) -> list[int]:
    """``root`` and its live descendants (the server may run its engine in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_memory(root: int) -> dict[str, int]:
    """Current and peak resident memory of a process tree (sum of VmRSS / VmHWM), bytes."""
    rss = hwm = 0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) * 1024
    return {"rss_bytes": rss, "rss_peak_bytes": hwm}


def oom_kills() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def inhouse(args: list[str], data_dir: Path, env: dict[str, str] | None = None,
            timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inhouse.cli.main", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, timeout=timeout_s,
                          env={**os.environ, **inhouse_env(), **(env or {})})


def register(path: Path, name: str, data_dir: Path) -> None:
    proc = inhouse(["models", "add", str(path), "--name", name], data_dir)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 and "already registered" not in text:
        raise RuntimeError(f"`inhouse models add` failed: {text.strip()[-800:]}")
    if "already registered" in text:  # a regenerated file has a new digest: register it again
        inhouse(["models", "remove", name], data_dir)
        proc = inhouse(["models", "add", str(path), "--name", name], data_dir)
        if proc.returncode != 0:
            raise RuntimeError(f"`inhouse models add` failed: {(proc.stdout + proc.stderr).strip()[-800:]}")


def header_facts(path: Path) -> dict[str, Any]:
    from inhouse.models.footprint import kv_bytes_per_token, model_shape
    from inhouse.models.gguf.read import read_gguf_header

    info = read_gguf_header(path)
    shape = model_shape(info)
    types: dict[str, int] = {}
    for t in info.tensors:
        types[t.ggml_type] = types.get(t.ggml_type, 0) + t.n_bytes
    return {
        "file_bytes": info.file_size,
        "weight_bytes": shape.weight_bytes,
        "read_bytes_per_token": shape.read_bytes_per_token,
        "n_params": shape.n_params,
        "quantization": info.quantization,
        "bytes_by_type": types,
        "kv_mib_per_1k_f16": kv_bytes_per_token(shape, "f16") * 1000 / 2**20,
        "kv_mib_per_1k_q8_0": kv_bytes_per_token(shape, "q8_0") * 1000 / 2**20,
        "kv_bytes_per_token_f16": kv_bytes_per_token(shape, "f16"),
    }


def mem_available() -> int:
    """``MemAvailable`` of /proc/meminfo, bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def paired_ratio(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Server ÷ in-process decode of each round of ``ShapeRun.paired_decode``, and their median: the ratio of
    docs/performance.md (a median of pairs, not a ratio of bests measured minutes apart)."""
    ratios, server, inproc = [], [], []
    for p in pairs:
        s, i = p["server"].get("decode_tok_s"), p["inproc"].get("decode_tok_s")
        if s and i:
            ratios.append(s / i)
            server.append(s)
            inproc.append(i)
    if not ratios:
        return {"ratios": [], "ratio_median": None, "server_median": None, "inproc_median": None}
    return {"ratios": ratios, "ratio_median": statistics.median(ratios),
            "server_median": statistics.median(server), "inproc_median": statistics.median(inproc)}


def _rates(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{x['decode_tok_s'] or 0:.2f}" for x in runs)


class ShapeRun:
    def __init__(self, args: argparse.Namespace, model: ModelRef, data_dirs: dict[str, Path], log_dir: Path) -> None:
        self.args = args
        self.model = model
        self.data_dirs = data_dirs
        self.log_dir = log_dir
        cfg = scenarios.BenchConfig(decode_tokens=args.decode_tokens, decode_repeats=args.decode_repeats,
                                    decode_rounds=1, clients=args.clients, concurrency_tokens=args.concurrency_tokens,
                                    prefill_a_tokens=args.decode_tokens * 4, prefix_warm_requests=2,
                                    bandwidth_repeats=3)
        cfg.logit_bias = {}  # random weights may emit EOS anywhere: suppress it everywhere (both sides)
        cfg.stall_every_token = True  # and tokens without text: the stall is timed per token, not per text chunk
        only = {"decode", "prefill", "prefix", "concurrency"}
        self.runner = Runner(model, cfg, only, log_dir, data_dirs["default"],
                             QuietPolicy(args.quiet_threshold, args.max_wait_quiet, 1))
        self.res: dict[str, Any] = self.runner.res

    async def scenarios(self, target: ChatTarget, label: str, pid: int) -> dict[str, Any]:
        r, cfg = self.runner, self.runner.cfg
        out: dict[str, Any] = {}
        async with build_client() as client:
            await scenarios.warm_up(client, target)
            out["memory_after_warmup"] = tree_memory(pid)
            steps = self.args.steps
            if "prefix" in steps:
                say(f"[{label}] RAG prompt cold, then {cfg.prefix_warm_requests} warm")
                pre = await r.measured(f"prefix {label}", lambda k: scenarios.prefix_cache(
                    client, target, cfg, r.rag_prompt if k == 0 else f"(Batch {k}.) {r.rag_prompt}"))
                if pre:
                    out["prefix"] = pre
                    say(f"  cold {pre['cold_ttft_s']:.1f} s ({pre['prompt_tokens']} tokens), warm "
                        f"{pre['warm_ttft_median_s']:.2f} s, hit rate {pre['hit_rate']}")
            if "decode" in steps:
                say(f"[{label}] decode {cfg.decode_repeats}×{cfg.decode_tokens}")
                runs = await r.measured(f"decode {label}", lambda _k: scenarios.decode_runs(client, target, cfg))
                if runs:
                    out["decode_runs"] = runs
                    say(f"  {_rates(runs)} tok/s")
                if self.args.paired_rounds and not self.args.no_baseline:
                    out["decode_paired"] = await self.paired_decode(client, target, label)
            clients: list[int] = cfg.clients if "clients" in steps else []
            for n in clients:
                load = await r.measured(f"clients {label} {n}", lambda _k, n=n: scenarios.one_load(
                    client, target, cfg, n))
                if load:
                    load["memory"] = tree_memory(pid)
                    out.setdefault("concurrency", []).append(load)
                    say(f"  {n} clients: {load['aggregate_tok_s'] or 0:.2f} tok/s aggregate, ITL p50 "
                        f"{load['itl_p50_s'] or 0:.2f} s, errors {len(load['errors'])}, RSS "
                        f"{load['memory']['rss_bytes'] / 2**30:.2f} GiB")
            if "stall" in steps:
                say(f"[{label}] a decoding stream while a {r.long_prompt_tokens}-token prompt prefills")
                stall = await r.measured(f"prefill {label}", lambda k: scenarios.prefill_interference(
                    client, target, cfg, r.long_prompt if k == 0 else f"(Batch {k}.) {r.long_prompt}"))
                if stall:
                    out["stall"] = stall
                    say(f"  longest gap {stall['a_max_gap_during_b_prefill_s'] or 0:.2f} s, B TTFT "
                        f"{stall['b_ttft_s'] or 0:.1f} s")
        out["memory_end"] = tree_memory(pid)
        return out

    async def paired_decode(self, client: Any, target: ChatTarget, label: str) -> dict[str, Any]:
        """The decode ratio measured in pairs: one server run and one in-process run per round, in alternating
        order, while the server stays loaded. The machine's speed drifts by 10-15 % within minutes here (the
        read bandwidth of one run: 44.9 GB/s before, 50.5 after), so a baseline measured minutes before the
        server (the ``decode`` steps) can put the ratio anywhere from 0.8 to 1.1; a pair sees the same
        machine. Skipped when the in-process copy would not fit in RAM next to the server."""
        r = self.runner
        # The baseline's own peak RSS when it ran its prefill step, else twice the file (7B Q4_K_M: 1.65×).
        need = ((self.res.get("inproc_prefill") or {}).get("rss_peak_bytes")
                or 2 * self.res["facts"]["file_bytes"])
        avail = mem_available()
        if need + PAIRED_MARGIN_BYTES > avail:
            reason = (f"skipped: the in-process copy needs {need / 2**30:.1f} GiB + "
                      f"{PAIRED_MARGIN_BYTES / 2**30:.0f} GiB margin, {avail / 2**30:.1f} GiB available")
            say(f"[{label}] paired decode {reason}")
            return {"skipped": reason}
        one = dataclasses.replace(r.cfg, decode_repeats=1)
        say(f"[{label}] paired decode: {self.args.paired_rounds} rounds of one server and one in-process run")

        async def rounds(_attempt: int) -> list[dict[str, Any]]:
            pairs = []
            for i in range(self.args.paired_rounds):
                row: dict[str, Any] = {}
                for side in (("server", "inproc") if i % 2 == 0 else ("inproc", "server")):
                    if side == "server":
                        row[side] = (await scenarios.decode_runs(client, target, one))[0]
                    else:
                        row[side] = (await asyncio.to_thread(r.inproc_decode, 1))[0]
                pairs.append(row)
                say(f"  server {row['server']['decode_tok_s'] or 0:.2f}, in-process "
                    f"{row['inproc']['decode_tok_s'] or 0:.2f} tok/s")
            return pairs

        pairs = await r.measured(f"decode paired {label}", rounds)
        return {"pairs": pairs or [], **paired_ratio(pairs or [])}

    def server_block(self, label: str, data_dir: Path, env: dict[str, str]) -> None:
        spec = inhouse_spec(self.model.serve_name, data_dir, extra_env={
            "INHOUSE_MODELS__ALLOW_SYNTHETIC": "true", **env})
        spec.label = f"inhouse-{label}"
        say(f"starting inhouse serve ({label}) …")
        oom_before = oom_kills()
        try:
            with running_server(spec, self.log_dir) as server:
                log = server.log_path.read_text(errors="replace")
                m = re.search(r"Loaded \S+ in ([\d.]+) s", log)
                block: dict[str, Any] = {
                    "startup_s": server.startup_s,
                    "load_s": float(m.group(1)) if m else None,
                    "memory_after_load": tree_memory(server.pid),
                    "tuned": "Applied tuned profile" in log,
                    "env": env,
                }
                say(f"  ready in {server.startup_s:.1f} s (load {block['load_s']} s), RSS "
                    f"{block['memory_after_load']['rss_bytes'] / 2**30:.2f} GiB")
                target = ChatTarget(server.base_url, self.model.serve_name)
                block.update(asyncio.run(self.scenarios(target, label, server.pid)))
                # The first serve on an empty data dir prints an admin key: never into a committed result.
                tail = server.log_path.read_text(errors="replace")[-2000:]
                block["log_tail"] = re.sub(r"ih_[A-Za-z0-9_]+", "ih_…", tail)
        except Exception as exc:  # partial numbers beat none; the JSON says what failed
            self.runner._record_failure(f"server {label}", exc)
            block = {"error": str(exc)}
        block["oom_kills"] = oom_kills() - oom_before
        self.res.setdefault("servers", {})[label] = block

    def baseline(self, when: str = "") -> bool:
        """The in-process baseline; True when a step of it ran under foreign load (then it is worth repeating:
        ``main`` does so after the server, and the better of the two runs is kept, as on the server side)."""
        say(f"[in-process Llama] decode and prefill on the same file, same threads {when}".rstrip())
        job = {"model_path": str(self.model.path), "n_ctx": 4096, "n_threads": N_THREADS}
        steps = (f"decode in-process{when}", f"prefill in-process{when}")
        runs = asyncio.run(self.runner.measured(steps[0], lambda _k: asyncio.to_thread(
            self.runner.inproc_decode)))
        pre = None if "prefix" not in self.args.steps else asyncio.run(self.runner.measured(
            steps[1], lambda _k: asyncio.to_thread(
            run_inproc, {**job, "op": "prefill", "messages": [
                {"role": "system", "content": self.runner.rag_prompt},
                {"role": "user", "content": RAG_QUESTIONS[0]}]}, self.runner.children)))
        self.res.setdefault("inproc_decode", []).extend(runs or [])
        old = self.res.get("inproc_prefill")
        if pre and (not old or pre["ttft_s"] < old["ttft_s"]):
            self.res["inproc_prefill"] = pre
        if runs:
            say(f"  decode {_rates(runs)} tok/s")
        if pre:
            say(f"  prefill {pre['prompt_tokens']} tokens in {pre['ttft_s']:.1f} s")
        kept = [c for c in self.res["contention"] if c["step"] in steps and c["kept"]]
        return any(c["foreign_cores"] > self.runner.quiet.threshold_cores for c in kept)

    def tune(self, name: str, data_dir: Path) -> None:
        args = self.args
        say(f"inhouse tune {name} (reduced: own weights only, 1 repeat, budget {args.tune_budget_s:g} s) …")
        t0 = time.perf_counter()
        proc = inhouse(["tune", name, "--formats", "", "--repeats", "1", "--concurrency", "4",
                        "--budget-s", str(args.tune_budget_s), "--quiet-wait-s", "5"], data_dir,
                       env={"INHOUSE_MODELS__ALLOW_SYNTHETIC": "true"})
        self.res["tune"] = {"seconds": time.perf_counter() - t0, "exit": proc.returncode,
                            "output_tail": (proc.stdout + proc.stderr)[-3000:]}
        say(f"  tune exit {proc.returncode} in {self.res['tune']['seconds']:.0f} s")

    def memory(self) -> None:
        say("KV cache per context, llama.cpp's own accounting (n_ctx 2048, flash attention)")
        out = run_inproc({"op": "memory", "model_path": str(self.model.path), "n_ctx": 2048,
                          "kv_types": ["f16", "q8_0"]}, self.runner.children)
        self.res["kv_llama_cpp"] = {k: {"kv_mib_per_1k": v["kv_mib"] / 2.048 if v["kv_mib"] else None,
                                        "compute_mib": v["compute_mib"]} for k, v in out.items()}


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    """The figures of docs/performance.md from one run's raw results."""
    facts = res["facts"]
    bw = max((b["multi_thread_gb_s"] for b in res.get("bandwidth", [])), default=None)
    inproc = [x["decode_tok_s"] for x in res.get("inproc_decode") or [] if x.get("decode_tok_s")]
    inproc_pre = res.get("inproc_prefill") or {}
    out: dict[str, Any] = {"bandwidth_gb_s": bw, "file_gb": facts["file_bytes"] / 1e9,
                           "kv_mib_per_1k": {"f16": facts["kv_mib_per_1k_f16"], "q8_0": facts["kv_mib_per_1k_q8_0"]},
                           "kv_llama_cpp": res.get("kv_llama_cpp"),
                           "inproc_decode_tok_s": max(inproc) if inproc else None,
                           "inproc_prefill_tok_s": (inproc_pre["prompt_tokens"] / inproc_pre["ttft_s"]
                                                    if inproc_pre.get("ttft_s") else None),
                           "inproc_load_s": inproc_pre.get("load_s"),
                           "inproc_rss_peak_gib": (inproc_pre.get("rss_peak_bytes") or 0) / 2**30 or None,
                           # foreign CPU load (cores) each kept step ran under: the machine was quiet if all < 0.3
                           "foreign_cores": {c["step"]: c["foreign_cores"] for c in res.get("contention", [])
                                             if c.get("kept")}}
    for label, block in (res.get("servers") or {}).items():
        if "error" in block and "decode_runs" not in block:
            out[label] = {"error": block["error"]}
            continue
        dec = [x["decode_tok_s"] for x in block.get("decode_runs", []) if x.get("decode_tok_s")]
        decode = max(dec) if dec else None
        pre = block.get("prefix") or {}
        conc = {c["clients"]: c for c in block.get("concurrency", [])}
        one, eight = conc.get(1, {}).get("aggregate_tok_s"), conc.get(8, {}).get("aggregate_tok_s")
        s: dict[str, Any] = {
            "tuned": block.get("tuned"),
            "load_s": block.get("load_s"),
            "rss_after_load_gib": block["memory_after_load"]["rss_bytes"] / 2**30,
            "rss_peak_gib": block.get("memory_end", {}).get("rss_peak_bytes", 0) / 2**30,
            "decode_tok_s": decode,
            "decode_over_roofline": (decode * facts["read_bytes_per_token"] / (bw * 1e9)) if decode and bw else None,
            "decode_over_inproc": (decode / out["inproc_decode_tok_s"]
                                   if decode and out["inproc_decode_tok_s"] else None),
            "decode_over_inproc_paired": (block.get("decode_paired") or {}).get("ratio_median"),
            "decode_paired_medians": {k: (block.get("decode_paired") or {}).get(f"{k}_median")
                                      for k in ("server", "inproc")},
            "prefill_tok_s": pre["prompt_tokens"] / pre["cold_ttft_s"] if pre.get("cold_ttft_s") else None,
            "ttft_cold_s": pre.get("cold_ttft_s"),
            "ttft_warm_s": pre.get("warm_ttft_median_s"),
            "aggregate_by_clients": {n: c.get("aggregate_tok_s") for n, c in conc.items()},
            "itl_p50_by_clients": {n: c.get("itl_p50_s") for n, c in conc.items()},
            "rss_by_clients_gib": {n: c["memory"]["rss_bytes"] / 2**30 for n, c in conc.items() if "memory" in c},
            "errors_by_clients": {n: len(c.get("errors") or []) for n, c in conc.items()},
            "agg8_over_1": eight / one if one and eight else None,
            "stall_max_s": (block.get("stall") or {}).get("a_max_gap_during_b_prefill_s"),
            "oom_kills": block.get("oom_kills"),
        }
        if s["prefill_tok_s"] and out["inproc_prefill_tok_s"]:
            s["prefill_over_inproc"] = s["prefill_tok_s"] / out["inproc_prefill_tok_s"]
        if s["load_s"] and out["inproc_load_s"]:
            s["load_over_inproc"] = s["load_s"] / out["inproc_load_s"]
        out[label] = s
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(shapegen.SHAPES))
    p.add_argument("--quant", required=True, choices=shapegen.QUANTS)
    p.add_argument("--shapes-dir", type=Path, default=SHAPES_DIR, help="where shape files and data dirs go")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep", action="store_true", help="keep the shape file (deleted after measuring otherwise)")
    p.add_argument("--keep-q8", action="store_true",
                   help="keep the Q8_0 file a Q4 file is made from (for the next quantization's run)")
    p.add_argument("--generate-only", action="store_true", help="make the file and stop")
    p.add_argument("--profile", choices=["default", "tuned", "both"], default="default")
    p.add_argument("--tune-budget-s", type=float, default=900.0)
    p.add_argument("--weight-buffers", default="auto",
                   help="comma list of engine.weight_buffers states to measure: auto, amx, repack, plain")
    p.add_argument("--no-baseline", action="store_true", help="skip the in-process llama-cpp-python baseline")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--steps", type=lambda s: set(s.split(",")), default=set(SERVER_STEPS),
                   help=f"server steps to run, comma list of {','.join(SERVER_STEPS)} (all by default; the "
                        "baseline's prefill runs with prefix)")
    p.add_argument("--decode-repeats", type=int, default=2)
    p.add_argument("--paired-rounds", type=int, default=4,
                   help="rounds of one server and one in-process decode, alternating, for the decode ratio "
                        "(0: none; skipped when the in-process copy does not fit in RAM next to the server)")
    p.add_argument("--concurrency-tokens", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=None, help="engine.n_ctx for the server (default: inhouse's)")
    p.add_argument("--prefill-step-s", type=float, default=None,
                   help="engine.prefill_step_s for the server (default: inhouse's; 0 turns the time cap off)")
    p.add_argument("--kv-type", choices=["f16", "q8_0"], default=None,
                   help="engine.kv_type (q8_0 turns on flash attention)")
    p.add_argument("--layers", type=int, default=None, help="smoke tests only: fewer layers than the real model")
    p.add_argument("--quiet-threshold", type=float, default=0.3)
    p.add_argument("--max-wait-quiet", type=float, default=60.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    shape = shapegen.SHAPES[args.model]
    if args.layers:
        shape = dataclasses.replace(shape, n_layer=args.layers, key=f"{shape.key}-{args.layers}l")
    name = f"{shape.key}-{args.quant}"
    started = dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    path = shapegen.build_shape(shape, args.quant, args.shapes_dir, threads=N_THREADS, keep_q8=args.keep_q8, say=say)
    generate_s = time.perf_counter() - t0
    say(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB")
    if args.generate_only:
        return {"path": str(path)}
    data_dirs = {"default": args.shapes_dir / "data-default", "tuned": args.shapes_dir / "data-tuned"}
    labels = ["default", "tuned"] if args.profile == "both" else [args.profile]
    model = ModelRef(serve_name=name, path=path, label=name)
    log_dir = args.out_dir / "logs" / f"shapes-{name}-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    run = ShapeRun(args, model, data_dirs, log_dir)
    res = run.res

    def on_sigterm(signum: int, frame: object) -> None:
        # Unwind through every ``finally``: the server is stopped and the shape file deleted, not orphaned.
        run.runner.kill_children()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    res["facts"] = header_facts(path)
    res["meta"] = {"model": name, "shape": shape.title, "quant": args.quant, "started": started.isoformat(),
                   "command": "python -m benchmarks.shapes " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "generate_s": generate_s}
    from inhouse.hardware.cpu import detect_cpu

    cpu = detect_cpu()
    res["meta"]["cpu"] = cpu.summary()
    states = [x.strip() for x in args.weight_buffers.split(",") if x.strip()] or ["auto"]
    if "amx" in states and not cpu.has("amx_int8"):
        res["meta"]["amx"] = f"not available on this CPU ({cpu.model_name}): the amx state was skipped"
        say(res["meta"]["amx"])
        states = [x for x in states if x != "amx"] or ["auto"]
    engine_env: dict[str, str] = {}
    if args.n_ctx:
        engine_env["INHOUSE_ENGINE__N_CTX"] = str(args.n_ctx)
    if args.prefill_step_s is not None:
        engine_env["INHOUSE_ENGINE__PREFILL_STEP_S"] = str(args.prefill_step_s)
    if args.kv_type:
        engine_env["INHOUSE_ENGINE__KV_TYPE"] = args.kv_type
        engine_env["INHOUSE_ENGINE__FLASH_ATTN"] = "true" if args.kv_type != "f16" else "false"
    try:
        for label in labels:
            register(path, name, data_dirs[label])
        run.runner.prepare()
        run.runner.bandwidth("before")
        contended = not args.no_baseline and run.baseline()
        run.memory()
        for label in labels:
            if label == "tuned":
                run.tune(name, data_dirs["tuned"])
            for state in states:
                env = dict(engine_env)
                if state != "auto":
                    env[WEIGHT_BUFFERS_ENV] = state
                run.server_block(label if state == "auto" else f"{label}-{state}", data_dirs[label], env)
        if contended:
            run.baseline(" (again: the first ran under foreign load)")
        run.runner.bandwidth("after")
    finally:
        run.runner.kill_children()
        if not args.keep:
            path.unlink(missing_ok=True)
            say(f"deleted {path}")
    res["summary"] = summarize(res)
    res["meta"]["duration_s"] = time.perf_counter() - t0
    out = write_results(res, args.out_dir / f"shapes-{name}-{stamp}.json", indent=1)
    print(json.dumps(res["summary"], indent=1, default=str))
    say(f"wrote {out} ({res['meta']['duration_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
