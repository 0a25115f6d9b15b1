"""Crash consistency, the long version. Three runs, each SIGKILLing real processes at random moments:

* ``inhouse ingest`` (``--cycles``, default 50), then one complete run and the checks: every file indexed exactly
  once with its current bytes, no orphan chunk, no vector without its row, ``inhouse kb check`` consistent;
* administrative changes (users, groups, keys, documents; ``--admin-cycles``, default 50), checked after every
  kill: nothing half-applied or unaudited, the audit chain verifies without a reseal;
* ``inhouse serve`` on SmolLM2 during streams (``--server-cycles``, default 20): it restarts and serves, audit
  verify passes, every cut-off request is recorded as interrupted.

    .venv/bin/python -m benchmarks.crash

Writes ``benchmarks/results/crash-<timestamp>.json``; exit 1 when anything was lost, duplicated or inconsistent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.results import RESULTS_DIR, write_results
from inhouse.testing.crash import admin_crash_cycles, ingest_crash_cycles, server_crash_cycles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=50, help="ingest kill cycles (0: skip)")
    parser.add_argument("--admin-cycles", type=int, default=50, help="administrative-change kill cycles (0: skip)")
    parser.add_argument("--server-cycles", type=int, default=20, help="server kill cycles (0: skip)")
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result: dict[str, object] = {"benchmark": "crash", "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ok = True
    runs = (("ingest", args.cycles, lambda d: ingest_crash_cycles(d, cycles=args.cycles, seed=args.seed,
                                                                   n_files=args.files)),
            ("admin", args.admin_cycles, lambda d: admin_crash_cycles(d, cycles=args.admin_cycles, seed=args.seed)),
            ("server", args.server_cycles, lambda d: server_crash_cycles(d, cycles=args.server_cycles,
                                                                          seed=args.seed)))
    for name, cycles, run in runs:
        if cycles <= 0:
            continue
        with tempfile.TemporaryDirectory(prefix=f"inhouse-crash-{name}-") as tmp:
            report = run(Path(tmp))
        result[name] = report.to_dict()
        ok = ok and report.ok
        shown = {k: v for k, v in report.to_dict().items() if k not in ("check", "documents_after_each_kill")}
        print(f"== {name}: {json.dumps(shown)}", flush=True)
    out = write_results(result, RESULTS_DIR / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(f"{'all consistent' if ok else 'PROBLEMS FOUND'}; written {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
