from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cli_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory for in-process CLI runs (``CliRunner``), with the fake embedder and a terminal wide
    enough that messages are not wrapped."""
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("COLUMNS", "400")
    return tmp_path / "data"
