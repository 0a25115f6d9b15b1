"""Memory safety on a real model: the footprint (weights + KV at the context + compute buffer) is decided
from the GGUF header before llama.cpp maps anything, and `inhouse serve` refuses a context that does not fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_model_files import SMOL, SMOL_FILE, needs_smol

from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.errors import Unavailable
from inhouse.models.footprint import kv_bytes, model_shape
from inhouse.models.gguf.read import read_gguf_header

pytestmark = pytest.mark.integration



@needs_smol
def test_smollm2_kv_size_from_its_header() -> None:
    assert SMOL_FILE is not None
    shape = model_shape(read_gguf_header(SMOL_FILE))
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 → 30 × 3 × 128 × 2 bytes per token in f16.
    assert (shape.n_layer, shape.n_head_kv, shape.head_dim_k) == (30, 3, 64)
    assert kv_bytes(shape, 8192, "f16") == 8192 * 30 * 3 * 128 * 2


@needs_smol
def test_context_whose_kv_cache_does_not_fit_is_refused_before_loading(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine={"n_ctx": 8192}, models={"ram_budget_mb": 200})
    services = build_services(settings)
    try:
        with pytest.raises(Unavailable) as info:
            services.registry.get_engine("smollm2-135m")
        assert info.value.code == "ram_budget_exceeded"
        assert "KV cache 180 MB (n_ctx 8192, f16)" in info.value.message
        assert services.registry.loaded() == []
    finally:
        services.close()


@needs_smol
def test_model_that_fits_loads_and_is_admitted_with_its_footprint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine={"n_ctx": 1024, "max_running": 4}, models={"ram_budget_mb": 400})
    services = build_services(settings)
    try:
        engine = services.registry.get_engine("smollm2-135m")
        assert engine.tokenize("Hello", add_special=False)
        admitted = services.registry.footprints()["smollm2-135m"]
        assert SMOL.size_bytes + 1024 * 30 * 3 * 128 * 2 < admitted < 400 * 2**20
    finally:
        services.close()


@needs_smol
def test_serve_refuses_at_start_with_the_numbers(tmp_path: Path) -> None:
    env = {**os.environ, "INHOUSE_ENGINE__N_CTX": "8192", "INHOUSE_MODELS__RAM_BUDGET_MB": "200",
           "INHOUSE_MODELS__DEFAULT": "smollm2-135m"}  # tests name their model (models.default is "auto")
    proc = subprocess.run([sys.executable, "-m", "inhouse.cli.main", "serve", "--data-dir", str(tmp_path),
                           "--port", "0", "--allow-unauthenticated"], capture_output=True, text=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 5, out
    assert "RAM budget of 200 MB" in out and "n_ctx 8192" in out
