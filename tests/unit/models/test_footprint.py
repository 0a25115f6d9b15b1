"""Memory footprint from the GGUF header: KV cache, compute buffer, read bytes per token."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.models.footprint import (
    compute_bytes,
    estimate_footprint,
    kv_bytes,
    kv_bytes_per_token,
    model_shape,
)
from inhouse.models.gguf import read as g
from inhouse.models.gguf.read import read_gguf_header
from inhouse.testing.gguf_writer import Typed, tiny_model_kv, write_gguf

MIB = 2**20


def shaped_model(path: Path, *, n_layer: int = 4, n_embd: int = 256, n_head: int = 8, n_head_kv: int = 2,
                 tied: bool = False, **extra: object) -> Path:
    kv = tiny_model_kv()
    kv.update({
        "llama.block_count": Typed(g.UINT32, n_layer),
        "llama.embedding_length": Typed(g.UINT32, n_embd),
        "llama.attention.head_count": Typed(g.UINT32, n_head),
        "llama.attention.head_count_kv": Typed(g.UINT32, n_head_kv),
        "llama.feed_forward_length": Typed(g.UINT32, 512),
        **extra,
    })
    n_vocab = len(kv["tokenizer.ggml.tokens"])
    tensors: dict[str, object] = {"token_embd.weight": ((n_embd, n_vocab), "Q8_0"),
                                  "blk.0.ffn_up.weight": ((n_embd, 512), "Q8_0")}
    if not tied:
        tensors["output.weight"] = ((n_embd, n_vocab), "Q8_0")
    return write_gguf(path, kv, tensors)  # type: ignore[arg-type]


def test_kv_bytes_follow_layers_kv_heads_head_dim_and_type(tmp_path: Path) -> None:
    shape = model_shape(read_gguf_header(shaped_model(tmp_path / "m.gguf")))
    assert (shape.n_layer, shape.head_dim_k, shape.n_head_kv, shape.n_vocab) == (4, 32, 2, 100)
    # 4 layers x 2 KV heads x (32 K + 32 V) x 2 bytes
    assert kv_bytes_per_token(shape, "f16") == 4 * 2 * 64 * 2
    assert kv_bytes_per_token(shape, "q8_0") == 4 * 2 * 64 * 34 / 32
    assert kv_bytes(shape, 1000, "f16") == 1000 * 1024
    with pytest.raises(ValueError, match="unknown KV type"):
        kv_bytes_per_token(shape, "f8")


def test_llama2_7b_kv_matches_llama_cpp_accounting(tmp_path: Path) -> None:
    """llama.cpp 0.3.36 reports 128 MiB per layer at n_ctx 8192 in f16 for the Llama-2-7B shape."""
    shape = model_shape(read_gguf_header(shaped_model(tmp_path / "m.gguf", n_layer=32, n_embd=4096, n_head=32,
                                                      n_head_kv=32)))
    assert kv_bytes(shape, 8192, "f16") == 32 * 128 * MIB
    assert kv_bytes(shape, 8192, "q8_0") == 32 * 68 * MIB


def test_explicit_key_length_wins_over_embd_by_heads(tmp_path: Path) -> None:
    path = shaped_model(tmp_path / "m.gguf", **{"llama.attention.key_length": Typed(g.UINT32, 64),
                                                "llama.attention.value_length": Typed(g.UINT32, 48)})
    shape = model_shape(read_gguf_header(path))
    assert shape.kv_width == 2 * (64 + 48)


def test_decode_reads_everything_but_the_embedding_table_unless_tied(tmp_path: Path) -> None:
    untied = model_shape(read_gguf_header(shaped_model(tmp_path / "a.gguf")))
    embd = 100 * 256 // 32 * 34
    assert untied.read_bytes_per_token == untied.weight_bytes - embd
    tied = model_shape(read_gguf_header(shaped_model(tmp_path / "b.gguf", tied=True)))
    assert tied.read_bytes_per_token == tied.weight_bytes


def test_header_without_shape_keys_is_a_value_error(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", tiny_model_kv(), {"token_embd.weight": ((64, 4), "Q8_0")})
    with pytest.raises(ValueError, match=r"block_count|embedding_length"):
        model_shape(read_gguf_header(path))


def test_compute_buffer_grows_with_context_only_without_flash_attention(tmp_path: Path) -> None:
    shape = model_shape(read_gguf_header(shaped_model(tmp_path / "m.gguf", n_layer=32, n_embd=4096, n_head=32,
                                                      n_head_kv=32)))
    plain = compute_bytes(shape, 8192, 512, flash_attn=False)
    assert plain >= 8192 * 512 * 32 * 4  # the attention scores
    assert compute_bytes(shape, 4096, 512, flash_attn=False) < plain
    flash = compute_bytes(shape, 8192, 512, flash_attn=True)
    assert flash < plain / 4
    fp = estimate_footprint(shape, n_ctx=8192, kv_type="q8_0", flash_attn=True)
    assert fp.total == fp.weights + fp.kv + fp.compute
    assert "n_ctx 8192, q8_0" in fp.describe()
