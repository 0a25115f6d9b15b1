"""The evaluation commands on a checkout placed elsewhere on disk: with ``shared/`` beside it they read
``../shared/corpus``; without it they print one clear error and exit 2; ``INHOUSE_EVAL_CORPUS`` overrides.

The checkout is simulated by a directory holding ``pyproject.toml`` and ``src/inhouse`` (a symlink to this
package, imported through ``PYTHONPATH`` so that the package's location is the other checkout), and every
command runs from an unrelated working directory: only the package's location may decide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inhouse.eval_corpus import ENV_VAR

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "inhouse"
pytestmark = pytest.mark.slow


def _checkout(root: Path) -> Path:
    clone = root / "elsewhere"
    (clone / "src").mkdir(parents=True)
    (clone / "pyproject.toml").write_text("[project]\nname = 'inhouse'\n")
    (clone / "src" / "inhouse").symlink_to(PACKAGE, target_is_directory=True)
    return clone


def _corpus(at: Path) -> Path:
    (at / "hr").mkdir(parents=True)
    (at / "hr" / "leave.md").write_text("# Leave\n\nEmployees get 18 days of annual leave.\n")
    (at / "qa.jsonl").write_text(json.dumps({"id": "q1", "question": "How many days of annual leave?",
                                             "answerable": True, "source": "hr/leave.md", "answer": "18"}) + "\n")
    (at / "meetings").mkdir()
    return at


def _run(clone: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != ENV_VAR and not k.startswith("INHOUSE_")}
    base.update(PYTHONPATH=str(clone / "src"), INHOUSE_DATA_DIR=str(cwd / "data"), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=120)


KB_EVAL = ("-m", "inhouse.kb.evaluate", "--embedder", "fake", "--json")


def test_commands_read_shared_beside_the_checkout(tmp_path: Path) -> None:
    clone = _checkout(tmp_path / "x")
    _corpus(tmp_path / "x" / "shared" / "corpus")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    r = _run(clone, elsewhere, *KB_EVAL, "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["questions"] == 1 and summary["ingest"]["files"] == 1 and summary["recall_at_5"] == 1.0
    # The CLI and the minutes evaluation resolve the same corpus (the minutes one finds its empty meetings/).
    r = _run(clone, elsewhere, "-c", "from inhouse.eval_corpus import find_eval_corpus; print(find_eval_corpus())")
    assert r.returncode == 0 and Path(r.stdout.strip()) == tmp_path / "x" / "shared" / "corpus", r.stderr


def test_without_shared_the_commands_fail_clearly(tmp_path: Path) -> None:
    clone = _checkout(tmp_path / "x")
    expected = f"No evaluation corpus at {tmp_path / 'x' / 'shared' / 'corpus'} (from ../shared/corpus beside the " \
               f"repository {clone})"
    for args in (KB_EVAL, ("-m", "inhouse.apps.minutes.evaluate"), ("-m", "inhouse.cli.main", "kb", "eval")):
        r = _run(clone, tmp_path, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert expected in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, (args, r.stderr)


def test_the_variable_overrides_and_is_checked(tmp_path: Path) -> None:
    clone = _checkout(tmp_path / "x")
    other = _corpus(tmp_path / "other")
    r = _run(clone, tmp_path, *KB_EVAL, "--data-dir", str(tmp_path / "data"), env={ENV_VAR: str(other)})
    assert r.returncode == 0 and json.loads(r.stdout)["questions"] == 1, r.stderr
    r = _run(clone, tmp_path, *KB_EVAL, env={ENV_VAR: str(tmp_path / "missing")})
    assert r.returncode == 2 and f"(from {ENV_VAR})" in r.stderr


def test_outside_a_checkout_the_option_or_variable_is_required(tmp_path: Path) -> None:
    clone = _checkout(tmp_path / "x")
    (clone / "pyproject.toml").unlink()  # like an installed wheel: no repository around the package
    r = _run(clone, tmp_path, *KB_EVAL)
    assert r.returncode == 2 and "not running from a repository checkout" in r.stderr
