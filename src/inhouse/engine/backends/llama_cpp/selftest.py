"""Does llama.cpp's accelerated weight path actually run here? The check the hardware probe runs in a
short-lived child process (``python -m inhouse.engine.backends.llama_cpp.selftest --weight-buffers amx
--model PATH``), so a crash in native code is an answer for the parent, never the parent's death.

It goes through llama.cpp's own code, the way serving does: load a model with the given weight-buffer
choice (``_library.load_model``), prefill a 48-token prompt, then decode one token. Both matter: ggml's AMX
matrix multiply takes the tile path (``ldtilecfg``, ``tdpbssd``) only for batches of two or more rows — a
prompt — and an AVX-512 VNNI path for a single row; a one-token decode alone would never touch the tiles.
A hand-written tile multiply proves nothing about llama.cpp's path (the GCC 12 miscompile of its tile config
passes such a test), so none is used.

**The model** is generated, not downloaded: a 5-layer llama of random weights (seed fixed), one layer per
weight format the packaged models and ``inhouse tune`` use — Q4_0, Q4_K, Q8_0, Q6_K, Q4_1 — quantized by
ggml's own ``ggml_quantize_chunk``, with every matrix shaped so that both the AMX and the CPU-repack buffer
types accept it (rows a multiple of 32, a 256-wide embedding for the K-quants). It is ~2.6 MB and written
once per build next to the probe's cache, with its sha256 beside it (``<model>.sha256``): the probe checks the
file against it before the first child and discards a copy that differs (cut short, damaged on disk), which the
first child then writes again — a damaged copy would otherwise fail every probe at load, for good. Loading it
takes milliseconds where SmolLM2 (98 MB) takes ~0.3 s per child, and the probe then needs no model pulled. No
tokenizer (``tokenizer.ggml.model = "none"``): token ids are fed directly.

The child prints one JSON line on stdout (the logits of both steps, the greedy tokens, where the weights
went, the build's features) and its progress (``phase=load`` …) on stderr, so the parent can say at which
step a crash happened.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.engine.backends.llama_cpp._library import (
    WEIGHT_BUFFERS,
    extra_buffer_types,
    init_process,
    load_library,
    load_model,
    system_info,
)

TINY_MODEL_VERSION = 1
N_EMBD, N_FF, N_HEAD, N_VOCAB, N_CTX = 256, 512, 4, 512, 256
LAYER_TYPES = ("Q4_0", "Q4_K", "Q8_0", "Q6_K", "Q4_1")
PROMPT_TOKENS = 48
_SEED = 20824
# ggml type ids and (elements, bytes) per block: the same table as models/gguf/read.py.
_TYPE_IDS = {"F32": 0, "Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}


def tiny_model_name() -> str:
    return f"selftest-llama-v{TINY_MODEL_VERSION}.gguf"


def _quantize(base: Any, rows: np.ndarray, type_name: str) -> bytes:
    """``rows`` (n_rows × n_per_row, float32) in ggml's ``type_name`` blocks, by ggml's own quantizer."""
    from inhouse.models.gguf.read import GGML_TYPES

    tid = _TYPE_IDS[type_name]
    if tid == 0:
        return rows.astype(np.float32).tobytes()
    _, block, size = GGML_TYPES[tid]
    n_rows, n_per_row = rows.shape
    src = np.ascontiguousarray(rows, dtype=np.float32)
    dst = ctypes.create_string_buffer(n_rows * n_per_row // block * size)
    written = base.ggml_quantize_chunk(tid, src.ctypes.data_as(ctypes.c_void_p), dst, 0, n_rows, n_per_row, None)
    if written != len(dst):
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes of {type_name}, expected {len(dst)}")
    return dst.raw


def write_tiny_model(path: Path) -> Path:
    """Write the self-test model at ``path`` (atomically; the same bytes every time for one build), and its sha256
    next to it for the probe's check (``hardware.probe.record_selftest_model``)."""
    from inhouse.hardware.probe import record_selftest_model
    from inhouse.models.gguf import read as g
    from inhouse.models.gguf.write import Typed, write_gguf

    L = load_library()
    init_process(L)
    base = ctypes.CDLL(str(Path(L.__file__).parent / "lib" / "libggml-base.so"))
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(_SEED)

    def mat(n_in: int, n_out: int, type_name: str, scale: float = 1.0) -> tuple[tuple[int, int], str, bytes]:
        w = rng.standard_normal((n_out, n_in), dtype=np.float32) * (scale / np.sqrt(n_in))
        return (n_in, n_out), type_name, _quantize(base, w, type_name)

    def ones(n: int) -> tuple[tuple[int], str, bytes]:
        return (n,), "F32", np.ones(n, dtype=np.float32).tobytes()

    arch = "llama"
    kv: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": "inhouse self-test",
        f"{arch}.context_length": Typed(g.UINT32, N_CTX),
        f"{arch}.embedding_length": Typed(g.UINT32, N_EMBD),
        f"{arch}.block_count": Typed(g.UINT32, len(LAYER_TYPES)),
        f"{arch}.feed_forward_length": Typed(g.UINT32, N_FF),
        f"{arch}.attention.head_count": Typed(g.UINT32, N_HEAD),
        f"{arch}.attention.head_count_kv": Typed(g.UINT32, N_HEAD),
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{arch}.rope.dimension_count": Typed(g.UINT32, N_EMBD // N_HEAD),
        f"{arch}.vocab_size": Typed(g.UINT32, N_VOCAB),
        "tokenizer.ggml.model": "none",
    }
    tensors: dict[str, Any] = {"token_embd.weight": mat(N_EMBD, N_VOCAB, "Q8_0", scale=16.0)}
    for i, t in enumerate(LAYER_TYPES):
        p = f"blk.{i}."
        tensors.update({
            p + "attn_norm.weight": ones(N_EMBD),
            p + "attn_q.weight": mat(N_EMBD, N_EMBD, t), p + "attn_k.weight": mat(N_EMBD, N_EMBD, t),
            p + "attn_v.weight": mat(N_EMBD, N_EMBD, t), p + "attn_output.weight": mat(N_EMBD, N_EMBD, t),
            p + "ffn_norm.weight": ones(N_EMBD),
            p + "ffn_gate.weight": mat(N_EMBD, N_FF, t), p + "ffn_up.weight": mat(N_EMBD, N_FF, t),
            p + "ffn_down.weight": mat(N_FF, N_EMBD, t),
        })
    # Output logits with a spread of a few units, so the greedy pick is not a near-tie.
    tensors.update({"output_norm.weight": ones(N_EMBD), "output.weight": mat(N_EMBD, N_VOCAB, "Q6_K", scale=3.0)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write_gguf(tmp, kv, tensors)
    os.replace(tmp, path)
    record_selftest_model(path)
    return path


def _phase(name: str) -> None:
    print(f"phase={name}", file=sys.stderr, flush=True)


def run_selftest(model_path: Path, weight_buffers: str, n_threads: int, steps: int = 1) -> dict[str, Any]:
    """Load ``model_path`` with ``weight_buffers``, prefill ``PROMPT_TOKENS`` tokens, decode ``steps`` greedy
    tokens; report the greedy tokens and the logits of the prefill and of the last step. Any model with a
    vocabulary of at least 512 tokens works (the integration test compares AMX on a real model)."""
    L = load_library()
    init_process(L)
    t0 = time.perf_counter()
    if not model_path.is_file():
        _phase("write-model")
        write_tiny_model(model_path)
    _phase("load")
    mparams = L.llama_model_default_params()
    mparams.n_gpu_layers = 0
    loaded = load_model(L, model_path, mparams, weight_buffers)
    if not loaded.model:
        raise RuntimeError(f"llama.cpp could not load {model_path}")
    cparams = L.llama_context_default_params()
    cparams.n_ctx = N_CTX
    cparams.n_batch = cparams.n_ubatch = 64
    cparams.n_seq_max = 1
    cparams.n_threads = cparams.n_threads_batch = n_threads
    cparams.no_perf = True
    ctx = L.llama_init_from_model(loaded.model, cparams)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    batch = L.llama_batch_init(64, 0, 1)
    n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(loaded.model)))
    prompt = [int(t) for t in np.random.default_rng(_SEED + 1).integers(0, min(n_vocab, N_VOCAB), PROMPT_TOKENS)]

    def step(tokens: list[int], pos0: int) -> list[float]:
        batch.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos0 + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(tokens) - 1
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        row = L.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(row, shape=(n_vocab,)).astype(float).tolist()

    try:
        _phase("prefill")  # AMX: the tile path (M = 48 rows)
        t1 = time.perf_counter()
        first = step(prompt, 0)
        _phase("decode")  # AMX: the VNNI path (M = 1)
        tokens = [int(np.argmax(first))]
        last = first
        for i in range(steps):
            last = step([tokens[-1]], PROMPT_TOKENS + i)
            tokens.append(int(np.argmax(last)))
        t2 = time.perf_counter()
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(loaded.model)
    _phase("done")
    return {
        "weight_buffers": weight_buffers,
        "placed": loaded.weight_buffers,
        "extra_buffer_types": extra_buffer_types(L),
        "system_info": system_info(L),
        "tokens": tokens,
        "logits": [first, last],
        "load_s": t1 - t0,
        "run_s": t2 - t1,
        "n_threads": n_threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weight-buffers", choices=WEIGHT_BUFFERS, required=True)
    parser.add_argument("--model", type=Path, required=True, help="The self-test GGUF (written when missing).")
    parser.add_argument("--threads", type=int, default=0, help="Threads (default: physical cores).")
    parser.add_argument("--steps", type=int, default=1, help="Greedy tokens decoded after the prompt.")
    args = parser.parse_args(argv)
    from inhouse.hardware.cpu import physical_cores

    result = run_selftest(args.model, args.weight_buffers, args.threads or physical_cores(), max(1, args.steps))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
