"""Which weight path is fastest here: the engine `inhouse serve` runs, loaded with each weight path the hardware
probe proved (``amx`` where AMX executes, ``repack``, ``plain``), measured alternately.

    .venv/bin/python -m benchmarks.weight_buffers --model qwen2.5-coder-0.5b

Each round measures every path once with ``inhouse tune``'s workloads (``models/tuning/measure.py``: one stream
decoding 64 tokens, one 256-token prefill, 8 streams at once), best of ``--repeats`` runs inside a round;
``--rounds`` rounds alternate the paths so drift on a shared machine hits all of them. Prints the best figure
of each path and its ratio to ``plain``, with the CPU other processes took meanwhile (above ~0.3 cores on
2 cores a row is unreliable), and writes JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--paths", default="", help="Comma-separated (default: every path the probe proved).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quiet-wait-s", type=float, default=20.0,
                        help="Before each measurement wait up to this long for other processes to go quiet.")
    args = parser.parse_args(argv)

    from inhouse.bootstrap import build_services, engine_settings_for
    from inhouse.config import load_settings
    from inhouse.hardware.cpu import wait_for_quiet
    from inhouse.hardware.weights import proven_paths, resolve_engine_settings
    from inhouse.models.tuning.measure import Workload, measure_engine

    settings = load_settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    services = build_services(settings)
    try:
        spec = services.registry.resolve(args.model, require_present=True)
        report = services.probe.current()
        # What serve loads (tuned profile, context), then each weight path in turn on top of it.
        served = engine_settings_for(spec, settings, services.probe, services.profiles,
                                     lambda n, s: services.registry.verified_path(n, s))
    finally:
        services.close()
    paths = [p for p in args.paths.split(",") if p] or list(proven_paths(report))
    work = Workload(repeats=args.repeats)
    n_ctx = served.n_ctx
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    for _ in range(args.rounds):
        for p in paths:
            es, _ = resolve_engine_settings(served.settings.model_copy(update={"weight_buffers": p}), report)
            wait_for_quiet(max_wait_s=args.quiet_wait_s)
            m = measure_engine(spec.name, served.path, es, n_ctx, work)
            runs[p].append(m.to_dict())
            print(f"{p:>6}: decode {m.decode_tok_s:7.1f}  prefill {m.prefill_tok_s:8.1f}  aggregate "
                  f"{m.aggregate_tok_s:7.1f} tok/s  (other load {m.foreign_load_cores:.2f} cores)", flush=True)
    keys = ("decode_tok_s", "prefill_tok_s", "aggregate_tok_s")
    best = {p: {k: max(r[k] for r in rs) for k in keys} | {"foreign_load_cores": max(r["foreign_load_cores"]
                                                                                     for r in rs)}
            for p, rs in runs.items()}
    ref = best.get("plain")
    print(f"\n{spec.name} ({spec.quantization}), best of {args.rounds} rounds × {args.repeats} runs; "
          f"{report.amx_verdict()}")
    print(f"{'path':>6} | {'decode':>8} | {'prefill':>8} | {'aggregate':>9} | vs plain (decode / prefill / aggregate)")
    for p, b in best.items():
        ratio = " / ".join(f"{b[k] / ref[k]:.2f}×" for k in keys) if ref else "-"
        print(f"{p:>6} | {b['decode_tok_s']:8.1f} | {b['prefill_tok_s']:8.1f} | {b['aggregate_tok_s']:9.1f} | {ratio}")
    out = ROOT / "results" / f"weight-buffers-{spec.name}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": spec.name, "cpu": report.cpu_model, "amx": report.amx_verdict(),
                               "build": report.build_version, "runs": runs, "best": best}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
