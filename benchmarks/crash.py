"""Crash consistency, the long version: ``inhouse ingest`` killed with SIGKILL at random moments (≥ 50 cycles),
then one complete run and the checks (every file indexed exactly once with its current bytes, no orphan chunk,
no vector without its row, integrity and FTS checks: ``inhouse kb check``).

    flock /tmp/inhouse-heavy.lock .venv/bin/python -m benchmarks.crash --cycles 50

Writes ``benchmarks/results/crash-<timestamp>.json``; exit 1 when anything was lost, duplicated or inconsistent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from inhouse.testing.crash import ingest_crash_cycles

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inhouse-crash-") as tmp:
        report = ingest_crash_cycles(Path(tmp), cycles=args.cycles, seed=args.seed, n_files=args.files)
    result = {"benchmark": "crash.ingest", "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **report.to_dict()}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "check"}, indent=2))
    print(f"kb check: {'consistent' if report.check.get('ok') else report.check}; written {out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
