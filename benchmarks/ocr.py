"""``python -m benchmarks.ocr``: the evaluation corpus scanned, read back by OCR, and searched.

Every document of the corpus (``--corpus``, default ``../shared/corpus``) is scanned as an office scanner would
(``inhouse.testing.scans``): Markdown, HTML and DOCX typeset from their parsed blocks onto A4 pages, PDFs rasterised
from their own rendering; then stored as an image-only PDF (no text layer) under each scanner setting of
``--scanners`` (default: 200 dpi lossless, 150 dpi JPEG q75 — a typical office scan —, 100 dpi JPEG q60, and the
150-dpi scan of a sheet fed in at 1° and at 3° with sensor noise, of a faded copy: grey paper, grey ink, out of
focus, and of the sheet fed in sideways either way or upside down; the 150-dpi scan of the documents typeset in
two columns; and a phone photo of each page on a desk, seen at an angle and lit unevenly).

For each setting, in one run:

* **characters read**: the document parsed through ``parse_file`` with the OCR reader, scored against the original's
  parsed text (both NFKC, whitespace removed): *recall* = the share of the original's characters found (as a
  multiset: order-free, what keyword and vector search need), *order* = difflib's similarity (reading order too;
  tables read row by row score lower here). Per language, and seconds per page. Also the share of the original's
  headings that came back as headings, and of the headings read that are the original's. A turned setting is
  printed as a ratio to the same scanner upright (characters read and seconds per page), and the two-column setting
  to the one-column scan (reading order and headings), when both ran.
* **search** (``--search-scanner``, default the 150-dpi setting): the scanned corpus is ingested under the same file
  names (a PDF is recognised by its bytes, whatever its name) beside the original corpus, and the QA set's
  questions are searched in both with the real e5 embedder: recall@5 of the right document, **scanned ÷ original**.
  ``--model M`` also answers every question in both (the coverage check and the answer on M; slow).

Writes JSON and a chart under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.report import pyplot, save_figure
from benchmarks.results import RESULTS_DIR, write_results
from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.testing.scans import Scanner, image_pdf, scan, scan_pdf, typeset

SCANNERS = {"200dpi-png": Scanner(200, None), "150dpi-jpeg75": Scanner(150, 75), "100dpi-jpeg60": Scanner(100, 60),
            # fed in at an angle, with sensor noise: what a hurried scan of a stapled sheet looks like
            "150dpi-skew1-noise": Scanner(150, 75, skew_deg=1.0, noise=12.0),
            "150dpi-skew3-noise": Scanner(150, 75, skew_deg=3.0, noise=12.0),
            "150dpi-faded-noise": Scanner(150, 75, noise=12.0, faded=True),
            # the sheet fed in sideways (either way) or upside down: read against the upright 150-dpi scan
            "150dpi-turned90": Scanner(150, 75, turn=90), "150dpi-turned180": Scanner(150, 75, turn=180),
            "150dpi-turned270": Scanner(150, 75, turn=270),
            # the documents typeset in two columns (the first heading a title across them), read column by column
            "150dpi-two-columns": Scanner(150, 75),
            # a phone photo of the page on a desk: at an angle, lit unevenly, warm light, in colour
            "photo-150dpi-jpeg85": Scanner(150, 85, grayscale=False, photo=True)}
COLUMNS = {"150dpi-two-columns": 2}
TYPESET_DPI = 300
_SKIP = (".gold.json",)


def normalized(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def score(truth: str, read: str) -> dict[str, float]:
    t, r = normalized(truth), normalized(read)
    recall = sum((Counter(t) & Counter(r)).values()) / len(t) if t else 1.0
    order = difflib.SequenceMatcher(None, t, r, autojunk=False).ratio() if t else 1.0
    return {"recall": round(recall, 4), "order": round(order, 4)}


def headings(truth: list[str], read: list[str]) -> dict[str, float]:
    """How many of the original's headings came back as headings (recall), and how many headings read are the
    original's (precision): matched on normalized text, difflib similarity ≥ 0.9."""
    def match(a: str, pool: list[str]) -> bool:
        na = normalized(a)
        return any(difflib.SequenceMatcher(None, na, normalized(b)).ratio() >= 0.9 for b in pool)

    return {"headings_recall": round(sum(match(h, read) for h in truth) / len(truth), 3) if truth else 1.0,
            "headings_precision": round(sum(match(h, truth) for h in read) / len(read), 3) if read else 1.0}


def corpus_documents(corpus: Path) -> list[Path]:
    """The corpus's documents (the folders' files; meeting transcripts and gold minutes are not documents)."""
    return [p for folder in sorted(d for d in corpus.iterdir() if d.is_dir() and d.name != "meetings")
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(_SKIP)]


def scanned(path: Path, scanner: Scanner, columns: int = 1) -> tuple[bytes, ParsedDocument, int]:
    """``path`` scanned by ``scanner``: the image-only PDF, the original parsed, and the page count. A PDF keeps its
    own layout; other documents are typeset in ``columns``."""
    from inhouse.kb.parse import parse_file

    data = path.read_bytes()
    doc = parse_file(data, path.name)
    if data.startswith(b"%PDF"):
        pdf, _texts = scan_pdf(data, scanner)
        return pdf, doc, len(_texts)
    blocks = [("title" if k == 0 and columns > 1 and b.kind == "heading" else b.kind, b.text)
              for k, b in enumerate(doc.blocks)]
    pages = typeset(blocks, dpi=TYPESET_DPI, columns=columns)
    return image_pdf([scan(p, scanner, from_dpi=TYPESET_DPI) for p in pages], scanner), doc, len(pages)


def read_back(corpus: Path, scanners: dict[str, Scanner], reader: Any, out: Path) -> dict[str, Any]:
    """OCR of every document under every scanner; the scans of each setting are written under ``out/<name>/``."""
    from inhouse.kb.parse import parse_file
    from inhouse.kb.parse.blocks import guess_language

    results: dict[str, Any] = {}
    for name, scanner in scanners.items():
        rows = []
        for path in corpus_documents(corpus):
            pdf, original, pages = scanned(path, scanner, COLUMNS.get(name, 1))
            truth = original.text
            rel = path.relative_to(corpus)
            (out / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / name / rel).write_bytes(pdf)  # the same name: ingest sees a PDF by its bytes
            t0 = time.perf_counter()
            try:
                doc = parse_file(pdf, path.name, ocr=reader)
                text, heads, rejected = doc.text, [b.text for b in doc.blocks if b.kind == "heading"], None
            except DocumentRejected as exc:  # nothing read: scored as such
                text, heads, rejected = "", [], exc.reason
            seconds = time.perf_counter() - t0
            rows.append({"document": rel.as_posix(), "language": guess_language(truth), "pages": pages,
                         "seconds": round(seconds, 2), **score(truth, text),
                         **headings([b.text for b in original.blocks if b.kind == "heading"], heads),
                         **({"rejected": rejected} if rejected else {})})
            print(f"  {name:14s} {rel.as_posix():42s} {rows[-1]['language']} {pages}p {seconds:5.1f}s "
                  f"recall {rows[-1]['recall']:.3f} order {rows[-1]['order']:.3f} headings "
                  f"{rows[-1]['headings_recall']:.2f}/{rows[-1]['headings_precision']:.2f}", file=sys.stderr)
        results[name] = {"documents": rows, **summary(rows)}
    return results


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, subset: list[dict[str, Any]]) -> float:
        return round(sum(r[key] for r in subset) / len(subset), 4) if subset else float("nan")

    langs = sorted({r["language"] for r in rows})
    pages = sum(r["pages"] for r in rows)
    return {"recall": mean("recall", rows), "order": mean("order", rows),
            "headings_recall": mean("headings_recall", rows), "headings_precision": mean("headings_precision", rows),
            "by_language": {lang: {"recall": mean("recall", [r for r in rows if r["language"] == lang]),
                                   "order": mean("order", [r for r in rows if r["language"] == lang])}
                            for lang in langs},
            "pages": pages, "seconds_per_page": round(sum(r["seconds"] for r in rows) / pages, 2)}


def search(corpus: Path, scanned_corpus: Path, model: str | None) -> dict[str, Any]:
    """The QA set searched (and with ``model`` answered) over the original corpus and over its scans."""
    from inhouse.bootstrap import build_services
    from inhouse.config import load_settings
    from inhouse.kb.evaluate import evaluate, ingest_corpus, link_default_models, load_questions

    out: dict[str, Any] = {}
    for label, root in (("original", corpus), ("scanned", scanned_corpus)):
        with tempfile.TemporaryDirectory(prefix="inhouse-ocr-bench-") as tmp:
            link_default_models(Path(tmp))
            settings = load_settings(data_dir=Path(tmp))
            services = build_services(settings)
            try:
                ingest = ingest_corpus(services.kb, root)
                report = evaluate(services.kb, load_questions(corpus / "qa.jsonl"), model=model)
                report.ingest = ingest
                out[label] = report.summary()
            finally:
                services.close()
        print(f"  {label}: recall@5 {out[label]['recall_at_5']}, ingest {ingest['seconds']} s", file=sys.stderr)
    o, s = out["original"], out["scanned"]
    out["recall_at_5_ratio"] = round(s["recall_at_5"] / o["recall_at_5"], 3) if o["recall_at_5"] else None
    if model:
        oa, sa = o.get("answer_accuracy"), s.get("answer_accuracy")
        out["answer_accuracy_ratio"] = round(sa / oa, 3) if oa and sa is not None else None
    return out


def chart(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()

    names = list(result["read"])
    langs = sorted({lang for n in names for lang in result["read"][n]["by_language"]})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / (2 * len(langs))
    for i, lang in enumerate(langs):
        for j, key in enumerate(("recall", "order")):
            vals = [result["read"][n]["by_language"].get(lang, {}).get(key, 0) for n in names]
            ax.bar([k + (2 * i + j) * width for k in range(len(names))], vals, width,
                   label=f"{lang} {'characters' if key == 'recall' else 'reading order'}")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_title("Characters read from scans (share of the original)")
    ax.legend(fontsize=8, loc="lower left")
    bx.bar(names, [result["read"][n]["seconds_per_page"] for n in names], color="tab:gray")
    bx.set_title("Seconds per page (2 cores)")
    bx.tick_params(axis="x", labelrotation=20, labelsize=8)
    if "search" in result:
        s = result["search"]
        fig.suptitle(f"QA recall@5: original {s['original']['recall_at_5']:.3f}, "
                     f"scanned ({result['search_scanner']}) {s['scanned']['recall_at_5']:.3f}")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ocr", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=None, help="Evaluation corpus (default: ../shared/corpus)")
    ap.add_argument("--scanners", nargs="+", default=list(SCANNERS), choices=list(SCANNERS))
    ap.add_argument("--search-scanner", default="150dpi-jpeg75", choices=[*SCANNERS, "none"],
                    help="The scans searched against the original corpus ('none': skip the search)")
    ap.add_argument("--model", default=None, help="Also answer the QA set with this model (slow)")
    args = ap.parse_args(argv)

    from inhouse.bootstrap import build_ocr_reader
    from inhouse.config import load_settings
    from inhouse.eval_corpus import find_eval_corpus

    corpus = find_eval_corpus(args.corpus)
    reader = build_ocr_reader(load_settings())
    if reader is None:
        print("error: kb.ocr is off", file=sys.stderr)
        return 2
    scanners = {n: SCANNERS[n] for n in args.scanners}
    if args.search_scanner != "none":
        scanners.setdefault(args.search_scanner, SCANNERS[args.search_scanner])
    result: dict[str, Any] = {"at": dt.datetime.now().isoformat(timespec="seconds"), "corpus": str(corpus),
                              "ocr": reader.name, "det_max_side": reader.det_max_side}
    with tempfile.TemporaryDirectory(prefix="inhouse-scans-") as tmp:
        result["read"] = read_back(corpus, scanners, reader, Path(tmp))
        if args.search_scanner != "none":
            result["search_scanner"] = args.search_scanner
            result["search"] = search(corpus, Path(tmp) / args.search_scanner, args.model)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = write_results(result, RESULTS_DIR / f"ocr-{stamp}.json")
    chart(result, path.with_suffix(".png"))
    for name, r in result["read"].items():
        langs = ", ".join(f"{k} {v['recall']:.3f}/{v['order']:.3f}" for k, v in r["by_language"].items())
        print(f"{name:14s} characters {r['recall']:.3f} (order {r['order']:.3f}; {langs}) headings "
              f"{r['headings_recall']:.2f}/{r['headings_precision']:.2f} {r['seconds_per_page']:.2f} s/page over "
              f"{r['pages']} pages")
    for name, r in result["read"].items():
        flat = replace(SCANNERS[name], turn=0)
        plain = next((n for n, sc in scanners.items() if n != name and n not in COLUMNS and sc == flat), None)
        if plain is not None and (SCANNERS[name].turn or name in COLUMNS):
            u = result["read"][plain]
            print(f"{name} ÷ {plain}: characters {r['recall'] / u['recall']:.3f}, order {r['order'] / u['order']:.3f}, "
                  f"headings {r['headings_recall'] / max(u['headings_recall'], 1e-9):.3f}, seconds per page "
                  f"{r['seconds_per_page'] / u['seconds_per_page']:.2f}")
    if "search" in result:
        s = result["search"]
        print(f"QA recall@5 original {s['original']['recall_at_5']:.3f} vs scanned {s['scanned']['recall_at_5']:.3f}"
              f": {s['recall_at_5_ratio']}" + (f"; answers {s.get('answer_accuracy_ratio')}" if args.model else ""))
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
