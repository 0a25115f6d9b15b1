"""`inhouse minutes` / `inhouse outline`: bad input is one line and a non-zero exit; headings need no model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    return invoke


def test_minutes_bad_input(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("Meeting: nothing\n\n")
    code, out = run("minutes", str(empty))
    assert code == 2 and "empty" in out
    assert run("minutes", str(tmp_path / "missing.txt"))[0] == 3
    assert run("minutes", str(empty), "--format", "pdf")[0] == 2
    assert run("minutes", str(empty), "--date", "next week")[0] == 2
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(b"this is no audio " * 40)
    code, out = run("minutes", str(noise))
    assert code == 2 and "not an audio file" in out


def test_outline_headings_only(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n\n## Install\n\nRun it.\n\n## Use\n\nType.\n")
    out_file = tmp_path / "outline.json"
    code, _ = run("outline", str(doc), "--headings-only", "--format", "json", "-o", str(out_file))
    assert code == 0
    data = json.loads(out_file.read_text())
    assert [c["ref"] for c in data["sections"][0]["children"]] == ["1.1", "1.2"]
    code, out = run("outline", str(doc), "--headings-only")
    assert code == 0 and "### 1.2 Use" in out
