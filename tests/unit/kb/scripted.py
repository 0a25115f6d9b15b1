"""A duck-typed ChatService for the question rewrites (translation, code sketch): replies from a script, records
each request body."""

from __future__ import annotations

from types import SimpleNamespace


class ReplyChat:
    def __init__(self, replies: list[str], local: bool = True) -> None:
        self.replies, self.local, self.bodies = list(replies), local, []  # type: ignore[var-annotated]

    def serves(self, model: str) -> bool:
        return self.local

    def prepare_chat(self, body: dict, *, cache_owner: str | None = None) -> dict:  # type: ignore[type-arg]
        self.bodies.append(body)
        return body

    async def complete(self, prepared: dict) -> SimpleNamespace:  # type: ignore[type-arg]
        return SimpleNamespace(text=self.replies.pop(0), model=prepared["model"], usage=None)
