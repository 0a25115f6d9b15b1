"""Soak: 64 concurrent streaming clients against one `inhouse serve` (SmolLM2) for 30 minutes, with the RSS, open
files and threads of the server and its engine processes (summed) sampled over time and drawn as a chart.

    .venv/bin/python -m benchmarks.soak --minutes 30

A request the engine cannot admit within ``engine.max_queue_wait_s`` (or whose estimated wait exceeds it) is
answered 429 with Retry-After (docs/reliability.md#overload); the clients wait that long and go on, and the JSON
counts the refusals by code with the spread of their Retry-After.

Writes ``benchmarks/results/soak-<timestamp>.json`` and ``.png``. Exit 1 when a goal is missed: any 5xx, broken
stream or connection error, a 429 without Retry-After, the server unhealthy afterwards, or RSS growing by more
than 200 MB after the first minute. Each client finishes its last stream after the time is up, which takes
minutes on a loaded machine; a SIGTERM (``timeout 900 …``) stops the run and still writes what was measured, marked
``interrupted``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from benchmarks.report import pyplot, save_figure
from benchmarks.results import RESULTS_DIR, write_results
from inhouse.testing.load import LoadReport, healthy, run_load
from inhouse.testing.server_process import ServerProcess, create_admin_key


def chart(report: LoadReport, path: Path, title: str) -> None:
    plt = pyplot()

    t = [s.t_s / 60 for s in report.samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for ax, values, label in ((axes[0], [s.rss_mb for s in report.samples], "RSS (MB)"),
                              (axes[1], [s.open_files for s in report.samples], "open files"),
                              (axes[2], [s.threads for s in report.samples], "threads")):
        ax.plot(t, values, linewidth=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    axes[2].set_xlabel("minutes")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="inhouse-soak-") as tmp:
        data = Path(tmp)
        key = create_admin_key(data)
        report = LoadReport(args.clients, args.minutes * 60)
        # A SIGTERM (a time limit around the run) stops the clients and the server and still writes what was
        # measured so far, marked interrupted (and the goals not met).
        signal.signal(signal.SIGTERM, _interrupt)
        interrupted, ok_after = False, False
        try:
            with ServerProcess(data, args.model) as server:
                run_load(server.url, key, model=args.model, clients=args.clients, duration_s=args.minutes * 60,
                         max_tokens=args.max_tokens, pid=server.pid, sample_every_s=5.0, report=report)
                ok_after = healthy(server.url, key, args.model)
        except KeyboardInterrupt:
            interrupted = True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {"benchmark": "soak", "model": args.model, "minutes": args.minutes, "interrupted": interrupted,
              "loadavg_at_start": load, "loadavg_at_end": os.getloadavg(), "healthy_after": ok_after,
              **report.to_dict(warmup_s=60), "samples": [vars(s) for s in report.samples]}
    goals = not interrupted and report.ok and ok_after and abs(report.rss_growth_mb(warmup_s=60)) <= 200
    result["goals_met"] = goals
    write_results(result, RESULTS_DIR / f"soak-{stamp}.json")
    chart(report, RESULTS_DIR / f"soak-{stamp}.png",
          f"soak: {args.clients} streaming clients, {args.model}, {args.minutes:g} min")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print(f"written {RESULTS_DIR / f'soak-{stamp}.json'} and .png")
    return 0 if goals else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
