"""The audit evidence report and ``verify`` over long chains, today's code against a baseline commit in the same run.

A company's audit log grows by every request: 100 people asking 100 questions a day write about a million records a
quarter. ``GET /v1/admin/audit/report`` (``inhouse audit report``) counts them and checks the whole chain; the
baseline walked every record in Python for the counts and hashed it with ``json.dumps`` to check it.

One chain per size is written once (through the store's own append, in batches: a valid chain with its signed
head, with the mix a served log has: a write-ahead and a final record per generation, searches, egress decisions,
a few requests to an external provider). Then the baseline tree (``git archive`` of ``BASELINE_COMMIT``) and the
current tree each run in their own process on the same file, alternated for ``--rounds`` rounds, and time
``build_report`` and ``verify``. Every figure that decides is a ratio of the two taken in the same run; the report's
JSON must be identical in both (the same answer, faster).

``python -m benchmarks.audit --run FILE`` is the child entry point (JSON on stdout); it imports ``inhouse`` from the
tree on ``PYTHONPATH`` (the child reports which).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import inhouse
from benchmarks.manual_ingest import baseline_tree
from benchmarks.report import pyplot, save_figure
from benchmarks.results import RESULTS_DIR, write_results
from inhouse.governance.audit.chain import GENESIS, Head, canonical_json, format_ts, record_hash
from inhouse.governance.audit.head import HeadSigner
from inhouse.governance.audit.report import build_report
from inhouse.store.sqlite.audit import SqliteAuditStore, open_sqlite_audit_log

REPO = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "09df0b2"  # main before the report counted in the database
T0 = 1_780_000_000.0
_BATCH = 20_000


def build_chain(path: Path, n: int) -> None:
    """A valid chain of ``n`` records in ``path`` (SQLite, key and head beside it), written in batches."""
    store = SqliteAuditStore(path)
    signer = HeadSigner(path.parent / "audit.key")
    seq, prev = 0, GENESIS
    try:
        while seq < n:
            with store.appending() as tx:
                row: dict[str, Any] = {}
                for _ in range(min(_BATCH, n - seq)):
                    seq += 1
                    row = _record(seq, prev)
                    row["hash"] = record_hash(row)
                    tx.insert(row)
                    prev = row["hash"]
                tx.write_head(signer.sign(Head(seq, prev), row))
            print(f"\r  chain: {seq:,}/{n:,} records", end="", flush=True)
        print(flush=True)
    finally:
        store.close()


def _record(seq: int, prev: str) -> dict[str, Any]:
    i = seq // 3
    base: dict[str, Any] = {
        "seq": seq, "ts": format_ts(T0 + seq * 0.5), "kind": "request", "action": "chat:create",
        "request_id": f"req_{i:08d}", "actor_key_id": f"key_{i % 40:02d}", "user_id": f"usr_{i % 40:02d}",
        "resource": "POST /v1/chat/completions", "model": "qwen2.5-coder-1.5b", "location": "local",
        "label": "internal", "documents": "[]", "redactions": "{}", "outcome": "success", "reason": None,
        "details": "{}", "prev_hash": prev,
    }
    step = seq % 3
    if step == 0:  # the write-ahead record of a generation
        base["outcome"] = "started"
    elif step == 1:  # its final record, grounded in documents
        base["documents"] = canonical_json([f"doc_{i % 997:04d}", f"chk_{i % 997:04d}_{i % 7}"])
        base["details"] = canonical_json({"status": 200, "prompt_tokens": 300 + i % 500, "completion_tokens": 80})
        if i % 50 == 0:  # a public question answered by the external provider
            base.update(location="cloud", label="public", model="gpt-x")
    else:  # a search, or now and then an egress decision
        if i % 20 == 0:
            base.update(kind="security", action="egress.decision", request_id=None, resource="gpt-x",
                        location="cloud", label="confidential", outcome="denied", reason="label too high")
        else:
            base.update(action="kb:search", resource="POST /v1/search", model=None, location=None,
                        details=canonical_json({"query_chars": 40 + i % 60, "results": 5}))
    return base


def _child(path: Path) -> dict[str, Any]:
    """Time one report and one verify with whatever ``inhouse`` is on the path (run in its own process)."""
    log = open_sqlite_audit_log(path, key_path=path.parent / "audit.key")
    try:
        t0 = time.perf_counter()
        report = build_report(log, now=0)
        report_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok = log.verify().ok
        verify_s = time.perf_counter() - t0
    finally:
        log.close()
    return {"code": str(Path(inhouse.__file__).parent), "report_s": round(report_s, 3),
            "verify_s": round(verify_s, 3), "verified": ok, "report": report}


def _run(src: Path, path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.audit", "--run", str(path)], env=env, cwd=REPO,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(sizes: list[int], tmp: Path, commit: str, rounds: int) -> dict[str, Any]:
    from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet

    trees = {"baseline": baseline_tree(tmp / "baseline-tree", commit), "current": REPO / "src"}
    out: dict[str, Any] = {"baseline_commit": commit, "rounds": rounds, "sizes": []}
    for n in sizes:
        path = tmp / f"chain-{n}" / "audit.db"
        path.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        build_chain(path, n)
        size: dict[str, Any] = {"records": n, "build_s": round(time.perf_counter() - t0, 1),
                                "file_mb": round(path.stat().st_size / 2**20, 1)}
        best: dict[str, dict[str, float]] = {}
        reports: dict[str, Any] = {}
        for r in range(rounds):
            for label in (("baseline", "current") if r % 2 == 0 else ("current", "baseline")):
                wait_for_quiet(max_wait_s=60)
                a = snapshot()
                res = _run(trees[label], path)
                load = round(foreign_cores(a, snapshot()), 2)
                assert res["verified"], f"{label}: the chain did not verify"
                reports[label] = res.pop("report")
                print(f"  {n:>9,} records, {label:8s}: report {res['report_s']:.3f} s, verify {res['verify_s']:.3f} s"
                      f" (foreign load {load} cores)", flush=True)
                b = best.setdefault(label, {"report_s": float("inf"), "verify_s": float("inf"), "load": 0.0})
                b["report_s"] = min(b["report_s"], res["report_s"])
                b["verify_s"] = min(b["verify_s"], res["verify_s"])
                b["load"] = max(b["load"], load)
        for report in reports.values():
            report["generated_at"] = None
        size["same_report"] = reports["baseline"] == reports["current"]
        size["baseline"], size["current"] = best["baseline"], best["current"]
        size["report_speedup"] = round(best["baseline"]["report_s"] / best["current"]["report_s"], 2)
        size["verify_speedup"] = round(best["baseline"]["verify_s"] / best["current"]["verify_s"], 2)
        print(f"{n:,} records: report {size['report_speedup']}x, verify {size['verify_speedup']}x faster "
              f"(best of {rounds}); same report: {size['same_report']}", flush=True)
        out["sizes"].append(size)
        path.unlink()
    return out


def chart(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()

    sizes = result["sizes"]
    xs = [s["records"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, style in (("baseline", "--"), ("current", "-")):
        ax.plot(xs, [s[label]["report_s"] for s in sizes], style, marker="o", label=f"report, {label}")
        ax.plot(xs, [s[label]["verify_s"] for s in sizes], style, marker="s", label=f"verify, {label}", alpha=0.6)
    ax.set_xlabel("audit records")
    ax.set_ylabel("seconds (best of rounds)")
    ax.set_title(f"Audit report and verify: current vs {result['baseline_commit']}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audit", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, metavar="FILE", help="Child: time one report of FILE")
    ap.add_argument("--records", default="100000,1000000",
                    help="Chain sizes, comma-separated (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="Alternated rounds per size (default: %(default)s)")
    ap.add_argument("--commit", default=BASELINE_COMMIT, help="Baseline commit (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.run is not None:
        print(json.dumps(_child(args.run)))
        return 0
    try:
        sizes = [int(x) for x in args.records.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--records must be whole numbers, not {args.records!r}")
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        ap.error("--records needs sizes ≥ 1 and --rounds ≥ 1")
    with tempfile.TemporaryDirectory(prefix="inhouse-audit-bench-") as tmp:
        result = bench(sizes, Path(tmp), args.commit, args.rounds)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = write_results({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "audit": result},
                        RESULTS_DIR / f"audit-{stamp}.json")
    print(f"written {out}; chart {chart(result, RESULTS_DIR / f'audit-{stamp}.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
