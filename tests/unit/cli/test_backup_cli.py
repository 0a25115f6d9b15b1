"""`inhouse backup` / `restore` on an install whose shared data is in PostgreSQL: refused with a message that
names pg_dump, before anything is read or written (no PostgreSQL server is needed to be refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_refused_when_the_store_is_postgresql(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_STORE__URL", "postgresql://inhouse@db.invalid/inhouse")
    result = CliRunner().invoke(app, [command, str(tmp_path / "copy")])
    assert result.exit_code == 2, result.output
    assert "pg_dump" in result.output and "store.url" in result.output
    assert not (tmp_path / "copy").exists() and not (tmp_path / "data").exists()
