"""Labels of answers given from labelled material (``governance/answer_labels.py``), on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.governance.answer_labels import MIN_CHARS, AnswerLabels, answer_digest
from inhouse.governance.labels import Label
from inhouse.store.answer_labels import SqlAnswerLabels
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db

ANSWER = "Revenue was 412.6 million CNY, up 8.4% year on year [1]."


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_inhouse_db(tmp_path / "inhouse.db")
    yield d
    d.close()


def history(*answers: object) -> dict[str, object]:
    messages: list[object] = []
    for a in answers:
        messages += [{"role": "user", "content": "and?"}, {"role": "assistant", "content": a}]
    return {"messages": [*messages, {"role": "user", "content": "Make it shorter."}]}


def test_an_answer_comes_back_with_its_label_whatever_the_spacing(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    answers.remember([ANSWER], Label.CONFIDENTIAL)
    assert answers(history(ANSWER)) == [Label.CONFIDENTIAL]
    assert answers(history("  " + ANSWER.replace(" ", "\n  ") + "\n")) == [Label.CONFIDENTIAL]  # trimmed, rewrapped
    assert answers(history([{"type": "text", "text": ANSWER}])) == [Label.CONFIDENTIAL]  # content parts
    assert answers(history("Something else entirely, said by the model.")) == []
    # pasted by the user: the same text (tests/unit/governance/test_answer_paste.py has the other places)
    assert answers({"messages": [{"role": "user", "content": ANSWER}]}) == [Label.CONFIDENTIAL]


def test_the_highest_label_wins_and_public_or_short_answers_are_not_kept(db: Database) -> None:
    store = SqlAnswerLabels(db)
    answers = AnswerLabels(store)
    answers.remember([ANSWER], Label.INTERNAL)
    answers.remember([ANSWER], Label.RESTRICTED)
    answers.remember([ANSWER], Label.CONFIDENTIAL)  # a lower label later does not lower it
    assert answers(history(ANSWER)) == [Label.RESTRICTED]
    answers.remember(["A public answer of some length."], Label.PUBLIC)
    answers.remember(["Yes."], Label.RESTRICTED)
    assert answer_digest("Yes.") is None and answer_digest("x" * MIN_CHARS) is not None
    assert db.query_one("SELECT COUNT(*) AS n FROM answer_labels")["n"] == 1
    assert answers(history("A public answer of some length.", "Yes.", ANSWER)) == [Label.RESTRICTED]


def test_old_answers_are_forgotten(db: Database) -> None:
    now = [1_000_000.0]
    store = SqlAnswerLabels(db, clock=lambda: now[0], keep_s=100)
    answers = AnswerLabels(store)
    answers.remember([ANSWER], Label.CONFIDENTIAL)
    now[0] += 101
    answers.remember(["Another answer, later on."], Label.INTERNAL)
    assert answers(history(ANSWER)) == []
