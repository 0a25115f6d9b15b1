"""``IndexStore.forget_group`` (SQLite and PostgreSQL alike) and ``KnowledgeBase.forget_group``: a deleted group's
name is taken off every collection's and document's access list, so whoever is in a group created later under that
name sees none of what was shared with the old one."""

from __future__ import annotations

from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import DocumentRecord, IndexStore
from inhouse.kb.service import KnowledgeBase
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor(key_id="key_admin", name="admin", role="admin")


def _groups(*names: str) -> Acl:
    return Acl(groups=frozenset(names))


def test_a_groups_name_is_taken_off_every_access_list(index_store: IndexStore) -> None:
    store = index_store
    payroll = store.create_collection("payroll", acl=_groups("contractors", "hr"))
    wiki = store.create_collection("wiki", acl=_groups("staff"))
    shared = store.create_collection("shared", acl=Acl(groups=frozenset({"Contractors"}), keys=frozenset({"key_a"})))
    kb = KnowledgeBase(store, FakeEmbedder())

    def add(name: str, groups: list[str] | None = None) -> DocumentRecord:
        outcome = kb.add_document(ADMIN, "wiki", f"# {name}\n\n{name} text".encode(), name, groups=groups)
        return store.get_document(outcome.document_id or "")

    rates, memo, plain = add("rates.md", ["contractors"]), add("memo.md", ["staff", "contractors"]), add("plain.md")

    cols, docs = store.forget_group("contractors", run="req_1")
    assert cols == sorted([payroll.id, shared.id]) and docs == sorted([rates.id, memo.id])
    assert store.get_collection(payroll.id).acl == _groups("hr")
    assert store.get_collection(shared.id).acl == Acl(keys=frozenset({"key_a"}))
    assert store.get_collection(wiki.id).acl == _groups("staff")
    # A document's own list that named only that group still narrows: nobody but admins.
    assert store.get_document(rates.id).acl == Acl() and store.get_document(memo.id).acl == _groups("staff")
    assert store.get_document(plain.id).acl is None
    assert sorted(store.run_changes("req_1")) == sorted([(rates.id, "relabelled"), (memo.id, "relabelled")])
    assert store.forget_group("contractors") == ([], [])


def test_a_member_of_a_new_group_of_the_same_name_sees_nothing_of_the_old_ones(index_store: IndexStore) -> None:
    kb = KnowledgeBase(index_store, FakeEmbedder())
    admin = ADMIN
    kb.create_collection(admin, "payroll", groups=["contractors"])
    kb.add_document(admin, "payroll", b"# Payroll\n\npayroll table for March", "pay.md", label="internal")
    carol = Actor(key_id="key_carol", name="carol", groups=frozenset({"contractors"}))
    assert [c.name for c in kb.list_collections(carol)] == ["payroll"]
    named = kb.forget_group("contractors")
    assert named == {"collections": [kb.collection(admin, "payroll").id], "documents": []}
    assert kb.list_collections(carol) == [] and kb.search(carol, "payroll table") == []
    assert not index_store.visible_document(AccessScope.of(carol), kb.list_documents(admin, "payroll")[0].id)
