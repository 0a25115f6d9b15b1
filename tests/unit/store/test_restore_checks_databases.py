"""`restore_data_dir` with real SQLite files: a target holding a database's leftover -wal, -shm or -journal is
refused before anything is placed (SQLite would replay a stale WAL into the restored file: before 2026-12-07 the
restored inhouse.db silently became the old database's pages, or "malformed"), and a restored database that fails
`PRAGMA quick_check` is reported and taken out again."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from inhouse.errors import Conflict, InhouseError
from inhouse.store.backup import backup_data_dir, restore_data_dir, sha256_file

PAGE = 4096


def _database(path: Path, rows: int, name: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO users (name) VALUES (?)", [(f"{name}{i}" + "x" * 200,) for i in range(rows)])
    conn.commit()
    conn.close()


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    _database(data / "inhouse.db", 50, "restored")
    _database(data / "audit.db", 5, "record")
    backup_data_dir(data, tmp_path / "bk")
    return tmp_path / "bk"


def _stale_wal(tmp_path: Path) -> bytes:
    """The -wal a killed server leaves: frames of another inhouse.db, never checkpointed."""
    other = tmp_path / "other"
    other.mkdir()
    _database(other / "inhouse.db", 1, "old")
    conn = sqlite3.connect(other / "inhouse.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    for i in range(300):
        conn.execute("INSERT INTO users (name) VALUES (?)", (f"old{i}",))
        conn.commit()
    wal = (other / "inhouse.db-wal").read_bytes()
    conn.close()
    return wal


@pytest.mark.parametrize("leftover", ["inhouse.db-wal", "inhouse.db-shm", "audit.db-journal", "kb.db-wal"])
def test_a_leftover_of_a_database_is_refused_and_named(leftover: str, backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    content = _stale_wal(tmp_path) if leftover.endswith("-wal") else b"\0" * 100
    (target / leftover).write_bytes(content)
    with pytest.raises(Conflict, match=leftover) as refused:
        restore_data_dir(backup, target)
    assert str(target) in refused.value.message
    assert sorted(p.name for p in target.iterdir()) == [leftover]  # nothing placed, the leftover untouched
    assert (target / leftover).read_bytes() == content


def test_the_restored_rows_are_the_backups_own(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_data_dir(backup, target)
    conn = sqlite3.connect(target / "inhouse.db")
    assert conn.execute("SELECT count(*), min(name) LIKE 'restored%' FROM users").fetchone() == (50, 1)
    conn.close()


def _damaged(backup: Path, tmp_path: Path) -> Path:
    """A copy of ``backup`` whose inhouse.db has a garbled table page, the manifest's hash made to match (damage
    that happened before the backup was hashed, or to a file SQLite's own check is the only one to see)."""
    copy = tmp_path / "damaged"
    shutil.copytree(backup, copy)
    db = copy / "inhouse.db"
    with open(db, "r+b") as f:
        f.seek(PAGE + 8)  # the cell pointers of the table's first page
        f.write(b"\xff" * 64)
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "inhouse.db":
            entry["sha256"], entry["bytes"] = sha256_file(db), db.stat().st_size
    (copy / "MANIFEST.json").write_text(json.dumps(manifest))
    return copy


def test_a_restored_database_that_fails_its_check_is_reported_and_taken_out(backup: Path, tmp_path: Path) -> None:
    damaged = _damaged(backup, tmp_path)
    target = tmp_path / "target"
    with pytest.raises(InhouseError, match=r"inhouse\.db fails its integrity check") as failed:
        restore_data_dir(damaged, target)
    assert str(target) in failed.value.message
    assert list(target.iterdir()) == []  # a second restore (of a sound backup) can go ahead
    restore_data_dir(backup, target)
