"""Ready-made fakes for tests of our own logic: a real ``Engine`` over the scripted ``FakeBackend``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inhouse.config import EngineSettings
from inhouse.engine.backends.fake import FakeBackend, Script
from inhouse.engine.engine import Engine


def build_fake_engine(
    model_name: str = "fake-model",
    *,
    n_ctx: int = 2048,
    script: Script | Mapping[str, str] | None = None,
    delay_s: float = 0.0,
    **engine_settings: Any,
) -> Engine:
    """An engine with the real scheduler and step loop over a deterministic fake model.

    ``engine_settings`` override fields of ``EngineSettings`` (e.g. ``max_waiting=1``).
    """
    settings = EngineSettings(**engine_settings)
    backend = FakeBackend(
        n_ctx=n_ctx,
        n_slots=settings.max_running + settings.n_cache_slots,
        n_batch=settings.step_token_budget,
        script=script,
        delay_s=delay_s,
    )
    return Engine(model_name, backend, settings)
