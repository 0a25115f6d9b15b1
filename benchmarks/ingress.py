"""``python -m benchmarks.ingress``: what one ingress process serves when the model costs nothing — the ceiling an
ingress replica puts on a cluster, and what each request costs its store (docs/scale-out.md, "Scaling on paper").

The production wiring (``bootstrap.build_services`` with the fake engine and the fake embedder,
``inhouse.testing.services``) under uvicorn, in a child process of its own on a loopback port, driven over HTTP by
client threads in this process for a fixed time per phase:

1. **chat**: non-streamed ``/v1/chat/completions`` of 8 tokens (authentication, quota, the audit log's two records,
   the chat template, the fake engine);
2. **search**: ``/v1/search`` over 200 small documents (authentication, the query embedding, hybrid search with the
   access rule, the audit record).

Per phase: requests/s, p50/p95 latency, and the **CPU milliseconds the server process spent per request** (its
``/proc`` ticks before and after: what a request costs a core of the ingress). The same phases run on the embedded
SQLite store (the baseline, in the same run) and on a local PostgreSQL (``--pg-url`` for another server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.contention import foreign_cores, process_ticks, snapshot
from benchmarks.postgres import postgres
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.retrieval import percentile

_TICKS = os.sysconf("SC_CLK_TCK")
_WORDS = ["leave", "travel", "budget", "approval", "printer", "laptop", "contract", "invoice", "salary", "office",
          "holiday", "warranty", "shipping", "refund", "security", "password", "meeting", "deadline", "customer",
          "supplier"]


def serve_child(data_dir: Path, port: int, store_url: str) -> None:
    """The child: the fake-engine services over ``data_dir`` (and ``store_url``), an admin key and a searchable
    collection written to ``data_dir/bench.json``, then uvicorn until killed."""
    import uvicorn

    from inhouse.api.app import build_app
    from inhouse.testing.services import FAKE_MODEL, build_fake_services

    overrides: dict[str, Any] = {"apps": {"model": FAKE_MODEL}}
    if store_url:
        overrides["store"] = {"url": store_url}
    services = build_fake_services(data_dir, settings=overrides)
    _, admin = services.keys.create_key("bench admin", role="admin")
    actor = services.keys.authenticate(admin)
    col = services.kb.create_collection(actor, "bench")
    for d in range(200):
        text = "\n\n".join(" ".join(_WORDS[(d * 7 + i * 3 + j) % len(_WORDS)] for j in range(40)) for i in range(4))
        services.kb.add_document(actor, col.id, f"# Document {d}\n\n{text}\n".encode(), f"doc{d}.md")
    (data_dir / "bench.json").write_text(json.dumps({"key": admin, "collection": col.id}))
    uvicorn.run(build_app(services), host="127.0.0.1", port=port, log_level="warning")


def _phase(base: str, key: str, body: dict[str, Any], path: str, *, clients: int, seconds: float,
           pid: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            n = 0
            while time.perf_counter() < stop:
                payload = dict(body)
                if "query" in payload:  # a different query each time: no cache anywhere can answer it
                    payload["query"] = f"{_WORDS[(i + n) % len(_WORDS)]} {_WORDS[(3 * i + 7 * n) % len(_WORDS)]}"
                t = time.perf_counter()
                r = c.post(path, json=payload)
                dt = time.perf_counter() - t
                n += 1
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status_code} {r.text[:120]}")

    # The store's CPU: every process under this one (a local PostgreSQL's) but this one (the clients) and the server.
    a, cpu0, me0, t0 = snapshot(), process_ticks(pid), process_ticks(os.getpid()), time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, (process_ticks(pid) - cpu0) / _TICKS
    b = snapshot()
    store_cpu = max(0, b.our_ticks - a.our_ticks - (process_ticks(os.getpid()) - me0)) / _TICKS - cpu
    done = len(latencies)
    return {"clients": clients, "requests": done, "errors": len(errors), "first_errors": errors[:3],
            "requests_per_s": round(done / wall, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if done else None,
            "p95_ms": round(percentile(latencies, 95) * 1000, 1) if done else None,
            "server_cpu_ms_per_request": round(cpu * 1000 / max(done, 1), 2),
            "server_cores_busy": round(cpu / wall, 2),
            "store_server_cpu_ms_per_request": round(max(store_cpu, 0.0) * 1000 / max(done, 1), 2),
            "foreign_cores": round(foreign_cores(a, b), 2)}


def bench_store(label: str, store_url: str, *, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    from benchmarks.servers import free_port

    with tempfile.TemporaryDirectory(prefix=f"inhouse-bench-ingress-{label}-") as tmp:
        port = free_port()
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.ingress", "--serve-child", tmp, "--port",
                                  str(port), "--store-url", store_url], cwd=Path(__file__).parent.parent)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 300
            while True:
                if child.poll() is not None:
                    raise SystemExit(f"the {label} server exited with {child.returncode}")
                try:
                    if (Path(tmp) / "bench.json").exists() and httpx.get(base + "/health", timeout=2).status_code:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {label} server did not come up")
                time.sleep(0.3)
            info = json.loads((Path(tmp) / "bench.json").read_text())
            chat = {"model": "fake-model", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello there"}]}
            search = {"query": "", "collections": [info["collection"]], "top_k": 5}
            out: dict[str, Any] = {}
            for name, path, body in (("chat", "/v1/chat/completions", chat), ("search", "/v1/search", search)):
                _phase(base, info["key"], body, path, clients=clients, seconds=min(2.0, seconds), pid=child.pid)
                out[name] = _phase(base, info["key"], body, path, clients=clients, seconds=seconds, pid=child.pid)
                print(f"{label} {name}: {out[name]}", flush=True)
            return out
        finally:
            child.terminate()
            child.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingress", description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0, help="per phase")
    ap.add_argument("--pg-url", default=None, help="measure this PostgreSQL instead of a local one")
    ap.add_argument("--serve-child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--store-url", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_child is not None:
        serve_child(args.serve_child, args.port, args.store_url)
        return 0
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "clients": args.clients,
                              "seconds": args.seconds, "command": "python -m benchmarks.ingress " + " ".join(
                                  argv if argv is not None else sys.argv[1:])}
    result["sqlite"] = bench_store("sqlite", "", clients=args.clients, seconds=args.seconds)
    with postgres(args.pg_url) as url:
        result["postgresql"] = bench_store("postgresql", url, clients=args.clients, seconds=args.seconds)
    result["ratio_requests_per_s_pg_over_sqlite"] = {
        p: round(result["postgresql"][p]["requests_per_s"] / max(result["sqlite"][p]["requests_per_s"], 1e-9), 2)
        for p in ("chat", "search")}
    out = write_results(result, RESULTS_DIR / f"ingress-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(json.dumps({k: v for k, v in result.items() if k.startswith("ratio")}))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
