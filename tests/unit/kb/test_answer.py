"""Grounded prompts and citations (no model: the prompt and the parsing are pure functions)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from inhouse.governance.labels import Label
from inhouse.kb.answer import (
    COVERAGE_QUESTION,
    INSTRUCTIONS,
    NOT_COVERED,
    NOT_COVERED_ZH,
    POLAR_HINT,
    POLAR_HINT_ZH,
    Answerer,
    Grounding,
    build_messages,
    cited,
    is_negative,
    is_not_covered,
    is_polar,
)
from inhouse.kb.index.protocol import StoredChunk
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Hit, Retriever
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor


class ScriptedChat:
    """Duck-typed ChatService: records each prompt's last message, replies from a script (check, then answer)."""

    def __init__(self, replies: list[str], *, local: bool = True, judges: bool = True) -> None:
        self.replies, self.local, self.prompts = list(replies), local, []  # type: ignore[var-annotated]
        self.judges = judges

    def serves(self, model: str) -> bool:
        return self.local

    def judges_coverage(self, model: str) -> bool:
        return self.judges

    def prepare_chat(self, body: dict, *, cache_owner: str | None = None) -> dict:  # type: ignore[type-arg]
        self.prompts.append(body["messages"][-1]["content"])
        return body

    async def complete(self, prepared: dict) -> SimpleNamespace:  # type: ignore[type-arg]
        return SimpleNamespace(text=self.replies.pop(0), model=prepared["model"], usage=None)


def grounding(question: str) -> Grounding:
    hits = [hit(1, "The X300 accepts 48 V input.")]
    return Grounding(question, hits, 0.9, True, build_messages(question, hits))


def run(chat: ScriptedChat, question: str) -> str:
    answerer = Answerer(Retriever(SqliteIndexStore(":memory:", dim=384), FakeEmbedder()), chat,  # type: ignore[arg-type]
                        coverage_check=True)
    return asyncio.run(answerer.complete(grounding(question), model="m")).text


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


def test_coverage_check_no_gives_not_covered_in_the_language_of_the_question() -> None:
    chat = ScriptedChat(["No."])
    assert run(chat, "What is the maximum input voltage of the X900?") == NOT_COVERED
    # One model call: the answer prompt plus the check sentence (so the answer would reuse its cached prefix).
    assert len(chat.prompts) == 1 and chat.prompts[0].endswith(COVERAGE_QUESTION)
    assert run(ScriptedChat(["否"]), "X900 的最大输入电压是多少?") == NOT_COVERED_ZH


def test_coverage_check_yes_then_the_answer_shares_the_prompt_prefix() -> None:
    chat = ScriptedChat(["Yes. The", "It accepts 48 V [1]."])
    assert run(chat, "What input does the X300 accept?") == "It accepts 48 V [1]."
    check, answer = chat.prompts
    assert check == answer + COVERAGE_QUESTION


def test_a_yes_no_question_skips_the_check_and_is_told_to_read_first() -> None:
    # Asked "yes or no?", the model answers the question itself ("No."): no check; the answer prompt asks the model to
    # say what the passages state before its yes or no.
    chat = ScriptedChat(["No, it may not [1]."])
    assert run(chat, "May confidential data be pasted into a public chatbot?") == "No, it may not [1]."
    assert len(chat.prompts) == 1 and chat.prompts[0].endswith(POLAR_HINT)
    chinese = ScriptedChat(["文档中没有涉及这个问题。"])
    assert run(chinese, "公司允许员工带狗来上班吗?") == "文档中没有涉及这个问题。"
    assert chinese.prompts[0].endswith(POLAR_HINT_ZH)
    plain = ScriptedChat(["Yes. The", "It accepts 48 V [1]."])
    run(plain, "What input does the X300 accept?")
    assert not any(POLAR_HINT in p for p in plain.prompts)
    external = ScriptedChat(["It accepts 48 V [1]."], local=False)
    run(external, "What input does the X300 accept?")
    assert not any(p.endswith(COVERAGE_QUESTION) for p in external.prompts)


def test_coverage_check_skipped_for_a_model_whose_no_is_unreliable() -> None:
    # Qwen2.5-Coder-0.5B said "no" to 25 of 28 answerable questions: its check is skipped, the model answers.
    chat = ScriptedChat(["It accepts 48 V [1]."], judges=False)
    assert run(chat, "What input does the X300 accept?") == "It accepts 48 V [1]."
    assert len(chat.prompts) == 1 and not chat.prompts[0].endswith(COVERAGE_QUESTION)


EN_Q = "How much is the training budget per employee?"
ZH_T = "每位员工的培训预算是多少？"


def bilingual(question: str = EN_Q) -> Grounding:
    """A question with a translation: its own (English) passages, the translation's (Chinese) ones, both mixed."""
    own = [hit(1, "Training requests go through the HR portal."), hit(2, "Courses need a manager's approval.")]
    other = [hit(3, "每位员工每年享有 3000 元的外部培训预算。")]
    g = Grounding(question, own, 0.85, True, build_messages(question, own), translation=ZH_T,
                  mixed=[own[0], other[0], own[1]])
    g.alternate = Grounding(ZH_T, other, 0.9, True, build_messages(ZH_T, other), retrieved=other)
    return g


def answered(chat: ScriptedChat, g: Grounding) -> tuple[str, Grounding]:
    answerer = Answerer(Retriever(SqliteIndexStore(":memory:", dim=384), FakeEmbedder()), chat,  # type: ignore[arg-type]
                        coverage_check=True)
    ans = asyncio.run(answerer.complete(g, model="m"))
    return ans.text, ans.grounding


def test_with_a_translation_each_check_is_asked_in_one_language() -> None:
    # The question's own passages fail their check; the translation's pass theirs, asked in Chinese; the answer
    # reads the Chinese passages but is asked the user's English question (and told to answer in English).
    chat = ScriptedChat(["No.", "是的", "3,000 CNY a year [1]."])
    text, g = answered(chat, bilingual())
    own_check, other_check, answer = chat.prompts
    assert own_check.endswith(f"Question: {EN_Q}" + COVERAGE_QUESTION) and "HR portal" in own_check
    assert other_check.endswith(f"Question: {ZH_T}\n（请用中文回答。）" + COVERAGE_QUESTION)
    assert "HR portal" not in other_check
    assert f"Question: {EN_Q}" in answer and answer.endswith("(Answer in English.)") and "3000" in answer
    assert text == "3,000 CNY a year [1]." and [h.chunk.id for h in g.hits] == ["chk_3"] and g.translation == ZH_T


def test_with_a_translation_a_yes_on_the_own_passages_answers_from_both_wordings() -> None:
    # The question's own passages can pass in the wrong language: the answer also reads the translation's best.
    chat = ScriptedChat(["Yes.", "3,000 CNY [2]."])
    text, g = answered(chat, bilingual())
    assert len(chat.prompts) == 2 and [h.chunk.id for h in g.hits] == ["chk_1", "chk_3", "chk_2"]
    assert text == "3,000 CNY [2]."


def test_with_a_translation_two_noes_are_not_covered() -> None:
    chat = ScriptedChat(["No.", "否"])
    text, g = answered(chat, bilingual())
    assert text == NOT_COVERED and not g.covered and g.hits == [] and len(chat.prompts) == 2
    # Below the gate in both languages: no model call at all.
    low = bilingual()
    low.covered, low.similarity, low.hits, low.messages = False, 0.5, [], []
    assert low.alternate is not None
    low.alternate.covered, low.alternate.similarity = False, 0.6
    quiet = ScriptedChat([])
    assert answered(quiet, low)[0] == NOT_COVERED and quiet.prompts == []


def test_with_a_translation_a_yes_no_question_reads_both_wordings_unchecked() -> None:
    chat = ScriptedChat(["Yes [2]."])
    text, g = answered(chat, bilingual("Is there a training budget?"))
    assert text == "Yes [2]."
    assert len(chat.prompts) == 1 and not chat.prompts[0].endswith(COVERAGE_QUESTION)
    assert [h.chunk.id for h in g.hits] == ["chk_1", "chk_3", "chk_2"]


def test_catalog_says_which_models_judge_coverage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from inhouse.chat.service import ChatService
    from inhouse.config import EngineSettings
    from inhouse.models.registry import ModelRegistry

    registry = ModelRegistry(tmp_path, lambda spec: None, 1000)  # type: ignore[arg-type,return-value]
    chat = ChatService(registry, EngineSettings())
    assert not chat.judges_coverage("qwen2.5-coder-0.5b")
    assert chat.judges_coverage("qwen2.5-coder-1.5b") and chat.judges_coverage("smollm2-135m")
    assert not chat.judges_coverage("no-such-model")


def test_polar_and_negative_verdicts() -> None:
    assert is_polar("Is the VPN mandatory?") and is_polar("可以带狗来办公室吗？") and is_polar("是否需要审批")
    assert not is_polar("How long is a VPN profile valid?") and not is_polar("公司食堂的午餐价格是多少?")
    assert not is_polar("客服热线的工作时间是什么?") and not is_polar("怎么申请年假？")  # 什么, 怎么: not 吗
    assert is_negative("No.") and is_negative(" no") and is_negative("否") and is_negative("**No**")
    assert not is_negative("Yes. The") and not is_negative("") and not is_negative("Not sure")  # unclear → answer
