"""`inhouse backup DIR` onto a full destination disk: exit 6 naming the destination, and nothing left on it.

Before 2026-12-07 it blamed the data directory ("the database in DATA cannot be written: the disk is full") although
that disk had 46 GB free, and left DIR.partial (a whole kb.db and an empty inhouse.db) filling the backup disk."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.common import domain_error
from inhouse.cli.main import app
from inhouse.errors import StorageFull
from inhouse.store import backup

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one message, one line


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    assert runner.invoke(app, ["models", "list", "--data-dir", str(directory)]).exit_code == 0
    return directory


def sqlite_full(conn: sqlite3.Connection, dest: Path) -> None:
    """The copy of a database meets the full disk: SQLite leaves an empty file and says so."""
    dest.touch()
    raise sqlite3.OperationalError("database or disk is full")


def fsync_full(path: Path) -> None:
    """A file's blocks are allocated when it is flushed: fsync is where the OS says the disk is full."""
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("fault", ["sqlite", "os"])
def test_a_full_destination_is_named_and_left_clean(fault: str, data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "backups" / "b1"
    if fault == "sqlite":
        monkeypatch.setattr(backup, "_copy_db", sqlite_full)
    else:
        monkeypatch.setattr(backup, "_fsync", fsync_full)
    result = runner.invoke(app, ["backup", str(dest), "--data-dir", str(data)], env=WIDE)
    assert result.exit_code == 6, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert f"could not be written to {dest}" in line and "full" in line
    assert str(data) not in line  # the data directory's disk has room: it is not the one to free
    assert not dest.exists() and not dest.with_name("b1.partial").exists()  # nothing left on the backup disk


def test_a_backup_that_fails_otherwise_leaves_no_partial_copy(data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: sqlite3.Connection, dest: Path) -> None:
        dest.touch()
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(backup, "_copy_db", broken)
    dest = tmp_path / "b2"
    with pytest.raises(sqlite3.DatabaseError):
        backup.backup_data_dir(data, dest)
    assert not dest.exists() and not dest.with_name("b2.partial").exists()


def test_a_full_disk_elsewhere_does_not_name_the_data_directory(tmp_path: Path) -> None:
    """A database error about a full disk while the data directory's own disk has room."""
    error = domain_error(sqlite3.OperationalError("database or disk is full"), tmp_path)
    assert isinstance(error, StorageFull) and str(tmp_path) not in error.message
    assert error.message.startswith("a database cannot be written: the disk is full")
