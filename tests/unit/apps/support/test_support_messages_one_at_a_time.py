"""A support session answers one message at a time: a message sent while an earlier one is still being answered is
kept, and so is the hand-over it asks for. In one process the second message waits for the first one's reply; on
two nodes sharing one database the store's save is a compare-and-set, and the turn that finds the session changed
merges into it (never moving it back out of ``handed_over``). Fakes for the knowledge base and the model (the
model's answer is held until the test lets it go); the real session stores, SQLite and (marked integration)
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.support import assistant as support
from inhouse.apps.support.assistant import SupportAssistant
from inhouse.apps.support.store import Session, SqlSessionStore
from inhouse.errors import Conflict
from inhouse.store.sqlite.assistants import SqliteSessionStore
from inhouse.store.sqlite.database import Database, apply_migrations
from inhouse.store.sqlite.inhouse_db import MIGRATIONS
from inhouse.testing.conversation_contract import ticking_clock
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member", user_id="usr_ana")
QUESTION = "How long does standard delivery take within mainland China?"
HUMAN = "I want to talk to a human agent please"
ANSWER = "Standard delivery takes 3 to 5 working days [1]."


class HeldModel:
    """Grounds every question as covered; ``complete`` answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def ground_async(self, actor: Actor, text: str, collections: Any, **kw: Any) -> Any:
        return SimpleNamespace(covered=True, document_ids=["doc_faq"], labels=["internal"])

    async def complete(self, grounding: Any, **kw: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return SimpleNamespace(text=ANSWER, citations=[], usage=None, grounding=grounding)


class FakeKnowledge:
    def __init__(self) -> None:
        self.answerer = HeldModel()

    def search(self, actor: Actor, query: str, **kw: Any) -> list[Any]:
        return []  # no rules in the documents: the built-in "asks for a person" rule is enough here


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlSessionStore]:
    if request.param == "sqlite":
        db = Database(tmp_path / "inhouse.db")
        apply_migrations(db, MIGRATIONS)
        yield SqliteSessionStore(db, clock=ticking_clock())
        db.close()
        return
    from inhouse.store.postgres.assistants import PostgresSessionStore
    from inhouse.store.postgres.database import PostgresDatabase, migrate
    from inhouse.store.postgres.schema import INHOUSE

    pg = PostgresDatabase(request.getfixturevalue("postgres_url"))
    migrate(pg, "inhouse", INHOUSE)
    yield PostgresSessionStore(pg, clock=ticking_clock())
    pg.close()


def context(kb: FakeKnowledge) -> AppContext:
    return AppContext(actor=ANA, chat=None, model="m", kb=kb)  # type: ignore[arg-type]


async def question_then_person(first: SupportAssistant, second: SupportAssistant, session_id: str,
                               kb: FakeKnowledge) -> tuple[Any, Any]:
    """The customer asks a question, then asks for a person while the answer is still being written."""
    asked = asyncio.create_task(first.send(context(kb), session_id, QUESTION))
    await kb.answerer.started.wait()
    person = asyncio.create_task(second.send(context(kb), session_id, HUMAN))
    await asyncio.sleep(0.05)  # the second message is in (waiting, or already handed over on another node)
    kb.answerer.release.set()
    return await asyncio.gather(asked, person)


def test_a_message_sent_during_an_answer_waits_and_its_hand_over_is_kept(store: SqlSessionStore) -> None:
    assistant, kb = SupportAssistant(store), FakeKnowledge()
    session = store.create(ANA, ["support"])
    answered, person = asyncio.run(question_then_person(assistant, assistant, session.id, kb))
    assert answered.text == ANSWER and person.handoff is True and person.status == "handed_over"
    stored = store.get(ANA, session.id)
    assert stored.status == "handed_over" and stored.handoff is not None
    assert [m["content"] for m in stored.messages if m["role"] == "user"] == [QUESTION, HUMAN]
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "user", "assistant"]
    assert stored.messages[1]["content"] == ANSWER
    assert assistant._turns == {}  # no lock left behind


def test_two_nodes_answering_one_session_merge_and_keep_the_hand_over(store: SqlSessionStore) -> None:
    # Two assistants (two nodes) on one database: no shared lock, the store's compare-and-set keeps both turns.
    node_a, node_b, kb = SupportAssistant(store), SupportAssistant(store), FakeKnowledge()
    session = store.create(ANA, ["support"])
    answered, person = asyncio.run(question_then_person(node_a, node_b, session.id, kb))
    assert person.handoff is True and person.status == "handed_over"
    # The answer saved last finds the session handed over: it is added, the session stays with the agent.
    assert answered.text == ANSWER and answered.status == "handed_over" and answered.handoff is True
    stored = store.get(ANA, session.id)
    assert stored.status == "handed_over" and stored.handoff is not None
    assert stored.handoff["reason"] == "human_requested"
    assert {m["content"] for m in stored.messages if m["role"] == "user"} == {QUESTION, HUMAN}
    assert ANSWER in [m["content"] for m in stored.messages] and len(stored.messages) == 4


def test_a_stale_save_writes_nothing_and_raises_conflict(store: SqlSessionStore) -> None:
    session = store.create(ANA, ["support"])
    one, two = store.get(ANA, session.id, for_update=True), store.get(ANA, session.id, for_update=True)
    two.messages.append({"role": "user", "content": "talk to a person", "at": 1.0})
    two.status = "handed_over"
    store.save(two)
    one.messages.append({"role": "user", "content": "a question", "at": 2.0})
    with pytest.raises(Conflict):
        store.save(one)
    stored = store.get(ANA, session.id)
    assert stored.status == "handed_over" and [m["content"] for m in stored.messages] == ["talk to a person"]
    # Saved again from a fresh read, it goes through; so does a second save of the same copy.
    again = store.get(ANA, session.id, for_update=True)
    again.messages.append({"role": "assistant", "content": "passed on", "at": 3.0})
    store.save(again)
    again.messages.append({"role": "user", "content": "still there?", "at": 4.0})
    assert len(store.save(again).messages) == 3 == len(store.get(ANA, session.id).messages)


def test_merge_never_reopens_a_handed_over_session() -> None:
    fresh = Session("ses_1", "user:usr_ana", ["support"], "handed_over", 0, {"reason": "human_requested"},
                    [{"role": "user", "content": "person"}])
    mine = Session("ses_1", "user:usr_ana", ["support"], "open", 0, None,
                   [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    merged = support.merge_turn(fresh, mine, 0)
    assert merged.status == "handed_over" and merged.handoff == {"reason": "human_requested"}
    assert [m["content"] for m in merged.messages] == ["person", "q", "a"]


def test_too_many_waiting_messages_of_one_session_are_refused(store: SqlSessionStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "MAX_WAITING", 1)
    assistant, kb = SupportAssistant(store), FakeKnowledge()
    session = store.create(ANA, ["support"])

    async def run() -> list[Any]:
        first = asyncio.create_task(assistant.send(context(kb), session.id, QUESTION))
        await kb.answerer.started.wait()
        waiting = asyncio.create_task(assistant.send(context(kb), session.id, "and returns?"))
        await asyncio.sleep(0.01)
        with pytest.raises(Conflict, match="still being answered"):
            await assistant.send(context(kb), session.id, "hello?")
        kb.answerer.release.set()
        return list(await asyncio.gather(first, waiting))

    replies = asyncio.run(run())
    assert [r.text for r in replies] == [ANSWER, ANSWER]
    assert len(store.get(ANA, session.id).messages) == 4
