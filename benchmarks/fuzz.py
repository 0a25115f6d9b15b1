"""Schema-driven fuzzing, the long version: every operation of ``/openapi.json`` with ``--examples`` cases each
(half schema-valid, half schema-violating), as an admin and as a member, against the real wiring with the fake
model, in-process over ASGI (through every middleware; only uvicorn's HTTP parsing is left out, which the CI test
``tests/e2e/test_fuzz.py`` covers over real HTTP), with the same checks (``inhouse.testing.fuzz``).

    nice .venv/bin/python -m benchmarks.fuzz --examples 1000

Not a speed figure (no lock needed). Writes ``benchmarks/results/fuzz-<timestamp>.json``; exit 1 on any finding
(a 5xx, an error outside the one shape, an undocumented status, media type or body).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from inhouse.api.app import build_app
from inhouse.api.openapi import build_openapi
from inhouse.testing.fuzz import create_callers, run_fuzz
from inhouse.testing.services import FAKE_MODEL, build_fake_services

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=1000, help="cases per operation and role")
    parser.add_argument("--roles", nargs="+", default=["admin", "member"], choices=["admin", "member"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=[], help='operation labels, e.g. "POST /v1/search"')
    args = parser.parse_args(argv)
    result: dict[str, object] = {"benchmark": "fuzz", "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "examples_per_operation": args.examples, "seed": args.seed,
                                 "loadavg_at_start": os.getloadavg()}
    ok = True
    for role in args.roles:
        with tempfile.TemporaryDirectory(prefix=f"inhouse-fuzz-{role}-") as tmp:
            services = build_fake_services(Path(tmp), settings={"apps": {"model": FAKE_MODEL}})
            try:
                app = build_app(services)
                report = run_fuzz(build_openapi(app), create_callers(services), role=role, app=app,
                                  examples=args.examples, seed=args.seed, only=args.only)
            finally:
                services.close()
        print(report.summary(), flush=True)
        result[role] = report.to_dict()
        ok = ok and report.ok
    result["loadavg_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fuzz-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'no findings' if ok else 'FINDINGS'}; written {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
