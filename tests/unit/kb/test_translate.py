"""Question translation for cross-lingual retrieval: the request, the checks on the model's output, the cache."""

from __future__ import annotations

import asyncio

from scripted import ReplyChat as Chat
from tinyindex import put_texts

from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.answer import Answerer, build_messages
from inhouse.kb.index.protocol import StoredChunk
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Hit, Retriever
from inhouse.kb.translate import QueryTranslator, clean_translation, is_chinese, translation_request
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor


def test_the_request_names_the_other_language_and_forbids_answering() -> None:
    zh = translation_request("公司 VPN 用哪个端口?")[-1]["content"]
    en = translation_request("Which port does the VPN use?")[-1]["content"]
    assert "into English" in zh and "into Simplified Chinese" in en and "Do not answer" in en
    assert is_chinese("X200 控制器保修多久?") and not is_chinese("How long is the X200 warranty (保修)?")


def test_only_a_real_translation_is_used() -> None:
    q = "How many days of annual leave after 3 years?"
    assert clean_translation(q, "“工作满 3 年有多少天年假？”\nextra") == "工作满 3 年有多少天年假？"
    assert clean_translation(q, "") is None
    assert clean_translation(q, q) is None
    assert clean_translation(q, "Employees get 18 days.") is None  # still English: an answer, not a translation
    assert clean_translation(q, "年假" * 200) is None  # runaway output


def test_translations_are_cached_and_need_a_local_model() -> None:
    chat = Chat(["工作满三年有几天年假？"])
    tr = QueryTranslator(chat)  # type: ignore[arg-type]
    q = "How many days of annual leave after 3 years?"
    assert asyncio.run(tr.translate(q, model="m")) == "工作满三年有几天年假？"
    assert asyncio.run(tr.translate(q, model="m")) == "工作满三年有几天年假？"  # no second model call
    assert len(chat.bodies) == 1 and chat.bodies[0]["temperature"] == 0.0
    assert asyncio.run(QueryTranslator(Chat([], local=False)).translate(q, model="ext")) is None  # type: ignore[arg-type]


def test_grounding_searches_the_translation_and_keeps_the_answer_in_english() -> None:
    store = SqliteIndexStore(":memory:", dim=384)
    try:
        col = store.create_collection("c", acl=Acl()).id
        put_texts(store, col, "handbook.zh.md", ["工作日加班按 1.5 倍工资计算"], FakeEmbedder())
        chat = Chat(["工作日加班工资"])
        emb = FakeEmbedder()
        ans = Answerer(Retriever(store, emb), chat, min_similarity=0.0, translate=True)  # type: ignore[arg-type]
        g = asyncio.run(ans.ground_async(Actor("key_a", "a", role="admin"), "overtime pay on workdays", model="m"))
        assert g.translation == "工作日加班工资" and g.hits[0].chunk.source_path == "handbook.zh.md"
        assert g.messages[-1]["content"].endswith("(Answer in English.)")
        off = Answerer(Retriever(store, FakeEmbedder()), Chat([]), min_similarity=0.0)  # type: ignore[arg-type]
        plain = asyncio.run(off.ground_async(Actor("key_a", "a", role="admin"), "overtime", model="m"))
        assert plain.translation is None
    finally:
        store.close()


def _hit(text: str) -> Hit:
    return Hit(StoredChunk("chk_1", "doc_1", "col_x", 0, text, text, "", None, None, "T", "t.md", Label.INTERNAL), 1.0)


def test_a_chinese_question_gets_no_english_instruction() -> None:
    zh = build_messages("加班工资怎么算?", [_hit("工作日加班按 1.5 倍工资计算")])[-1]["content"]
    assert zh.endswith("（请用中文回答。）")
    assert not build_messages("What is the overtime rate?", [_hit("1.5 times")])[-1]["content"].endswith(")")


def test_the_wordings_apart_are_what_separate_searches_give() -> None:
    """A translated question's grounding needs both wordings together, the question alone and the translation alone:
    ``retrieve_apart`` searches each wording once and gives exactly what three calls would."""
    store = SqliteIndexStore(":memory:", dim=384)
    try:
        col = store.create_collection("c", acl=Acl()).id
        emb = FakeEmbedder()
        zh = ["工作日加班按 1.5 倍工资计算", "每位员工每年享有 3000 元的外部培训预算"]
        put_texts(store, col, "handbook.zh.md", zh,
                  emb)
        put_texts(store, col, "policy.md", ["Overtime on a workday is paid at 1.5 times.", "Training needs approval."],
                  emb)
        put_texts(store, col, "sketch.md", ["def overtime(hours): return hours * 1.5"], emb)
        r = Retriever(store, emb, search_threads=0)
        actor = Actor("key_a", "a", role="admin")
        q, t, code = "overtime pay on workdays", "工作日加班工资", "overtime(hours)"

        def ids(found: tuple[list[Hit], float]) -> tuple[list[str], float]:
            return [h.chunk.id for h in found[0]], found[1]

        together, alone, other = r.retrieve_apart(actor, q, top_k=3, alternates=[t], expansions=[code])
        assert ids(together) == ids(r.retrieve_scored(actor, q, top_k=3, alternates=[t], expansions=[code]))
        assert ids(alone) == ids(r.retrieve_scored(actor, q, top_k=3, expansions=[code]))
        assert ids(other) == ids(r.retrieve_scored(actor, t, top_k=3, expansions=[code]))
        assert len(r.retrieve_apart(actor, q, top_k=3, apart=False)) == 1
    finally:
        store.close()
