"""A strict, pure-Python reader of GGUF headers (no llama.cpp).

We read the header of every model file before llama.cpp sees it: a user may register any file, and the
C loader is not the place to find out that a length field points past the end of the file. Every length
and count read from the file is checked against the bytes that remain *before* anything is sized from it,
and every way a file can be malformed ends in ``InvalidModelFile`` — never another exception.

The file is memory-mapped, so walking a 150k-entry vocabulary costs no copies: strings of the big
arrays (``tokenizer.ggml.tokens``, ``merges``) are skipped, and only the BOS/EOS tokens are decoded.

Layout (GGUF v2/v3, little-endian)::

    "GGUF" u32 version  u64 tensor_count  u64 kv_count
    kv_count   × (string key, u32 value_type, value)
    tensor_count × (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset)
    padding to `general.alignment` (default 32), then the tensor data
"""

from __future__ import annotations

import mmap
import os
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inhouse.errors import InvalidModelFile

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
# Arrays longer than this are summarized (length + head); a vocabulary would otherwise cost ~20 MB of str.
SMALL_ARRAY = 64
ARRAY_HEAD = 8
# Strings longer than this are kept as a prefix; metadata strings are short, templates a few KB.
MAX_KEPT_STRING = 1 << 20

# GGUF value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR_FMT: dict[int, str] = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
    BOOL: "<B", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}
VALUE_TYPE_NAMES = {
    UINT8: "uint8", INT8: "int8", UINT16: "uint16", INT16: "int16", UINT32: "uint32", INT32: "int32",
    FLOAT32: "float32", BOOL: "bool", STRING: "string", ARRAY: "array", UINT64: "uint64", INT64: "int64",
    FLOAT64: "float64",
}

# ggml tensor types: id → (name, elements per block, bytes per block). Checked against libggml 0.3.36
# (ggml_blck_size / ggml_type_size). Removed types (4, 5, 31-33, 36-38) are absent on purpose: refused.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}
GGML_TYPE_IDS = {name: tid for tid, (name, _, _) in GGML_TYPES.items()}

# llama_ftype (general.file_type) → the quantization name people use.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS",
    24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS",
    31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

TOKENS_KEY = "tokenizer.ggml.tokens"
MAX_VOCAB = 4_000_000


@dataclass(frozen=True)
class GgufArray:
    """A long array from the header, summarized: its element type, length and first items."""

    item_type: str
    length: int
    head: tuple[Any, ...]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int  # relative to the start of the data section
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    file_size: int
    version: int
    tensor_count: int
    metadata: dict[str, Any]
    alignment: int
    data_offset: int
    architecture: str | None
    name: str | None
    context_length: int | None
    file_type: int | None
    quantization: str | None
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    n_parameters: int
    tensors: tuple[TensorInfo, ...] = field(repr=False, default=())


def ggml_tensor_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor's data; raises ValueError for unknown types or rows not a whole block."""
    if ggml_type not in GGML_TYPES:
        raise ValueError(f"unknown ggml type {ggml_type}")
    name, block, size = GGML_TYPES[ggml_type]
    if not shape:
        return size if block == 1 else 0
    if shape[0] % block:
        raise ValueError(f"first dimension {shape[0]} is not a multiple of the {name} block size {block}")
    n = 1
    for d in shape:
        n *= d
    return n // block * size


class _Cursor:
    """Bounded little-endian reads over the mapped file; every read checks the bytes left first."""

    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise InvalidModelFile(
                f"GGUF file is truncated or corrupt: {what} needs {n} bytes at offset {self.pos}, "
                f"but only {max(0, self.size - self.pos)} remain."
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str, *, keep: int = MAX_KEPT_STRING) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + min(n, keep)]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        self.pos += n


def _value_type(cur: _Cursor, key: str) -> int:
    t = cur.u32(f"value type of '{key}'")
    if t not in VALUE_TYPE_NAMES:
        raise InvalidModelFile(f"GGUF metadata '{key}' has an unknown value type {t}.")
    return t


def _read_value(cur: _Cursor, vtype: int, key: str, offsets: array[int] | None = None) -> Any:
    if vtype == STRING:
        return cur.string(f"value of '{key}'")
    if vtype == ARRAY:
        return _read_array(cur, key, offsets)
    v = cur.scalar(_SCALAR_FMT[vtype], f"value of '{key}'")
    return bool(v) if vtype == BOOL else v


def _read_array(cur: _Cursor, key: str, offsets: array[int] | None = None) -> Any:
    """An array value; ``offsets`` (if given) collects where each string item starts."""
    itype = _value_type(cur, key)
    if itype == ARRAY:
        raise InvalidModelFile(f"GGUF metadata '{key}' is a nested array, which GGUF does not allow.")
    count = cur.u64(f"length of array '{key}'")
    if itype == STRING:
        # Each string needs at least its 8-byte length: refuse counts the file cannot hold.
        cur.need(count * 8, f"array '{key}' of {count} strings")
        if offsets is not None and count > MAX_VOCAB:
            offsets = None  # no tokenizer is this big; do not spend 8 bytes a claimed item on it
        if offsets is not None:
            start = cur.pos
            for _ in range(count):
                offsets.append(cur.pos)
                cur.skip_string(f"item of '{key}'")
            cur.pos = start
        if count <= SMALL_ARRAY:
            return [cur.string(f"item of '{key}'") for _ in range(count)]
        head = tuple(cur.string(f"item of '{key}'") for _ in range(ARRAY_HEAD))
        if offsets is not None:
            cur.pos = offsets[-1]
            cur.skip_string(f"item of '{key}'")
        else:
            for _ in range(count - ARRAY_HEAD):
                cur.skip_string(f"item of '{key}'")
        return GgufArray("string", count, head)
    fmt = _SCALAR_FMT[itype]
    width = struct.calcsize(fmt)
    cur.need(count * width, f"array '{key}' of {count} {VALUE_TYPE_NAMES[itype]}")
    n_read = count if count <= SMALL_ARRAY else ARRAY_HEAD
    items = [struct.unpack_from(fmt, cur.buf, cur.pos + i * width)[0] for i in range(n_read)]
    if itype == BOOL:
        items = [bool(x) for x in items]
    cur.pos += count * width
    if count <= SMALL_ARRAY:
        return items
    return GgufArray(VALUE_TYPE_NAMES[itype], count, tuple(items))


def _token_at(cur: _Cursor, offsets: array[int], token_id: Any) -> str | None:
    """The string of token ``token_id``, from the offsets of the vocabulary's items."""
    if not isinstance(token_id, int) or isinstance(token_id, bool) or not 0 <= token_id < len(offsets):
        return None
    saved = cur.pos
    cur.pos = offsets[token_id]
    try:
        return cur.string("token")
    finally:
        cur.pos = saved


def _parse(buf: mmap.mmap | bytes, size: int, path: Path) -> GgufInfo:
    cur = _Cursor(buf, size)
    cur.need(4, "magic")
    magic = bytes(buf[0:4])
    if magic != MAGIC:
        raise InvalidModelFile(f"{path.name} is not a GGUF file (magic {magic!r}, expected b'GGUF').")
    cur.pos = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidModelFile(f"GGUF version {version} is not supported (supported: 2, 3).")
    tensor_count = cur.u64("tensor count")
    kv_count = cur.u64("metadata count")
    if tensor_count > MAX_TENSORS:
        raise InvalidModelFile(f"GGUF header claims {tensor_count} tensors (at most {MAX_TENSORS} accepted).")
    if kv_count > MAX_KV:
        raise InvalidModelFile(f"GGUF header claims {kv_count} metadata entries (at most {MAX_KV} accepted).")
    # Smallest possible entries: kv = key length + type (12 bytes); tensor info = 24 bytes.
    cur.need(kv_count * 12 + tensor_count * 24, f"{kv_count} metadata entries and {tensor_count} tensors")

    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    token_offsets: array[int] = array("Q")
    for i in range(kv_count):
        key = cur.string(f"key of metadata entry {i}", keep=65536)
        if key in metadata:
            raise InvalidModelFile(f"GGUF metadata key '{key}' appears twice.")
        vtype = _value_type(cur, key)
        # Where each vocabulary item starts (8 bytes each): BOS/EOS ids come later in the header.
        metadata[key] = _read_value(cur, vtype, key, token_offsets if key == TOKENS_KEY else None)
        types[key] = vtype

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and types["general.alignment"] != UINT32:
        raise InvalidModelFile("GGUF general.alignment must be a uint32.")
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidModelFile(f"GGUF general.alignment {alignment} is not a power of two.")

    tensors: list[TensorInfo] = []
    seen: set[str] = set()
    for i in range(tensor_count):
        name = cur.string(f"name of tensor {i}", keep=65536)
        if name in seen:
            raise InvalidModelFile(f"GGUF tensor '{name}' appears twice.")
        seen.add(name)
        n_dims = cur.u32(f"dimension count of tensor '{name}'")
        if n_dims > MAX_DIMS:
            raise InvalidModelFile(f"GGUF tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS}).")
        shape = tuple(cur.u64(f"dimension of tensor '{name}'") for _ in range(n_dims))
        gtype = cur.u32(f"type of tensor '{name}'")
        offset = cur.u64(f"offset of tensor '{name}'")
        if gtype not in GGML_TYPES:
            raise InvalidModelFile(f"GGUF tensor '{name}' has an unknown or removed ggml type {gtype}.")
        if offset % alignment:
            raise InvalidModelFile(f"GGUF tensor '{name}' offset {offset} is not aligned to {alignment}.")
        try:
            n_bytes = ggml_tensor_nbytes(gtype, shape)
        except ValueError as exc:
            raise InvalidModelFile(f"GGUF tensor '{name}': {exc}.") from None
        tensors.append(TensorInfo(name, shape, GGML_TYPES[gtype][0], offset, n_bytes))

    data_offset = cur.pos + (-cur.pos % alignment) if tensors else cur.pos
    for t in tensors:
        end = data_offset + t.offset + t.n_bytes
        if end > size:
            raise InvalidModelFile(
                f"GGUF file is truncated: tensor '{t.name}' ({t.ggml_type}, {t.n_bytes} bytes) ends at byte "
                f"{end}, but the file has {size} bytes."
            )

    arch = metadata.get("general.architecture")
    arch = arch if isinstance(arch, str) and arch else None
    ctx = metadata.get(f"{arch}.context_length") if arch else None
    ftype = metadata.get("general.file_type")
    ftype = ftype if isinstance(ftype, int) and not isinstance(ftype, bool) else None
    template = metadata.get("tokenizer.chat_template")
    model_name = metadata.get("general.name")
    bos = _token_at(cur, token_offsets, metadata.get("tokenizer.ggml.bos_token_id"))
    eos = _token_at(cur, token_offsets, metadata.get("tokenizer.ggml.eos_token_id"))
    return GgufInfo(
        path=path,
        file_size=size,
        version=version,
        tensor_count=tensor_count,
        metadata=metadata,
        alignment=alignment,
        data_offset=data_offset,
        architecture=arch,
        name=model_name if isinstance(model_name, str) else None,
        context_length=ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None,
        file_type=ftype,
        quantization=FILE_TYPES.get(ftype) if ftype is not None else _guess_quantization(tensors),
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=bos,
        eos_token=eos,
        n_parameters=sum(t.n_elements for t in tensors),
        tensors=tuple(tensors),
    )


def _guess_quantization(tensors: list[TensorInfo]) -> str | None:
    """Without general.file_type: the ggml type holding most of the weights' bytes."""
    by_type: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2:
            by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + t.n_bytes
    return max(by_type, key=lambda k: by_type[k]) if by_type else None


def read_gguf_header(path: Path | str) -> GgufInfo:
    """Read and validate the header of a GGUF file. Raises ``InvalidModelFile`` for anything wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise InvalidModelFile(f"{path.name} is not a GGUF file: {size} bytes is too short.")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, size, path)
    except InvalidModelFile:
        raise
    except FileNotFoundError:
        raise InvalidModelFile(f"No such model file: {path}.") from None
    except IsADirectoryError:
        raise InvalidModelFile(f"{path} is a directory, not a GGUF file.") from None
    except OSError as exc:
        raise InvalidModelFile(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except (struct.error, ValueError, OverflowError, IndexError, MemoryError) as exc:
        # Defense in depth: the checks above should make these unreachable.
        raise InvalidModelFile(f"GGUF file {path.name} is corrupt: {exc}.") from None


def parse_gguf_bytes(data: bytes, name: str = "<bytes>") -> GgufInfo:
    """Same validation over bytes in memory (used by the fuzz tests; no file needed)."""
    try:
        if len(data) < 24:
            raise InvalidModelFile(f"{name} is not a GGUF file: {len(data)} bytes is too short.")
        return _parse(data, len(data), Path(name))
    except InvalidModelFile:
        raise
    except (struct.error, ValueError, OverflowError, IndexError, MemoryError) as exc:
        raise InvalidModelFile(f"GGUF data {name} is corrupt: {exc}.") from None
