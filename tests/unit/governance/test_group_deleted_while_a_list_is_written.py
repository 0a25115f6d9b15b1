"""A group deleted while an access list naming it is written leaves that list too (``UserDirectory.recheck_groups``,
the directory on SQLite, the knowledge index on SQLite and PostgreSQL): the list's writer checked the group before
the deletion, and wrote the name after the deletion had taken it off every list. A group created later under that
name would have inherited what the list shares."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import IndexStore
from inhouse.kb.service import KnowledgeBase
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor(key_id="key_admin", name="admin", role="admin")
PAPER = b"# M&A plan\n\nThe acquisition target is ACME at 412 million."


def _world(db: Database, store: IndexStore) -> tuple[UserDirectory, KnowledgeBase]:
    kb = KnowledgeBase(store, FakeEmbedder())
    directory = UserDirectory(SqliteGovernanceStore(db), audit=MemoryAuditSink(), grants=[kb])
    directory.create_group("staff")
    kb.create_collection(ADMIN, "board", groups=["staff"])
    return directory, kb


def test_a_group_deleted_between_the_check_and_the_write_leaves_the_list(db: Database,
                                                                         index_store: IndexStore) -> None:
    directory, kb = _world(db, index_store)
    ma = directory.create_group("ma")
    checked = directory.resolve_groups(["MA"])
    directory.delete_group(ma.id)  # nothing names it yet
    doc = kb.add_document(ADMIN, "board", PAPER, "plan.md", label="restricted", groups=[g.name for g in checked],
                          run="req_1")
    col = kb.update_collection(ADMIN, "board", groups=["staff", "ma"])
    doc_id = doc.document_id or ""
    assert directory.recheck_groups(checked, lambda names: kb.forget_groups_on(doc_id, names, run="req_1")) == ["ma"]
    assert directory.recheck_groups(checked, lambda names: kb.forget_groups_on(col.id, names)) == ["ma"]
    assert index_store.get_document(doc_id).acl == Acl()  # its own list names nobody now: admins only
    assert index_store.get_collection(col.id).acl == Acl(groups=frozenset({"staff"}))
    assert index_store.run_changes("req_1") == [(doc_id, "added"), (doc_id, "relabelled")]
    # A new team under the old name reads none of it.
    directory.create_group("ma")
    newcomer = AccessScope.of(Actor("key_new", "new", groups=frozenset({"ma", "staff"})))
    assert not index_store.visible_document(newcomer, doc_id)


def test_a_deletion_that_took_the_name_off_before_the_write_but_commits_after_it(db: Database,
                                                                                 index_store: IndexStore) -> None:
    """The deletion's transaction has taken the name off every list, and not committed yet, when the list is
    written and its groups read again: that read waits for the deletion, and sees the group gone."""
    directory, kb = _world(db, index_store)
    ma = directory.create_group("ma")
    checked = directory.resolve_groups(["ma"])
    written, result = threading.Event(), {}

    def upload() -> None:
        doc = kb.add_document(ADMIN, "board", PAPER, "plan.md", label="restricted", groups=["ma"])
        result["doc"] = doc.document_id or ""
        written.set()
        result["gone"] = directory.recheck_groups(checked, lambda n: kb.forget_groups_on(result["doc"], n))

    writer = threading.Thread(target=upload)

    class Hold:
        """After the knowledge base in ``grants``: the name is off every list, the deletion not committed."""

        def forget_group(self, name: str) -> Mapping[str, Sequence[str]]:
            writer.start()
            assert written.wait(30)
            return {}

    directory.grants.append(Hold())
    directory.delete_group(ma.id)
    writer.join(30)
    assert not writer.is_alive() and result["gone"] == ["ma"]
    assert index_store.get_document(result["doc"]).acl == Acl()


def test_groups_still_there_are_left_alone(db: Database, index_store: IndexStore) -> None:
    directory, kb = _world(db, index_store)
    directory.create_group("ma")
    checked = directory.resolve_groups(["ma", "staff"])
    col = kb.update_collection(ADMIN, "board", groups=["staff", "ma"])
    taken: list[list[str]] = []
    assert directory.recheck_groups(checked, taken.append) == [] and taken == []
    assert directory.recheck_groups([], taken.append) == []
    assert index_store.get_collection(col.id).acl == Acl(groups=frozenset({"staff", "ma"}))
