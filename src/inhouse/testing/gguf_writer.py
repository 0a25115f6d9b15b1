"""Small, valid GGUF files for tests (the reader's fuzz tests, registry tests, fixtures of others).

    write_gguf(path, {"general.architecture": "llama", "llama.context_length": Typed(UINT32, 2048)},
               {"token_embd.weight": ((64, 8), "Q8_0")})

The writer itself lives in ``inhouse.models.gguf.write`` (production code: the e5 converter uses it); this
module re-exports it and adds the tiny-model fixtures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inhouse.models.gguf import read as g
from inhouse.models.gguf.write import TensorSpec, Typed, build_gguf, iter_gguf, write_gguf

__all__ = ["TensorSpec", "Typed", "build_gguf", "iter_gguf", "tiny_model_kv", "tiny_model_tensors", "write_gguf",
           "write_tiny_model"]


def tiny_model_kv(
    arch: str = "llama",
    *,
    context_length: int = 2048,
    chat_template: str | None = None,
    tokens: list[str] | None = None,
    file_type: int = 7,
) -> dict[str, Any]:
    """Metadata of a plausible small model: architecture, context, file type, a vocabulary with BOS/EOS."""
    vocab = tokens or ["<unk>", "<s>", "</s>", *[f"tok{i}" for i in range(97)]]
    kv: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": f"tiny-{arch}",
        "general.file_type": Typed(g.UINT32, file_type),
        f"{arch}.context_length": Typed(g.UINT32, context_length),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": vocab,
        "tokenizer.ggml.bos_token_id": Typed(g.UINT32, 1),
        "tokenizer.ggml.eos_token_id": Typed(g.UINT32, 2),
    }
    if chat_template is not None:
        kv["tokenizer.chat_template"] = chat_template
    return kv


def tiny_model_tensors() -> dict[str, TensorSpec]:
    return {
        "token_embd.weight": ((64, 4), "Q8_0"),
        "output_norm.weight": ((64,), "F32"),
        "blk.0.attn_q.weight": ((256, 2), "Q4_K"),
    }


def write_tiny_model(path: Path | str, **kv_options: Any) -> Path:
    """A small valid GGUF model file (a few KB) with tensors of three types."""
    return write_gguf(path, tiny_model_kv(**kv_options), tiny_model_tensors())
