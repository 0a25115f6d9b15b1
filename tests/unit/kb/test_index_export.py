"""The SQLite index's export (what ``inhouse store migrate`` copies): every table, the empty ones too."""

from __future__ import annotations

from pathlib import Path

from inhouse.kb.access import Acl
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.index.sqlite.export import export_index


def test_an_empty_table_exports_no_rows(tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        store.create_collection("open", acl=Acl())  # no access-list rows at all: kb_acl is empty
        with export_index(store) as export:
            # apsw describes a statement only while it has a row: this raised ExecutionCompleteError, and so did
            # every `store migrate` of an install whose collections had no access lists
            assert list(export.rows("kb_acl")) == [] and list(export.rows("kb_chunks")) == []
            assert [r["name"] for r in export.rows("kb_collections")] == ["open"]
    finally:
        store.close()
