"""`inhouse models add` / `list` on a synthetic-weight shape file: registered like any GGUF, labelled as
synthetic, and `inhouse run` refuses to load it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.testing.gguf_writer import build_gguf, tiny_model_kv, tiny_model_tensors

runner = CliRunner()


def test_synthetic_model_is_registered_labelled_and_refused(tmp_path: Path) -> None:
    kv = tiny_model_kv(chat_template="{% for m in messages %}{{ m.content }}{% endfor %}")
    kv["inhouse.synthetic"] = True
    (tmp_path / "shape.gguf").write_bytes(build_gguf(kv, tiny_model_tensors()))
    data = str(tmp_path / "data")
    added = runner.invoke(app, ["models", "add", str(tmp_path / "shape.gguf"), "--name", "shape", "--data-dir", data])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["models", "list", "--data-dir", data], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "SYNTHETIC weights: benchmark only" in listed.output
    run = runner.invoke(app, ["run", "hello", "--model", "shape", "--data-dir", data])
    assert run.exit_code == 5 and "synthetic weights" in run.output and "Traceback" not in run.output
