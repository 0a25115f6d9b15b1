"""The shape models have the real models' parameter counts, and the weight pattern is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks import shapegen


@pytest.mark.parametrize(("key", "params"), [
    ("llama2-7b-shape", 6_738_415_616),  # Llama-2-7B
    ("llama2-13b-shape", 13_015_864_320),  # Llama-2-13B
    ("chatglm2-6b-shape", 6_243_584_000),  # ChatGLM2-6B
    ("qwen2.5-7b-shape", 7_615_616_512),  # Qwen2.5-7B
])
def test_shapes_have_the_real_parameter_counts(key: str, params: int) -> None:
    assert shapegen.SHAPES[key].n_params == params


def test_chatglm_uses_fused_qkv_with_two_kv_groups_and_fused_gate_up() -> None:
    plan = {name: shape for name, shape, _ in shapegen.tensor_plan(shapegen.SHAPES["chatglm2-6b-shape"])}
    assert plan["blk.0.attn_qkv.weight"] == (4096 + 2 * 2 * 128, 4096)
    assert plan["blk.0.attn_qkv.bias"] == (4608,)
    assert plan["blk.27.ffn_up.weight"] == (2 * 13696, 4096) and "blk.0.ffn_gate.weight" not in plan
    assert plan["output.weight"] == (65024, 4096)


def test_every_weight_row_is_whole_q8_blocks_and_the_pattern_is_deterministic() -> None:
    for s in shapegen.SHAPES.values():
        assert all(shape[1] % 32 == 0 for _, shape, kind in shapegen.tensor_plan(s) if kind == "weight")
    a, b = shapegen.q8_pattern(), shapegen.q8_pattern()
    assert np.array_equal(a, b) and len(a) == shapegen.PATTERN_BLOCKS * shapegen.Q8_BLOCK
    scales = a.reshape(-1, shapegen.Q8_BLOCK)[:, :2].copy().view(np.float16).astype(np.float32)
    assert np.isfinite(scales).all() and (scales > 0).all()
