"""Build a continuous-batching engine over llama.cpp from ``EngineSettings``.

One function used by both ``inhouse serve`` (through ``bootstrap``) and ``inhouse tune``: the tuner must
measure exactly the engine that serve will run, so the mapping from settings to llama.cpp parameters lives
in one place.
"""

from __future__ import annotations

from pathlib import Path

from inhouse.config import EngineSettings
from inhouse.engine.engine import Engine
from inhouse.errors import InvalidRequest


def build_llama_engine(name: str, path: Path, settings: EngineSettings, *, n_ctx: int) -> Engine:
    """Load ``path`` into llama.cpp (lazily imported) and start an engine named ``name`` over it.

    ``settings.weight_buffers`` must already be resolved against the hardware probe
    (``hardware.weights.resolve_engine_settings``): this function runs wherever the engine lives and must not
    decide anything about the machine itself."""
    from inhouse.engine.backends.llama_cpp.backend import LlamaCppBackend

    es = settings
    if es.weight_buffers == "auto":
        raise InvalidRequest("engine.weight_buffers='auto' reached the engine unresolved; resolve it with "
                             "hardware.weights.resolve_engine_settings first.")
    backend = LlamaCppBackend(
        path,
        n_ctx=n_ctx,
        n_slots=es.max_running + es.n_cache_slots,
        n_batch=es.step_token_budget,
        n_ubatch=min(es.n_ubatch, es.step_token_budget),
        n_threads=es.n_threads,
        n_threads_batch=es.n_threads_batch,
        flash_attn=es.flash_attn,
        kv_type=es.kv_type,
        weight_buffers=es.weight_buffers,
    )
    try:
        return Engine(name, backend, es)
    except BaseException:
        backend.close()
        raise
