"""``python -m benchmarks.markings [DIR ...]``: which documents the marking rules raise, and what reading costs.

Parses every document of the evaluation corpus (and of each DIR, e.g. ``/usr/share/doc/python3.11-doc/html``
after ``apt-get install python3-doc``), then reads its markings (``kb/markings.py``). Prints each marked document
with its label and reason, the count per set, and the time spent reading markings as a share of the parse time of
the same documents in the same run (the baseline: what ingestion spends before it embeds anything).

What the rules should mark is in docs/governance.md ("Labels from the documents themselves"): on the corpus, the two
finance documents whose titles say CONFIDENTIAL; on the Python manual, nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from inhouse.errors import DocumentRejected
from inhouse.eval_corpus import find_eval_corpus
from inhouse.kb.markings import MarkingReader
from inhouse.kb.parse import SUPPORTED_EXTENSIONS, parse_file


def scan(root: Path, reader: MarkingReader) -> tuple[int, list[str], float, float]:
    """(documents, marked lines, parse seconds, marking seconds) for every supported file under ``root``."""
    count, marked, parse_s, mark_s = 0, [], 0.0, 0.0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS):
        if any(part.startswith(("_", ".")) for part in path.relative_to(root).parts):
            continue  # a documentation tree's _sources/_static copies
        t0 = time.perf_counter()
        try:
            document = parse_file(path)
        except DocumentRejected:
            continue
        t1 = time.perf_counter()
        found = reader.read(document)
        t2 = time.perf_counter()
        count, parse_s, mark_s = count + 1, parse_s + t1 - t0, mark_s + t2 - t1
        if found is not None:
            marked.append(f"  {path.relative_to(root)}: {found.label} ({found.reason})")
    return count, marked, parse_s, mark_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="more document sets to scan")
    parser.add_argument("--corpus", default=None, help="the evaluation corpus (default: ../shared/corpus)")
    args = parser.parse_args()
    reader = MarkingReader()
    total_parse = total_mark = 0.0
    for root in [find_eval_corpus(args.corpus), *args.dirs]:
        count, marked, parse_s, mark_s = scan(root, reader)
        total_parse, total_mark = total_parse + parse_s, total_mark + mark_s
        print(f"{root}: {count} documents, {len(marked)} marked")
        print("\n".join(marked) if marked else "  (none)")
        print(f"  parse {parse_s:.2f} s, markings {mark_s * 1000:.1f} ms = {mark_s / max(parse_s, 1e-9):.3f} of parse")
    print(f"all sets: markings ÷ parse = {total_mark / max(total_parse, 1e-9):.3f}")


if __name__ == "__main__":
    main()
