"""`inhouse ingest`, `search`, `collections …` through the real command (FakeEmbedder via the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


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
