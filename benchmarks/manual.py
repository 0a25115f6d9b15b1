"""``python -m benchmarks.manual``: the knowledge base on a real manual — the Python documentation of Debian's
``python3-doc`` package (526 HTML pages, ~67 MB, the reference pages full of definition lists).

Three measurements, each printed and written as JSON under ``benchmarks/results/``:

1. **recall** — recall@5 of the right page on ``benchmarks/data/python-manual-questions.jsonl``: 56 questions
   written the way users ask, naming the goal rather than the function ("a scratch folder that disappears on its
   own"), each with the page(s) that answer it. Also the mean reciprocal rank and every miss with its top 5.
2. **latency** — ``POST /v1/search`` p50/p95 over HTTP against a real ``inhouse serve`` on the ingested manual
   (API key, top_k 5), with the questions and with queries made of the manual's most common words ("python
   function module object return value"); then the same queries in-process with each part timed (query
   embedding, keyword search, vector search, fusion and chunk reads) to show where the time goes.
3. **ingest** — the whole manual ingested twice into fresh data directories in the same run: with today's
   settings as the baseline and with the current ones; tokens/s of each (the e5 tokens of the manual's text,
   counted once) and their ratio.

The manual is found under ``/usr/share/doc/python3*/html`` (``--manual`` to point elsewhere); ``--install`` runs
``apt-get install -y python3-doc`` when it is missing (root). Not part of CI: a run takes tens of minutes.
Run it alone on the machine: ``.venv/bin/python -m benchmarks.manual``.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.retrieval import percentile

QUESTIONS = Path(__file__).parent / "data" / "python-manual-questions.jsonl"
# Written after the sketch request's wording was chosen on QUESTIONS, and never used to choose anything: the check
# that the wording did not fit those 56 questions only (docs/knowledge.md).
HELD_OUT = Path(__file__).parent / "data" / "python-manual-heldout.jsonl"
COLLECTION = "python-manual"
DIM_E5 = 384
# Queries of the manual's most frequent words: every term matches thousands of chunks (the slow case of BM25).
COMMON_QUERIES = [
    "python function", "the module", "return value of the function", "object class method", "python server",
    "string type", "file object", "the default value", "module function return", "python object type",
    "how to use the function", "class instance attribute", "list of values", "new in version", "error exception",
    "the python interpreter", "method returns a new object", "data type string", "function argument value",
    "the standard library module",
]


def find_manual(explicit: Path | None = None, *, install: bool = False) -> Path:
    """The HTML root of the Python documentation (installing python3-doc first when asked)."""
    if explicit is not None:
        if not (explicit / "index.html").is_file():
            raise SystemExit(f"{explicit} is not a documentation root (no index.html)")
        return explicit
    for attempt in range(2):
        found = sorted(glob.glob("/usr/share/doc/python3*-doc/html/index.html"))
        if found:
            return Path(found[-1]).parent
        if attempt or not install:
            break
        subprocess.run(["apt-get", "install", "-y", "python3-doc"], check=True)
    raise SystemExit("The Python documentation is not installed: apt-get install -y python3-doc (or --install)")


def manual_files(root: Path) -> list[Path]:
    """Every HTML page of the manual (the ``_static``/``_sources``/… support folders left out)."""
    return [p for p in sorted(root.rglob("*.html"))
            if not any(part.startswith("_") for part in p.relative_to(root).parts)]


def manual_sources(root: Path) -> list[Any]:
    from inhouse.kb.ingest import FileSource

    return [FileSource(p.relative_to(root).as_posix(), p.read_bytes, p.name, p.stat().st_size)
            for p in manual_files(root)]


def load_manual_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def open_kb(data_dir: Path, kb: dict[str, Any] | None = None) -> Any:
    """Services over ``data_dir`` (models linked from the default data directory), with ``kb`` settings."""
    from inhouse.bootstrap import build_services
    from inhouse.config import load_settings
    from inhouse.kb.evaluate import link_default_models

    data_dir.mkdir(parents=True, exist_ok=True)
    link_default_models(data_dir)
    settings = load_settings(data_dir=data_dir)
    for key, value in (kb or {}).items():
        setattr(settings.kb, key, value)
    return build_services(settings)


def ensure_ingested(services: Any, root: Path) -> dict[str, Any]:
    """Ingest the manual into the collection unless it is there already (unchanged pages are skipped)."""
    from inhouse.kb.evaluate import EVAL_ACTOR

    kb = services.kb
    try:
        kb.collection(EVAL_ACTOR, COLLECTION)
    except Exception:
        kb.create_collection(EVAL_ACTOR, COLLECTION, groups=["docs"])
    col = kb.collection(EVAL_ACTOR, COLLECTION)
    t0 = time.perf_counter()
    report = kb.ingestor.ingest(col.id, manual_sources(root))
    return {**report.to_dict(), "errors": len(report.errors), "wall_s": round(time.perf_counter() - t0, 1),
            "chunks_in_index": kb.store.counts()["chunks"]}


# An experiment, not a product feature: the local model names what the documentation would call the thing asked
# about, and that line is searched beside the question (as a translation is). The prompt names no manual.
EXPAND_SYSTEM = "You help people search documentation. You never answer questions; you only say what to search for."
EXPAND_PROMPT = ("Which names would the documentation use for what this question asks about (features, functions, "
                 "classes, commands, settings, terms)? Reply with one line of up to six search terms, no explanation. "
                 "Do not answer the question.\n\n")


def expand_question(services: Any, model: str, question: str) -> str:
    """One line of search terms for ``question`` from ``model`` (greedy, at most 48 tokens)."""
    import asyncio

    body = {"model": model, "temperature": 0.0, "max_tokens": 48, "stop": ["\n"],
            "messages": [{"role": "system", "content": EXPAND_SYSTEM},
                         {"role": "user", "content": EXPAND_PROMPT + question}]}

    async def run() -> str:
        prepared = await asyncio.to_thread(services.chat.prepare_chat, body)
        return str((await services.chat.complete(prepared)).text).strip()

    return asyncio.run(run())


def bench_recall(services: Any, questions: list[dict[str, Any]], top_k: int = 5,
                 expand_with: str | None = None, extra: Any = None, label: str = "") -> dict[str, Any]:
    """Recall@``top_k`` of the right page. ``extra(question) -> (expansions, boost_names)``: more wordings searched
    beside each question (fused like a translation) and names that lift the fused top 20 (``promote_named``)."""
    from inhouse.kb.evaluate import EVAL_ACTOR

    kb = services.kb
    hits, rr, misses = 0, 0.0, []
    times, expand_times = [], []
    for q in questions:
        alternates: list[str] = []
        expansions, boost = extra(q) if extra else ([], [])
        if expand_with:
            t0 = time.perf_counter()
            alternates = [e for e in [expand_question(services, expand_with, q["question"])] if e]
            expand_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        found, _ = kb.retriever.retrieve_scored(EVAL_ACTOR, q["question"], top_k=top_k, alternates=alternates,
                                                expansions=expansions, boost_names=boost)
        times.append((time.perf_counter() - t0) * 1000)
        pages = [h.chunk.source_path for h in found]
        rank = next((i for i, p in enumerate(pages, 1) if p in q["sources"]), None)
        hits += rank is not None
        rr += 1.0 / rank if rank else 0.0
        if rank is None:
            misses.append({"id": q["id"], "question": q["question"], "expected": q["sources"], "top": pages,
                           **({"searched_also": alternates + expansions} if alternates or expansions else {})})
    out = {"questions": len(questions), "recall_at_5": round(hits / len(questions), 3),
           "mrr": round(rr / len(questions), 3), "search_p50_ms": round(statistics.median(times), 1),
           "search_p95_ms": round(percentile(times, 95), 1),
           **({"expanded_with": expand_with, "expand_p50_s": round(statistics.median(expand_times), 2)}
              if expand_with else {}),
           "misses": misses}
    print(f"{label}recall@{top_k}: {out['recall_at_5']} (MRR {out['mrr']}, search p50 {out['search_p50_ms']} ms), "
          f"misses {[m['id'] for m in misses]}", flush=True)
    return out


def bench_sketch(services: Any, questions: list[dict[str, Any]], model: str,
                 variants: list[str] | None = None, subject: str = "", reuse: Path | None = None) -> dict[str, Any]:
    """The code-sketch variants (``kb.sketch``): each question's sketch is written once by ``model`` (timed: the
    latency it adds to a grounded answer), then recall is measured with the sketch's names, its code, or both
    searched beside the question, each with and without lifting the chunks whose heading names them. ``subject``:
    what the documents are about, as a collection's description would say it (told to the model). ``reuse``: a
    results file of an earlier run whose sketches are searched again (no model; its latency figures are copied)."""
    from inhouse.kb.sketch import sketch_names, sketch_wordings

    if reuse is not None:
        earlier = json.loads(reuse.read_text(encoding="utf-8"))["sketch"]
        out: dict[str, Any] = {k: v for k, v in earlier.items() if k not in ("variants", "refused")}
        out.update(reused_from=str(reuse), candidates=services.kb.retriever.candidates, variants={})
        sketches = out.pop("sketches")
        print(f"sketches reused from {reuse}", flush=True)
    else:
        sketches, out = _write_sketches(services, questions, model, subject)
        out.update(candidates=services.kb.retriever.candidates, variants={})
    for variant in variants or ["names", "code", "both", "boost", "names+boost", "both+boost"]:
        use, _, boost = variant.partition("+")
        words = use if use in ("names", "code", "both") else None

        def extra(q: dict[str, Any], words: str | None = words, boost: bool = bool(boost) or use == "boost") -> Any:
            code = sketches[q["id"]]
            return (sketch_wordings(code, words) if words else [],
                    sketch_names(code) if (boost and code) else [])

        r = bench_recall(services, questions, extra=extra, label=f"[{variant}] ")
        out["variants"][variant] = {k: r[k] for k in ("recall_at_5", "mrr", "search_p50_ms", "search_p95_ms")}
        out["variants"][variant]["misses"] = [m["id"] for m in r["misses"]]
    out["sketches"] = sketches
    return out


def _write_sketches(services: Any, questions: list[dict[str, Any]], model: str,
                    subject: str) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Each question's sketch by ``model``, timed, and the replies the checks refused."""
    import asyncio

    from inhouse.kb.sketch import CodeSketcher

    sketcher = CodeSketcher(services.chat)
    sketches: dict[str, str | None] = {}
    refused: dict[str, str] = {}  # the model's reply where the checks found no code in it
    seconds: list[float] = []
    a = snapshot()
    for q in questions:
        t0 = time.perf_counter()
        sketches[q["id"]] = asyncio.run(sketcher.sketch(q["question"], model=model, subject=subject))
        seconds.append(time.perf_counter() - t0)
        if sketches[q["id"]] is None:
            refused[q["id"]] = sketcher.last_reply
    load = foreign_cores(a, snapshot())
    out: dict[str, Any] = {"model": model, "subject": subject, "sketch_p50_s": round(statistics.median(seconds), 2),
                           "sketch_p95_s": round(percentile(seconds, 95), 2),
                           "sketch_foreign_load_cores": round(load, 2),
                           "usable": sum(v is not None for v in sketches.values()), "refused": refused}
    print(f"sketches by {model}: {out['usable']}/{len(questions)} usable, p50 {out['sketch_p50_s']} s, "
          f"p95 {out['sketch_p95_s']} s (foreign load {out['sketch_foreign_load_cores']} cores)", flush=True)
    return sketches, out


def _queries(questions: list[dict[str, Any]]) -> list[str]:
    return [q["question"] for q in questions] + COMMON_QUERIES


def bench_http(data_dir: Path, queries: list[str], rounds: int = 2) -> dict[str, Any]:
    """``POST /v1/search`` against ``inhouse serve`` on ``data_dir``, with an admin key, one request at a time."""
    import httpx

    from benchmarks.servers import ServerSpec, inhouse_env, running_server

    services = open_kb(data_dir)
    try:
        _, key = services.keys.create_key(name="benchmark", role="admin")
    finally:
        services.close()
    argv = [sys.executable, "-m", "inhouse.cli.main", "serve", "--host", "127.0.0.1", "--port", "{port}",
            "--data-dir", str(data_dir), "--log-level", "warning"]
    spec = ServerSpec(label="inhouse", argv=argv, model="", api_key=key, env=inhouse_env())
    with running_server(spec, data_dir / "logs") as server, httpx.Client(timeout=30.0) as client:
        headers = {"Authorization": f"Bearer {key}"}

        def search(q: str) -> float:
            t0 = time.perf_counter()
            r = client.post(f"{server.base_url}/v1/search", json={"query": q, "top_k": 5}, headers=headers)
            r.raise_for_status()
            return (time.perf_counter() - t0) * 1000

        for q in queries[:10]:  # loads the embedder and the resident vectors, warms the page cache
            search(q)
        wait_for_quiet(max_wait_s=60)
        a = snapshot()
        times: dict[str, list[float]] = {"questions": [], "common_words": []}
        for _ in range(rounds):
            for q in queries:
                times["common_words" if q in COMMON_QUERIES else "questions"].append(search(q))
        load = foreign_cores(a, snapshot())
    every = times["questions"] + times["common_words"]
    out: dict[str, Any] = {kind: {"n": len(t), "p50_ms": round(statistics.median(t), 1),
                                  "p95_ms": round(percentile(t, 95), 1), "max_ms": round(max(t), 1)}
                           for kind, t in {**times, "all": every}.items()}
    out["foreign_load_cores"] = round(load, 2)
    print(f"HTTP /v1/search: {out}", flush=True)
    return out


def bench_parts(services: Any, queries: list[str], rounds: int = 2) -> dict[str, Any]:
    """Each part of a search timed on its own, in-process, as the server runs it: wall time, and the calling
    thread's CPU time (``time.thread_time``), which waiting for a core does not inflate. Keyword search, the resident
    vector scan and fusion run in the calling thread, so their CPU time is what they cost on a quiet machine (cache
    effects of neighbours aside); the query embedding runs in llama.cpp's threads and has wall time only."""
    from inhouse.kb.access import AccessScope
    from inhouse.kb.evaluate import EVAL_ACTOR
    from inhouse.kb.index.protocol import SearchFilters
    from inhouse.kb.retrieve import rrf

    kb = services.kb
    scope, f, n = AccessScope.of(EVAL_ACTOR), SearchFilters(), kb.retriever.candidates
    names = ("embed", "keyword", "vector", "fuse_and_read", "total")
    parts: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names[1:4]}
    a = snapshot()
    for _ in range(rounds):
        for q in queries:
            t0 = time.perf_counter()
            v = kb.embedder.embed_query(q)
            t1, c1 = time.perf_counter(), time.thread_time()
            kw = kb.store.keyword_search(scope, q, f, n)
            t2, c2 = time.perf_counter(), time.thread_time()
            vec = kb.store.vector_search(scope, v, f, n)
            t3, c3 = time.perf_counter(), time.thread_time()
            kb.retriever._select(scope, rrf([kw, vec], k=kb.retriever.rrf_k), 5, {})
            t4, c4 = time.perf_counter(), time.thread_time()
            for name, dt in (("embed", t1 - t0), ("keyword", t2 - t1), ("vector", t3 - t2),
                             ("fuse_and_read", t4 - t3), ("total", t4 - t0)):
                parts[name].append(dt * 1000)
            for name, dc in (("keyword", c2 - c1), ("vector", c3 - c2), ("fuse_and_read", c4 - c3)):
                cpu[name].append(dc * 1000)
    out: dict[str, Any] = {k: {"p50_ms": round(statistics.median(v), 2), "p95_ms": round(percentile(v, 95), 2)}
                           for k, v in parts.items()}
    for k, v in cpu.items():
        out[k].update(cpu_p50_ms=round(statistics.median(v), 2), cpu_p95_ms=round(percentile(v, 95), 2))
    out["foreign_load_cores"] = round(foreign_cores(a, snapshot()), 2)
    print(f"search parts (in-process): {out}", flush=True)
    return out


def _read_docs(src: Path) -> list[tuple[str, str, list[tuple[Any, bytes]]]]:
    """Every document of ``src/kb.db`` as (title, source path, [(chunk, vector bytes)]), read straight from the file."""
    import apsw
    import sqlite_vec

    from inhouse.kb.document import Chunk

    con = apsw.Connection(str(src / "kb.db"), flags=apsw.SQLITE_OPEN_READONLY)
    con.enable_load_extension(True)
    con.load_extension(sqlite_vec.loadable_path())
    docs: dict[int, tuple[str, str, list[tuple[Any, bytes]]]] = {}
    sql = ("SELECT d.pk, d.title, d.source_path, k.ordinal, k.content, k.section, k.token_count, f.text, v.embedding"
           " FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk JOIN kb_fts f ON f.rowid = k.pk"
           " JOIN kb_vec v ON v.rowid = k.pk ORDER BY d.pk, k.ordinal")
    for pk, title, path, ordinal, content, section, tokens, text, blob in con.execute(sql):
        body = text.split("\n", 1)[1] if "\n" in text else text
        chunk = Chunk(index=ordinal, text=body, content=content, token_count=tokens, kind="paragraph",
                      section=section)
        docs.setdefault(pk, (title, path, []))[2].append((chunk, blob))
    con.close()
    return list(docs.values())


def _write_docs(dst: Path, docs: list[tuple[str, str, list[tuple[Any, bytes]]]], copies: int) -> int:
    import hashlib

    import numpy as np

    from inhouse.governance.labels import Label
    from inhouse.kb.access import Acl
    from inhouse.kb.index.protocol import NewDocument
    from inhouse.kb.index.sqlite import SqliteIndexStore

    store = SqliteIndexStore(dst / "kb.db", dim=DIM_E5)
    written = 0
    try:
        col = store.create_collection(COLLECTION, acl=Acl(groups=frozenset({"docs"}))).id
        for i in range(copies):
            for title, path, rows in docs:
                data = f"copy {i} of {path}".encode()
                vectors = np.frombuffer(b"".join(b for _, b in rows), dtype=np.float32).reshape(len(rows), -1)
                store.put_document(NewDocument(col, f"copy{i}/{path}", hashlib.sha256(data).hexdigest(),
                                               Label.INTERNAL, None, title, Path(path).name, "text/html", data,
                                               [c for c, _ in rows], vectors))
                written += len(rows)
    finally:
        store.close()
    return written


def replicate_index(src: Path, dst: Path, copies: int) -> int:
    """A bigger index of real text without embedding again: every document of ``src`` (its chunks, texts and
    vectors, read straight from the file) written ``copies`` times under ``copy<i>/`` paths into ``dst/kb.db``.
    Returns the number of chunks written."""
    return _write_docs(dst, _read_docs(src), copies)


def subset_index(src: Path, dst: Path, chunks: int) -> int:
    """A smaller index of real text: whole documents of ``src`` spread over the manual (each kept while the share
    kept so far is below ``chunks`` ÷ all), about ``chunks`` chunks in all, written into ``dst/kb.db``."""
    docs = _read_docs(src)
    total = sum(len(rows) for _, _, rows in docs)
    kept: list[tuple[str, str, list[tuple[Any, bytes]]]] = []
    seen = taken = 0
    for doc in docs:
        seen += len(doc[2])
        if taken < chunks and taken <= seen * chunks / total:
            kept.append(doc)
            taken += len(doc[2])
    return _write_docs(dst, kept, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.manual", description=__doc__.split("\n")[0])
    ap.add_argument("--manual", type=Path, default=None, help="HTML root of the manual (default: python3-doc's)")
    ap.add_argument("--install", action="store_true", help="apt-get install python3-doc when it is missing")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="Keep (and reuse) the ingested manual here (default: a temporary directory)")
    ap.add_argument("--only", choices=["recall", "latency", "ingest"], action="append", default=None)
    ap.add_argument("--rounds", type=int, default=2, help="Passes over the latency queries")
    ap.add_argument("--replicate", type=int, default=0, metavar="N",
                    help="Latency also on an index of N copies of the manual (real text at ~N×20k chunks)")
    ap.add_argument("--at-chunks", type=int, default=0, metavar="N",
                    help="Latency also on an index of about N of the manual's chunks (whole pages spread over it)")
    ap.add_argument("--ingest-sample", type=int, default=1, metavar="N",
                    help="Ingest benchmark on every N-th page only (default: the whole manual)")
    ap.add_argument("--expand-with", default=None, metavar="MODEL",
                    help="Recall also searches the model's one line of search terms for each question (experiment)")
    ap.add_argument("--sketch-with", default=None, metavar="MODEL",
                    help="Recall also with the model's code sketch of each question (kb.sketch) searched beside it, "
                         "per variant")
    ap.add_argument("--sketch-variant", action="append", default=None,
                    choices=["names", "code", "both", "boost", "names+boost", "code+boost", "both+boost"],
                    help="Only these sketch variants (default: all)")
    ap.add_argument("--sketch-subject", default="", metavar="TEXT",
                    help="What the documents are about, told to the sketching model (a collection's description)")
    ap.add_argument("--sketches-from", type=Path, default=None, metavar="RESULTS.json",
                    help="Search the sketches of an earlier run again instead of asking the model")
    ap.add_argument("--candidates", type=int, default=None, metavar="N",
                    help="Candidates per keyword and vector list (kb.candidates)")
    ap.add_argument("--questions", type=Path, default=QUESTIONS, metavar="JSONL",
                    help=f"The recall questions (default: the 56 of {QUESTIONS.name}; held out: {HELD_OUT.name})")
    args = ap.parse_args(argv)
    root = find_manual(args.manual, install=args.install)
    only = set(args.only or ["recall", "latency", "ingest"])
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "manual": str(root),
                              "pages": len(manual_files(root))}
    questions = load_manual_questions(args.questions)
    result["questions_file"] = args.questions.name
    with tempfile.TemporaryDirectory(prefix="inhouse-manual-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        if only & {"recall", "latency"}:
            services = open_kb(data_dir, {"candidates": args.candidates} if args.candidates else None)
            try:
                result["index"] = ensure_ingested(services, root)
                print(f"index: {result['index']}", flush=True)
                if "recall" in only:
                    result["recall"] = bench_recall(services, questions, expand_with=args.expand_with)
                    if args.sketch_with:
                        result["sketch"] = bench_sketch(services, questions, args.sketch_with,
                                                        args.sketch_variant, args.sketch_subject,
                                                        args.sketches_from)
                if "latency" in only:
                    result["parts"] = bench_parts(services, _queries(questions), args.rounds)
            finally:
                services.close()
            if "latency" in only:
                result["http"] = bench_http(data_dir, _queries(questions), args.rounds)
            sizes: list[tuple[str, Callable[[Path, Path, int], int], int]] = []
            sizes += [(f"x{args.replicate}", replicate_index, args.replicate)] if args.replicate > 1 else []
            sizes += [(f"at{args.at_chunks}", subset_index, args.at_chunks)] if args.at_chunks else []
            for label, build, arg in sizes if "latency" in only else []:
                other = Path(tmp) / label
                other.mkdir(parents=True, exist_ok=True)
                chunks = build(data_dir, other, arg)
                print(f"{label}: {chunks} chunks in {other}", flush=True)
                services = open_kb(other)
                try:
                    result[f"parts_{label}"] = {"chunks": chunks,
                                                **bench_parts(services, _queries(questions), args.rounds)}
                finally:
                    services.close()
                result[f"http_{label}"] = bench_http(other, _queries(questions), args.rounds)
        if "ingest" in only:
            from benchmarks.manual_ingest import bench_ingest

            result["ingest"] = bench_ingest(root, Path(tmp), sample=args.ingest_sample)
    out = write_results(result, RESULTS_DIR / f"manual-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(json.dumps({k: v for k, v in result.items() if k != "recall"}, indent=2, ensure_ascii=False))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
