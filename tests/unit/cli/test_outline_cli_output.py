"""`inhouse outline FILE -o PATH`: a path that cannot be written is refused before the model runs (exit 2, one
line), as for `inhouse minutes` (it was a traceback after the work)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli import outline as outline_cli
from inhouse.cli.main import app


def test_an_output_in_a_missing_directory_is_refused_before_any_work(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_services(*args: object, **kwargs: object) -> None:
        raise AssertionError("the services (and the model) must not be opened")

    monkeypatch.setattr(outline_cli, "open_services", no_services)
    doc = tmp_path / "notes.md"
    doc.write_text("# Plan\n\n## Step one\n\nDo it.\n")
    result = CliRunner().invoke(app, ["outline", str(doc), "-o", str(tmp_path / "nowhere" / "out.md"),
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in " ".join(result.output.split()) and "Traceback" not in result.output
