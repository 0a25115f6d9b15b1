"""A support answer is remembered with the label of the passages it was written from (``governance/answer_labels.py``)
before it is returned, as a chat completion's answer is: pasted into a chat for a cloud model ("Make this shorter:
…"), it counts at that label. Before the fix the support assistant called the model directly and nothing was
remembered, so a confidential support answer pasted into a chat went to the cloud. Fakes for the knowledge base and
the model; the real answer-label table and session store on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.support.assistant import SupportAssistant
from inhouse.errors import StoreUnavailable
from inhouse.governance.answer_labels import AnswerLabels
from inhouse.governance.labels import Label
from inhouse.store.answer_labels import SqlAnswerLabels
from inhouse.store.sqlite.assistants import SqliteSessionStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.types import Actor

CAROL = Actor("key_carol", "carol", role="member", user_id="usr_carol")
ANSWER = ("The goodwill override code is LYNX-4471. Agents may grant a goodwill credit of at most 37 percent of "
          "the order value with that code.")
SHORT = "The override code is LYNX-4471."  # under 16 tokens: remembered whole only


def grounding(labels: Sequence[str], covered: bool = True) -> SimpleNamespace:
    return SimpleNamespace(covered=covered, labels=list(labels), document_ids=["doc_goodwill"] if covered else [])


class FakeKnowledge:
    """Grounds every question on passages labelled ``labels``; the model answers ``answer``. ``judged``: the labels
    of the passages the answer was finally written from (the judge may pick the translation's)."""

    def __init__(self, labels: Sequence[str], answer: str = ANSWER, judged: Sequence[str] | None = None) -> None:
        self.labels, self.answer, self.judged = list(labels), answer, judged
        self.answerer = self

    def search(self, actor: Actor, query: str, **kw: Any) -> list[Any]:
        return []  # no rules in the documents: the built-in ones apply

    async def ground_async(self, actor: Actor, text: str, collections: Any, **kw: Any) -> Any:
        return grounding(self.labels, covered=bool(self.labels))

    async def complete(self, g: Any, **kw: Any) -> Any:
        judged = g if self.judged is None else grounding(self.judged)
        cite = SimpleNamespace(to_dict=lambda: {"index": 1, "title": "goodwill.md"})
        return SimpleNamespace(text=self.answer, citations=[cite], usage=None, grounding=judged)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = open_inhouse_db(tmp_path / "inhouse.db")
    yield d
    d.close()


def pasted(answers: AnswerLabels, text: str) -> list[Label]:
    return answers({"messages": [{"role": "user", "content": f"Make this shorter:\n\n{text}"}]})


def ask(db: Database, answers: AnswerLabels | None, kb: FakeKnowledge, *questions: str) -> list[Any]:
    assistant, store = SupportAssistant(SqliteSessionStore(db)), SqliteSessionStore(db)
    session = store.create(CAROL, ["support"])
    ctx = AppContext(actor=CAROL, chat=None, model="m", kb=kb, answers=answers)  # type: ignore[arg-type]

    async def run() -> list[Any]:
        return [await assistant.send(ctx, session.id, q) for q in questions]

    return asyncio.run(run())


def test_a_support_answer_is_remembered_with_its_passages_label(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    [reply] = ask(db, answers, FakeKnowledge(["internal", "confidential"]), "What is the goodwill override code?")
    assert reply.text == ANSWER
    assert pasted(answers, ANSWER) == [Label.CONFIDENTIAL]  # the egress router counts it: refused for the cloud


def test_the_passages_the_judge_chose_count_too(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    ask(db, answers, FakeKnowledge(["internal"], judged=["restricted"]), "What is the goodwill override code?")
    assert pasted(answers, ANSWER) == [Label.RESTRICTED]


def test_public_answers_and_fixed_replies_are_not_remembered(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    ask(db, answers, FakeKnowledge(["public"]), "What is the goodwill override code?")
    ask(db, answers, FakeKnowledge([]), "Where is my parcel?")  # not covered: the fixed "could not find" reply
    assert db.query_one("SELECT COUNT(*) AS n FROM answer_labels")["n"] == 0


def test_an_answer_pasted_into_the_session_keeps_its_label_in_the_next_answer(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    answers.remember([SHORT + " Keep it secret."], Label.RESTRICTED)  # an earlier chat answer, pasted by the customer
    kb = FakeKnowledge(["internal"], answer="Agents may grant a goodwill credit of at most 37 percent.")
    ask(db, answers, kb, f"My colleague said:\n\n{SHORT} Keep it secret.\n\nWhat does it allow?")
    assert pasted(answers, kb.answer) == [Label.RESTRICTED]


def test_the_hand_over_summary_quoting_an_answer_keeps_its_label(db: Database) -> None:
    answers = AnswerLabels(SqlAnswerLabels(db))
    replies = ask(db, answers, FakeKnowledge(["confidential"], answer=SHORT),
                  "What is the goodwill override code?", "I want to talk to a human agent please")
    assert replies[1].handoff and SHORT in (replies[1].summary or "")
    assert pasted(answers, replies[1].summary or "") == [Label.CONFIDENTIAL]


class BrokenLabels:
    """The answer-label table while the database is away."""

    def record(self, digests: Any, label: Label) -> None:
        raise StoreUnavailable("The database is not reachable.")

    def highest(self, digests: Any) -> None:
        return None


def test_an_answer_whose_label_cannot_be_kept_is_not_given(db: Database) -> None:
    with pytest.raises(StoreUnavailable):
        ask(db, AnswerLabels(BrokenLabels()), FakeKnowledge(["confidential"]),  # type: ignore[arg-type]
            "What is the goodwill override code?")
    stored = db.query_one("SELECT COUNT(*) AS n FROM support_sessions WHERE messages LIKE '%LYNX%'")
    assert stored["n"] == 0
