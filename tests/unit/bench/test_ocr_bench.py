"""benchmarks/ocr.py's scoring and bookkeeping (the OCR itself is measured by running it)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.ocr import corpus_documents, headings, score, summary


def test_score_counts_characters_order_free_and_order_apart() -> None:
    assert score("工作 时间", "工作时间") == {"recall": 1.0, "order": 1.0}
    swapped = score("abcd efgh", "efgh abcd")
    assert swapped["recall"] == 1.0 and swapped["order"] < 1.0
    assert score("ＡＢ", "AB")["recall"] == 1.0  # NFKC: full-width letters are the same characters
    assert score("abcd", "ab")["recall"] == 0.5


def test_corpus_documents_skip_meetings_and_gold_files(tmp_path: Path) -> None:
    for rel in ("hr/leave.md", "meetings/m.txt", "zh/a.pdf", "hr/x.gold.json", "qa.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in corpus_documents(tmp_path)] == ["hr/leave.md", "zh/a.pdf"]


def test_summary_weights_pages_and_splits_languages() -> None:
    rows = [{"language": "en", "pages": 2, "seconds": 3.0, "recall": 1.0, "order": 0.9, "headings_recall": 1.0,
             "headings_precision": 0.5},
            {"language": "zh", "pages": 1, "seconds": 1.5, "recall": 0.8, "order": 0.8, "headings_recall": 0.5,
             "headings_precision": 1.0}]
    s = summary(rows)
    assert s["recall"] == 0.9 and s["pages"] == 3 and s["seconds_per_page"] == 1.5
    assert s["by_language"] == {"en": {"recall": 1.0, "order": 0.9}, "zh": {"recall": 0.8, "order": 0.8}}


def test_headings_match_on_normalized_text() -> None:
    assert headings(["Returns and refunds", "保修"], ["Returns and refunds", "Products"]) == {
        "headings_recall": 0.5, "headings_precision": 0.5}
    assert headings([], []) == {"headings_recall": 1.0, "headings_precision": 1.0}
