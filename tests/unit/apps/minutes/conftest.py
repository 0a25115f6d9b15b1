"""A real ChatService over the fake engine, scripted to answer with canned JSON (ignoring the grammar, as a
broken or grammar-less backend would)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from inhouse.apps.context import AppContext
from inhouse.chat.service import ChatService
from inhouse.config import EngineSettings
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.engine.engine import Engine
from inhouse.errors import ModelNotFound
from inhouse.models.spec import ModelSpec
from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

MODEL = "fake-model"
ACTOR = Actor(key_id="key_test", name="tester")
Responder = Callable[[str], str]  # prompt text → reply text


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def resolve(self, name: str) -> ModelSpec:
        if name != MODEL:
            raise ModelNotFound(name, [MODEL])
        return ModelSpec(name=MODEL, path=None, sha256=None, size_bytes=0, quantization=None, context_length=None,
                         architecture=None, source="test", present=True)

    def get_engine(self, name: str) -> Engine:
        self.resolve(name)
        return self.engine


def canned(responder: Responder) -> Callable[[ScriptInput], int]:
    """A fake-model script replying ``responder(prompt)`` token by token (computed once per request)."""
    replies: dict[str, list[int]] = {}

    def script(inp: ScriptInput) -> int:
        if inp.request_id not in replies:
            replies[inp.request_id] = encode_text(responder(decode_tokens(inp.prompt)))
        tokens = replies[inp.request_id]
        n = len(inp.generated)
        return tokens[n] if n < len(tokens) else EOS_ID

    return script


MakeCtx = Callable[..., AppContext]


@pytest.fixture
def make_ctx() -> Iterator[MakeCtx]:
    engines: list[Engine] = []

    def make(responder: Responder, *, n_ctx: int = 16384) -> AppContext:
        engine = build_fake_engine(MODEL, n_ctx=n_ctx, script=canned(responder))
        engines.append(engine)
        chat = ChatService(Registry(engine), EngineSettings())  # type: ignore[arg-type]
        return AppContext(actor=ACTOR, chat=chat, model=MODEL, now=lambda: datetime(2026, 10, 20, 9, tzinfo=UTC))

    yield make
    for e in engines:
        e.close()
