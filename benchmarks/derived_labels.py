"""``python -m benchmarks.derived_labels``: text taken from restricted documents, found in a real document set — what
is caught and what is raised wrongly, against the exact rule, and what looking costs against ingesting the pages.

The document set is the Python manual (``benchmarks.manual``: Debian's ``python3-doc``), every N-th page
(``--sample``). Its pages share a great deal — the same navigation, boilerplate, idioms and cross-references, index
pages that repeat other pages — so they are a hard test. Every other sampled page is a **source**, stored as
``restricted``; the others are **bystanders**, compared as ``internal`` pages would be at ingestion
(``kb/derived.py``). From each source long enough to be fingerprinted (``MIN_SHARED`` phrases), with a fixed seed:

- **copy**: the whole text under a new heading;
- **draft**: the whole text followed by as much text again from a bystander;
- **excerpt**: consecutive chunks making up about 15% of the source, with a line around them;
- **snippet**: one passage of the source (its longest chunk) forwarded with a line around it: mostly excerpt, but of
  a long source a small part;
- **quote**: one short chunk of the source (at most 5% of it and 10% of the bystander) inside a whole bystander.

Each document is judged twice: by ``DerivedLabels.match`` (the 256-phrase samples, as ingestion does) and by the
exact rule on the full phrase sets of every source (the same thresholds, every phrase counted). Reported per kind:
made, raised, derived by the exact rule, **raised wrongly** (raised though the rule says no: should be 0) and
**missed** (the rule says yes, not raised); so a bystander that really repeats a source (the manual's table of
contents holds whole short pages) counts as a correct raise, and an excerpt too short for the rule as a correct pass.
And the comparison's time per page (phrases and match, after the sources' fingerprints were made once, timed apart)
against what ingesting a bystander page costs in the same run — parsing and chunking it, and embedding its chunks
with the real e5 embedder — as a ratio. A chart of the counts is written beside the JSON.

**Raised later** (``raise_later``): the same pages stored the other way round — every source, bystander and
derivative ``internal`` (each version of the wiki ingested before anyone labelled the sources) — then each source
raised to ``restricted`` one after the other as an administrator would, each raise finding its copies
(``DerivedLabels.copies``: the source's chunk vectors searched among the chunks labelled below it, every document
found judged by the rule). The final labels are scored against the exact rule as above, and each raise is timed.
Vectors: the trigram test embedder by default (near-identical chunks are near in it as in e5), the real e5 with
``--e5-vectors`` (minutes: every derivative is embedded).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.manual_ingest import sampled_files
from benchmarks.report import pyplot, save_figure
from benchmarks.results import write_run

KINDS = ("bystander", "copy", "draft", "excerpt", "snippet", "quote")


def parsed_pages(root: Path, sample: int) -> tuple[list[tuple[str, list[Any]]], float]:
    """(relative path, chunks) of every sampled page, and the seconds spent parsing and chunking them."""
    from inhouse.errors import DocumentRejected
    from inhouse.kb.chunk import chunk_document
    from inhouse.kb.parse import parse_file

    pages, seconds = [], 0.0
    for path in sampled_files(root, sample):
        t0 = time.perf_counter()
        try:
            chunks = [c for c in chunk_document(parse_file(path)) if c.text.strip()]
        except DocumentRejected:
            continue
        seconds += time.perf_counter() - t0
        if chunks:
            pages.append((path.relative_to(root).as_posix(), chunks))
    return pages, seconds


def derivatives(sources: list[list[str]], bystanders: list[list[str]], seed: int) -> dict[str, list[list[str]]]:
    """Copies, drafts, excerpts and quotes made from each source (module doc)."""
    rng = random.Random(seed)
    made: dict[str, list[list[str]]] = {k: [] for k in KINDS[1:]}
    for i, src in enumerate(sources):
        other = bystanders[i % len(bystanders)]
        size, other_size = sum(map(len, src)), sum(map(len, other))
        made["copy"].append(["Notes from the review", *src])
        filler, total = [], 0
        for chunk in other:
            if total >= size:
                break
            filler.append(chunk)
            total += len(chunk)
        made["draft"].append([*src, *filler])
        start = rng.randrange(len(src))
        part, total = [], 0
        for chunk in src[start:] + src[:start]:
            if total >= 0.15 * size:
                break
            part.append(chunk)
            total += len(chunk)
        made["excerpt"].append(["Forwarded, see below.", *part, "Regards"])
        # A mail forwarding one passage of the source (its longest chunk) with a line around it: mostly excerpt,
        # but a small part of a long source.
        made["snippet"].append(["Forwarded, see the passage below.", max(src, key=len), "Regards"])
        quotable = [c for c in src if len(c) <= min(0.05 * size, 0.1 * other_size)]
        if quotable:
            made["quote"].append([*other, rng.choice(quotable)])
    return made


def exact_rule(texts: list[str], sources: list[set[int]], min_shared: int, share: float) -> bool:
    """The derived-label rule on full phrase sets: shares at least ``min_shared`` phrases with a source, and that is
    at least ``share`` of the source or of this text."""
    from inhouse.kb.resemblance import phrases

    mine = set(phrases(texts).tolist())
    for src in sources:
        shared = len(mine & src)
        if shared >= min_shared and max(shared / len(src), shared / len(mine)) >= share:
            return True
    return False


def e5_embedder(data_dir: Path) -> Any:
    """The real e5 embedder as ``inhouse ingest`` builds it, its model loaded (once per process)."""
    from inhouse.bootstrap import build_embedder_for
    from inhouse.config import load_settings
    from inhouse.kb.evaluate import link_default_models

    data_dir.mkdir(parents=True, exist_ok=True)
    link_default_models(data_dir)
    embedder = build_embedder_for(load_settings(data_dir=data_dir))
    prepare = getattr(embedder, "prepare", None)
    if callable(prepare):
        prepare()  # the model's load is not ingestion's per-page cost
    return embedder


def embed_seconds(texts: list[str], data_dir: Path) -> float:
    """Seconds the real e5 embedder takes for ``texts`` in ingestion's batches."""
    from inhouse.config import load_settings

    embedder = e5_embedder(data_dir)
    batch = load_settings(data_dir=data_dir).kb.embed_batch
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        embedder.embed_passages(texts[i:i + batch])
    return time.perf_counter() - t0


def bench(root: Path, tmp: Path, *, sample: int, seed: int, embed: bool,
          e5_vectors: bool = False) -> dict[str, Any]:
    from inhouse.governance.labels import Label
    from inhouse.kb.access import Acl
    from inhouse.kb.derived import DerivedLabels
    from inhouse.kb.index.protocol import NewDocument
    from inhouse.kb.index.sqlite import SqliteIndexStore
    from inhouse.kb.resemblance import phrases
    from inhouse.testing.fake_embedder import FakeEmbedder

    pages, parse_s = parsed_pages(root, sample)
    texts = [(path, [c.content for c in chunks]) for path, chunks in pages]
    sources, bystanders = texts[0::2], texts[1::2]
    # The vectors lead a text to the sources it is compared with exactly (a passage of a long source).
    emb = e5_embedder(tmp / "data") if e5_vectors else FakeEmbedder()
    store = SqliteIndexStore(tmp / "kb.db", dim=emb.dim)
    try:
        col = store.create_collection("sources", acl=Acl()).id
        for path, chunks in pages[0::2]:
            data = path.encode()
            store.put_document(NewDocument(col, path, hashlib.sha256(data).hexdigest(), Label.RESTRICTED, None, path,
                                           Path(path).name, "text/html", data, chunks,
                                           emb.embed_passages([c.text for c in chunks])))
        derived = DerivedLabels()
        derived.refresh(store)
        long_enough = [c for _, c in sources if len(phrases(c)) >= derived.MIN_SHARED]
        t0 = time.perf_counter()
        derived.match(["warm-up"] * 5, Label.INTERNAL)  # the first comparison makes every source's fingerprint
        fingerprint_s = time.perf_counter() - t0

        made = {"bystander": [c for _, c in bystanders],
                **derivatives(long_enough, [c for _, c in bystanders], seed)}
        vectors = {kind: [emb.embed_passages(t) for t in made[kind]] for kind in KINDS}  # ingestion has them anyway
        def raised(texts: list[str], vecs: Any) -> bool:
            return derived.match(texts, Label.INTERNAL, vectors=vecs) is not None

        t0 = time.perf_counter()  # the cost for an ordinary page: the bystanders
        judged = {"bystander": [raised(t, v) for t, v in zip(made["bystander"], vectors["bystander"], strict=True)]}
        match_s = time.perf_counter() - t0
        judged.update({kind: [raised(t, v) for t, v in zip(made[kind], vectors[kind], strict=True)]
                       for kind in KINDS[1:]})
        full = [set(phrases(c).tolist()) for _, c in sources]
        rule = {kind: [exact_rule(t, full, derived.MIN_SHARED, derived.SHARE) for t in made[kind]] for kind in KINDS}
        kinds = scored(judged, rule)
        result: dict[str, Any] = {
            "sample": sample, "seed": seed, "sources": len(sources), "sources_fingerprinted": len(long_enough),
            "kinds": kinds,
            "raised_wrongly": sum(k["raised_wrongly"] for k in kinds.values()),
            "missed": sum(k["missed"] for k in kinds.values()),
            "bystanders_raised": [path for (path, _), j in zip(bystanders, judged["bystander"], strict=True) if j],
            "fingerprint_all_sources_s": round(fingerprint_s, 3),
            "match_ms_per_page": round(1000 * match_s / max(len(bystanders), 1), 2),
            "parse_chunk_ms_per_page": round(1000 * parse_s / max(len(pages), 1), 1),
        }
    finally:
        store.close()
    result["raised_later"] = raise_later(pages[0::2], made, rule, tmp, emb)
    result["match_over_parse"] = round(result["match_ms_per_page"] / result["parse_chunk_ms_per_page"], 4)
    if embed:
        embedded = [c.text for _, chunks in pages[1::2] for c in chunks]
        emb_s = embed_seconds(embedded, tmp / "data")
        result["embed_ms_per_page"] = round(1000 * emb_s / max(len(bystanders), 1), 1)
        result["embedded_chunks"] = len(embedded)
        result["match_over_ingest"] = round(
            result["match_ms_per_page"] / (result["parse_chunk_ms_per_page"] + result["embed_ms_per_page"]), 5)
    return result


def scored(judged: dict[str, list[bool]], rule: dict[str, list[bool]]) -> dict[str, dict[str, int]]:
    """Per kind: documents made, raised, derived by the exact rule, raised wrongly and missed against it."""
    return {kind: {"made": len(judged[kind]), "raised": sum(judged[kind]), "rule": sum(rule[kind]),
                   "raised_wrongly": sum(j and not r for j, r in zip(judged[kind], rule[kind], strict=True)),
                   "missed": sum(r and not j for j, r in zip(judged[kind], rule[kind], strict=True))}
            for kind in KINDS}


def raise_later(sources: list[tuple[str, list[Any]]], made: dict[str, list[list[str]]],
                rule: dict[str, list[bool]], tmp: Path, embedder: Any) -> dict[str, Any]:
    """Everything stored ``internal``, then the sources raised one by one (module doc): per kind, documents raised,
    raised wrongly and missed against the exact rule, and the time of a raise."""
    from inhouse.governance.labels import Label
    from inhouse.kb.access import Acl
    from inhouse.kb.derived import DerivedLabels
    from inhouse.kb.document import Chunk
    from inhouse.kb.index.protocol import NewDocument
    from inhouse.kb.index.sqlite import SqliteIndexStore

    store = SqliteIndexStore(tmp / "later.db", dim=embedder.dim)
    try:
        def put(col: str, path: str, chunks: list[Any]) -> str:
            data = (path + "".join(c.text for c in chunks)).encode()
            vectors = embedder.embed_passages([c.text for c in chunks])
            new = NewDocument(col, path, hashlib.sha256(data).hexdigest(), Label.INTERNAL, None, path,
                              Path(path).name, "text/html", data, chunks, vectors)
            return store.put_document(new).document.id

        def as_chunks(title: str, contents: list[str]) -> list[Any]:
            return [Chunk(index=i, text=f"{title}\n{c}", content=c, token_count=len(c) // 4, kind="paragraph")
                    for i, c in enumerate(contents)]

        src_col = store.create_collection("sources", acl=Acl()).id
        wiki = store.create_collection("wiki", acl=Acl()).id
        source_ids = [put(src_col, path, chunks) for path, chunks in sources]
        ids = {kind: [put(wiki, f"{kind}/{i}.html", as_chunks(f"{kind} {i}", texts))
                      for i, texts in enumerate(made[kind])] for kind in KINDS}
        derived = DerivedLabels()
        seconds = []
        for doc_id in source_ids:
            t0 = time.perf_counter()
            raised = store.relabel(doc_id, label=Label.RESTRICTED)
            derived.refresh(store)
            for doc, found in derived.copies(raised):
                derived.add(store.relabel(doc.id, label=found.label, metadata={"derived_from": found.document_id}))
            seconds.append(time.perf_counter() - t0)
        judged = {kind: [store.get_document(d).label is Label.RESTRICTED for d in ids[kind]] for kind in KINDS}
    finally:
        store.close()
    kinds = scored(judged, rule)
    seconds.sort()
    return {"vectors": getattr(embedder, "name", type(embedder).__name__), "kinds": kinds,
            "raised_wrongly": sum(k["raised_wrongly"] for k in kinds.values()),
            "missed": sum(k["missed"] for k in kinds.values()),
            "raise_ms_median": round(1000 * seconds[len(seconds) // 2], 1),
            "raise_ms_max": round(1000 * seconds[-1], 1), "raises": len(seconds)}


def chart(result: dict[str, Any], path: Path) -> Path:
    """Per kind: documents made, raised, and raised wrongly or missed against the exact rule; at ingestion, and (when
    measured) with the sources raised later."""
    plt = pyplot()
    panels = [(result, f"At ingestion: {result['match_ms_per_page']} ms/page")]
    if "raised_later" in result:
        later = result["raised_later"]
        panels.append((later, f"Sources raised later: {later['raise_ms_median']} ms/raise (median), "
                              f"vectors {later['vectors']}"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.0 * len(panels)), squeeze=False)
    for ax, (part, title) in zip(axes[:, 0], panels, strict=True):
        kinds = part["kinds"]
        names = list(kinds)
        ax.barh(names, [kinds[k]["made"] for k in names], color="#d9dee4", label="made")
        bars = ax.barh(names, [kinds[k]["raised"] for k in names], color="#2f6fde", label="raised")
        ax.bar_label(bars, labels=[f"{kinds[k]['raised']} of {kinds[k]['made']} raised (rule: {kinds[k]['rule']}; "
                                   f"wrong {kinds[k]['raised_wrongly']}, missed {kinds[k]['missed']})"
                                   for k in names], padding=3, fontsize=8)
        ax.set_xlim(0, max(kinds[k]["made"] for k in names) * 2.1)
        ax.invert_yaxis()
        ax.set_xlabel("documents")
        ax.legend(loc="lower right")
        ax.set_title(f"{title}: {part['raised_wrongly']} raised wrongly, {part['missed']} missed", fontsize=9)
    fig.suptitle(f"Derived labels on the Python manual (1 page in {result['sample']})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    import json

    ap = argparse.ArgumentParser(prog="python -m benchmarks.derived_labels", description=__doc__.split("\n")[0])
    ap.add_argument("--manual", type=Path, default=None, help="The manual's HTML root (default: python3-doc's)")
    ap.add_argument("--sample", type=int, default=2, metavar="N", help="Every N-th page (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-embed", action="store_true", help="Skip timing the real embedder (the ingest baseline)")
    ap.add_argument("--e5-vectors", action="store_true",
                    help="Raised later: search copies with e5's vectors (default: the trigram test embedder's)")
    ap.add_argument("--chart", type=Path, default=None, metavar="RESULT.json", help="Draw the chart of a result file")
    args = ap.parse_args(argv)
    if args.chart is not None:
        print(chart(json.loads(args.chart.read_text()), args.chart.with_suffix(".png")))
        return 0
    from benchmarks.manual import find_manual

    root = find_manual(args.manual)
    with tempfile.TemporaryDirectory(prefix="inhouse-derived-") as tmp:
        result = bench(root, Path(tmp), sample=args.sample, seed=args.seed, embed=not args.no_embed,
                       e5_vectors=args.e5_vectors)
    print(json.dumps(result, indent=2))
    out = write_run("derived_labels", "derived-labels", argv, result)
    print(f"written {out}; chart {chart(result, out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
