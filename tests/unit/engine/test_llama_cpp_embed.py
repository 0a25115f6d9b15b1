"""The llama.cpp encoder on a tiny synthetic BERT (converted from a random E5S1 model): passes, workers, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.engine.backends.llama_cpp.embed import LlamaCppEncoder, _Stream
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.models.e5.convert import convert_e5s1
from inhouse.models.e5.s1 import read_e5s1
from inhouse.testing.e5s1 import reference_forward, write_e5s1

MAXP = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("enc")
    src = write_e5s1(d / "tiny.bin", max_positions=MAXP)
    convert_e5s1(src, d / "full.gguf", word_table=True)
    return src, d / "full.gguf"


def make(files: tuple[Path, Path], **kw: object) -> LlamaCppEncoder:
    options: dict[str, object] = {"n_threads": 2, "n_ubatch": MAXP, "pass_tokens": 12}
    options.update(kw)
    return LlamaCppEncoder(files[1], **options)  # type: ignore[arg-type]


def seqs(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[0, *rng.integers(4, 36, size=int(rng.integers(0, 20))).tolist(), 2] for _ in range(n)]


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_stream_cuts_passes_by_tokens_and_sequences() -> None:
    s = _Stream(iter([[1] * 5, [1] * 5, [1] * 3, [1] * 12, [1]]), pass_tokens=12, n_seq_max=2, limit=16)
    assert [[len(x) for _, x in s.take()] for _ in range(4)] == [[5, 5], [3], [12], [1]]
    assert s.take() == [] and s.done
    s = _Stream(iter([[1] * 3] * 5), pass_tokens=100, n_seq_max=2, limit=16)
    assert [i for i, _ in s.take()] == [0, 1] and [i for i, _ in s.take()] == [2, 3]
    with pytest.raises(InvalidRequest, match="outside"):
        _Stream(iter([[1] * 17]), 12, 2, 16).take()
    with pytest.raises(InvalidRequest, match="outside"):
        _Stream(iter([[]]), 12, 2, 16).take()


def test_vectors_follow_the_reference_and_do_not_depend_on_the_passes(files: tuple[Path, Path]) -> None:
    items = seqs(40)
    m = read_e5s1(files[0])
    ref = np.stack([reference_forward(m, s) for s in items])
    m.close()
    outs = []
    for kw in ({"n_threads": 1}, {"n_threads": 2}, {"n_threads": 2, "pass_tokens": MAXP}, {"n_threads": 3}):
        enc = make(files, **kw)
        try:
            outs.append(enc.encode(iter(items)))  # a lazy iterator is fine
            assert enc.n_workers == kw["n_threads"]
        finally:
            enc.close()
    for out in outs:
        assert out.shape == (40, 64) and out.dtype == np.float32
        assert cos(out, ref).min() > 0.999
        assert cos(out, outs[0]).min() > 0.9999  # only float noise from how sequences share a pass


def test_one_sequence_runs_alone_and_an_empty_input_is_empty(files: tuple[Path, Path]) -> None:
    enc = make(files)
    try:
        one = enc.encode([[0, 5, 2]])
        assert one.shape == (1, 64)
        assert cos(one[0], enc.encode([[0, 5, 2], [0, 6, 2]])[0]) > 0.9999
        assert enc.encode([]).shape == (0, 64)
    finally:
        enc.close()


def test_errors_leave_the_encoder_usable(files: tuple[Path, Path]) -> None:
    enc = make(files)
    try:
        def broken() -> Iterator[list[int]]:
            yield from seqs(6)
            raise RuntimeError("tokenizer failed")

        with pytest.raises(RuntimeError, match="tokenizer failed"):
            enc.encode(broken())
        with pytest.raises(InvalidRequest, match="vocabulary"):
            enc.encode([[0, 10_000, 2]])
        with pytest.raises(InvalidRequest, match="outside"):
            enc.encode([[0] * (MAXP + 1)])
        assert enc.encode(seqs(5)).shape == (5, 64)
    finally:
        enc.close()
    enc.close()  # idempotent
    assert enc.closed
    with pytest.raises(EngineFailure, match="closed"):
        enc.encode([[0, 2]])


def test_bad_configuration_is_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="does not exist"):
        LlamaCppEncoder(tmp_path / "none.gguf")
    with pytest.raises(InvalidRequest, match="micro-batch"):
        make(files, n_ubatch=MAXP // 2)
    with pytest.raises(InvalidRequest, match="n_workers"):
        make(files, n_threads=1, n_workers=2)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(InvalidModelFile, match="could not load"):
        LlamaCppEncoder(junk)
