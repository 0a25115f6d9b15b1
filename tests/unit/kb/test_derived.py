"""Text taken from a confidential or restricted document keeps its label (kb/derived.py): a copy in another
collection, a draft with additions, an excerpt, in English and Chinese; a shared sentence of boilerplate or a
document of a lower label is not a source; text readable at the document's label already (a binder copied it) is
not taken; relabelling the source counts from the next ingestion, and raising it raises its copies at once; members
may not label a derived document below its source."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inhouse.errors import PermissionDenied
from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.derived import DerivedLabels
from inhouse.kb.index.protocol import IndexStore
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import FileSource, Ingestor
from inhouse.kb.service import KnowledgeBase
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

MEMO = """# Project Kestrel

The board has agreed to offer 40 million euros for Kestrel Robotics, payable in two tranches of 20 million each.
The founders stay for two years under a retention plan worth 3 million, and the Shenzhen plant is kept open.
Due diligence by the outside counsel finishes on 15 January; the signing is planned for the first week of February.
Nobody outside the deal team may be told before the announcement, and no document about it may leave the company.
"""

LONG_POLICY = "# Security policy\n\n" + "\n\n".join(
    f"Section {i}. Servers in zone {i} are patched within {i + 2} days of a vendor advisory, and the on-call engineer "
    f"of team {i} confirms each patch in the change log before the next maintenance window opens." for i in range(60))

BOILERPLATE = "This document is the property of the company and may not be shared without permission."


def put(ing: Ingestor, col: str, name: str, text: str,
        label: Label | None = Label.INTERNAL) -> tuple[Label, str | None, str]:
    """``text`` ingested as ``name`` (by default as a wiki's page is: internal); its label, why, and its id."""
    o = ing.ingest_bytes(col, text.encode(), name, label=label)
    assert o.status in ("added", "replaced") and o.label is not None, o
    return o.label, o.marking, o.document_id or ""


def test_a_copy_an_extended_draft_and_an_excerpt_take_the_source_label(index_store: IndexStore) -> None:
    store = index_store
    board = store.create_collection("board", acl=Acl(groups=frozenset({"board"}))).id
    wiki = store.create_collection("wiki", acl=Acl()).id
    ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
    _, _, memo_id = put(ing, board, "kestrel.md", MEMO, Label.RESTRICTED)
    put(ing, board, "policy.md", LONG_POLICY, Label.CONFIDENTIAL)

    label, why, copy_id = put(ing, wiki, "notes.md", "Meeting notes\n\n" + MEMO.upper())
    assert label is Label.RESTRICTED and why == "its text repeats 100% of a restricted document"
    meta = store.get_document(copy_id).metadata
    assert meta["derived_from"] == memo_id and meta["derived_label"] == "restricted"

    draft = MEMO + "\n\n" + "\n".join(f"Open question {i}: who signs the annex for region {i}?" for i in range(12))
    assert put(ing, wiki, "draft.md", draft)[:2] == (Label.RESTRICTED, "its text repeats 100% of a restricted document")

    # Three of the long policy's sixty sections, with a line around them: most of this text is the policy's.
    excerpt = "Forwarded from the security team:\n\n" + "\n\n".join(LONG_POLICY.split("\n\n")[10:13])
    label, why, _ = put(ing, wiki, "fwd.md", excerpt)
    assert label is Label.CONFIDENTIAL and why is not None and why.endswith("of its text is taken from a confidential "
                                                                             "document")


def test_chinese_text_is_matched_by_characters(index_store: IndexStore) -> None:
    store = index_store
    secret = ("董事会同意以四千万欧元收购红隼机器人公司，分两期支付，每期两千万欧元。"
              "创始人在留任计划下留任两年，深圳工厂继续运营。"
              "外部律师的尽职调查于一月十五日完成，签约计划在二月第一周进行。公告前不得告知交易团队以外的任何人。")
    col = store.create_collection("docs", acl=Acl()).id
    ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
    put(ing, col, "并购.md", secret, Label.CONFIDENTIAL)
    label, why, _ = put(ing, col, "周报.md", "# 本周工作\n\n" + secret[:70] + "\n\n其余事项按计划推进。")
    assert label is Label.CONFIDENTIAL and why is not None


def test_a_shared_sentence_or_a_lower_label_is_not_a_source(index_store: IndexStore) -> None:
    store = index_store
    col = store.create_collection("docs", acl=Acl()).id
    ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
    put(ing, col, "kestrel.md", MEMO + "\n" + BOILERPLATE, Label.RESTRICTED)
    put(ing, col, "handbook.md", LONG_POLICY, Label.INTERNAL)
    # The same disclaimer and a few words of the memo: not a copy.
    label, why, _ = put(ing, col, "menu.md", f"# Canteen\n\nSoup on Fridays. The board has agreed.\n\n{BOILERPLATE}")
    assert (label, why) == (Label.INTERNAL, None)
    # A copy of the internal handbook keeps the label it is given: only confidential and restricted text is a source.
    assert put(ing, col, "handbook-copy.md", "Copy\n\n" + LONG_POLICY, Label.PUBLIC)[:2] == (Label.PUBLIC, None)
    # A restricted document's new version is not derived from its old one.
    assert put(ing, col, "kestrel.md", MEMO.replace("40 million", "45 million"), None)[:2] == (Label.RESTRICTED, None)


def test_the_source_as_labelled_at_each_ingestion_and_earlier_files_of_the_same_run(index_store: IndexStore) -> None:
    store = index_store
    col = store.create_collection("docs", acl=Acl()).id
    ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
    _, _, memo_id = put(ing, col, "kestrel.md", MEMO, Label.RESTRICTED)
    store.relabel(memo_id, label=Label.INTERNAL)  # declassified after the announcement
    assert put(ing, col, "press.md", "Press release\n\n" + MEMO)[:2] == (Label.INTERNAL, None)
    store.relabel(memo_id, label=Label.CONFIDENTIAL)
    assert put(ing, col, "press2.md", "Press release 2\n\n" + MEMO)[0] is Label.CONFIDENTIAL
    # One run: the first file is confidential by its own marking, the second is a copy of it without the marking.
    report = ing.ingest(col, [FileSource("a/policy.md", lambda: ("CONFIDENTIAL\n\n" + LONG_POLICY).encode(),
                                         "policy.md"),
                              FileSource("b/copy.md", LONG_POLICY.encode, "copy.md")], label=Label.INTERNAL)
    assert [(o.source_path, o.label) for o in report.outcomes] == [("a/policy.md", Label.INTERNAL),
                                                                    ("b/copy.md", Label.INTERNAL)]
    policy = store.find_document(col, source_path="a/policy.md")
    assert policy is not None
    store.relabel(policy.id, label=Label.CONFIDENTIAL)
    again = ing.ingest(col, [FileSource("c/policy.md", lambda: (LONG_POLICY + "\nEnd.").encode(), "policy.md"),
                             FileSource("d/copy.md", lambda: (LONG_POLICY + "\nThe end.").encode(), "copy.md")],
                       label=Label.INTERNAL)
    assert [(o.label, o.derived_from) for o in again.outcomes] == [(Label.CONFIDENTIAL, policy.id)] * 2


def test_members_may_not_label_a_derived_document_below_its_source(tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        kb = KnowledgeBase(store, FakeEmbedder())
        admin = Actor("key_admin", "admin", role="admin")
        member = Actor("key_m", "member", groups=frozenset({"staff"}))
        kb.create_collection(admin, "docs", groups=["staff"])
        kb.add_document(admin, "docs", MEMO.encode(), "kestrel.md", label="confidential")
        copy = kb.add_document(member, "docs", ("Notes\n\n" + MEMO).encode(), "notes.md", label="internal")
        assert copy.label is Label.CONFIDENTIAL and copy.derived_from is not None
        with pytest.raises(PermissionDenied, match="taken from a confidential document"):
            kb.relabel(member, copy.document_id or "", label="internal")
        assert kb.relabel(admin, copy.document_id or "", label="internal").document.label is Label.INTERNAL
    finally:
        store.close()


def test_a_source_raised_later_takes_its_copies_along(index_store: IndexStore) -> None:
    """The board memo is confidential when it is pasted around; labelled restricted later, its copies follow: the one
    raised at ingestion, the one ingested at its label (never compared), a draft in a collection the member who
    raised it cannot see, and a copy of the long policy spread over many chunks; a page quoting one sentence and
    the policy's copy under a lowered source do not."""
    kb = KnowledgeBase(index_store, FakeEmbedder())
    admin = Actor("key_admin", "admin", role="admin")
    member = Actor("key_m", "member", groups=frozenset({"staff"}))
    kb.create_collection(admin, "board", groups=["staff"])
    kb.create_collection(admin, "wiki", groups=["staff"])
    kb.create_collection(admin, "finance", groups=["finance"])
    memo = kb.add_document(admin, "board", MEMO.encode(), "kestrel.md", label="confidential").document_id or ""
    raised_then = kb.add_document(member, "wiki", ("Notes\n\n" + MEMO).encode(), "notes.md", label="internal")
    assert raised_then.label is Label.CONFIDENTIAL and raised_then.derived_from == memo
    same_label = kb.add_document(member, "wiki", ("Copy\n\n" + MEMO).encode(), "copy.md", label="confidential")
    assert same_label.derived_from is None  # nothing above confidential to compare with then
    draft = kb.add_document(admin, "finance", (MEMO.replace("40 million", "42 million") + "\nDraft 3.").encode(),
                            "draft.md", label="internal")
    lunch = "# Lunch\n\nThe canteen opens at noon. " + MEMO.splitlines()[2]
    quote = kb.add_document(member, "wiki", lunch.encode(), "lunch.md", label="internal")
    policy = kb.add_document(admin, "board", LONG_POLICY.encode(), "policy.md", label="internal").document_id or ""
    policy_copy = kb.add_document(member, "wiki", ("Ops handbook\n\n" + LONG_POLICY).encode(), "ops.md",
                                  label="internal")

    done = kb.relabel(member, memo, label="restricted")
    assert done.document.label is Label.RESTRICTED
    raised = {c.document.id: c for c in done.raised_copies}
    assert set(raised) == {raised_then.document_id, same_label.document_id, draft.document_id}
    for doc_id, c in raised.items():
        assert c.derived_from == memo and c.marked.label is Label.RESTRICTED
        meta = index_store.get_document(doc_id).metadata
        assert index_store.get_document(doc_id).label is Label.RESTRICTED and meta["derived_from"] == memo
        assert meta["derived_label"] == "restricted"
    assert index_store.get_document(quote.document_id or "").label is Label.INTERNAL
    # The member (cleared for confidential) no longer finds the deal in any copy, only the one quoted sentence.
    found = {h.chunk.document_id for h in kb.search(member, "Kestrel Robotics 40 million tranches")
             if "Kestrel" in h.chunk.content}
    assert found == {quote.document_id}

    # Lowering a label raises nothing; raising a source spread over many chunks finds its copy.
    assert kb.relabel(admin, memo, label="internal").raised_copies == []
    done = kb.relabel(admin, policy, label="confidential")
    assert [(c.document.id, c.marked.label) for c in done.raised_copies] == [
        (policy_copy.document_id, Label.CONFIDENTIAL)]
    assert kb.relabel(admin, policy, label="confidential").raised_copies == []  # unchanged: nothing to do


CONTRACT = "# Supply contract\n\n" + "\n\n".join(
    f"Clause {i}. The supplier delivers batch {i} of the sensor modules to warehouse {i % 9} within {i % 30 + 5} "
    f"days of the order, and the buyer pays invoice {i} within {i % 45 + 15} days of receiving the goods."
    for i in range(500))


def test_a_passage_of_a_long_source_is_found_through_its_vectors(index_store: IndexStore) -> None:
    """Three clauses of a 500-clause contract forwarded in a short mail: most of the mail, a sliver of the contract,
    too few of its phrases for the 256-phrase sample (about 1 sampled phrase expected). The mail's chunk vectors lead
    to the contract, compared with all of its phrases: raised at ingestion, and when the contract is raised later.
    One clause quoted (under 40 phrases) is not."""
    kb = KnowledgeBase(index_store, FakeEmbedder())
    admin = Actor("key_admin", "admin", role="admin")
    kb.create_collection(admin, "legal")
    kb.create_collection(admin, "mail")
    contract = kb.add_document(admin, "legal", CONTRACT.encode(), "contract.md", label="restricted").document_id or ""
    clauses = CONTRACT.split("\n\n")
    mail = "Hi team,\n\nhere is what we agreed:\n\n" + "\n\n".join(clauses[200:203]) + "\n\nThanks"
    derived = DerivedLabels()
    derived.refresh(index_store)
    chunks = [mail]
    assert derived.match(chunks, Label.INTERNAL) is None  # the sample alone cannot see it
    forwarded = kb.add_document(admin, "mail", mail.encode(), "forward.eml.md", label="internal")
    assert forwarded.label is Label.RESTRICTED and forwarded.derived_from == contract
    assert forwarded.marking is not None and "of its text is taken from a restricted document" in forwarded.marking
    one = kb.add_document(admin, "mail", ("Quick note: " + clauses[300]).encode(), "note.md", label="internal")
    assert one.label is Label.INTERNAL and one.derived_from is None
    # Labelled internal first (before anyone marked the contract), then the contract is raised: the mail follows.
    kb.relabel(admin, contract, label="internal")
    kb.relabel(admin, forwarded.document_id or "", label="internal")
    done = kb.relabel(admin, contract, label="restricted")
    assert [c.document.id for c in done.raised_copies] == [forwarded.document_id]


def test_uploads_on_several_threads_share_one_instance(tmp_path: Path) -> None:
    """The server ingests uploads on a thread pool with one Ingestor: comparisons, refreshes and sources relabelled
    meanwhile never break a comparison, and each one sees a source it should."""
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        col = store.create_collection("docs", acl=Acl()).id
        derived = DerivedLabels()
        ing = Ingestor(store, FakeEmbedder(), derived=derived)
        ids = [put(ing, col, f"src{i}.md", f"# Source {i}\n\n" + MEMO.replace("40", str(40 + i)), Label.RESTRICTED)[2]
               for i in range(6)]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for k in range(15):
                    if n == 0:
                        store.relabel(ids[k % 6], label=Label.RESTRICTED if k % 2 else Label.CONFIDENTIAL)
                    derived.refresh(store)
                    found = derived.match(["Copy\n\n" + MEMO], Label.INTERNAL)
                    assert found is not None and found.label >= Label.CONFIDENTIAL
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    finally:
        store.close()


def test_a_review_finds_copies_ingested_before_their_source_was_labelled(tmp_path: Path) -> None:
    """The wiki page was pasted from the memo while the memo was still internal; the memo is restricted now. The
    review lists the page (a dry run changes nothing), --apply raises it with its source, and a second review finds
    nothing. Copies of the page in the same review count its new label."""
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        kb = KnowledgeBase(store, FakeEmbedder())
        admin = Actor("key_admin", "admin", role="admin")
        for name in ("board", "wiki"):
            kb.create_collection(admin, name)
        memo = kb.add_document(admin, "board", MEMO.encode(), "kestrel.md", label="internal")
        page = kb.add_document(admin, "wiki", ("Notes\n\n" + MEMO).encode(), "notes.md", label="internal")
        menu = kb.add_document(admin, "wiki", f"# Canteen\n\nSoup on Fridays.\n\n{BOILERPLATE}".encode(), "menu.md",
                               label="internal")
        assert page.label is Label.INTERNAL and page.derived_from is None  # nothing above it then
        store.relabel(memo.document_id or "", label=Label.RESTRICTED)
        listed = kb.review_markings(admin, "wiki")
        assert [(r.document.source_path, r.marked.label, r.derived_from) for r in listed] == [
            ("notes.md", Label.RESTRICTED, memo.document_id)]
        assert listed[0].marked.reason == "its text repeats 100% of a restricted document"
        assert store.get_document(page.document_id or "").label is Label.INTERNAL  # a dry run changes nothing
        kb.review_markings(admin, "wiki", apply=True)
        raised = store.get_document(page.document_id or "")
        assert raised.label is Label.RESTRICTED and raised.metadata["derived_from"] == memo.document_id
        assert store.get_document(menu.document_id or "").label is Label.INTERNAL
        assert kb.review_markings(admin, "wiki") == []
    finally:
        store.close()


def test_the_sources_are_listed_only_when_a_comparison_needs_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One listing query per ingestion that compares something; none when every document is restricted (nothing can
    be above it) or unchanged."""
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        col = store.create_collection("docs", acl=Acl()).id
        ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
        calls: list[Label] = []
        listing = store.document_labels
        monkeypatch.setattr(store, "document_labels", lambda at_least: calls.append(at_least) or listing(at_least))
        put(ing, col, "kestrel.md", MEMO, Label.RESTRICTED)
        assert calls == []
        assert ing.ingest_bytes(col, MEMO.encode(), "kestrel-again.md").status == "unchanged" and calls == []
        assert put(ing, col, "notes.md", "Notes\n\n" + MEMO)[0] is Label.RESTRICTED
        assert calls == [Label.CONFIDENTIAL]
    finally:
        store.close()


FAQ = """# Customer Support FAQ

## Orders and delivery

How long does delivery take? Standard delivery within mainland China takes 3 to 5 working days. Express delivery
(1 to 2 working days) costs an extra 45 CNY. International orders ship within 7 working days.

## Returns and refunds

Products can be returned within 30 days of delivery if they are unused and in the original packaging. Refunds are
issued to the original payment method within 7 working days after the returned goods arrive at our warehouse.

## Support hours

Phone support is available Monday to Friday, 08:30 to 18:00 China Standard Time. Email support answers within 1
working day, and the assistant hands the conversation to a human agent when the customer asks for one.
"""

LEAVE = """# Leave policy

Every employee has 15 working days of paid annual leave, plus one day for each full year of service up to 20 days.
Leave is requested in the HR portal at least two weeks ahead and approved by the line manager within three days.
Unused leave may be carried over to the next year up to 5 days and expires at the end of March.
Sick leave needs a doctor's note from the third day on, and parental leave follows the local regulations.
"""

BANDS = "\n".join(
    f"Band P{i}: the {role} band pays an annual base salary from {180 + 60 * i},000 to {240 + 70 * i},000 CNY, "
    f"with a merit budget of {3 + i * 0.5}% and a bonus target of {5 + 2 * i}% of the base."
    for i, role in enumerate(("junior engineer", "engineer", "senior engineer", "staff engineer", "principal")))


def test_text_readable_at_its_label_already_is_not_taken_from_a_compilation(
        index_store: IndexStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binder holding the public FAQ, the internal leave and security policies and the salary bands is
    confidential, and so is the FAQ annotated with the agents' notes (mostly the FAQ). Edited copies of the FAQ and
    of the leave policy, and the FAQ and the policy edited in place, were not taken from them: their text was
    readable at their label before. The bands, which are nowhere below, still raise a wiki page that pastes them,
    and a page mixing a section of the FAQ with the bands. Only a text a source matched looks for what is readable
    below."""
    store = index_store
    support, hr, archive, branch, wiki = (store.create_collection(n, acl=Acl()).id
                                          for n in ("support", "hr", "archive", "branch", "wiki"))
    ing = Ingestor(store, FakeEmbedder(), derived=DerivedLabels())
    put(ing, support, "faq.md", FAQ, Label.PUBLIC)
    put(ing, hr, "leave.md", LEAVE, Label.INTERNAL)
    put(ing, hr, "security.md", LONG_POLICY, Label.INTERNAL)
    everything = f"# Everything\n\n{FAQ}\n\n{LEAVE}\n\n{LONG_POLICY}\n\n# Pay\n\n{BANDS}"
    _, _, binder = put(ing, archive, "binder.md", everything, Label.CONFIDENTIAL)
    notes = ("\n\n## Agents only\n\nGoodwill refunds up to 300 CNY need no approval; above that the team lead "
             "decides. Customers who threaten to go to the press are passed to the PR desk at once.")
    put(ing, support, "faq-annotated.md", FAQ + notes, Label.CONFIDENTIAL)
    searched_below: list[object] = []
    search = store.vector_search
    monkeypatch.setattr(store, "vector_search", lambda scope, vector, filters, limit: (
        searched_below.append(filters) if filters.labels is not None else None) or search(scope, vector, filters,
                                                                                         limit))
    # Nothing a source matches: nothing readable below is looked for.
    assert put(ing, wiki, "menu.md", "# Canteen\n\nSoup on Fridays, noodles on Mondays.")[:2] == (Label.INTERNAL, None)
    assert searched_below == []

    branch_faq = "# FAQ for the Shenzhen branch\n\nNote: call desk 1004 for local questions.\n\n" + FAQ
    assert put(ing, branch, "faq.md", branch_faq, Label.PUBLIC)[:2] == (Label.PUBLIC, None)
    assert searched_below
    branch_leave = LEAVE + "\nLocal addendum: the branch office keeps its own copy of this policy."
    assert put(ing, branch, "leave.md", branch_leave, Label.INTERNAL)[:2] == (Label.INTERNAL, None)
    edited = FAQ.replace("3 to 5 working days", "2 to 4 working days") + "\nUpdated for the 2027 season."
    assert put(ing, support, "faq.md", edited, Label.PUBLIC)[:2] == (Label.PUBLIC, None)
    for year in (2027, 2028):  # edited again and again: each version stored after the binder holds a small part of it
        edited = LEAVE.replace("15 working days", f"{year - 2011} working days") + f"\nValid from {year}."
        assert put(ing, hr, "leave.md", edited, Label.INTERNAL)[:2] == (Label.INTERNAL, None)

    label, why, page = put(ing, wiki, "team-notes.md", f"# Team notes, week 49\n\nFrom the HR call:\n\n{BANDS}")
    assert (label, store.get_document(page).metadata["derived_from"]) == (Label.CONFIDENTIAL, binder), why
    hours = FAQ.split("## ")[-1]
    mixed = f"# Welcome pack\n\n## {hours}\n## What you earn\n\n{BANDS}"
    assert put(ing, branch, "welcome.md", mixed, Label.PUBLIC)[0] is Label.CONFIDENTIAL


def test_a_review_judges_copies_where_they_stand(index_store: IndexStore) -> None:
    """Two wiki pages that forwarded the same three sections of the security policy while it was internal, the
    policy labelled confidential since (not by a relabel that raises its copies): the review lists both, though
    each holds the other's excerpt (and its own text) at their label."""
    kb = KnowledgeBase(index_store, FakeEmbedder())
    admin = Actor("key_admin", "admin", role="admin")
    for name in ("it", "wiki"):
        kb.create_collection(admin, name)
    policy = kb.add_document(admin, "it", LONG_POLICY.encode(), "security.md", label="internal").document_id or ""
    excerpt = "\n\n".join(LONG_POLICY.split("\n\n")[10:13])
    pages = [kb.add_document(admin, "wiki", f"Forwarded by team {i}:\n\n{excerpt}".encode(), f"fwd{i}.md",
                             label="internal") for i in range(2)]
    index_store.relabel(policy, label=Label.CONFIDENTIAL)
    listed = kb.review_markings(admin, "wiki")
    assert sorted((r.document.id, r.marked.label, r.derived_from) for r in listed) == sorted(
        (p.document_id, Label.CONFIDENTIAL, policy) for p in pages)
