"""A remembered answer is found again wherever it comes back: any role, a tool result, inside a longer message."""

from __future__ import annotations

import json

from inhouse.governance.answer_labels import WINDOW, AnswerLabels
from inhouse.governance.labels import Label
from inhouse.store.answer_labels import SqlAnswerLabels
from inhouse.store.sqlite.database import Database

ANSWER = ("Band E5 pays 41,000 to 52,000 CNY a month and band E6 55,000 to 68,000 CNY a month "
          "(ref CANARY-FIN-SB2027-7Q4) [1].")
ANSWER_ZH = "E5职级月薪41000至52000元，E6职级月薪55000至68000元，参考编号CANARY-FIN-7Q4，请勿外传。"


def found(answers: AnswerLabels, *messages: dict[str, object]) -> list[Label]:
    return answers({"messages": list(messages)})


def test_a_pasted_answer_keeps_its_label_whatever_the_role(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    answers.remember([ANSWER, ANSWER_ZH], Label.CONFIDENTIAL)
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "ask_inhouse", "arguments": "{}"}}]}
    for messages in (
        [{"role": "user", "content": ANSWER}],
        [{"role": "user", "content": "Make this shorter for the all-hands slide:\n\n" + ANSWER}],
        [{"role": "system", "content": "Context from our assistant: " + ANSWER}, {"role": "user", "content": "Go"}],
        [{"role": "user", "content": "bands?"}, call, {"role": "tool", "tool_call_id": "call_1", "content": ANSWER}],
        [{"role": "user", "content": [{"type": "text", "text": "Shorter: " + ANSWER + " Thanks!"}]}],
        [{"role": "user", "content": "背景：" + ANSWER_ZH + "请改写成一句话。"}],
        [call, {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"answer": ANSWER_ZH})}],
    ):
        assert found(answers, *messages) == [Label.CONFIDENTIAL], messages


def test_ordinary_text_is_not_taken_for_an_answer(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    answers.remember([ANSWER], Label.CONFIDENTIAL)
    words = ANSWER.split()
    assert found(answers, {"role": "user", "content": " ".join(words[:WINDOW // 2])}) == []  # a short quote
    assert found(answers, {"role": "user", "content": "Band E5 pays well, what about E6 in 2027?"}) == []


def test_a_long_history_is_looked_up_in_batches(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    answers.remember([ANSWER], Label.RESTRICTED)
    filler = " ".join(f"word{i}" for i in range(3000))  # thousands of windows: more than one query's worth
    assert found(answers, {"role": "user", "content": filler + " " + ANSWER + " " + filler}) == [Label.RESTRICTED]
