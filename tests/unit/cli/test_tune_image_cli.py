"""Bad input at the CLI edge: clear one-line errors and non-zero exits, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.hardware.cpu import detect_cpu
from inhouse.models.tuning.profile import ProfileStore, TunedProfile

runner = CliRunner()


def test_tune_missing_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tune", "no-such-model", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert "'no-such-model' is not registered" in result.output and "Traceback" not in result.output


def test_tune_unknown_format(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tune", "smollm2-135m", "--formats", "q3_zz", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "q3_zz" in result.output


def test_tune_check_names_the_corrupt_profile(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path / "profiles", lambda: detect_cpu().signature)
    good = store.save(TunedProfile(model="m", model_sha256="a" * 64, cpu_signature=store.cpu_signature,
                                   created_at="t", engine={"n_threads": 1}))
    assert runner.invoke(app, ["tune", "--check", "--data-dir", str(tmp_path)]).exit_code == 0
    bad = tmp_path / "profiles" / ("b" * 64 + ".toml")
    bad.write_text("format = 1\n[engine\n")
    result = runner.invoke(app, ["tune", "--check", "--data-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert bad.name in result.output and "not TOML" in result.output and good.name in result.output


def test_image_verify_missing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["image", "verify", str(tmp_path / "nothing")], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "does not exist" in result.output
