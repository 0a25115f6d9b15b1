"""`inhouse minutes` refuses a transcript far over ``apps.minutes_max_windows`` while parsing it, as the server does:
one line and exit 2, and no windows are built."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.apps.minutes import pipeline
from inhouse.cli.main import app


def test_minutes_refuses_a_huge_transcript_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setattr(pipeline, "build_windows", lambda *a, **k: pytest.fail("windows of a refused transcript"))
    big = tmp_path / "meeting.txt"
    big.write_bytes(b"A: x\n" * 1_000_000)
    result = CliRunner().invoke(app, ["minutes", str(big)])
    assert result.exit_code == 2, result.output
    assert "needs more than 64 windows" in result.output
