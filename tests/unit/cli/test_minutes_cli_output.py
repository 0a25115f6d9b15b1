"""`inhouse minutes -o PATH`: a path that cannot be written is refused before any model work (exit 2, one line),
and a write that fails at the end is one line with the error's exit code, never a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from inhouse.apps.minutes.schema import Minutes
from inhouse.cli import minutes as minutes_cli
from inhouse.cli.main import app


class FakeServices:
    """What the command uses of the services, with a minutes run that calls ``during_run`` (the slow model part)."""

    def __init__(self, during_run: Callable[[], None]) -> None:
        self.runs = 0

        async def run(ctx: Any, inp: Any) -> Minutes:
            self.runs += 1
            during_run()
            return Minutes(title="Sync", meeting_date=date(2026, 10, 14), date_source="parameter", attendees=[],
                           summary="", decisions=[], action_items=[], open_questions=[], next_meeting=None,
                           rejected=[])

        ctx = SimpleNamespace(model="fake-model", tz=None)
        self.assistants = SimpleNamespace(contexts=SimpleNamespace(for_actor=lambda *a, **k: ctx),
                                          minutes=SimpleNamespace(run=run))

    def close(self) -> None:
        pass


@pytest.fixture
def transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "sync.txt"
    path.write_text("Alice: I will send the report by Friday.\nBob: OK.\n")
    return path


def invoke(monkeypatch: pytest.MonkeyPatch, services: FakeServices, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(minutes_cli, "open_services", lambda settings: services)
    result = CliRunner().invoke(app, ["minutes", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("where", ["missing_dir/out.md", "."])
def test_an_output_that_cannot_be_written_is_refused_before_the_model_runs(
        transcript: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    services = FakeServices(lambda: None)
    output = transcript.parent / where
    code, _, err = invoke(monkeypatch, services, str(transcript), "--date", "2026-10-14", "-o", str(output))
    assert code == 2
    assert services.runs == 0
    assert err.count("error:") == 1 and "Traceback" not in err  # one message (the console wraps long lines)


def test_a_write_that_fails_after_the_model_is_one_line(transcript: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = transcript.parent / "out"
    folder.mkdir()
    services = FakeServices(lambda: shutil.rmtree(folder))  # the folder goes away during the long model run
    code, _, err = invoke(monkeypatch, services, str(transcript), "--date", "2026-10-14", "-o", str(folder / "m.md"))
    assert services.runs == 1
    assert code == 2
    assert "error:" in err and "out" in err and "Traceback" not in err


def test_an_output_in_a_writable_folder_is_written(transcript: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = transcript.parent / "m.md"
    code, _, err = invoke(monkeypatch, FakeServices(lambda: None), str(transcript), "--date", "2026-10-14",
                          "-o", str(output))
    assert code == 0, err
    assert output.read_text().startswith("# Sync")
