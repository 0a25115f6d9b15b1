"""A llama.cpp text encoder: token-id sequences in, one mean-pooled vector per sequence out.

For non-causal embedding models (architecture ``bert``: multilingual-e5-small converted by
``models/e5/convert.py``). Tokenization is the caller's (it owns the exact tokenizer of the model), so this
module only packs sequences into passes and runs them.

llama.cpp comes through ``_library.py`` (``load_library`` / ``init_process``): that
module stays the only one that imports ``llama_cpp``, and the process-wide state it keeps (backend init, the
one log callback) is shared, not set up twice.

How a pass runs: a model without a KV cache (BERT) is run by ``llama_decode`` as one encoder pass, which
needs the whole batch inside one micro-batch (``n_ubatch >= n_tokens``, so ``n_ubatch`` is at least the
model's 512 positions). Many sequences go into one pass, each with its own ``seq_id`` and positions from 0;
attention is masked per sequence and llama.cpp mean-pools each sequence (``LLAMA_POOLING_TYPE_MEAN``).

Design choices, measured on this 2-core EPYC with corpus-sized chunks (~84 tokens):

* **Flash attention on.** Attention in one pass spans all of its tokens (masked outside each sequence).
  Without flash attention llama.cpp materialises that masked score matrix: one thread, a pass of 12
  sequences ran at 570 tokens/s against 2,700 for a single one. With it, 3,500 either way.
* **One single-threaded context per core** ("workers", sharing one model), fed passes from a queue, instead
  of one context with a thread per core. A multi-threaded context meets at a barrier after every graph op
  (~430 per pass); independent contexts never wait for each other: 7,100-7,400 tokens/s against 6,500-6,900
  for one 2-thread context, and no collapse when another process takes a core for a while (a spinning
  barrier then waits whole scheduler slices). A call that is one pass (a search query) runs instead on an
  extra context with all the threads: a short pass is bound by reading the weights, which threads share
  (a 14-token query: ~3 ms against ~5 ms on one thread).
* **Passes of ~192 tokens** (``pass_tokens``; a longer sequence gets a pass of its own): enough rows for the
  matrix kernels, a small masked attention, and short enough that the last pass of a call keeps one worker
  busy only briefly while the others have nothing left (128 / 192 / 256 / 384: 6,700 / 7,000 / 6,850 /
  6,650 tokens/s).
* **Sequences are pulled lazily** by the worker that takes the next pass, so the caller's tokenizer (pure
  Python, ~0.35 ms per chunk) runs while the other workers compute instead of before them.

The ``llama_batch`` handed to llama.cpp is built over numpy arrays owned by each worker (token ids or token
vectors, positions, one ``seq_id`` slot per token), so filling a pass is a few vectorised copies, not a Python
loop per token.
``encode`` is not re-entrant: callers serialise (the embedder holds a lock).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.engine.backends.llama_cpp._library import init_process, load_library, load_model
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.hardware.cpu import physical_cores

log = logging.getLogger(__name__)


class _DropVocabNotice(logging.Filter):
    """llama.cpp warns "adding N dummy tokens" when a model has no tokenizer: expected here, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "dummy tokens" not in record.getMessage()


class _Worker:
    """One llama.cpp context (its own thread count, compute buffers and batch arrays) over the shared model."""

    def __init__(self, enc: LlamaCppEncoder, *, n_ubatch: int, n_seq_max: int, n_threads: int,
                 flash_attn: bool) -> None:
        L = enc._L
        self._L, self._enc = L, enc
        cparams = L.llama_context_default_params()
        cparams.n_ctx = n_ubatch
        cparams.n_batch = n_ubatch
        cparams.n_ubatch = n_ubatch
        cparams.n_seq_max = n_seq_max
        cparams.kv_unified = True  # else llama.cpp would size n_ctx per sequence (n_seq_max × n_ctx)
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        cparams.embeddings = True
        cparams.pooling_type = L.LLAMA_POOLING_TYPE_MEAN
        cparams.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cparams.no_perf = True
        mark = enc._log.n_errors
        self.ctx: Any = L.llama_init_from_model(enc._model, cparams)
        if not self.ctx:
            raise EngineFailure(f"llama.cpp could not create an embedding context: {enc._errors(mark)}")
        if L.llama_pooling_type(self.ctx) != L.LLAMA_POOLING_TYPE_MEAN:
            L.llama_free(self.ctx)
            self.ctx = None
            raise InvalidModelFile("The model is not a mean-pooling embedding model.", param="model")
        n = int(L.llama_n_ubatch(self.ctx))
        self.n_ubatch = n
        self._tokens = np.zeros(n, dtype=np.int32)
        self._pos = np.zeros(n, dtype=np.int32)
        self._n_seq_id = np.ones(n, dtype=np.int32)
        self._seq = np.zeros(n, dtype=np.int32)  # one seq_id per token; seq_id[i] points at _seq[i]
        self._outputs = np.ones(n, dtype=np.int8)  # pooled embeddings need every token as an output
        base = self._seq.ctypes.data
        int_p = ctypes.POINTER(ctypes.c_int32)
        self._seq_ptrs = (int_p * n)(*[ctypes.cast(base + 4 * i, int_p) for i in range(n)])
        b = L.llama_batch()
        if enc._input_embeddings is None:
            b.token = self._tokens.ctypes.data_as(int_p)
            b.embd = ctypes.POINTER(ctypes.c_float)()
        else:  # the caller looks token vectors up itself (see models/e5/convert.py: one-row vocabulary)
            self._embd = np.zeros((n, enc.n_embd), dtype=np.float32)
            b.token = int_p()
            b.embd = self._embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        b.pos = self._pos.ctypes.data_as(int_p)
        b.n_seq_id = self._n_seq_id.ctypes.data_as(int_p)
        b.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(int_p))
        b.logits = self._outputs.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch = b

    def run(self, group: list[tuple[int, Sequence[int]]], out: dict[int, np.ndarray]) -> None:
        """One pass over ``group`` (stream index, tokens); each pooled vector goes to ``out[index]``."""
        L, enc = self._L, self._enc
        off = 0
        for k, (_, seq) in enumerate(group):
            n = len(seq)
            self._tokens[off:off + n] = seq
            self._pos[off:off + n] = np.arange(n, dtype=np.int32)
            self._seq[off:off + n] = k
            off += n
        if enc._input_embeddings is not None:
            self._embd[:off] = enc._input_embeddings(self._tokens[:off])
        elif off and (int(self._tokens[:off].min()) < 0 or int(self._tokens[:off].max()) >= enc.n_vocab):
            # llama.cpp does not check ids inside a graph: an out-of-range id would read past the embedding table.
            raise InvalidRequest(f"A token id is outside the model's vocabulary of {enc.n_vocab}.")
        self._batch.n_tokens = off
        mark = enc._log.n_errors
        rc = L.llama_decode(self.ctx, self._batch)
        if rc != 0:
            raise EngineFailure(f"llama_decode failed on an embedding pass of {off} tokens (code {rc}): "
                                f"{enc._errors(mark)}")
        for k, (index, _) in enumerate(group):
            ptr = L.llama_get_embeddings_seq(self.ctx, k)
            if not ptr:
                raise EngineFailure(f"llama.cpp returned no pooled embedding for sequence {k}.")
            out[index] = np.ctypeslib.as_array(ptr, shape=(enc.n_embd,)).copy()

    def close(self) -> None:
        if self.ctx:
            self._L.llama_free(self.ctx)
            self.ctx = None


class _Stream:
    """Sequences cut into passes on demand: ``take`` (under a lock) pulls from the iterator until the pass holds
    ``pass_tokens`` tokens or ``n_seq_max`` sequences; the sequence that did not fit opens the next pass."""

    def __init__(self, seqs: Iterable[Sequence[int]], pass_tokens: int, n_seq_max: int, limit: int) -> None:
        self._it = iter(seqs)
        self._pass_tokens, self._n_seq_max, self._limit = pass_tokens, n_seq_max, limit
        self._next: Sequence[int] | None = None
        self._count = 0
        self._lock = threading.Lock()
        self.done = False
        self.failed = threading.Event()

    def take(self) -> list[tuple[int, Sequence[int]]]:
        with self._lock:
            group: list[tuple[int, Sequence[int]]] = []
            used = 0
            while not self.failed.is_set():
                seq = self._next if self._next is not None else next(self._it, None)
                self._next = None
                if seq is None:
                    self.done = True
                    break
                n = len(seq)
                if not 1 <= n <= self._limit:
                    raise InvalidRequest(f"A sequence of {n} tokens is outside 1..{self._limit}.")
                if group and (used + n > self._pass_tokens or len(group) >= self._n_seq_max):
                    self._next = seq
                    break
                group.append((self._count, seq))
                self._count += 1
                used += n
            return group


def _drain(stream: _Stream, worker: _Worker, out: dict[int, np.ndarray]) -> None:
    while group := stream.take():
        try:
            worker.run(group, out)
        except BaseException:
            stream.failed.set()  # the other workers stop after their current pass
            raise


class LlamaCppEncoder:
    """One embedding model, ``n_workers`` contexts. ``encode`` returns the raw (not normalised) mean-pooled
    vectors. ``n_threads`` (0: physical cores) is the total: by default one single-threaded worker per thread.
    With ``input_embeddings`` (token ids → ``(n, n_embd)`` float32) the passes carry token vectors instead of
    ids, for a model whose embedding table is kept outside the GGUF. Call ``close()`` to free it; there is no
    ``__del__``."""

    def __init__(self, model_path: str | Path, *, n_threads: int = 0, n_workers: int = 0, pass_tokens: int = 192,
                 n_ubatch: int = 512, n_seq_max: int = 64, flash_attn: bool = True, use_mmap: bool = True,
                 input_embeddings: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise InvalidModelFile(f"The embedding model file {path} does not exist.", param="model")
        L = load_library()
        self._L = L
        self._log = init_process(L)
        if not 1 <= n_seq_max <= L.llama_max_parallel_sequences():
            raise InvalidRequest(f"n_seq_max must be 1..{L.llama_max_parallel_sequences()}, got {n_seq_max}.")
        self.n_threads = n_threads or physical_cores()
        n_workers = n_workers or self.n_threads
        if n_workers > self.n_threads:
            raise InvalidRequest(f"n_workers={n_workers} is above n_threads={self.n_threads}.")
        self._input_embeddings = input_embeddings
        self._model: Any = None
        self._workers: list[_Worker] = []
        self._solo: _Worker | None = None
        self._pool: ThreadPoolExecutor | None = None
        mparams = L.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.load_mode = L.LLAMA_LOAD_MODE_MMAP if use_mmap else L.LLAMA_LOAD_MODE_NONE
        mark = self._log.n_errors
        quiet = _DropVocabNotice()
        backend_log = logging.getLogger(load_library.__module__)
        backend_log.addFilter(quiet)
        try:
            self._model = load_model(L, Path(path), mparams).model
        finally:
            backend_log.removeFilter(quiet)
        if not self._model:
            raise InvalidModelFile(f"llama.cpp could not load {path}: {self._errors(mark)}", param="model")
        try:
            self.n_embd = int(L.llama_model_n_embd(self._model))
            self.n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
            self.n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(self._model)))
            if n_ubatch < self.n_ctx_train:
                raise InvalidRequest(f"n_ubatch={n_ubatch} cannot hold one sequence of up to {self.n_ctx_train} "
                                     "tokens; non-causal models need each sequence inside one micro-batch.")
            # A pass never holds more sequences than tokens; llama.cpp also aborts (an assert) when n_seq_max
            # exceeds the batch size, so it is capped here.
            n_seq_max = min(n_seq_max, n_ubatch)
            # Threads split as evenly as possible (e.g. 5 threads, 2 workers: 3 + 2).
            shares = [self.n_threads // n_workers + (i < self.n_threads % n_workers) for i in range(n_workers)]
            for share in shares:
                self._workers.append(_Worker(self, n_ubatch=n_ubatch, n_seq_max=n_seq_max, n_threads=share,
                                             flash_attn=flash_attn))
            if n_workers > 1:
                # Single passes (search queries) run here, on all threads: a short pass is bound by streaming
                # the weights, which two threads halve (a 14-token query: ~3 ms instead of ~5 ms).
                self._solo = _Worker(self, n_ubatch=n_ubatch, n_seq_max=n_seq_max, n_threads=self.n_threads,
                                     flash_attn=flash_attn)
            self.n_ubatch = min(w.n_ubatch for w in self._workers)
            self.n_seq_max = n_seq_max
            self.pass_tokens = max(1, min(pass_tokens, self.n_ubatch))
            if n_workers > 1:
                self._pool = ThreadPoolExecutor(n_workers - 1, thread_name_prefix="llama-embed")
        except BaseException:
            self.close()
            raise
        log.info("loaded embedding model %s: n_embd=%d workers=%s pass_tokens=%d flash_attn=%s", path.name,
                 self.n_embd, shares, self.pass_tokens, flash_attn)

    @property
    def n_workers(self) -> int:
        return len(self._workers)

    def encode(self, seqs: Iterable[Sequence[int]]) -> np.ndarray:
        """``(n, n_embd)`` float32 for the ``n`` sequences of ``seqs``, in order: each one's mean over its token
        outputs (not normalised). ``seqs`` may be a lazy iterator: it is advanced by whichever worker takes
        the next pass (under a lock), so producing sequences (tokenizing) overlaps with running passes."""
        if not self._workers or not self._model:
            raise EngineFailure("The embedding encoder is closed.")
        stream = _Stream(seqs, self.pass_tokens, self.n_seq_max, min(self.n_ctx_train, self.n_ubatch))
        out: dict[int, np.ndarray] = {}
        first = stream.take()
        if stream.done:  # one pass (a query): on all threads
            if first:
                (self._solo or self._workers[0]).run(first, out)
        elif self._pool is None:  # one worker
            group = first
            while group:
                self._workers[0].run(group, out)
                group = stream.take()
        else:
            helpers = [self._pool.submit(_drain, stream, w, out) for w in self._workers[1:]]
            error: BaseException | None = None
            try:
                self._workers[0].run(first, out)  # the calling thread is worker 0
                _drain(stream, self._workers[0], out)
            except BaseException as exc:
                stream.failed.set()
                error = exc
            for f in helpers:
                try:
                    f.result()
                except BaseException as exc:
                    error = error or exc
            if error is not None:
                raise error
        if not out:
            return np.zeros((0, self.n_embd), dtype=np.float32)
        return np.stack([out[i] for i in range(len(out))])

    def close(self) -> None:
        """Free the contexts and the model. Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for w in self._workers:
            w.close()
        self._workers = []
        if self._solo is not None:
            self._solo.close()
            self._solo = None
        if self._model:
            self._L.llama_model_free(self._model)
            self._model = None

    @property
    def closed(self) -> bool:
        return not self._model

    def _errors(self, mark: int) -> str:
        return " ".join(self._log.errors_since(mark)) or "no details from llama.cpp"
