"""``AppContext``: everything an assistant needs for one call, passed explicitly (no globals).

``complete_json`` is the one way assistants ask the model for structured output: the JSON schema is sent as
``response_format`` (enforced by a grammar while decoding, so even a small model returns valid JSON); output that
still does not parse (truncated at ``max_tokens``, or a backend without grammars) is retried once, then refused
with ``EngineFailure``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC as _UTC_TZ
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from inhouse.chat.affinity import cache_owner_of
from inhouse.errors import EngineFailure, InvalidRequest
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService, CompletionResult, Usage
    from inhouse.config import Settings
    from inhouse.governance.answer_labels import AnswerLabels
    from inhouse.governance.events import AuditSink
    from inhouse.kb.service import KnowledgeBase

log = logging.getLogger(__name__)

UTC = ZoneInfo("UTC")


def utc_now() -> datetime:
    return datetime.now(_UTC_TZ)


def parse_tz(name: str | None) -> ZoneInfo:
    """An IANA zone name (``Europe/Paris``, ``Asia/Shanghai``); empty means UTC. Unknown → InvalidRequest."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise InvalidRequest(f"Unknown time zone '{name}'. Use an IANA name such as 'Europe/Berlin'.",
                             param="timezone") from None


@dataclass
class AppContext:
    """One assistant call: the caller, the model and the clock. ``kb`` is None when knowledge is not wired;
    retrieval through it always runs AS ``actor`` (never with more rights than the caller)."""

    actor: Actor
    chat: ChatService
    model: str
    now: Callable[[], datetime] = utc_now  # aware datetimes; tests pass a fixed clock
    tz: ZoneInfo = field(default_factory=lambda: UTC)  # the caller's zone: "tomorrow" is resolved in it
    audit: AuditSink | None = None
    kb: KnowledgeBase | None = None
    max_tokens: int = 1024
    # Called with the tokens (prompt + generated) of every model call made for this caller: the server charges
    # them to the key's daily quota, like a chat completion. None (CLI, evaluation): not metered.
    record_usage: Callable[[int], None] | None = None
    # The labels of answers given from labelled material (governance/answer_labels.py): text an assistant returns
    # from KB passages is remembered with their label, so that pasted into a chat for a cloud model it counts at
    # that label, as a chat completion's answer does. None (tests, evaluation): nothing is remembered.
    answers: AnswerLabels | None = None

    def charge(self, usage: Usage | None) -> None:
        if usage is not None and self.record_usage is not None:
            self.record_usage(usage.total_tokens)

    async def remember_answer(self, texts: Iterable[str], sources: Iterable[object],
                              messages: Sequence[Mapping[str, Any]] = ()) -> None:
        """Remember ``texts``, made from passages labelled ``sources`` after the model read ``messages``, before
        they are returned (``AnswerLabels.remember_derived``; a database read and write: off the event loop). A store
        that cannot keep the label raises, and the text is not handed out."""
        if self.answers is not None:
            answers, texts, sources = self.answers, list(texts), list(sources)
            await asyncio.to_thread(answers.remember_derived, texts, sources, [dict(m) for m in messages])

    def local_now(self) -> datetime:
        return self.now().astimezone(self.tz)


class AppContexts:
    """Builds the ``AppContext`` of each assistant call. The settings are read at call time, so the assistants'
    model, default model and time zone are whatever the settings say then (built once in ``bootstrap.py``)."""

    def __init__(self, settings: Settings, chat: ChatService, kb: KnowledgeBase | None = None, *,
                 record_usage: Callable[[str, int], None] | None = None, answers: AnswerLabels | None = None
                 ) -> None:
        self._settings = settings
        self._chat = chat
        self._kb = kb
        self._record_usage = record_usage  # (key id, tokens): the daily token quota
        self._answers = answers  # where answers from labelled passages are remembered

    def for_actor(self, actor: Actor, *, timezone: str | None = None, model: str | None = None,
                  metered: bool = True) -> AppContext:
        """The context of one call as ``actor``: ``timezone`` (IANA) else ``apps.timezone``, ``model`` else
        ``apps.model`` else ``models.default``. ``metered`` calls charge their tokens to the actor's key (the HTTP
        routes); the command line is not metered."""
        s = self._settings
        record = self._record_usage if metered else None
        charge = None if record is None else (lambda n: record(actor.key_id, n))
        return AppContext(actor=actor, chat=self._chat, model=model or s.apps.model or s.models.default,
                          tz=parse_tz(timezone or s.apps.timezone), kb=self._kb, record_usage=charge,
                          answers=self._answers)


async def complete_text(ctx: AppContext, messages: Sequence[Mapping[str, Any]], **body: Any) -> CompletionResult:
    """One chat completion on ``ctx.model`` (preparation may load a model: it runs off the event loop)."""
    request: dict[str, Any] = {"model": ctx.model, "messages": [dict(m) for m in messages],
                               "temperature": 0.0, "max_tokens": ctx.max_tokens, **body}
    prepared = await asyncio.to_thread(ctx.chat.prepare_chat, request, cache_owner=cache_owner_of(ctx.actor))
    result = await ctx.chat.complete(prepared)
    ctx.charge(result.usage)
    return result


async def complete_json(ctx: AppContext, messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], *,
                        name: str = "output", retries: int = 1, **body: Any) -> dict[str, Any]:
    """Ask for a JSON object that follows ``schema`` and return it parsed.

    Invalid JSON (or a non-object) is retried ``retries`` times, then raises ``EngineFailure`` naming what came
    back; a bad request (context too long, unknown model) raises as the chat service does, without retrying.
    """
    if not isinstance(schema, Mapping) or not schema:
        raise InvalidRequest("complete_json needs a JSON schema object.")
    fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema), "strict": True}}
    last = ""
    for attempt in range(retries + 1):
        result = await complete_text(ctx, messages, response_format=fmt, **body)
        last = result.text
        try:
            parsed = json.loads(last)
        except json.JSONDecodeError as exc:
            log.info("model returned invalid JSON (attempt %d, finish=%s): %s", attempt + 1,
                     result.finish_reason, exc)
            continue
        if isinstance(parsed, dict):
            return parsed
        log.info("model returned JSON that is not an object (attempt %d)", attempt + 1)
    snippet = last[:200].replace("\n", " ")
    raise EngineFailure(f"The model did not return valid JSON after {retries + 1} attempts: {snippet!r}",
                        code="invalid_model_output")
