"""Fixtures shared by the governance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty inhouse database."""
    d = open_inhouse_db(tmp_path / "inhouse.db")
    yield d
    d.close()
