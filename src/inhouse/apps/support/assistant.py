"""The customer-service assistant: grounded multi-turn answers with citations, and handoff to a person.

Each customer message goes through, in order:

1. the session (the caller's own; a handed-over session gets no more model answers),
2. the deterministic rules (``rules.py``): safety problem, asks for a person, refund above the threshold read from
   the support documents → handoff,
3. retrieval in the session's collections AS the caller (never more rights than the key the customer uses) and a
   grounded answer with numbered citations (``kb.answer``), remembered with the label of its passages before it is
   returned (``governance/answer_labels.py``: pasted into a chat for a cloud model, it counts at that label),
4. "no answer" bookkeeping: two misses in a row → handoff.

A handoff returns ``handoff: true`` with a reason and a summary for the agent, built from the conversation itself
(no model: the agent must be able to trust it). The summary quotes the last answer, so it is remembered with the
label of the session's earlier answers.

One message of a session is answered at a time. In this process a second message waits for the first one's reply
(then it is answered with that turn in its history); a session with ``MAX_WAITING`` messages already waiting answers
``Conflict``. Across processes (several nodes on one PostgreSQL) the store's save is a compare-and-set: a turn that
finds the session changed re-reads it and adds its own messages to it, and never moves it back out of
``handed_over``: no message and no hand-over is lost. Tools: the assistant's only tool is knowledge retrieval, which is
read-only; tools that change something run only when the operator lists them (``apps.support_write_tools``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from inhouse.apps.context import AppContext
from inhouse.apps.support.rules import NO_ANSWER, Handoff, HandoffRules, check_message, parse_rules
from inhouse.apps.support.store import Session, SessionStore
from inhouse.errors import Conflict, InvalidRequest, PermissionDenied, Unavailable
from inhouse.kb.answer import is_not_covered

if TYPE_CHECKING:
    from inhouse.kb.answer import Grounding
    from inhouse.kb.retrieve import Hit
    from inhouse.types import Actor

MAX_MESSAGE_CHARS = 2000
MAX_COLLECTIONS = 8
MISSES_BEFORE_HANDOFF = 2
HISTORY_TURNS = 4  # earlier messages given to the model with a new question
RULES_TTL_S = 60.0
MAX_WAITING = 4  # messages of one session waiting behind the one being answered; one more is refused (Conflict)
SAVE_ATTEMPTS = 5  # re-read and merge this often when another node saved the session meanwhile
RULES_QUERY = ("when to talk to a person human agent hand over refund above threshold safety problem smoke fire "
               "electric shock 转人工 人工客服 退款 以上 安全问题 冒烟 起火 触电")
_CJK = re.compile(r"[\u4e00-\u9fff]")


class Knowledge(Protocol):
    """What the assistant needs of ``inhouse.kb.service.KnowledgeBase`` (a fake may stand in)."""

    def search(self, actor: Actor, query: str, *, collections: Sequence[str] | None = None, top_k: int = 5,
               filters: Any = None) -> list[Hit]: ...


@dataclass(frozen=True)
class SupportTool:
    name: str
    read_only: bool
    description: str


# The tools the assistant may use. Retrieval runs as the caller, so it can never reveal more than the key may read.
TOOLS: dict[str, SupportTool] = {
    "search_knowledge": SupportTool("search_knowledge", True, "Search the session's collections as the caller."),
}


def check_tool(name: str, allowed_write_tools: Sequence[str]) -> SupportTool:
    tool = TOOLS.get(name)
    if tool is None:
        raise InvalidRequest(f"Unknown support tool '{name}'.")
    if not tool.read_only and name not in allowed_write_tools:
        raise PermissionDenied(f"The support tool '{name}' changes data; the operator has not allowed it.")
    return tool


@dataclass
class SupportReply:
    session_id: str
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    handoff: bool = False
    reason: str | None = None
    summary: str | None = None
    status: str = "open"
    documents: list[str] = field(default_factory=list)  # whose passages the model was given (for the audit)

    def to_dict(self) -> dict[str, Any]:
        return {"object": "support.reply", "session_id": self.session_id, "reply": self.text,
                "citations": self.citations, "handoff": self.handoff, "reason": self.reason,
                "summary": self.summary, "status": self.status}


def _zh(text: str) -> bool:
    return bool(_CJK.search(text))


def _handoff_text(zh: bool, reason: str) -> str:
    if zh:
        return "正在为您转接人工客服,请稍候。客服人员会在这里继续为您服务。"
    if reason == NO_ANSWER:
        return ("I could not find the answer in our support documents, so I am passing you to a human agent, "
                "who will continue here.")
    return "I am passing you to a human agent, who will continue this conversation here."


def _miss_text(zh: bool) -> str:
    if zh:
        return "抱歉,我在客服资料中没有找到相关答案。能换一种说法,或提供更多细节吗?"
    return "Sorry, I could not find this in our support documents. Could you rephrase or add a detail?"


def agent_summary(session: Session, handoff: Handoff) -> str:
    """What the human agent reads first: why, what the customer wants, what the assistant already said."""
    users = [m["content"] for m in session.messages if m["role"] == "user"]
    answered = [m for m in session.messages if m["role"] == "assistant" and m.get("citations")]
    lines = [f"Handoff reason: {handoff.detail or handoff.reason}.",
             f"Latest customer message: \"{users[-1][:300]}\"" if users else "No customer message.",
             f"Customer messages in this session: {len(users)}."]
    if len(users) > 1:
        earlier = "; ".join(f"\"{u[:120]}\"" for u in users[-4:-1])
        lines.append(f"Earlier: {earlier}.")
    if answered:
        lines.append(f"The assistant answered {len(answered)} question(s) from the documents; last answer: "
                     f"\"{answered[-1]['content'][:200]}\"")
    lines.append(f"Collections: {', '.join(session.collections) or 'none'}.")
    return " ".join(lines)


@dataclass
class _Turn:
    lock: asyncio.Lock
    users: int = 0  # the message being answered and those waiting


def merge_turn(fresh: Session, mine: Session, new_from: int) -> Session:
    """``fresh`` (the session as stored now) with the messages ``mine`` added from index ``new_from`` on. A
    handed-over or closed session stays so: a turn that read it while open cannot take it back from the agent."""
    fresh.messages.extend(mine.messages[new_from:])
    if fresh.status == "open":
        fresh.status, fresh.handoff, fresh.misses = mine.status, mine.handoff, mine.misses
    return fresh


class SupportAssistant:
    def __init__(self, store: SessionStore, *, default_collections: Sequence[str] = ("support",),
                 write_tools: Sequence[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.default_collections = list(default_collections)
        self.write_tools = list(write_tools)
        self._clock = clock
        # Rules per (key, collections): read as the caller, so the cache is per key, never shared across keys.
        self._rules: dict[tuple[str, tuple[str, ...]], tuple[float, HandoffRules]] = {}
        self._turns: dict[str, _Turn] = {}  # session id → its lock, while a message of it is being answered

    def open_session(self, ctx: AppContext, collections: Sequence[str] | None = None) -> Session:
        cols = [c.strip() for c in (collections if collections else self.default_collections)]
        if not cols or len(cols) > MAX_COLLECTIONS or any(not c or len(c) > 128 for c in cols):
            raise InvalidRequest(f"Name 1 to {MAX_COLLECTIONS} collections.", param="collections")
        kb = self._kb(ctx)
        kb.search(ctx.actor, "support", collections=cols, top_k=1)  # NotFound now for a collection not theirs
        return self.store.create(ctx.actor, cols)

    def session(self, actor: Actor, session_id: str) -> Session:
        return self.store.get(actor, session_id)

    @staticmethod
    def _kb(ctx: AppContext) -> Any:
        if ctx.kb is None:
            raise Unavailable("The knowledge base is not configured; the support assistant needs it.")
        return ctx.kb

    async def rules(self, ctx: AppContext, collections: Sequence[str]) -> HandoffRules:
        key = (ctx.actor.key_id, tuple(collections))
        now = self._clock()
        cached = self._rules.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        check_tool("search_knowledge", self.write_tools)
        hits = await asyncio.to_thread(self._kb(ctx).search, ctx.actor, RULES_QUERY, collections=list(collections),
                                       top_k=8)
        rules = parse_rules((h.chunk.id, h.chunk.content) for h in hits)
        if len(self._rules) > 10_000:
            self._rules.clear()
        self._rules[key] = (now + RULES_TTL_S, rules)
        return rules

    @asynccontextmanager
    async def _turn(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's turn: messages of one session are answered one after the other, each reading the
        session as the previous one left it."""
        turn = self._turns.get(session_id)
        if turn is None:
            turn = self._turns[session_id] = _Turn(asyncio.Lock())
        if turn.users > MAX_WAITING:
            raise Conflict("Messages of this support session are still being answered; wait for their replies.",
                           param="session_id")
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                self._turns.pop(session_id, None)

    async def send(self, ctx: AppContext, session_id: str, text: str) -> SupportReply:
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest("'content' must not be empty.", param="content")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(f"'content' is longer than {MAX_MESSAGE_CHARS} characters.", param="content")
        async with self._turn(str(session_id)):
            return await self._answer(ctx, session_id, text.strip())

    async def _answer(self, ctx: AppContext, session_id: str, text: str) -> SupportReply:
        session = self.store.get(ctx.actor, session_id, for_update=True)
        history = [{"role": m["role"], "content": m["content"]} for m in session.messages[-2 * HISTORY_TURNS:]]
        session.messages.append({"role": "user", "content": text, "at": time.time()})
        zh = _zh(text)
        if session.handed_over:
            # The human agent has the conversation: record the message for them, no model answer.
            reply = "您的消息已转给人工客服。" if zh else "Your message has been passed to the human agent."
            return self._finish(ctx.actor, session, reply, handoff=session.handoff)
        rules = await self.rules(ctx, session.collections)
        triggered = check_message(text, rules)
        if triggered is not None:
            return await self._hand_over(ctx, session, triggered, zh)
        grounding: Grounding = await self._kb(ctx).answerer.ground_async(
            ctx.actor, text, session.collections, model=ctx.model, history=history)
        answer_text, citations, documents, labels = "", [], grounding.document_ids, grounding.labels
        if grounding.covered:
            answer = await self._kb(ctx).answerer.complete(grounding, model=ctx.model)
            ctx.charge(answer.usage)
            answer_text, citations = answer.text, [c.to_dict() for c in answer.citations]
            # The judge may answer from other passages (the translation's): those the answer was written from too.
            documents = list(dict.fromkeys([*documents, *answer.grounding.document_ids]))
            labels = [*labels, *answer.grounding.labels]
        if not grounding.covered or is_not_covered(answer_text):
            session.misses += 1
            if session.misses >= MISSES_BEFORE_HANDOFF:
                return await self._hand_over(ctx, session, Handoff(NO_ANSWER, f"the documents had no answer "
                                                      f"{session.misses} times in a row"), zh)
            return self._finish(ctx.actor, session, _miss_text(zh), documents=documents)
        session.misses = 0
        # Before it is returned or saved: an answer whose label could not be kept is not given (fails closed).
        await ctx.remember_answer([answer_text], labels, [*history, {"role": "user", "content": text}])
        return self._finish(ctx.actor, session, answer_text, citations=citations, documents=documents)

    async def _hand_over(self, ctx: AppContext, session: Session, handoff: Handoff, zh: bool) -> SupportReply:
        session.status = "handed_over"
        summary = agent_summary(session, handoff)
        # The summary quotes the last answer: it takes the label of the answers it was remembered with.
        await ctx.remember_answer([summary], [], [m for m in session.messages if m["role"] == "assistant"])
        session.handoff = {"reason": handoff.reason, "detail": handoff.detail, "summary": summary,
                           "at": time.time()}
        return self._finish(ctx.actor, session, _handoff_text(zh, handoff.reason), handoff=session.handoff)

    def _finish(self, actor: Actor, session: Session, text: str, *, citations: list[dict[str, Any]] | None = None,
                handoff: dict[str, Any] | None = None, documents: list[str] | None = None) -> SupportReply:
        msg: dict[str, Any] = {"role": "assistant", "content": text, "at": time.time()}
        if citations:
            msg["citations"] = citations
        if handoff is not None:
            msg["handoff"] = True
        session.messages.append(msg)
        session = self._commit(actor, session)
        # After a merge the session may have been handed over by a message answered meanwhile: say so.
        handoff = handoff or (session.handoff if session.handed_over else None)
        return SupportReply(session.id, text, citations or [], handoff is not None,
                            handoff["reason"] if handoff else None, handoff["summary"] if handoff else None,
                            session.status, documents or [])

    def _commit(self, actor: Actor, session: Session) -> Session:
        """Save this turn; when another node saved the session since it was read, merge into what is stored now."""
        new_from = session.base[0] if session.base is not None else len(session.messages)
        for _ in range(SAVE_ATTEMPTS - 1):
            try:
                return self.store.save(session)
            except Conflict:
                fresh = self.store.get(actor, session.id, for_update=True)
                stored = len(fresh.messages)
                session, new_from = merge_turn(fresh, session, new_from), stored
        return self.store.save(session)


def build_support_assistant(settings: Any, sessions: SessionStore) -> SupportAssistant:
    """From ``Settings``: sessions in the store ``store.url`` names, the configured default collections and tool
    allow-list."""
    apps = settings.apps
    return SupportAssistant(sessions, default_collections=apps.support_collections,
                            write_tools=apps.support_write_tools)
