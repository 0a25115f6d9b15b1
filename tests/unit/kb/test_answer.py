"""Grounded prompts and citations (no model: the prompt and the parsing are pure functions)."""

from __future__ import annotations

import asyncio

from inhouse.governance.labels import Label
from inhouse.kb.answer import INSTRUCTIONS, NOT_COVERED, Answerer, build_messages, cited, is_not_covered
from inhouse.kb.index.protocol import StoredChunk
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Hit, Retriever
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor


def hit(n: int, text: str) -> Hit:
    c = StoredChunk(f"chk_{n}", f"doc_{n}", "col_x", 0, text, text, "Leave > Annual", 3, 3, f"Title {n}", f"p{n}.md",
                    Label.INTERNAL)
    return Hit(c, 1.0 / (60 + n))


def test_prompt_order_fixed_prefix_then_context_then_question() -> None:
    a = build_messages("How many days?", [hit(1, "18 days"), hit(2, "5 days carry over")])
    b = build_messages("Other question?", [hit(3, "other")])
    assert a[0] == b[0] == {"role": "system", "content": INSTRUCTIONS}  # byte-identical: a cacheable prefix
    user = a[-1]["content"]
    assert user.index("[1] Title 1 > Leave > Annual (page 3)") < user.index("[2]") < user.index("Question: How many")
    with_history = build_messages("q", [hit(1, "x")], history=[{"role": "user", "content": "earlier"}])
    assert [m["role"] for m in with_history] == ["system", "user", "user"]


def test_citations_map_numbers_to_chunks() -> None:
    hits = [hit(1, "a"), hit(2, "b"), hit(3, "c")]
    cs = cited("It is 18 days [2], see also [1][2] and [9].", hits)
    assert [(c.n, c.chunk_id) for c in cs] == [(2, "chk_2"), (1, "chk_1")]
    assert cs[0].page_start == 3 and cs[0].section == "Leave > Annual" and cs[0].document_id == "doc_2"


def test_not_covered_recognised() -> None:
    assert is_not_covered(NOT_COVERED) and is_not_covered("The documents do not cover this")
    assert is_not_covered("The provided passages do not contain that information.")
    assert is_not_covered("文档中没有涉及这个问题。") and is_not_covered("")
    assert not is_not_covered("Employees get 18 days [1].")


def test_below_the_similarity_gate_no_model_is_asked() -> None:
    store = SqliteIndexStore(":memory:", dim=384)
    try:
        ans = Answerer(Retriever(store, FakeEmbedder()), chat=None, min_similarity=0.5)
        out = asyncio.run(ans.answer(Actor("key_a", "a", role="admin"), "anything at all", model="m"))
        assert out.text == NOT_COVERED and out.citations == [] and not out.grounding.covered
    finally:
        store.close()


def test_key_fact_scoring() -> None:
    from inhouse.kb.evaluate import key_fact_present

    assert key_fact_present("It is 1200 cny [1]", "1,200 CNY")
    assert key_fact_present("Employees may carry over at most 5 unused days [1]", "5 days")
    assert key_fact_present("No, confidential information must never be pasted [1]", "no")
    assert not key_fact_present("The documents do not cover this.", "no")
    assert not key_fact_present("It is 18 days", "20 weeks")
    assert key_fact_present("工作日加班按 1.5 倍工资计算。[1]", "1.5 倍")
