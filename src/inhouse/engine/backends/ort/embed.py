"""An ONNX Runtime text encoder: token-id sequences in, one mean-pooled vector per sequence out.

Runs the int8 graph of ``models/e5/onnx_graph.py`` (opened by ``session.py``, which holds the session settings).

How a call runs:

* **Small batches of similar lengths.** The sequences are sorted by length and cut into batches of about
  ``batch_tokens`` tokens (512), as many as a multiple of the parallel runs, so padding stays small and no core
  idles at the end of a call (``plan_batches``). Small because the activations of a batch then stay in the
  core's caches: on the Python manual's chunks, 512 / 1,024 / 2,048 tokens per batch ran at ~14k / ~12k / ~9.5k
  tokens/s (calls of 256 chunks), and calls of 64 chunks ~30 % slower than calls of 256 (``kb.embed_batch``).
* **One single-threaded run per core, in parallel** (like the llama.cpp encoder's workers): each batch is one
  ``InferenceSession.run`` with one intra-op thread, from a pool of ``n_threads`` Python threads (ONNX Runtime
  releases the GIL while it runs). No thread of one run waits at a barrier for another's, so a core taken by
  another process slows one run, not all of them.
* **Row order.** Row 0 and row 1 of each sequence hold its first and last token (e5's ``<s>`` and ``</s>``), the
  others follow, each with its true position id: the graph quantizes those two rows on their own (their hidden
  states are 10-20× larger than the rest). Mean pooling does not depend on the order.

Within a batch, activations are quantized per tensor, so a passage's vector depends very slightly on the batch it
was computed in (cosine ≥ 0.9999 between batches; docs/knowledge.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.engine.backends.ort.session import open_session
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.hardware.cpu import physical_cores

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether ONNX Runtime is importable here (it is a dependency; a broken install falls back to llama.cpp)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def plan_batches(lengths: Sequence[int], batch_tokens: int, n_workers: int = 1) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar lengths (longest first) holding about the same number of tokens.

    The batch count is the fewest that keeps each batch near ``batch_tokens``, rounded up to a multiple of
    ``n_workers``: with 3 batches on 2 workers one worker would idle through the last third of the call (the
    corpus's 84-token chunks, 64 per call: 9,350 tokens/s unbalanced)."""
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    total = sum(lengths)
    k = -(-total // batch_tokens)
    k = min(len(order), -(-k // n_workers) * n_workers)
    share = total / k
    batches: list[list[int]] = [[]]
    done = 0
    for i in order:
        # Close the batch once it holds its share of the tokens (the next batch starts at the next share).
        if batches[-1] and done >= share * len(batches) and len(batches) < k:
            batches.append([])
        batches[-1].append(i)
        done += lengths[i]
    return batches


def special_rows_first(n: int) -> np.ndarray:
    """The row order of one sequence of ``n`` tokens: first token, last token, then the ones between."""
    if n <= 2:
        return np.arange(n)
    return np.concatenate([[0, n - 1], np.arange(1, n - 1)])


class OrtEncoder:
    """The e5 graph on ONNX Runtime. ``input_embeddings`` maps token ids to ``(n, n_embd)`` float32 word vectors
    (the graph adds position and token-type vectors). ``encode`` is not re-entrant: callers serialise."""

    def __init__(self, model_path: str | Path, *, n_embd: int, max_positions: int,
                 input_embeddings: Callable[[np.ndarray], np.ndarray], n_threads: int = 0,
                 batch_tokens: int = 512) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise InvalidModelFile(f"The embedding model file {path} does not exist.", param="model")
        self.n_embd, self.max_positions = n_embd, max_positions
        self.n_threads = n_threads or physical_cores()
        self.batch_tokens = max(batch_tokens, max_positions)
        self._words = input_embeddings
        self._session: Any = open_session(path, 1)  # parallel runs instead: see the module doc
        self._pool: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(self.n_threads, thread_name_prefix="ort-embed") if self.n_threads > 1 else None)
        log.info("loaded embedding graph %s: %d parallel runs, batches of %d tokens", path.name, self.n_threads,
                 self.batch_tokens)

    def _run(self, seqs: list[np.ndarray]) -> np.ndarray:
        T = max(len(s) for s in seqs)
        words = np.zeros((len(seqs), T, self.n_embd), dtype=np.float32)
        positions = np.zeros((len(seqs), T), dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=np.float32)
        for b, seq in enumerate(seqs):
            order = special_rows_first(len(seq))
            words[b, :len(seq)] = self._words(seq[order])
            positions[b, :len(seq)] = order
            mask[b, :len(seq)] = 1.0
        try:
            out = self._session.run(["pooled"], {"words": words, "positions": positions, "mask": mask})[0]
        except Exception as exc:
            raise EngineFailure(f"ONNX Runtime failed on an embedding batch of {len(seqs)} x {T} tokens: "
                                f"{exc}") from exc
        return np.asarray(out, dtype=np.float32)

    def encode(self, seqs: Iterable[Sequence[int]]) -> np.ndarray:
        """``(n, n_embd)`` float32 for the ``n`` sequences, in order: each one's mean over its last hidden states
        (not normalised)."""
        if self._session is None:
            raise EngineFailure("The embedding encoder is closed.")
        items = [np.asarray(s, dtype=np.int64) for s in seqs]
        for s in items:
            if not 1 <= len(s) <= self.max_positions:
                raise InvalidRequest(f"A sequence of {len(s)} tokens is outside 1..{self.max_positions}.")
        out = np.zeros((len(items), self.n_embd), dtype=np.float32)
        batches = plan_batches([len(s) for s in items], self.batch_tokens, self.n_threads)
        if self._pool is None or len(batches) == 1:
            results = [self._run([items[i] for i in batch]) for batch in batches]
        else:
            results = list(self._pool.map(lambda batch: self._run([items[i] for i in batch]), batches))
        for batch, vectors in zip(batches, results, strict=True):
            out[batch] = vectors
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._session = None
