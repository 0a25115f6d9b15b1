"""The OCR model's two ONNX graphs on ONNX Runtime (``models/ocr.py`` finds and verifies them; ``kb/parse/ocr.py``
turns pages into text with them). Arrays in, arrays out: no image handling here.

* **Detection** runs one page at a time, with ``n_threads`` intra-op threads: one large convolutional graph.
* **Recognition** runs many small batches of text-line crops (a page holds 20-60 lines), so like the e5 encoder
  (``ort/embed.py``) it runs one single-threaded ``InferenceSession.run`` per core in parallel: no thread waits at
  a barrier for another's, so a core taken by another process slows one batch, not all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from inhouse.engine.backends.ort.session import open_session, shrinking_run_options
from inhouse.errors import EngineFailure
from inhouse.hardware.cpu import physical_cores

log = logging.getLogger(__name__)


class OrtOcrGraphs:
    """The text detector and the line recognizer. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, detector: Path, recognizer: Path, *, n_threads: int = 0) -> None:
        self.n_threads = n_threads or physical_cores()
        self._det = open_session(detector, self.n_threads)
        self._rec = open_session(recognizer, 1)
        self._det_input = self._det.get_inputs()[0].name
        self._rec_input = self._rec.get_inputs()[0].name
        self.classes = int(self._rec.get_outputs()[0].shape[-1])
        # Without shrinking, ONNX Runtime keeps a page's peak (~0.5 GB of detector activations at 1,600 pixels) for
        # the life of the server: 1.2 GB stayed after one page, 0.3 GB with it (and the freed heap returned,
        # kb/parse/ocr.py). Measured cost: 1.80 s a page instead of 1.62; with no arena at all, 1.94.
        self._run_options = shrinking_run_options()
        self._pool: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(self.n_threads, thread_name_prefix="ort-ocr") if self.n_threads > 1 else None)
        log.info("loaded OCR graphs %s + %s (%d threads, %d classes)", detector.name, recognizer.name,
                 self.n_threads, self.classes)

    def detect(self, image: np.ndarray) -> np.ndarray:
        """``(1, 3, H, W)`` normalised float32 (H, W multiples of 32) → ``(H, W)`` text probability."""
        try:
            out = self._det.run(None, {self._det_input: image}, self._run_options)[0]
        except Exception as exc:
            raise EngineFailure(f"ONNX Runtime failed on text detection of a {image.shape} page: {exc}") from exc
        return np.asarray(out, dtype=np.float32)[0, 0]

    def recognize(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each ``(n, 3, 48, W)`` batch of line images → its ``(n, W / 8, classes)`` character scores."""
        def run(batch: np.ndarray) -> np.ndarray:
            try:
                return np.asarray(self._rec.run(None, {self._rec_input: batch}, self._run_options)[0],
                                  dtype=np.float32)
            except Exception as exc:
                raise EngineFailure(f"ONNX Runtime failed on text recognition of {batch.shape}: {exc}") from exc

        if self._pool is None or len(batches) < 2:
            return [run(b) for b in batches]
        return list(self._pool.map(run, batches))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
