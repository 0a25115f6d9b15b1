"""Ready-made fakes for tests of our own logic: a real ``Engine`` over the scripted ``FakeBackend``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from inhouse.config import EngineSettings
from inhouse.engine.backends.fake import FakeBackend, Script
from inhouse.engine.engine import Engine
from inhouse.models.spec import ModelSpec

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService
    from inhouse.engine.protocol import EngineClient


def build_fake_engine(
    model_name: str = "fake-model",
    *,
    n_ctx: int = 2048,
    script: Script | Mapping[str, str] | None = None,
    delay_s: float = 0.0,
    clock: Callable[[], float] | None = None,
    **engine_settings: Any,
) -> Engine:
    """An engine with the real scheduler and step loop over a deterministic fake model.

    ``engine_settings`` override fields of ``EngineSettings`` (e.g. ``max_waiting=1``); ``clock`` replaces the
    engine's monotonic clock (queue waits and the drain rate: tests move time instead of sleeping).
    """
    settings = EngineSettings(**engine_settings)
    backend = FakeBackend(
        n_ctx=n_ctx,
        n_slots=settings.max_running + settings.n_cache_slots,
        n_batch=settings.step_token_budget,
        script=script,
        delay_s=delay_s,
    )
    if clock is not None:
        return Engine(model_name, backend, settings, clock=clock)
    return Engine(model_name, backend, settings)


class OneModelRegistry:
    """The part of ``ModelRegistry`` that ``ChatService`` uses, serving one engine under any name (no file)."""

    def __init__(self, engine: EngineClient) -> None:
        self.engine = engine

    def resolve(self, name: str, *, require_present: bool = False) -> ModelSpec:
        return ModelSpec(name=name, path=None, sha256=None, size_bytes=0, quantization=None, context_length=None,
                         architecture=None, source="test", present=True)

    def get_engine(self, name: str) -> EngineClient:
        return self.engine


def build_fake_chat(engine: EngineClient) -> ChatService:
    """A real ``ChatService`` (templates, tokenization, validation) over one engine, e.g. ``build_fake_engine()``
    or a real llama.cpp engine in an integration test."""
    from inhouse.chat.service import ChatService

    return ChatService(OneModelRegistry(engine), EngineSettings())  # type: ignore[arg-type]


def build_fake_engine_in_child(
    name: str,
    path: Any,
    settings: EngineSettings,
    *,
    n_ctx: int,
    reply: str | Mapping[str, str] | None = None,
    delay_s: float = 0.0,
    crash_marker: str | None = None,
    crash_signal: int = 11,
    crash_on_load: bool = False,
    fail_on_load: bool = False,
    crash_on_weight_buffers: tuple[str, ...] = (),
) -> Engine:
    """``EngineRecipe.build`` for tests of the process boundary (runs in the child, so the closures it needs
    are made there): a fake engine replying ``reply``; the child kills itself with ``crash_signal`` (SIGSEGV)
    when a prompt contains ``crash_marker``, or while loading with ``crash_on_load``; ``fail_on_load`` raises
    the error a bad model file would. With ``crash_on_weight_buffers`` every prompt crashes the child while the
    engine runs one of those weight paths (what llama.cpp's miscompiled AMX path did on every first decode)."""
    import os
    import signal
    import threading

    from inhouse.engine.backends.fake import ScriptInput, decode_tokens, reply_script
    from inhouse.errors import InvalidModelFile

    if crash_on_load:
        os.kill(os.getpid(), crash_signal)
    if fail_on_load:
        raise InvalidModelFile(f"{path} is not a GGUF file.", param="model")
    answer = reply_script(reply) if reply is not None else reply_script()

    def script(inp: ScriptInput) -> int:
        if (settings.weight_buffers in crash_on_weight_buffers
                or (crash_marker is not None and crash_marker in decode_tokens(inp.prompt))):
            # To this thread, as a fault in native code would be: the process dies before the step ends.
            signal.pthread_kill(threading.get_ident(), crash_signal)
        return answer(inp)

    backend = FakeBackend(n_ctx=n_ctx, n_slots=settings.max_running + settings.n_cache_slots,
                          n_batch=settings.step_token_budget, script=script, delay_s=delay_s)
    return Engine(name, backend, settings)
