"""The child side of the int8 self-test (``hardware/int8.py`` runs it and judges it): ``python -m
inhouse.engine.backends.ort.selftest`` builds a tiny random e5 (``inhouse.testing.e5s1``: 2 layers, 64 wide; no model
file needed), converts it to the int8 graph the embedder runs (``models/e5/onnx_graph.py``), embeds a batch of
sequences of several lengths with ``OrtEncoder`` and compares each with the float64 reference forward pass. It
prints one JSON line: the worst cosine.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _child(write_e5s1: Callable[..., Path], reference_forward: Callable[..., Any]) -> int:
    """The child's work, given the tiny-model writer and the reference forward pass (``inhouse.testing.e5s1``,
    wired by the script entry point below)."""
    import numpy as np

    from inhouse.engine.backends.ort.embed import OrtEncoder
    from inhouse.models.e5.onnx_graph import write_e5_onnx
    from inhouse.models.e5.s1 import read_e5s1

    with tempfile.TemporaryDirectory(prefix="inhouse-ort-selftest-") as tmp:
        source = write_e5s1(Path(tmp) / "tiny.bin", max_positions=32)
        graph = Path(tmp) / "tiny.onnx"
        write_e5_onnx(source, graph)
        m = read_e5s1(source)
        try:
            rng = np.random.default_rng(7)
            seqs = [[m.bos, *rng.integers(4, m.n_vocab, n).tolist(), m.eos] for n in (3, 9, 17, 30, 30, 12)]
            enc = OrtEncoder(graph, n_embd=m.hidden, max_positions=m.max_positions,
                             input_embeddings=m.word_embeddings, n_threads=2, batch_tokens=64)
            try:
                got = enc.encode(seqs)
            finally:
                enc.close()
            worst = 1.0
            for seq, vec in zip(seqs, got, strict=True):
                ref = reference_forward(m, seq)
                worst = min(worst, float(vec @ ref / (np.linalg.norm(vec) * np.linalg.norm(ref))))
        finally:
            m.close()
    print(json.dumps({"min_cosine": worst}))
    return 0


if __name__ == "__main__":
    from inhouse.testing.e5s1 import reference_forward, write_e5s1

    sys.exit(_child(write_e5s1, reference_forward))
