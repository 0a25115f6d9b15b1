"""E5S1 → GGUF conversion (round trip on a synthetic model) and the verified cache of the converted file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidModelFile
from inhouse.models.e5.convert import convert_e5s1, ensure_e5_gguf, file_sha256
from inhouse.models.e5.s1 import read_e5s1
from inhouse.models.gguf.read import read_gguf_header
from inhouse.testing.e5s1 import TOY_PIECES, write_e5s1

LAYER = ("attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down", "layer_output_norm")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_e5s1(tmp_path / "tiny.bin", hidden=64, n_layers=2, n_heads=2, ffn=128, max_positions=16)


def tensor_bytes(path: Path, name: str) -> bytes:
    info = read_gguf_header(path)
    t = next(t for t in info.tensors if t.name == name)
    with open(path, "rb") as f:
        f.seek(info.data_offset + t.offset)
        return f.read(t.n_bytes)


@pytest.mark.parametrize("word_table", [True, False])
def test_round_trip_keeps_every_weight_byte_for_byte(source: Path, tmp_path: Path, word_table: bool) -> None:
    dst = tmp_path / "out.gguf"
    digest = convert_e5s1(source, dst, word_table=word_table)
    assert digest == file_sha256(dst)
    info = read_gguf_header(dst)
    md = info.metadata
    assert info.architecture == "bert" and info.quantization == "Q4_0"
    assert md["bert.embedding_length"] == 64 and md["bert.block_count"] == 2
    assert md["bert.attention.head_count"] == 2 and md["bert.feed_forward_length"] == 128
    assert md["bert.context_length"] == 16 and md["bert.pooling_type"] == 1  # mean
    assert md["bert.attention.causal"] is False
    assert md["bert.attention.layer_norm_epsilon"] == pytest.approx(1e-12)
    assert md["tokenizer.ggml.model"] == "none" and md["tokenizer.ggml.token_type_count"] == 2
    shapes = {t.name: (t.shape, t.ggml_type) for t in info.tensors}
    n_vocab = len(TOY_PIECES)
    rows = n_vocab if word_table else 1
    assert md["bert.vocab_size"] == rows
    assert shapes["token_embd.weight"] == ((64, rows), "Q4_0")  # the 3 padding rows of emb.word are dropped
    assert shapes["position_embd.weight"] == ((64, 16), "F32")
    assert shapes["token_types.weight"] == ((64, 2), "F32")
    assert shapes["blk.1.ffn_up.weight"] == ((64, 128), "Q4_0")  # ggml ne: row length (n_in) first
    assert shapes["blk.1.ffn_down.weight"] == ((128, 64), "Q4_0")
    assert shapes["blk.0.ffn_up.bias"] == ((128,), "F32")
    assert set(shapes) == {"token_embd.weight", "position_embd.weight", "token_types.weight",
                           "token_embd_norm.weight", "token_embd_norm.bias"} | {
        f"blk.{i}.{t}.{p}" for i in range(2) for t in LAYER for p in ("weight", "bias")}

    m = read_e5s1(source)
    try:
        pairs = {"position_embd.weight": "emb.pos", "token_types.weight": "emb.type",
                 "token_embd_norm.weight": "emb.ln.w", "token_embd_norm.bias": "emb.ln.b",
                 "blk.1.attn_q.weight": "l1.q.w", "blk.1.attn_q.bias": "l1.q.b", "blk.0.attn_k.weight": "l0.k.w",
                 "blk.0.attn_v.bias": "l0.v.b", "blk.1.attn_output.weight": "l1.ao.w",
                 "blk.1.attn_output_norm.weight": "l1.aln.w", "blk.0.attn_output_norm.bias": "l0.aln.b",
                 "blk.0.ffn_up.weight": "l0.fi.w", "blk.0.ffn_down.weight": "l0.fo.w", "blk.1.ffn_down.bias": "l1.fo.b",
                 "blk.1.layer_output_norm.weight": "l1.oln.w", "blk.0.layer_output_norm.bias": "l0.oln.b"}
        for gguf_name, e5_name in pairs.items():
            assert tensor_bytes(dst, gguf_name) == bytes(m.tensors[e5_name].data), gguf_name
        word = bytes(m.tensors["emb.word"].data)
        assert tensor_bytes(dst, "token_embd.weight") == word[: rows * 2 * 18]
    finally:
        m.close()
    if word_table:
        assert md["tokenizer.ggml.tokens"] == [p for p, _ in TOY_PIECES]  # a short array: read in full
        assert md["tokenizer.ggml.bos_token_id"] == 0 and md["tokenizer.ggml.eos_token_id"] == 2
        assert md["tokenizer.ggml.unknown_token_id"] == 3 and md["tokenizer.ggml.padding_token_id"] == 1
        assert md["tokenizer.ggml.mask_token_id"] == n_vocab - 1
        assert md["tokenizer.ggml.token_type"][:5] == [3, 3, 3, 2, 1]  # control ×3, unknown, normal
        assert md["tokenizer.ggml.scores"] == pytest.approx([s for _, s in TOY_PIECES])
    else:
        assert "tokenizer.ggml.tokens" not in md


def test_cache_converts_once_then_verifies(source: Path, tmp_path: Path) -> None:
    said: list[str] = []
    path = ensure_e5_gguf(tmp_path / "cache", source, notice=said.append)
    assert path.is_file() and path.parent == tmp_path / "cache" / "e5"
    assert file_sha256(source)[:16] in path.name
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == file_sha256(path) and record["source"] == str(source)
    assert len(said) == 2 and "Preparing" in said[0]
    mtime = path.stat().st_mtime_ns
    assert ensure_e5_gguf(tmp_path / "cache", source, notice=said.append) == path
    assert len(said) == 2 and path.stat().st_mtime_ns == mtime  # verified, not rebuilt


@pytest.mark.parametrize("damage", ["truncate", "flip", "sidecar", "sidecar-garbage"])
def test_a_damaged_cache_file_is_rebuilt_never_loaded(source: Path, tmp_path: Path, damage: str) -> None:
    path = ensure_e5_gguf(tmp_path / "cache", source, notice=lambda _: None)
    good = file_sha256(path)
    if damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "sidecar":
        path.with_suffix(".json").unlink()
    else:
        path.with_suffix(".json").write_text("{not json")
    said: list[str] = []
    assert ensure_e5_gguf(tmp_path / "cache", source, notice=said.append) == path
    assert said and file_sha256(path) == good


def test_a_new_source_gets_its_own_file_and_a_missing_source_is_refused(source: Path, tmp_path: Path) -> None:
    first = ensure_e5_gguf(tmp_path / "cache", source, notice=lambda _: None)
    other = write_e5s1(tmp_path / "other.bin", seed=1)
    second = ensure_e5_gguf(tmp_path / "cache", other, notice=lambda _: None)
    assert first != second and first.is_file() and second.is_file()
    with pytest.raises(InvalidModelFile, match="does not exist"):
        ensure_e5_gguf(tmp_path / "cache", tmp_path / "nope.bin")


def test_no_temporary_files_are_left_behind(source: Path, tmp_path: Path) -> None:
    ensure_e5_gguf(tmp_path / "cache", source, notice=lambda _: None)
    names = sorted(os.listdir(tmp_path / "cache" / "e5"))
    assert [n.rsplit(".", 1)[1] for n in names] == ["gguf", "json", "lock"]


def test_the_converted_file_is_the_same_model(source: Path, tmp_path: Path) -> None:
    """llama.cpp runs both layouts of the converted tiny model like a float64 numpy BERT forward."""
    from inhouse.engine.backends.llama_cpp.embed import LlamaCppEncoder
    from inhouse.testing.e5s1 import reference_forward

    full, enc = tmp_path / "full.gguf", tmp_path / "enc.gguf"
    convert_e5s1(source, full, word_table=True)
    convert_e5s1(source, enc)
    m = read_e5s1(source)
    seqs = [[0, 9, 15, 2], [0, 17, 19, 23, 24, 25, 26, 2], [0, 2], [0, *range(4, 18), 2]]
    ref = np.stack([reference_forward(m, s) for s in seqs])
    a = LlamaCppEncoder(full, n_threads=1, n_ubatch=16, pass_tokens=16)
    b = LlamaCppEncoder(enc, n_threads=2, n_ubatch=16, pass_tokens=8, input_embeddings=m.word_embeddings)
    try:
        va, vb = a.encode(seqs), b.encode(seqs)
    finally:
        a.close()
        b.close()
        m.close()
    for v in (va, vb):
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() > 0.999, cos
        assert np.allclose(np.linalg.norm(v, axis=1), np.linalg.norm(ref, axis=1), rtol=0.02)
