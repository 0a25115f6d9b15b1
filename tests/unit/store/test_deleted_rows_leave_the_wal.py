"""A deleted conversation, stored response or calendar event leaves ``inhouse.db`` and its ``-wal`` with the delete:
the files are read byte for byte while the database is still open, nothing checkpointed first. And the purge behind
it (``Database.purge_after_commit``): after a commit only, retried when a reader blocked it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inhouse.apps.schedule.calendar import Interval
from inhouse.store.sqlite.assistants import SqliteEventStore
from inhouse.store.sqlite.conversations import SqliteConversationStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.store.sqlite.responses import SqliteResponseStore
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member")
CANARY = "QWXZEBRA-merger-codename"


def on_disk(db: Path) -> bytes:
    """The database file, its WAL and its shared-memory index, byte for byte."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_inhouse_db(tmp_path / "inhouse.db")
    yield d
    d.close()


def test_inhouse_db_runs_with_secure_delete(db: Database) -> None:
    assert db.pragma("secure_delete") == 1 and db.pragma("journal_size_limit") == 4 * 1024 * 1024


def test_a_deleted_conversation_is_in_no_file_of_the_open_database(db: Database, tmp_path: Path) -> None:
    store = SqliteConversationStore(db)
    store.create(ANA, title="other", messages=[{"role": "user", "content": "text that stays"}])
    conv = store.create(ANA, title="plans", messages=[{"role": "user", "content": f"the code name is {CANARY}"}])
    store.update(ANA, conv.id, messages=[{"role": "user", "content": f"the code name is {CANARY}, again"}])
    assert CANARY.encode() in on_disk(tmp_path / "inhouse.db")
    store.delete(ANA, conv.id)
    assert CANARY.encode() not in on_disk(tmp_path / "inhouse.db")
    assert [c.title for c in store.list(ANA)] == ["other"]


def test_a_deleted_response_is_in_no_file_of_the_open_database(db: Database, tmp_path: Path) -> None:
    store = SqliteResponseStore(db)
    store.save(ANA, response_id="resp_1", model="m", previous_id=None,
               messages=[{"role": "user", "content": f"the code name is {CANARY}"}],
               input_items=[{"role": "user", "content": CANARY}], body={"output_text": CANARY})
    assert CANARY.encode() in on_disk(tmp_path / "inhouse.db")
    store.delete(ANA, "resp_1")
    assert CANARY.encode() not in on_disk(tmp_path / "inhouse.db")


def test_a_deleted_event_is_in_no_file_of_the_open_database(db: Database, tmp_path: Path) -> None:
    store = SqliteEventStore(db)
    start = datetime(2030, 5, 1, 9, tzinfo=UTC)
    event = store.create(ANA, f"Meet {CANARY}", Interval(start, start.replace(hour=10)), tz="UTC")
    assert CANARY.encode() in on_disk(tmp_path / "inhouse.db")
    store.delete(ANA, event.id)
    assert CANARY.encode() not in on_disk(tmp_path / "inhouse.db")


def test_a_purge_blocked_by_a_reader_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "inhouse.db"
    db = Database(path, secure_delete=True, purge_retry_s=0.05)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE t (x TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (CANARY,))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()  # a read transaction on the frames the purge would cut
        started = time.monotonic()
        with db.transaction() as c:
            db.purge_after_commit()
            c.execute("DELETE FROM t")
        assert time.monotonic() - started < 5  # a short wait, not the busy timeout
        assert db.purge_pending and CANARY.encode() in on_disk(path)
        reader.execute("COMMIT")
        deadline = time.monotonic() + 10
        while db.purge_pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not db.purge_pending and CANARY.encode() not in on_disk(path)
    finally:
        reader.close()
        db.close()


def test_a_rolled_back_delete_purges_nothing_and_purge_needs_a_transaction(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", secure_delete=True)
    try:
        db.execute("CREATE TABLE t (x TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (CANARY,))
        with pytest.raises(RuntimeError, match="outside a transaction"):
            db.purge_after_commit()
        with pytest.raises(ValueError), db.transaction() as c:
            db.purge_after_commit()
            c.execute("DELETE FROM t")
            raise ValueError("changed my mind")
        assert (tmp_path / "t.db-wal").stat().st_size > 0  # nothing was checkpointed
        assert db.query("SELECT x FROM t")[0][0] == CANARY
        with db.transaction(), pytest.raises(RuntimeError, match="inside a transaction"):
            db.purge_wal()
        assert db.purge_wal() and (tmp_path / "t.db-wal").stat().st_size == 0
    finally:
        db.close()
