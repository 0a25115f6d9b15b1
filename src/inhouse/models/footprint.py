"""How much memory a model takes once loaded, from its GGUF header alone (nothing is mapped).

    weights  the tensors' bytes (memory-mapped; resident once read)
    KV cache n_ctx cells × layers × (K width + V width) × bytes per element of the KV type
    compute  llama.cpp's scratch buffer for one micro-batch (an upper estimate, see ``compute_bytes``)

The KV cache of inhouse's engine is *unified*: every sequence of a loaded model shares the same ``n_ctx``
cells, so the number of concurrent streams does not multiply it — more streams share the cells (each
stream's prompt + answer must fit in them together). What concurrency costs in memory is only the
micro-batch scratch, bounded by ``n_ubatch``.

Checked against llama.cpp 0.3.36's own accounting (``llama_kv_cache: size = …``, ``compute buffer size``)
on the Llama-2-7B, ChatGLM2-6B and Qwen2.5-7B shapes: the KV formula is exact; the compute estimate is
0–25 % above llama.cpp's figure (its graph allocator reuses memory between operations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inhouse.models.gguf.read import GgufArray, GgufInfo

# Bytes per KV element: f16, and the ggml block types (Q8_0 = 34 bytes per 32, Q4_0 = 18 per 32).
KV_ELEMENT_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
MIB = 2**20


@dataclass(frozen=True)
class ModelShape:
    """The facts of a model that its memory and decode speed depend on."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    weight_bytes: int  # all tensor data
    read_bytes_per_token: int  # what one decode step reads: every tensor but the embedding table
    n_params: int

    @property
    def kv_width(self) -> int:
        """K + V elements per token per layer."""
        return self.n_head_kv * (self.head_dim_k + self.head_dim_v)


def _int(meta: dict[str, Any], key: str, default: int | None = None) -> int:
    value = meta.get(key, default)
    if isinstance(value, list) and value:  # per-layer arrays (some architectures): the largest counts
        value = max(v for v in value if isinstance(v, int))
    if isinstance(value, GgufArray) and value.head:
        value = max(v for v in value.head if isinstance(v, int))
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"the GGUF header has no usable '{key}'")
    return value


def model_shape(info: GgufInfo) -> ModelShape:
    """The shape of a model from its header; ``ValueError`` naming the missing key when it is not a
    decoder llama.cpp describes with the usual ``<arch>.*`` keys."""
    arch = info.architecture
    if not arch:
        raise ValueError("the GGUF header names no architecture")
    m = info.metadata
    n_embd = _int(m, f"{arch}.embedding_length")
    n_head = _int(m, f"{arch}.attention.head_count")
    n_head_kv = _int(m, f"{arch}.attention.head_count_kv", n_head)
    head_default = n_embd // n_head if n_head else 0
    tokens = m.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, GgufArray) else len(tokens) if isinstance(tokens, list) else 0
    embd = next((t for t in info.tensors if t.name == "token_embd.weight"), None)
    has_output = any(t.name == "output.weight" for t in info.tensors)
    weight_bytes = sum(t.n_bytes for t in info.tensors)
    # A token's decode reads one row of the embedding table, not all of it — unless the output projection
    # is tied to it (no output.weight), in which case the table is read whole for the logits.
    skipped = embd.n_bytes if embd is not None and has_output else 0
    return ModelShape(
        architecture=arch,
        n_layer=_int(m, f"{arch}.block_count"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=_int(m, f"{arch}.attention.key_length", head_default),
        head_dim_v=_int(m, f"{arch}.attention.value_length", head_default),
        n_ff=_int(m, f"{arch}.feed_forward_length", 4 * n_embd),
        n_vocab=n_vocab or _int(m, f"{arch}.vocab_size", 0),
        weight_bytes=weight_bytes,
        read_bytes_per_token=weight_bytes - skipped,
        n_params=info.n_parameters,
    )


def kv_bytes_per_token(shape: ModelShape, kv_type: str = "f16") -> float:
    """KV cache bytes one token of context takes (all layers, K and V)."""
    if kv_type not in KV_ELEMENT_BYTES:
        raise ValueError(f"unknown KV type {kv_type!r}; known: {', '.join(KV_ELEMENT_BYTES)}")
    return shape.n_layer * shape.kv_width * KV_ELEMENT_BYTES[kv_type]


def kv_bytes(shape: ModelShape, n_ctx: int, kv_type: str = "f16") -> int:
    return int(n_ctx * kv_bytes_per_token(shape, kv_type))


def compute_bytes(shape: ModelShape, n_ctx: int, n_ubatch: int, flash_attn: bool) -> int:
    """Upper estimate of llama.cpp's CPU compute buffer for micro-batches of ``n_ubatch`` tokens: the logits
    of a micro-batch, the attention mask, and either the attention scores (without flash attention:
    n_ctx × n_ubatch × heads in f32, the dominant term at long contexts) or the feed-forward activations."""
    logits = n_ubatch * shape.n_vocab * 4
    mask = n_ctx * n_ubatch * 2
    scores = 0 if flash_attn else n_ctx * n_ubatch * shape.n_head * 4
    ffn = n_ubatch * 2 * shape.n_ff * 4
    return logits + mask + max(scores, ffn)


@dataclass(frozen=True)
class Footprint:
    """Memory a loaded model needs with given engine settings."""

    weights: int
    kv: int
    compute: int
    n_ctx: int
    kv_type: str

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute

    def describe(self) -> str:
        return (f"{self.total / MIB:,.0f} MB = weights {self.weights / MIB:,.0f} MB + KV cache "
                f"{self.kv / MIB:,.0f} MB (n_ctx {self.n_ctx}, {self.kv_type}) + compute {self.compute / MIB:,.0f} MB")


def estimate_footprint(shape: ModelShape, *, n_ctx: int, kv_type: str = "f16", n_ubatch: int = 512,
                       flash_attn: bool = False) -> Footprint:
    return Footprint(weights=shape.weight_bytes, kv=kv_bytes(shape, n_ctx, kv_type),
                     compute=compute_bytes(shape, n_ctx, n_ubatch, flash_attn), n_ctx=n_ctx, kv_type=kv_type)
