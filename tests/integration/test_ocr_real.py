"""OCR on the real PP-OCRv5 model (``inhouse models pull ppocr-v5``, run by setup): scans of known text, in Chinese
and English, read back through ``parse_file`` as ingestion does. Accuracy across scanner settings and the whole
corpus is measured by ``python -m benchmarks.ocr`` (docs/knowledge.md, "Scanned documents")."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from inhouse.bootstrap import build_ocr_reader
from inhouse.config import load_settings
from inhouse.eval_corpus import find_eval_corpus
from inhouse.kb.parse import parse_file
from inhouse.kb.parse.ocr import OcrReader
from inhouse.models.ocr import OCR_NAME, ocr_model_present
from inhouse.testing.scans import Scanner, cjk_font_path, image_file, image_pdf, scan, scan_pdf, typeset

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ocr_model_present(),
                       reason=f"the OCR model is not installed (inhouse models pull {OCR_NAME})"),
]

HEADING = "差旅报销政策 Travel Expense Policy"
ZH = "员工出差住宿标准为每晚不超过八百元，需在返回后十个工作日内提交报销单。"
EN = "Hotel costs are reimbursed up to 800 CNY per night. Submit the claim within 10 working days of your return."
ROW = "E07 | steady red | Firmware checksum error"


def characters(text: str) -> Counter[str]:
    return Counter("".join(unicodedata.normalize("NFKC", text).split()))


def recall(truth: str, read: str) -> float:
    t = characters(truth)
    return sum((t & characters(read)).values()) / sum(t.values())


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> OcrReader:
    settings = load_settings(data_dir=tmp_path_factory.mktemp("ocr-data"))
    out = build_ocr_reader(settings)
    assert out is not None
    return out


@pytest.fixture(scope="module")
def page() -> list:  # type: ignore[type-arg]
    try:
        cjk_font_path()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (scripts/test.sh installs it)")
    return typeset([("heading", HEADING), ("paragraph", ZH), ("paragraph", EN), ("paragraph", ROW)], dpi=300)


@pytest.mark.parametrize("scanner", [Scanner(150, 75), Scanner(100, 60), Scanner(150, 75, skew_deg=2.0, noise=12.0),
                                     Scanner(150, 85, grayscale=False, photo=True)],
                         ids=lambda s: f"{s.dpi}dpi-q{s.jpeg_quality}-skew{s.skew_deg:g}{'-photo' if s.photo else ''}")
def test_a_scanned_bilingual_page_reads_back(reader: OcrReader, page: list, scanner: Scanner) -> None:  # type: ignore[type-arg]
    pdf = image_pdf([scan(p, scanner, from_dpi=300) for p in page], scanner)
    doc = parse_file(pdf, "policy-scan.pdf", ocr=reader)
    assert doc.metadata["ocr"] == "ppocr-v5: 1 of 1 pages"
    assert recall(ZH, doc.text) >= 0.97 and recall(EN, doc.text) >= 0.97 and recall(ROW, doc.text) >= 0.9
    assert doc.blocks[0].kind == "heading" and recall(HEADING, doc.blocks[0].text) >= 0.9
    assert "800" in doc.text and "E07" in doc.text


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_page_scanned_sideways_or_upside_down_reads_back(reader: OcrReader, page: list, turn: int) -> None:  # type: ignore[type-arg]
    scanner = Scanner(150, 75, turn=turn)
    doc = parse_file(image_pdf([scan(p, scanner, from_dpi=300) for p in page], scanner), "turned.pdf", ocr=reader)
    assert recall(ZH, doc.text) >= 0.97 and recall(EN, doc.text) >= 0.97
    assert doc.blocks[0].kind == "heading" and recall(HEADING, doc.blocks[0].text) >= 0.9

def test_a_page_in_two_columns_reads_column_by_column(reader: OcrReader) -> None:
    items = [f"Item {k:02d} of the report says that the figures were checked twice by the finance team."
             for k in range(1, 31)]
    pages = typeset([("title", "Quarterly report"), *(("paragraph", item) for item in items)], dpi=300, columns=2)
    assert len(pages) == 1  # both columns filled on one page
    scanner = Scanner(150, 75)
    doc = parse_file(image_pdf([scan(pages[0], scanner, from_dpi=300)], scanner), "report.pdf", ocr=reader)
    read = [int(n) for n in re.findall(r"Item (\d\d)", doc.text)]
    assert len(read) >= 28 and read == sorted(read)  # down the left column, then down the right one
    assert doc.blocks[0].kind == "heading" and doc.blocks[0].text == "Quarterly report"

def test_a_screenshot_png_reads_back(reader: OcrReader, page: list) -> None:  # type: ignore[type-arg]
    png = image_file(scan(page[0], Scanner(120, None), from_dpi=300), Scanner(120, None))
    doc = parse_file(png, "policy.png", ocr=reader)
    assert doc.mime == "image/png" and doc.language in ("zh", "mixed")
    assert recall(ZH + EN, doc.text) >= 0.97


def test_the_corpus_manual_scanned_keeps_its_facts(reader: OcrReader) -> None:
    manual = Path(find_eval_corpus()) / "product" / "x200-controller-manual.pdf"
    pdf, texts = scan_pdf(manual.read_bytes(), Scanner(150, 75))
    doc = parse_file(pdf, manual.name, ocr=reader)
    assert doc.page_count == 2 and recall("".join(texts), doc.text) >= 0.98
    for fact in ("24-month warranty", "version 2.4.1", "E07", "IP65"):
        assert fact in doc.text
