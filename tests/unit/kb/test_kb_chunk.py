"""Chunking: budgets hold, structure is respected, Chinese splits at sentence ends, output is deterministic."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.kb.chunk import chunk_document, count_tokens_approx, split_sentences
from inhouse.kb.document import Block, BlockKind, ParsedDocument


def doc_of(*blocks: Block, title: str = "Handbook") -> ParsedDocument:
    return ParsedDocument(title=title, blocks=tuple(blocks), language="en", filename="h.md", mime="text/markdown")


def para(text: str, *section: str, kind: BlockKind = "paragraph", page: int | None = None) -> Block:
    return Block(kind, text, page=page, section=tuple(section))


def heading(text: str, level: int, *section: str) -> Block:
    return Block("heading", text, level=level, section=tuple(section))


def test_count_tokens_approx() -> None:
    assert count_tokens_approx("") == 0
    assert count_tokens_approx("员工手册") == 4
    assert count_tokens_approx("annual leave days") == 4  # ceil(3 * 1.3)
    assert count_tokens_approx("年假 15 days") == 2 + 3


def test_split_sentences_keeps_text_and_splits_at_chinese_and_english_ends() -> None:
    text = "第一句。第二句！第三句？“引号。”结束；Version 2.4.1 is out. Next one! Last"
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert pieces == [
        "第一句。", "第二句！", "第三句？", "“引号。”", "结束；", "Version 2.4.1 is out. ", "Next one! ", "Last"]


def test_section_path_prefix_and_headings_attach_to_content() -> None:
    doc = doc_of(
        heading("Handbook", 1),
        heading("Leave", 2, "Handbook"),
        heading("Annual leave", 3, "Handbook", "Leave"),
        para("Employees get 15 days.", "Handbook", "Leave", "Annual leave"),
    )
    [chunk] = chunk_document(doc)
    assert chunk.text == "Handbook > Leave > Annual leave\nEmployees get 15 days."
    assert chunk.content == "Employees get 15 days." and chunk.section == "Handbook > Leave > Annual leave"
    assert chunk.index == 0 and chunk.token_count == count_tokens_approx(chunk.text)


def test_title_is_prepended_when_the_path_does_not_start_with_it() -> None:
    [chunk] = chunk_document(doc_of(para("Body.", "Intro"), title="员工手册"))
    assert chunk.text == "员工手册 > Intro\nBody."
    [bare] = chunk_document(doc_of(para("Body."), title="Notes"))
    assert bare.text == "Notes\nBody." and bare.section == "Notes"


def test_small_subsections_share_a_chunk_but_top_level_sections_never_do() -> None:
    doc = doc_of(
        heading("Guide", 1),
        heading("A", 2, "Guide"), heading("A1", 3, "Guide", "A"), para("one.", "Guide", "A", "A1"),
        heading("A2", 3, "Guide", "A"), para("two.", "Guide", "A", "A2"),
        heading("B", 2, "Guide"), para("three.", "Guide", "B"),
        title="Guide",
    )
    chunks = chunk_document(doc)
    assert [c.text for c in chunks] == ["Guide > A\nA1\n\none.\n\nA2\n\ntwo.", "Guide > B\nthree."]


def test_budget_paragraph_packing_and_overlap_within_a_section() -> None:
    sentences = [f"Sentence number {i} talks about leave rules." for i in range(40)]
    doc = doc_of(para(" ".join(sentences), "Leave"), para("Other section text.", "Travel"))
    chunks = chunk_document(doc, max_tokens=64, overlap_tokens=16)
    assert all(c.token_count <= 64 for c in chunks)
    leave = [c for c in chunks if c.section == "Handbook > Leave"]
    assert len(leave) > 3 and chunks[-1].content == "Other section text."
    for prev, nxt in itertools.pairwise(leave):
        last_sentence = split_sentences(prev.content)[-1].strip()
        assert nxt.content.startswith(last_sentence)  # the overlap carries the previous chunk's last sentence
    for s in sentences:
        assert any(s in c.content for c in leave)


def test_chinese_long_paragraph_splits_at_sentence_ends_only() -> None:
    sentences = [f"第{i}条规定员工每年享有带薪年假并须提前十个工作日在系统中提交申请。" for i in range(30)]
    doc = doc_of(para("".join(sentences), "年假"))
    chunks = chunk_document(doc, max_tokens=100, overlap_tokens=0)
    assert len(chunks) > 5 and all(c.token_count <= 100 for c in chunks)
    for c in chunks:
        assert c.content.endswith("。")
    assert "".join(c.content for c in chunks) == "".join(sentences)


def test_chinese_without_punctuation_is_cut_between_characters() -> None:
    text = "字" * 1000
    chunks = chunk_document(doc_of(para(text)), max_tokens=50, overlap_tokens=0)
    assert all(c.token_count <= 50 for c in chunks)
    assert "".join(c.content for c in chunks) == text


def test_table_kept_whole_when_it_fits_else_split_by_rows_with_header() -> None:
    rows = ["City | Limit"] + [f"City{i} | {100 + i} CNY" for i in range(60)]
    small = chunk_document(doc_of(para("\n".join(rows[:4]), "Hotels", kind="table")))
    assert len(small) == 1 and small[0].kind == "table" and small[0].content == "\n".join(rows[:4])
    chunks = chunk_document(doc_of(para("\n".join(rows), "Hotels", kind="table")), max_tokens=64, overlap_tokens=16)
    assert len(chunks) > 2 and all(c.kind == "table" and c.token_count <= 64 for c in chunks)
    assert all(c.content.startswith("City | Limit\n") for c in chunks)
    body = [line for c in chunks for line in c.content.split("\n")[1:]]
    assert body == rows[1:]  # every row exactly once: no overlap inside tables


def test_pages_are_tracked_across_chunks() -> None:
    doc = doc_of(para("Page one text.", "S", page=1), para("Page two text.", "S", page=2))
    [chunk] = chunk_document(doc)
    assert (chunk.page_start, chunk.page_end) == (1, 2)


def test_headings_without_content_still_produce_chunks() -> None:
    doc = doc_of(heading("Slide one", 1), heading("Slide two", 1))
    texts = [c.text for c in chunk_document(doc)]
    assert texts == ["Handbook > Slide one\nSlide one", "Handbook > Slide two\nSlide two"]


def test_custom_token_counter_is_respected() -> None:
    doc = doc_of(para("abcdefghij " * 100, "S"))
    chunks = chunk_document(doc, max_tokens=120, count_tokens=len)
    assert all(len(c.text) <= 120 for c in chunks)


def test_bad_budget() -> None:
    with pytest.raises(ValueError):
        chunk_document(doc_of(para("x")), max_tokens=4)


_words = st.sampled_from(["leave", "policy", "年假", "员工。", "Days.", "table | row", "报销！", "x" * 30, "\n", "?"])
_blocks = st.lists(
    st.tuples(
        st.sampled_from(["paragraph", "list", "table", "code", "quote", "heading"]),
        st.lists(_words, min_size=1, max_size=120).map(" ".join),
        st.sampled_from([(), ("A",), ("A", "B"), ("C",)]),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(blocks=_blocks, max_tokens=st.integers(24, 200), overlap=st.integers(0, 40))
def test_property_budget_dense_indexes_determinism(
    blocks: list[tuple[BlockKind, str, tuple[str, ...]]], max_tokens: int, overlap: int
) -> None:
    doc = doc_of(*(Block(k, t, level=1 if k == "heading" else 0, section=s) for k, t, s in blocks))
    chunks = chunk_document(doc, max_tokens=max_tokens, overlap_tokens=overlap)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.token_count <= max_tokens and c.content.strip() for c in chunks)
    assert chunks == chunk_document(doc, max_tokens=max_tokens, overlap_tokens=overlap)


def test_a_very_deep_section_path_is_shortened_without_recounting_it_element_by_element() -> None:
    # 300 blocks, the n-th under a path n deep: shortening each path one element at a time was cubic.
    blocks = [para(f"Text {n}.", *(f"part{i}" for i in range(n))) for n in range(1, 301)]
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return count_tokens_approx(text)

    chunks = chunk_document(doc_of(*blocks), max_tokens=64, count_tokens=counting)
    assert calls < 40 * len(blocks)  # element by element: over 100 per block and growing with the depth
    kept = chunks[-1].section.split(" > ")
    first = int(kept[1].removeprefix("part"))
    assert kept == ["Handbook", *(f"part{i}" for i in range(first, first + len(kept) - 1))]  # the deepest parts
    assert count_tokens_approx(chunks[-1].section) <= 64 // 3
    longer = " > ".join(["Handbook", f"part{first - 1}", *kept[1:]])
    assert count_tokens_approx(longer) > 64 // 3  # no more than needed was dropped
