from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.index.sqlite.store import SqliteIndexStore
from inhouse.store.sqlite.database import Database, Migration, apply_migrations, current_version
from inhouse.store.sqlite.inhouse_db import MIGRATIONS, migrate
from inhouse.testing.services import build_fake_services


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "sub" / "t.db")
    yield d
    d.close()


def test_pragmas(db: Database) -> None:
    assert db.pragma("journal_mode") == "wal"
    assert db.pragma("foreign_keys") == 1
    assert db.pragma("synchronous") == 2  # FULL: a commit is fsynced
    assert db.pragma("busy_timeout") == 5000
    with pytest.raises(ValueError):
        db.pragma("x; DROP TABLE y")


def test_every_file_of_a_data_directory_fsyncs_each_commit(tmp_path: Path) -> None:
    """inhouse.db, kb.db (through apsw) and audit.db: an acknowledged write survives a power cut, not only a killed
    process, and the index can never be behind the audit record that names its change."""
    services = build_fake_services(tmp_path)
    try:
        index = services.kb.store
        assert isinstance(index, SqliteIndexStore)
        connections = {"inhouse.db": services.db.connection, "kb.db": index._w.connection,
                       "audit.db": services.audit.store.connection}  # type: ignore[attr-defined]
        assert {name: conn.execute("PRAGMA synchronous").fetchone()[0] for name, conn in connections.items()} == {
            "inhouse.db": 2, "kb.db": 2, "audit.db": 2}
    finally:
        services.close()


def test_migrate_is_idempotent(db: Database) -> None:
    assert current_version(db) == 0
    assert migrate(db) == [m.version for m in MIGRATIONS]
    assert migrate(db) == []
    assert current_version(db) == MIGRATIONS[-1].version
    cols = {r["name"] for r in db.query("PRAGMA table_info(api_keys)")}
    assert {"id", "name", "prefix", "secret_hash", "role", "user_id", "created_at", "expires_at",
            "revoked_at", "last_used_at"} <= cols


def test_migrations_persist_across_reopen(tmp_path: Path) -> None:
    d1 = Database(tmp_path / "x.db")
    migrate(d1)
    d1.close()
    d2 = Database(tmp_path / "x.db")
    assert migrate(d2) == []
    d2.close()


def test_failed_migration_rolls_back(db: Database) -> None:
    migrate(db)
    bad = (*MIGRATIONS, Migration(99, "broken", "CREATE TABLE ok_table (x INTEGER); CREATE TABLE nope ("))
    with pytest.raises(Exception):  # noqa: B017 - sqlite3.OperationalError
        apply_migrations(db, bad)
    assert current_version(db) == MIGRATIONS[-1].version
    assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name='ok_table'") == 0


def test_versions_must_increase(db: Database) -> None:
    with pytest.raises(ValueError):
        apply_migrations(db, (Migration(2, "a", "SELECT 1"), Migration(1, "b", "SELECT 1")))


def test_transaction_rolls_back_on_error(db: Database) -> None:
    db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    assert db.scalar("SELECT count(*) FROM t") == 0


def test_usable_from_many_threads(db: Database) -> None:
    db.execute("CREATE TABLE t (x INTEGER)")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(50):
                db.execute("INSERT INTO t VALUES (?)", (i * 100 + j,))
                db.query("SELECT count(*) FROM t")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.scalar("SELECT count(*) FROM t") == 400


def test_a_file_whose_old_marker_is_newer_is_refused_unchanged(tmp_path: Path) -> None:
    """A file of a newer inhouse from before ``schema_migrations`` (its version in its own marker) is refused before
    anything is written: the newer release that owns it finds it as it left it."""
    db = Database(tmp_path / "old.db")
    try:
        db.execute("CREATE TABLE meta (version INTEGER)")
        db.execute("INSERT INTO meta VALUES (3)")
        steps = (Migration(1, "one", "CREATE TABLE t1 (x)"), Migration(2, "two", "CREATE TABLE t2 (x)"))
        with pytest.raises(InvalidRequest, match="schema version 3, newer"):
            apply_migrations(db, steps, legacy_version=lambda conn: conn.execute("SELECT version FROM meta")
                             .fetchone()[0])
        tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"meta"} and current_version(db) == 0
    finally:
        db.close()


def test_a_write_refused_by_a_read_only_disk_is_storage_read_only(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite reports a write into a filesystem the kernel just turned read-only as "disk I/O error" (or READONLY):
    the guard turns it into ``StorageReadOnly`` (503 ``storage_read_only``) when the directory cannot be written,
    and leaves an I/O error on a writable disk alone (that is not a read-only disk)."""
    import errno
    import sqlite3

    from inhouse.errors import StorageReadOnly, is_read_only, writable
    from inhouse.store.sqlite import database

    assert is_read_only(OSError(errno.EROFS, "Read-only file system"))
    # SQLite's READONLY (also what `PRAGMA query_only` or a file opened read-only say) and its I/O error are a
    # read-only disk only when the directory cannot be written.
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    io_error = sqlite3.OperationalError("disk I/O error")
    assert writable(tmp_path)
    assert not any(is_read_only(e, where) for e in (readonly, io_error) for where in (tmp_path, None))
    monkeypatch.setattr("inhouse.errors.writable", lambda directory: False)
    assert is_read_only(io_error, tmp_path) and is_read_only(readonly, tmp_path) and not is_read_only(io_error)
    assert is_read_only(OSError(errno.EIO, "Input/output error"), tmp_path)
    guard = database.full_disk_guard(str(tmp_path / "x.db"), "Could not save", (sqlite3.Error,))
    with pytest.raises(StorageReadOnly, match="read-only") as raised, guard:
        raise io_error
    assert raised.value.code == "storage_read_only" and str(tmp_path) not in raised.value.message


def test_migration_11_makes_an_old_scoped_admin_key_a_member_key(db: Database) -> None:
    apply_migrations(db, MIGRATIONS[:10])
    row = "INSERT INTO api_keys (id, name, prefix, secret_hash, role, created_at, scopes) VALUES (?, ?, ?, ?, ?, 0, ?)"
    db.execute(row, ("key_a", "site-widget", "ih_a", "0" * 64, "admin", '["apps:support"]'))
    db.execute(row, ("key_b", "admin laptop", "ih_b", "0" * 64, "admin", None))
    assert migrate(db) == [11]
    assert {r["id"]: r["role"] for r in db.query("SELECT id, role FROM api_keys")} == {"key_a": "member",
                                                                                      "key_b": "admin"}
