"""The QA scorer: key facts in answers of any script, and the evaluation's per-direction summary."""

from __future__ import annotations

import pytest

from inhouse.kb.evaluate import key_fact_present, whole_word_present


@pytest.mark.parametrize(("answer", "fact"), [
    ("休息日加班优先安排调休，无法调休的按 2 倍工资计算。[1]", "调休"),  # mid-sentence, Han on both sides
    ("答案是no。", "no"),  # a Latin word touching Han characters
    ("No, confidential information must never be pasted [1]", "no"),
    ("ในกรณีนี้ไม่ได้", "ไม่"),  # Thai: no spaces between words either
    ("有給休暇は取れます", "休暇"),
    ("Нет, нельзя.", "нет"),
])
def test_short_facts_found_in_any_script(answer: str, fact: str) -> None:
    assert key_fact_present(answer, fact)


@pytest.mark.parametrize(("answer", "fact"), [
    ("It is not allowed.", "no"),  # inside a longer Latin word
    ("Nobody knows.", "no"),
    ("按 2 倍工资计算。", "调休"),
    ("The documents do not cover this.", "no"),
    ("文档中没有涉及这个问题。", "没有"),  # the not-covered answer never states a fact
])
def test_short_facts_not_found_where_absent(answer: str, fact: str) -> None:
    assert not key_fact_present(answer, fact)


def test_a_range_written_with_either_word_for_to() -> None:
    assert key_fact_present("核心工作时间是10:00到16:00。", "10:00 至 16:00")
    assert key_fact_present("10:00 至 16:00", "10:00到16:00")
    assert not key_fact_present("核心工作时间是10:00到15:00。", "10:00 至 16:00")


def test_alternative_facts_any_one_counts() -> None:
    assert key_fact_present("Weekend overtime is paid at twice the wage [1].", ["2 倍", "twice", "double"])
    assert not key_fact_present("It is paid at 1.5 times [1].", ["2 倍", "twice", "double"])


def test_whole_word_edges() -> None:
    assert whole_word_present("no", "no") and not whole_word_present("", "no") and not whole_word_present("no", "")
    assert whole_word_present("x no", "NO")  # case-insensitive
    assert not whole_word_present("nono", "no")


def test_summary_by_direction_and_language() -> None:
    from inhouse.kb.evaluate import EvalReport, QuestionResult

    rep = EvalReport([
        QuestionResult("a", True, "zh/h.pdf", ["zh/h.pdf"], 0.9, lang="en", source_lang="zh", answer="1.5",
                       correct=True),
        QuestionResult("b", True, "hr/l.md", ["x.md"], 0.9, lang="zh", source_lang="en", answer="?", correct=False),
        QuestionResult("c", True, "hr/l.md", ["hr/l.md"], 0.9, lang="en"),
        QuestionResult("u", False, "", [], 0.8, lang="zh", answer="文档中没有涉及这个问题。"),
        QuestionResult("v", False, "", [], 0.8, lang="en", answer="It is 5."),
    ])
    s = rep.summary()
    assert s["recall_at_5_by_direction"] == {"en→en": 1.0, "en→zh": 1.0, "zh→en": 0.0}
    assert s["answer_accuracy_by_direction"] == {"en→zh": 1.0, "zh→en": 0.0}
    assert s["not_covered_by_lang"] == {"en": 0.0, "zh": 1.0}
    assert s["misses"] == ["b"] and s["wrong"] == ["b"]
