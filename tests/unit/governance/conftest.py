"""Fixtures shared by the governance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.store.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty inhouse database."""
    d = Database(tmp_path / "inhouse.db")
    d.migrate()
    yield d
    d.close()
