"""`inhouse ingest`, `search`, `collections …` through the real command (FakeEmbedder via the environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.models.ocr import ocr_model_present
from inhouse.testing.scans import Scanner, image_pdf, scan, typeset


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    docs = tmp_path / "hr"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees with 3 years of service get 18 days of annual leave.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    return docs


def test_ingest_search_and_collections(env: Path) -> None:
    assert CliRunner().invoke(app, ["groups", "add", "hr"]).exit_code == 0  # access lists name existing groups
    r = CliRunner().invoke(app, ["ingest", str(env), "--collection", "hr", "--label", "internal", "--group", "hr"])
    assert r.exit_code == 0, r.output
    assert "Created collection 'hr'" in r.output and "2 files (1 added" in r.output and "chunks/s" in r.output
    assert "skipped" in r.output and "broken.pdf" in r.output
    again = CliRunner().invoke(app, ["ingest", str(env), "--collection", "hr"])
    assert "0 added, 0 replaced, 1 unchanged" in again.output
    hits = CliRunner().invoke(app, ["search", "annual leave days", "--collection", "hr"])
    assert hits.exit_code == 0 and "18 days" in hits.output
    listing = CliRunner().invoke(app, ["collections", "list"])
    assert "hr" in listing.output and listing.exit_code == 0
    show = CliRunner().invoke(app, ["collections", "show", "hr"])
    assert "hr/leave.md" in show.output and "internal" in show.output
    missing = CliRunner().invoke(app, ["search", "x", "--collection", "nope"])
    assert missing.exit_code == 3
    assert CliRunner().invoke(app, ["collections", "delete", "hr"]).exit_code == 0


def test_ingest_lists_the_files_their_markings_labelled_higher(env: Path, eval_corpus: Path) -> None:
    r = CliRunner().invoke(app, ["ingest", str(eval_corpus / "finance"), str(eval_corpus / "hr" / "leave-policy.md"),
                                 "--collection", "shared", "--label", "internal"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # the console wraps long lines
    assert 'labelled confidential finance/salary-bands-2027.md: its marking, "CONFIDENTIAL" in the title' in said
    assert "labelled confidential finance/q3-2026-results-draft.md" in said
    assert "2 labelled higher by their markings" in said and "leave-policy.md: its marking" not in said


def test_documents_ingested_before_markings_are_reviewed_and_raised(env: Path, eval_corpus: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_KB__MARKINGS", "false")  # an index built before markings were read
    r = CliRunner().invoke(app, ["ingest", str(eval_corpus / "finance"), "--collection", "shared", "--label",
                                 "internal"])
    assert r.exit_code == 0 and "labelled" not in r.output, r.output
    monkeypatch.delenv("INHOUSE_KB__MARKINGS")
    dry = CliRunner().invoke(app, ["collections", "markings", "shared"])
    said = " ".join(dry.output.split())
    assert dry.exit_code == 0 and "would label confidential finance/salary-bands-2027.md (was internal)" in said
    assert "2 documents; run again with --apply" in said
    assert "internal" in CliRunner().invoke(app, ["collections", "show", "shared"]).output  # nothing changed yet
    done = CliRunner().invoke(app, ["collections", "markings", "shared", "--apply"])
    assert done.exit_code == 0 and "labelled confidential finance/q3-2026-results-draft.md" in " ".join(
        done.output.split())
    shown = CliRunner().invoke(app, ["collections", "show", "shared"]).output
    assert "confidential" in shown and "internal" not in shown
    again = CliRunner().invoke(app, ["collections", "markings", "shared"])
    assert "No document of shared is labelled below its markings." in " ".join(again.output.split())


def test_ingest_and_review_list_the_files_whose_text_came_from_a_more_sensitive_document(
        env: Path, tmp_path: Path, eval_corpus: Path) -> None:
    bands = (eval_corpus / "finance" / "salary-bands-2027.md").read_text()
    (env / "broken.pdf").unlink()
    (env / "notes.md").write_text("# Notes from the HR call\n\n" + bands.split("\n", 1)[1])
    # Pasted before the bands were in the index: nothing to compare with yet.
    assert CliRunner().invoke(app, ["ingest", str(env), "--collection", "hr", "--label", "internal"]).exit_code == 0
    board = tmp_path / "board"
    board.mkdir()
    (board / "bands.md").write_text(bands)
    assert CliRunner().invoke(app, ["ingest", str(board), "--collection", "board", "--label", "restricted"]
                              ).exit_code == 0
    review = " ".join(CliRunner().invoke(app, ["collections", "markings", "hr"]).output.split())
    assert "would label restricted hr/notes.md (was internal): its text repeats" in review, review
    assert "1 documents; run again with --apply" in review and "leave.md" not in review
    assert CliRunner().invoke(app, ["collections", "markings", "hr", "--apply"]).exit_code == 0
    # A second copy is compared as it is ingested.
    (env / "notes-2.md").write_text("# More notes\n\n" + bands.split("\n", 1)[1])
    r = CliRunner().invoke(app, ["ingest", str(env), "--collection", "hr", "--label", "internal"])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "labelled restricted hr/notes-2.md: its text repeats" in said, said
    assert "of a restricted document" in said and "hr/leave.md" not in said
    assert "1 labelled higher by their markings or their text's source" in said
    shown = CliRunner().invoke(app, ["collections", "show", "hr"]).output
    assert shown.count("restricted") == 2 and "internal" in shown


def test_ingest_sync_reports_what_changed(env: Path) -> None:
    (env / "broken.pdf").unlink()
    (env / "travel.md").write_text("# Travel\n\nThe hotel limit in Shanghai is 1,200 CNY per night.\n")
    first = CliRunner().invoke(app, ["ingest", "--sync", str(env), "--collection", "hr"])
    assert first.exit_code == 0, first.output
    assert "2 files (2 added, 0 replaced, 0 unchanged, 0 errors, 0 moved, 0 removed)" in first.output
    (env / "travel.md").unlink()
    (env / "leave.md").write_text("# Leave\n\nEmployees with 3 years of service get 20 days of annual leave.\n")
    second = CliRunner().invoke(app, ["ingest", "--sync", str(env), "--collection", "hr"])
    assert "removed hr/travel.md" in second.output
    assert "1 files (0 added, 1 replaced, 0 unchanged, 0 errors, 0 moved, 1 removed)" in second.output
    hits = CliRunner().invoke(app, ["search", "hotel limit Shanghai", "--collection", "hr"])
    assert "1,200" not in hits.output and "20 days" in hits.output
    # Each run is in the audit log, naming the documents it changed: who removed travel.md's document, and when.
    records = [json.loads(line) for line in CliRunner().invoke(app, ["audit", "export"]).output.splitlines()
               if '"kb:write"' in line]
    # Each run's started record (written before a file is read) is followed by its final record.
    assert [r["outcome"] for r in records] == ["started", "success"] * 2
    assert [r["request_id"] for r in records[::2]] == [r["request_id"] for r in records[1::2]]
    runs = records[1::2]
    assert [(r["resource"].split(" col_")[0], r["details"]["added"], r["details"]["replaced"],
             r["details"]["removed"]) for r in runs] == [("inhouse ingest --sync", 2, 0, 0),
                                                         ("inhouse ingest --sync", 0, 1, 1)]
    assert runs[1]["actor_key_id"] == "key_cli" and len(runs[1]["documents"]) == 2
    removed = runs[1]["documents"][-1]
    named = CliRunner().invoke(app, ["audit", "export", "--document", removed]).output.splitlines()
    assert len(named) == 2  # added by the first run, removed by the second
    third = CliRunner().invoke(app, ["ingest", "--sync", str(env), "--collection", "hr"])
    assert "1 files (0 added, 0 replaced, 1 unchanged, 0 errors, 0 moved, 0 removed)" in third.output
    # Moved into a folder and corrected on the way: the same document, its new version at the new path.
    (env / "policies").mkdir()
    (env / "leave.md").unlink()
    (env / "policies" / "leave.md").write_text(
        "# Leave\n\nEmployees with 3 years of service get 20 days of annual leave, 22 from 2027.\n")
    fourth = CliRunner().invoke(app, ["ingest", "--sync", str(env), "--collection", "hr"])
    said = " ".join(fourth.output.split())
    assert "moved and edited hr/leave.md → hr/policies/leave.md (" in said and "of the text the same" in said, said
    assert "1 files (0 added, 0 replaced, 0 unchanged, 0 errors, 1 moved, 0 removed)" in said
    assert "22 from 2027" in CliRunner().invoke(app, ["search", "annual leave 2027", "--collection", "hr"]).output
    a_file = CliRunner().invoke(app, ["ingest", "--sync", str(env / "policies" / "leave.md"), "--collection", "hr"])
    assert a_file.exit_code == 2 and "directories" in a_file.output


def test_a_collection_is_marked_for_code_sketches(env: Path) -> None:
    made = CliRunner().invoke(app, ["collections", "create", "pg", "--description", "PostgreSQL 16 manual",
                                    "--sketch-questions"])
    assert made.exit_code == 0, made.output
    assert "yes" in CliRunner().invoke(app, ["collections", "list"]).output
    off = CliRunner().invoke(app, ["collections", "update", "pg", "--no-sketch-questions"])
    assert off.exit_code == 0 and "sketch questions off" in off.output, off.output
    nothing = CliRunner().invoke(app, ["collections", "update", "pg"])
    assert nothing.exit_code != 0 and "Nothing to change" in nothing.output and "Traceback" not in nothing.output
    missing = CliRunner().invoke(app, ["collections", "update", "nope", "--sketch-questions"])
    assert missing.exit_code == 3 and "nope" in missing.output


@pytest.mark.integration
@pytest.mark.skipif(not ocr_model_present(), reason="the OCR model is not installed (inhouse models pull ppocr-v5)")
def test_ingest_reads_a_scanned_pdf_with_ocr(env: Path) -> None:
    page = typeset([("heading", "Badge policy"), ("paragraph", "Lost badges are reported to security on extension "
                                                               "7110 within one hour.")], dpi=300)[0]
    scanner = Scanner(150, 75)
    (env / "badge-scan.pdf").write_bytes(image_pdf([scan(page, scanner, from_dpi=300)], scanner))
    r = CliRunner().invoke(app, ["ingest", str(env / "badge-scan.pdf"), "--collection", "hr"])
    assert r.exit_code == 0, r.output
    assert "1 files (1 added" in r.output
    hits = CliRunner().invoke(app, ["search", "lost badge extension", "--collection", "hr"])
    assert hits.exit_code == 0 and "7110" in hits.output
