"""A new version takes the label and access list of the document it replaces as its write finds them, on SQLite and
PostgreSQL: a relabel, a new list or a deleted group's name taken off while the file was parsed and embedded stands
(the version was decided from a read before, and undid them). A member whose document became one they may not see
meanwhile gets the 409 of a document they cannot see; an upload into a collection deleted meanwhile is a NotFound.

Each interleaving is made by running the concurrent change just before ``put_document``, the write."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from inhouse.errors import Conflict, InhouseError, NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import ChangedMeanwhile, Expected, IndexStore, NewDocument
from inhouse.kb.service import KnowledgeBase
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor(key_id="key_admin", name="admin", role="admin")
ALICE = Actor(key_id="key_alice", name="alice", groups=frozenset({"eng"}))


def _before_put(monkeypatch: pytest.MonkeyPatch, store: IndexStore, change: Callable[[], Any], *,
                every: bool = False) -> list[int]:
    """Run ``change`` just before ``put_document`` writes (the first time, or ``every`` time); the calls, counted."""
    real = store.put_document
    calls: list[int] = []

    def put(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if every or len(calls) == 1:
            change()  # which may write through ``put`` too: counted before, so it runs once
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "put_document", put)
    return calls


@pytest.fixture
def kb(index_store: IndexStore) -> KnowledgeBase:
    kb = KnowledgeBase(index_store, FakeEmbedder())
    kb.create_collection(ADMIN, "plans", groups=["eng", "board"])
    return kb


def _add(kb: KnowledgeBase, actor: Actor, text: str, **kw: Any) -> str:
    outcome = kb.add_document(actor, "plans", f"# Plan\n\n{text}".encode(), "plan.md", **kw)
    assert outcome.status in ("added", "replaced"), outcome
    return outcome.document_id or ""


def test_a_relabel_made_while_a_new_version_is_prepared_stands(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _add(kb, ADMIN, "version 1", label="internal")
    calls = _before_put(monkeypatch, kb.store, lambda: kb.relabel(ADMIN, doc, label="restricted"))
    outcome = kb.add_document(ADMIN, "plans", b"# Plan\n\nversion 2", "plan.md")  # no label: the document's
    assert (outcome.status, outcome.document_id, outcome.label) == ("replaced", doc, Label.RESTRICTED)
    after = kb.store.get_document(doc)
    assert after.label == Label.RESTRICTED and after.version == 2 and len(calls) == 2  # decided again, once
    assert not kb.store.visible_document(AccessScope.of(ALICE), doc)


def test_a_list_changed_while_a_new_version_is_prepared_stands(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _add(kb, ADMIN, "version 1", label="restricted", groups=["eng", "board"])
    # The board's group deleted (its name taken off every list), and the list narrowed by another admin.
    _before_put(monkeypatch, kb.store, lambda: kb.forget_group("board"))
    kb.add_document(ADMIN, "plans", b"# Plan\n\nversion 2", "plan.md")
    assert kb.store.get_document(doc).acl == Acl(groups=frozenset({"eng"}))
    monkeypatch.undo()
    _before_put(monkeypatch, kb.store, lambda: kb.relabel(ADMIN, doc, groups=[], keys=["key_ceo"]))
    kb.add_document(ADMIN, "plans", b"# Plan\n\nversion 3", "plan.md")
    after = kb.store.get_document(doc)
    assert after.acl == Acl(keys=frozenset({"key_ceo"})) and after.label == Label.RESTRICTED and after.version == 3


def test_a_member_may_not_replace_a_document_restricted_while_their_file_was_parsed(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _add(kb, ALICE, "version 1", label="internal")
    _before_put(monkeypatch, kb.store, lambda: kb.relabel(ADMIN, doc, label="restricted"))
    with pytest.raises(Conflict) as err:
        kb.add_document(ALICE, "plans", b"# Plan\n\nversion 2 by alice", "plan.md")
    assert not isinstance(err.value, ChangedMeanwhile) and "may not replace it" in err.value.message
    after = kb.store.get_document(doc)
    assert (after.label, after.version) == (Label.RESTRICTED, 1)
    assert kb.store.document_data(doc) == b"# Plan\n\nversion 1"


def test_a_member_may_not_replace_a_document_put_under_that_name_while_their_file_was_parsed(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    """No document of that name when the member started; an admin's restricted one by the time theirs is written."""
    secret: list[str] = []
    _before_put(monkeypatch, kb.store, lambda: secret.append(_add(kb, ADMIN, "the board's", label="restricted")))
    with pytest.raises(Conflict):
        kb.add_document(ALICE, "plans", b"# Plan\n\nalice's", "plan.md")
    assert kb.store.document_data(secret[0]) == b"# Plan\n\nthe board's"


def test_a_version_whose_document_keeps_changing_is_refused_and_nothing_is_written(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _add(kb, ADMIN, "version 1", label="internal")
    labels = iter(["restricted", "confidential"] * 5)
    calls = _before_put(monkeypatch, kb.store, lambda: kb.relabel(ADMIN, doc, label=next(labels)), every=True)
    with pytest.raises(ChangedMeanwhile) as err:
        kb.add_document(ADMIN, "plans", b"# Plan\n\nversion 2", "plan.md")
    assert isinstance(err.value, Conflict) and err.value.code == "changed_meanwhile" and len(calls) == 3
    assert kb.store.get_document(doc).version == 1


def test_an_upload_into_a_collection_deleted_meanwhile_is_not_found(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    _before_put(monkeypatch, kb.store, lambda: kb.delete_collection(ADMIN, "plans"))
    with pytest.raises(NotFound) as err:
        kb.add_document(ADMIN, "plans", b"# Plan\n\nversion 1", "plan.md")
    assert err.value.param == "collection"


def _new(collection_id: str, text: str, label: Label = Label.INTERNAL) -> NewDocument:
    data = text.encode()
    chunk = Chunk(index=0, text=text, content=text, token_count=1, kind="paragraph")
    return NewDocument(collection_id, "a.md", hashlib.sha256(data).hexdigest(), label, None, "A", "a.md",
                       "text/markdown", data, [chunk], FakeEmbedder().embed_passages([text]))


def test_put_document_checks_what_a_version_was_decided_from(index_store: IndexStore) -> None:
    store = index_store
    col = store.create_collection("c", acl=Acl(groups=frozenset({"eng"}))).id
    first = store.put_document(_new(col, "one"), expect=Expected(None)).document
    store.relabel(first.id, label=Label.RESTRICTED)
    # Relabelled; a document appeared at the path; another list (an empty one of its own is not none).
    for stale in (Expected.of(first), Expected(None), Expected(first.id, Label.RESTRICTED, Acl())):
        with pytest.raises(ChangedMeanwhile):
            store.put_document(_new(col, "two"), expect=stale)
    now = store.find_document(col, source_path="a.md")
    assert store.put_document(_new(col, "two", Label.RESTRICTED), expect=Expected.of(now)).status == "replaced"
    # The same bytes write nothing: no check to make.
    assert store.put_document(_new(col, "two"), expect=Expected(None)).status == "unchanged"
    with pytest.raises(Conflict) as err:  # a member who may not see it
        store.put_document(_new(col, "three"), scope=AccessScope.of(ALICE))
    assert not isinstance(err.value, ChangedMeanwhile)
    with pytest.raises(InhouseError):
        store.put_document(_new(col, "two"), scope=AccessScope.of(ALICE))  # not even to hear it is unchanged
    store.relabel(first.id, label=Label.INTERNAL)
    last = store.put_document(_new(col, "three"), scope=AccessScope.of(ALICE)).document
    assert last.version == 3
    store.delete_document(last.id)
    with pytest.raises(ChangedMeanwhile):  # deleted meanwhile: the version was decided from it
        store.put_document(_new(col, "four"), expect=Expected.of(last))
