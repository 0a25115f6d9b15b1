"""Parse (and chunk) every file of the shared evaluation corpus: no exceptions, Chinese intact, PDF pages kept.

Needs the evaluation corpus (the ``eval_corpus`` fixture of tests/conftest.py).
Prints files, MB, seconds and MB/s (run with ``-s`` to see it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from inhouse.errors import DocumentRejected
from inhouse.kb.chunk import chunk_document
from inhouse.kb.parse import SUPPORTED_EXTENSIONS, parse_file

pytestmark = pytest.mark.integration


def test_parse_every_corpus_file(eval_corpus: Path) -> None:
    files = sorted(p for p in eval_corpus.rglob("*") if p.is_file())
    assert files
    parsed = rejected = 0
    total_bytes = 0
    start = time.perf_counter()
    for path in files:
        supported = path.suffix.lower() in SUPPORTED_EXTENSIONS
        try:
            doc = parse_file(path)
        except DocumentRejected as exc:
            assert not supported, f"{path}: {exc}"
            assert "unsupported file type" in exc.reason  # .json / .jsonl evaluation data
            rejected += 1
            continue
        parsed += 1
        total_bytes += path.stat().st_size
        assert doc.text.strip(), path
        chunks = chunk_document(doc)
        assert chunks and all(c.token_count <= 256 for c in chunks), path
        if path.suffix == ".pdf":
            assert doc.page_count and all(b.page for b in doc.blocks), path
            assert all(c.page_start for c in chunks), path
        raw = path.read_bytes()
        if path.suffix in (".md", ".txt"):
            # every line of Chinese in the source survives parsing unchanged
            for line in raw.decode("utf-8").splitlines():
                line = line.strip().lstrip("#-> ").strip()
                if line and doc.language == "zh" and "|" not in line:
                    assert line in doc.text, (path, line)
    elapsed = time.perf_counter() - start
    mb = total_bytes / 1024 / 1024
    print(f"\ncorpus: {parsed} files parsed + chunked ({rejected} unsupported rejected), {mb:.3f} MB "
          f"in {elapsed:.3f} s ({mb / max(elapsed, 1e-9):.2f} MB/s)")


def test_corpus_spot_checks(eval_corpus: Path) -> None:
    CORPUS = eval_corpus
    handbook = parse_file(CORPUS / "zh" / "employee-handbook.pdf")
    assert handbook.language == "zh" and "法定节假日加班按 3 倍工资计算" in handbook.text
    manual = parse_file(CORPUS / "product" / "x200-controller-manual.pdf")
    assert manual.page_count == 2 and any(b.page == 2 and "24-month warranty" in b.text for b in manual.blocks)
    vpn = parse_file(CORPUS / "it" / "vpn-setup.html")
    assert "Intranet home" not in vpn.text and "Service Desk" not in vpn.text and "51820" in vpn.text
    docx = parse_file(CORPUS / "hr" / "travel-expense-policy.docx")
    assert any(b.kind == "table" and "1,200 CNY" in b.text for b in docx.blocks)
