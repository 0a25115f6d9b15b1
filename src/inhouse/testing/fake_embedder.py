"""``FakeEmbedder``: deterministic vectors from hashed character trigrams, no model.

Texts that share trigrams get similar vectors, so retrieval tests behave sensibly (a query about "leave days"
finds the chunk about leave days) while every run gives the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from inhouse.errors import InvalidRequest


class FakeEmbedder:
    name = "fake-trigram"

    def __init__(self, dim: int = 384) -> None:
        self._dim = dim
        self.calls = 0  # embed_passages calls (tests check batching)
        self.passages_embedded = 0

    @property
    def dim(self) -> int:
        return self._dim

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self._dim, dtype=np.float32)
        t = f"  {text.lower()}  "
        for i in range(len(t) - 2):
            h = hashlib.blake2b(t[i:i + 3].encode("utf-8"), digest_size=8).digest()
            n = int.from_bytes(h, "little")
            v[n % self._dim] += 1.0 if (n >> 32) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            v[0] = 1.0
            return v
        return v / norm

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.passages_embedded += len(texts)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.vstack([self._vector(t) for t in texts]).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    def text_of_tokens(self, ids: Sequence[int]) -> str:
        """The fake vocabulary is UTF-8 bytes: ids 0-255."""
        if any(not 0 <= t < 256 for t in ids):
            raise InvalidRequest("These token ids are not in the fake embedder's vocabulary (bytes 0-255).",
                                 param="input")
        return bytes(ids).decode("utf-8", errors="replace")
