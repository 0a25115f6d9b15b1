"""Write GGUF files: the counterpart of the reader in ``gguf.py`` (same type tables, same layout).

    write_gguf(path, {"general.architecture": "bert", "bert.block_count": Typed(UINT32, 12)},
               {"token_embd.weight": ((384, 250002), "Q4_0", data)})

Metadata values are typed from Python: ``str`` → string, ``bool`` → bool, ``int`` → int32 (int64 when it
does not fit), ``float`` → float32, ``list`` → array of the first item's type. Wrap a value in ``Typed`` to
choose the GGUF type exactly (for a list: the item type). Tensor data is zero bytes unless given; given data
is any bytes-like object (``bytes``, ``memoryview`` of a mapped file) and is streamed to the file, never
concatenated in memory, so converting a model costs no more RAM than its metadata.

Used in production by the e5 converter (``models/e5/convert.py``) and by tests to make small model files
(``inhouse.testing.gguf_writer`` adds the tiny-model fixtures).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.models.gguf import read as g

TensorSpec = tuple[tuple[int, ...], str | int] | tuple[tuple[int, ...], str | int, Any]

# Array item types that pack in one call through the ``array`` module (fast for 250k-entry vocabularies).
_ARRAY_CODES = {g.FLOAT32: "f", g.INT32: "i", g.UINT32: "I", g.FLOAT64: "d", g.INT8: "b", g.UINT8: "B",
                g.INT16: "h", g.UINT16: "H", g.INT64: "q", g.UINT64: "Q"}


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
    if isinstance(value, str | bytes):
        return g.STRING
    if isinstance(value, list | tuple):
        return g.ARRAY
    raise TypeError(f"cannot store {type(value).__name__} in GGUF metadata")


def _string(s: str | bytes) -> bytes:
    raw = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _scalar(vtype: int, value: Any) -> bytes:
    if vtype == g.STRING:
        return _string(value)
    return struct.pack(g._SCALAR_FMT[vtype], value)


def _items(vtype: int, items: list[Any]) -> bytes:
    code = _ARRAY_CODES.get(vtype)
    if code is not None and array(code).itemsize == struct.calcsize(g._SCALAR_FMT[vtype]):
        packed = array(code, items)
        if struct.pack("=I", 1) != struct.pack("<I", 1):  # pragma: no cover - big-endian hosts
            packed.byteswap()
        return packed.tobytes()
    if vtype == g.STRING:
        return b"".join(_string(it) for it in items)
    return b"".join(_scalar(vtype, it) for it in items)


def _value(vtype: int, value: Any) -> bytes:
    if isinstance(value, Typed):
        value = value.value
    if vtype != g.ARRAY:
        return _scalar(vtype, value)
    items = [it.value if isinstance(it, Typed) else it for it in value]
    item_type = _infer(value[0]) if items else g.INT32
    return struct.pack("<IQ", item_type, len(items)) + _items(item_type, items)


def _array_value(value: Typed) -> bytes:
    """A ``Typed`` whose type is an item type of a list value: an array of that type."""
    items = list(value.value)
    return struct.pack("<IQ", value.vtype, len(items)) + _items(value.vtype, items)


def _kv_bytes(key: str, value: Any) -> bytes:
    if isinstance(value, Typed) and isinstance(value.value, list | tuple):
        return _string(key) + struct.pack("<I", g.ARRAY) + _array_value(value)
    vtype = _infer(value)
    return _string(key) + struct.pack("<I", vtype) + _value(vtype, value)


def iter_gguf(
    kv: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec] | None = None,
    *,
    version: int = 3,
    alignment: int = g.DEFAULT_ALIGNMENT,
) -> Iterator[bytes | memoryview]:
    """The file as a stream of pieces: header, tensor directory, then each tensor's data (padded)."""
    tensors = tensors or {}
    head = bytearray(g.MAGIC)
    head += struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, value in kv.items():
        head += _kv_bytes(key, value)
    datas: list[tuple[Any, int]] = []  # (data or None for zeros, byte length)
    offset = 0
    for name, spec in tensors.items():
        shape, ttype = spec[0], spec[1]
        tid = ttype if isinstance(ttype, int) else g.GGML_TYPE_IDS[ttype]
        if len(spec) == 3:
            data = spec[2]  # type: ignore[misc]
            n_bytes = memoryview(data).nbytes
        else:
            data = None
            try:
                n_bytes = g.ggml_tensor_nbytes(tid, tuple(shape))
            except ValueError:  # tests write invalid tensors on purpose: no data for them
                n_bytes = 0
        head += _string(name) + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", d) for d in shape)
        head += struct.pack("<IQ", tid, offset)
        datas.append((data, n_bytes))
        offset += n_bytes + (-n_bytes % alignment)
    if tensors:
        head += bytes(-len(head) % alignment)
    yield bytes(head)
    for data, n_bytes in datas:
        if data is None:
            yield bytes(n_bytes)
        else:
            yield memoryview(data).cast("B")
        if n_bytes % alignment:
            yield bytes(-n_bytes % alignment)


def build_gguf(
    kv: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec] | None = None,
    *,
    version: int = 3,
    alignment: int = g.DEFAULT_ALIGNMENT,
) -> bytes:
    """The bytes of a GGUF file. Set ``general.alignment`` in ``kv`` yourself if not 32."""
    return b"".join(bytes(p) for p in iter_gguf(kv, tensors, version=version, alignment=alignment))


def write_gguf(
    path: Path | str,
    kv: Mapping[str, Any],
    tensors: Mapping[str, TensorSpec] | None = None,
    *,
    version: int = 3,
    alignment: int = g.DEFAULT_ALIGNMENT,
) -> Path:
    """Write a GGUF file (see ``iter_gguf``) and return its path. The data is streamed; the file is written
    under a temporary name and renamed, so a reader never sees a half-written file at ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for piece in iter_gguf(kv, tensors, version=version, alignment=alignment):
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
