"""`inhouse doctor` when a probe child gave no answer (killed from outside, timed out): the path is unproven, not
broken, so doctor says to probe again and exits 0; only a plain path that crashed means llama.cpp does not run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.bootstrap import build_probe
from inhouse.cli.main import app
from inhouse.config import Settings
from inhouse.hardware.probe import PathResult
from inhouse.testing.probe import fake_report


def test_doctor_with_no_answer_about_plain_serves_plain_and_exits_0(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("COLUMNS", "250")
    report = fake_report("no_amx")
    report = replace(report, paths={
        "plain": PathResult("plain", "failed", "killed (out of memory?) (SIGKILL, signal 9) during load"),
        "repack": PathResult("repack", "failed", "the plain path gave no reference to compare with"),
        "amx": PathResult("amx", "failed", "the plain path gave no reference to compare with")})
    path = build_probe(Settings(data_dir=tmp_path)).cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report.to_dict()))
    result = CliRunner().invoke(app, ["doctor", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "does not run on this machine" not in result.output
    assert "Weight buffers (engine.weight_buffers=auto): plain" in result.output
    assert "inhouse doctor --refresh" in " ".join(result.output.split())  # however the console wraps it
