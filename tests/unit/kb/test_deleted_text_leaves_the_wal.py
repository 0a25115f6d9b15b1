"""A deleted document's text leaves ``kb.db-wal`` with the delete, not at the next clean stop: the bytes of ``kb.db``,
``kb.db-wal`` and ``kb.db-shm`` are read as they are on disk while the store is still open, nothing checkpointed
first (the old ``raw_dump`` checkpointed, which hid three copies of the text in the WAL of a running server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.kb.access import Acl
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.testing.index_contract import DIM, make_doc

CANARY = b"qwxzebraconfidential"


def on_disk(db: Path) -> bytes:
    """The database file, its WAL and its shared-memory index, byte for byte."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIndexStore]:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    yield s
    s.close()


def _secret() -> list[str]:
    return [f"The acquisition code name is {CANARY.decode()}. Do not share.",
            *[f"filler paragraph {i} about budgets" for i in range(20)]]


def test_a_deleted_document_is_in_no_file_of_the_open_store(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("hr", acl=Acl())
    doc = make_doc(col.id, "merger.md", _secret())
    rec = store.put_document(doc).document
    store.put_document(make_doc(col.id, "other.md", ["text that stays"]))
    # The first vector of the index: whole in one page (vec0 keeps them in one blob that spans pages).
    vec = np.ascontiguousarray(doc.vectors[0], dtype=np.float32).tobytes()
    raw = on_disk(tmp_path / "kb.db")
    assert CANARY in raw and vec in raw  # written: in the WAL (or the file, after a checkpoint)
    store.delete_document(rec.id)
    raw = on_disk(tmp_path / "kb.db")
    assert CANARY not in raw and b"zebraconf" not in raw and vec not in raw
    assert (tmp_path / "kb.db-wal").stat().st_size == 0


def test_a_replaced_version_and_a_deleted_collection_leave_nothing(store: SqliteIndexStore, tmp_path: Path) -> None:
    col = store.create_collection("projectqwxzebrafalcon", acl=Acl(), description="the qwxzebrafalcon deal")
    store.put_document(make_doc(col.id, "merger.md", _secret()))
    store.put_document(make_doc(col.id, "merger.md", ["The acquisition code name is [withheld]."]))
    assert CANARY not in on_disk(tmp_path / "kb.db")
    assert b"qwxzebrafalcon" in on_disk(tmp_path / "kb.db")
    store.delete_collection(col.id)
    assert b"qwxzebrafalcon" not in on_disk(tmp_path / "kb.db") and b"withheld" not in on_disk(tmp_path / "kb.db")


def test_a_reader_in_flight_delays_the_purge_until_it_ends(store: SqliteIndexStore, tmp_path: Path) -> None:
    """A search still reading the old frames keeps them (SQLite cannot cut a WAL a reader uses): the delete does not
    wait for it, and the WAL is emptied by a retry shortly after the reader is done."""
    col = store.create_collection("hr", acl=Acl())
    rec = store.put_document(make_doc(col.id, "merger.md", _secret())).document
    with store._snapshot() as r:  # a search in flight on the reader connection
        r.execute("SELECT count(*) FROM kb_chunks").fetchall()
        started = time.monotonic()
        store.delete_document(rec.id)
        assert time.monotonic() - started < 5  # waited a moment for the reader, not the busy timeout
        assert CANARY in on_disk(tmp_path / "kb.db")
    deadline = time.monotonic() + 10
    while CANARY in on_disk(tmp_path / "kb.db") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert CANARY not in on_disk(tmp_path / "kb.db")
