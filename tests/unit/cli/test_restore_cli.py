"""`inhouse restore` of a backup whose manifest is malformed or names paths outside the backup: one red line, exit 2,
nothing written; and a restore never overwrites a file the target already holds (exit 1, the file named)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "400"}


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("restore")
    data = root / "data"
    assert runner.invoke(app, ["users", "add", "alice", "--data-dir", str(data)]).exit_code == 0
    (data / "models").mkdir(exist_ok=True)
    (data / "models" / "registry.json").write_text('{"models": {"from-backup": {}}}')
    (data / "profiles").mkdir(exist_ok=True)
    (data / "profiles" / "m.toml").write_text("n_threads = 4\n")
    result = runner.invoke(app, ["backup", str(root / "bk"), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    return root / "bk"


def _altered(backup: Path, tmp_path: Path, change: Any) -> Path:
    copy = tmp_path / "bk"
    copy.mkdir()
    for path in backup.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(backup)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(backup)).write_bytes(path.read_bytes())
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    (copy / "MANIFEST.json").write_text(json.dumps(change(manifest)))
    return copy


def _set(manifest: dict[str, Any], **entry: Any) -> dict[str, Any]:
    manifest["files"][0].update(entry)
    return manifest


MALFORMED = {
    "a list": (lambda m: [m], "is not a JSON object"),
    "files null": (lambda m: {**m, "files": None}, "has no list of files"),
    "files missing": (lambda m: {k: v for k, v in m.items() if k != "files"}, "has no list of files"),
    "entry without bytes": (lambda m: {**m, "files": [{"path": "audit.db", "sha256": "0" * 64}]},
                            "is not {path, sha256, bytes}"),
    "entry a string": (lambda m: {**m, "files": ["audit.db"]}, "is not {path, sha256, bytes}"),
    "bytes a string": (lambda m: _set(m, bytes="12"), "is not {path, sha256, bytes}"),
    "parent path": (lambda m: _set(m, path="../../outside.txt"), "not a path inside the backup"),
    "parent inside": (lambda m: _set(m, path="models/../../x"), "not a path inside the backup"),
    "absolute path": (lambda m: _set(m, path="/etc/passwd"), "not a path inside the backup"),
    "empty path": (lambda m: _set(m, path=""), "not a path inside the backup"),
    "NUL in path": (lambda m: _set(m, path="a\x00b"), "not a path inside the backup"),
    "twice": (lambda m: {**m, "files": [m["files"][0], m["files"][0]]}, "twice"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_refused(case: str, backup: Path, tmp_path: Path) -> None:
    change, words = MALFORMED[case]
    altered = _altered(backup, tmp_path, change)
    target = tmp_path / "target"
    line = one_line_error(runner.invoke(app, ["restore", str(altered), "--data-dir", str(target)], env=WIDE), 2)
    assert words in line and str(altered) in line
    assert not (target / "inhouse.db").exists() and not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("existing", ["models/registry.json", "profiles/m.toml"])
def test_a_restore_never_overwrites_a_file_of_the_target(existing: str, backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / existing).parent.mkdir(parents=True)
    (target / existing).write_text("made on the new machine")
    line = one_line_error(runner.invoke(app, ["restore", str(backup), "--data-dir", str(target)], env=WIDE), 1)
    assert existing in line
    assert (target / existing).read_text() == "made on the new machine"
    assert not (target / "inhouse.db").exists()


def test_a_sound_backup_restores(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "models").mkdir(parents=True)  # an empty directory is no file of the backup's
    result = runner.invoke(app, ["restore", str(backup), "--data-dir", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "models" / "registry.json").read_text() == '{"models": {"from-backup": {}}}'


def test_a_leftover_wal_in_the_target_is_refused_and_named(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "inhouse.db-wal").write_bytes(b"left by a killed server")  # its inhouse.db moved aside, not the -wal
    line = one_line_error(runner.invoke(app, ["restore", str(backup), "--data-dir", str(target)], env=WIDE), 1)
    assert "inhouse.db-wal" in line
    assert sorted(p.name for p in target.iterdir()) == ["inhouse.db-wal"]
