"""A question rewritten by the local model before it is searched: one short greedy generation, checked, cached.

Two rewrites use it: the question translated into the other language (``kb.translate``) and a code sketch of what
the question asks (``kb.sketch``). Each says what to ask (``request``) and what of the reply it can use
(``clean``: the usable text or None); this class runs the generation and keeps the result per (model, question)
in a small LRU, so a repeated question costs nothing.

Only a model this server runs may rewrite: the question must not travel to an external provider merely to be
searched. Anything unusable means no rewrite, and retrieval runs on the question alone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService


class QuestionRewriter:
    stop: tuple[str, ...] = ("\n",)

    def __init__(self, chat: ChatService, *, max_tokens: int = 96, cache_size: int = 512) -> None:
        self.chat = chat
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()
        self.last_reply = ""  # the model's last reply before the checks (benchmarks report what was refused)

    def request(self, question: str, context: str = "") -> list[dict[str, str]]:
        raise NotImplementedError

    def clean(self, question: str, text: str) -> str | None:
        raise NotImplementedError

    async def rewrite(self, question: str, *, model: str, context: str = "",
                      cache_owner: str | None = None) -> str | None:
        """The usable rewrite of ``question`` by ``model``, or None when it cannot be had here. ``context``: what
        the rewrite may need to know besides the question (the code sketch: what the documents are about);
        ``cache_owner``: whose prefix cache the generation may use (``chat.affinity.cache_owner_of`` of the asker)."""
        question = question.strip()
        if not question or not self.chat.serves(model):
            return None
        key = (model, question, context)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        body = {"model": model, "temperature": 0.0, "max_tokens": self.max_tokens,
                "messages": self.request(question, context), **({"stop": list(self.stop)} if self.stop else {})}
        prepared = await asyncio.to_thread(self.chat.prepare_chat, body, cache_owner=cache_owner)
        result = await self.chat.complete(prepared)
        self.last_reply = result.text
        out = self.clean(question, result.text)
        self._cache[key] = out
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out
