"""The real e5 embedder (``LlamaCppE5Embedder``: tokenizer port, windowing, locks, release) on a tiny e5 file with a
stand-in encoder, for tests of what is around the model (idle release, the status route): no GGUF conversion, no
llama.cpp, the same vector for the same tokens every time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from inhouse.kb.embed import LlamaCppE5Embedder
from inhouse.testing.e5s1 import write_e5s1


class StandInEncoder:
    """An encoder without a model: one vector per sequence, seeded by its token ids. It fails once closed."""

    n_embd = 64

    def __init__(self) -> None:
        self.closed = False

    def encode(self, seqs: Iterable[Sequence[int]]) -> np.ndarray:
        assert not self.closed, "a closed encoder was used"
        return np.stack([np.random.default_rng(list(seq)).standard_normal(64).astype(np.float32) for seq in seqs])

    def close(self) -> None:
        self.closed = True


def standin_e5(tmp_path: Path) -> tuple[LlamaCppE5Embedder, list[StandInEncoder]]:
    """The embedder, and the encoders it loaded so far (one more after each release and call)."""
    encoders: list[StandInEncoder] = []

    def load() -> StandInEncoder:
        encoders.append(StandInEncoder())
        return encoders[-1]

    emb = LlamaCppE5Embedder(cache_dir=tmp_path / "cache", source=write_e5s1(tmp_path / "e5.bin", max_positions=32),
                             notice=lambda _: None)
    emb._load_encoder = load  # type: ignore[method-assign,assignment]
    return emb, encoders
