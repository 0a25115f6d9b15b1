"""Write small, valid GGUF files for tests (the reader's fuzz tests, registry tests, fixtures of others).

    write_gguf(path, {"general.architecture": "llama", "llama.context_length": Typed(UINT32, 2048)},
               {"token_embd.weight": ((64, 8), "Q8_0")})

Metadata values are typed from Python: ``str`` → string, ``bool`` → bool, ``int`` → int32 (int64 when it
does not fit), ``float`` → float32, ``list`` → array of the first item's type. Wrap a value in ``Typed`` to
choose the GGUF type exactly. Tensor data is zero bytes unless given.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.models import gguf as g

TensorSpec = tuple[tuple[int, ...], str | int] | tuple[tuple[int, ...], str | int, bytes]


@dataclass(frozen=True)
class Typed:
    """A metadata value with an explicit GGUF value type (for arrays: the item type)."""

    vtype: int
    value: Any


def _infer(value: Any) -> int:
    if isinstance(value, Typed):
        return value.vtype
    if isinstance(value, bool):
        return g.BOOL
    if isinstance(value, int):
        return g.INT32 if -(2**31) <= value < 2**31 else g.INT64
    if isinstance(value, float):
        return g.FLOAT32
    if isinstance(value, str):
        return g.STRING
    if isinstance(value, list | tuple):
        return g.ARRAY
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _scalar(vtype: int, value: Any) -> bytes:
    if vtype == g.STRING:
        return _string(value)
    return struct.pack(g._SCALAR_FMT[vtype], value)


def _value(vtype: int, value: Any) -> bytes:
    if isinstance(value, Typed):
        value = value.value
    if vtype != g.ARRAY:
        return _scalar(vtype, value)
    items = list(value)
    item_type = _infer(items[0]) if items else g.INT32
    return struct.pack("<IQ", item_type, len(items)) + b"".join(
        _scalar(item_type, it.value if isinstance(it, Typed) else it) for it in items
    )


def _array_value(value: Typed) -> bytes:
    """A ``Typed`` whose type is an item type of a list value: an array of that type."""
    items = list(value.value)
    return struct.pack("<IQ", value.vtype, len(items)) + b"".join(_scalar(value.vtype, it) for it in items)


def build_gguf(
    kv: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec] | None = None,
    *,
    version: int = 3,
    alignment: int = g.DEFAULT_ALIGNMENT,
) -> bytes:
    """The bytes of a GGUF file. Set ``general.alignment`` in ``kv`` yourself if not 32."""
    out = bytearray(g.MAGIC)
    tensors = tensors or {}
    out += struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, value in kv.items():
        out += _string(key)
        if isinstance(value, Typed) and isinstance(value.value, list | tuple):
            out += struct.pack("<I", g.ARRAY) + _array_value(value)
            continue
        vtype = _infer(value)
        out += struct.pack("<I", vtype) + _value(vtype, value)
    datas: list[bytes] = []
    offset = 0
    for name, spec in tensors.items():
        shape, ttype = spec[0], spec[1]
        tid = ttype if isinstance(ttype, int) else g.GGML_TYPE_IDS[ttype]
        try:
            n_bytes = g.ggml_tensor_nbytes(tid, tuple(shape))
        except ValueError:  # tests write invalid tensors on purpose: no data for them
            n_bytes = 0
        data = spec[2] if len(spec) == 3 else bytes(n_bytes)  # type: ignore[misc]
        out += _string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", tid, offset)
        padded = data + bytes(-len(data) % alignment)
        datas.append(padded)
        offset += len(padded)
    if tensors:
        out += bytes(-len(out) % alignment)
        for d in datas:
            out += d
    return bytes(out)


def write_gguf(
    path: Path | str,
    kv: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec] | None = None,
    *,
    version: int = 3,
    alignment: int = g.DEFAULT_ALIGNMENT,
) -> Path:
    """Write a GGUF file (see ``build_gguf``) and return its path."""
    path = Path(path)
    path.write_bytes(build_gguf(kv, tensors, version=version, alignment=alignment))
    return path


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
