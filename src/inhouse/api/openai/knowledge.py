"""The ``knowledge`` extension of chat completions: grounding before generation, citations after it.

``POST /v1/chat/completions`` with ``"knowledge": {"collections": ["hr"], "top_k": 5}`` answers from the company's
documents: the last user message is the question, retrieval runs as the caller (their access applies, always),
the prompt is rebuilt as fixed instructions → numbered passages → question, and the response carries
``citations`` (the chunks the answer cites). When nothing relevant is found the answer is "The documents do not
cover this." and no model runs (``wire.not_covered_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from inhouse.api.schemas import KnowledgeOptions
from inhouse.errors import InvalidRequest
from inhouse.kb.answer import Grounding, cited, is_not_covered

if TYPE_CHECKING:
    from inhouse.kb.service import KnowledgeBase
    from inhouse.types import Actor

_MAX_QUESTION_CHARS = 4000


def content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


async def ground_chat(kb: KnowledgeBase, actor: Actor, body: Mapping[str, Any], knowledge: Any) -> Grounding:
    """Retrieve for the last user message (as ``actor``) and rebuild the messages as a grounded prompt.
    ``knowledge`` is the request's option object, already validated as ``KnowledgeOptions`` by the route."""
    opts = KnowledgeOptions.model_validate(knowledge if knowledge is not None else {})
    messages = list(body.get("messages") or [])
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
    if last is None:
        raise InvalidRequest("A knowledge request needs a user message to answer.", param="messages")
    question = content_text(messages[last].get("content"))[:_MAX_QUESTION_CHARS]
    history = [{"role": m["role"], "content": content_text(m.get("content"))} for m in messages[:last]
               if m.get("role") in ("user", "assistant")]
    # The question's translation, the coverage check and the optional relevance judge (kb.rerank) run on the
    # requested model, like the answer.
    model = str(body.get("model", ""))
    g = await kb.answerer.ground_async(actor, question, opts.collections, model=model, top_k=opts.top_k,
                                       history=history)
    return await kb.answerer.judge(g, model=model)


def citations_for(text: str, g: Grounding) -> list[dict[str, Any]]:
    """The passages ``text`` cites as ``[n]`` (none when the answer says the documents do not cover it)."""
    return [] if is_not_covered(text) else [c.to_dict() for c in cited(text, g.hits)]


def add_citations(body: dict[str, Any], g: Grounding) -> dict[str, Any]:
    """A chat completion body with ``citations`` of the text of all its choices."""
    text = "".join(content_text((c.get("message") or {}).get("content")) for c in body.get("choices") or [])
    body["citations"] = citations_for(text, g)
    return body


class StreamCitations:
    """Watches the chunks of a streamed answer; ``chunk()`` is the extra last chunk (before ``[DONE]``) that
    carries the citations of the whole text."""

    def __init__(self, g: Grounding) -> None:
        self._g = g
        self._parts: list[str] = []
        self._last: Mapping[str, Any] = {}

    def see(self, payload: Mapping[str, Any]) -> None:
        self._last = payload
        for ch in payload.get("choices") or []:
            self._parts.append((ch.get("delta") or {}).get("content") or "")

    def chunk(self) -> dict[str, Any]:
        extra: dict[str, Any] = {k: self._last[k] for k in ("id", "created", "model") if k in self._last}
        return {**extra, "object": "chat.completion.chunk", "choices": [],
                "citations": citations_for("".join(self._parts), self._g)}
