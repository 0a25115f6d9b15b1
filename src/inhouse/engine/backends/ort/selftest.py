"""Do ONNX Runtime's int8 kernels run here, and compute the right thing? Checked once per machine and ONNX Runtime
version, in a short-lived child process (``python -m inhouse.engine.backends.ort.selftest``), so that a crash in
native code (an AMX tile path the hypervisor does not really grant, say) is an answer, never the server's death.

The child builds a tiny random e5 (``inhouse.testing.e5s1``: 2 layers, 64 wide; no model file needed), converts
it to the int8 graph the embedder runs (``models/e5/onnx_graph.py``), embeds a batch of sequences of several
lengths with ``OrtEncoder`` and compares each with the float64 reference forward pass. It prints one JSON line:
the worst cosine and which kernels ONNX Runtime reported. ``check_int8`` (the parent side) runs it and keeps the
answer in a small JSON file; ``kb/embed.resolve_engine`` uses it for ``kb.embed_engine = "auto"``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MIN_COSINE = 0.99  # int8 noise on the tiny model is ~0.999; a wrong kernel gives noise, not a close vector
CHILD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Int8Check:
    ok: bool
    detail: str  # the worst cosine, or how the child failed
    ort_version: str
    seconds: float


def _child(write_e5s1: Callable[..., Path], reference_forward: Callable[..., Any]) -> int:
    """The child's work, given the tiny-model writer and the reference forward pass (``inhouse.testing.e5s1``,
    wired by the script entry point below)."""
    import numpy as np

    from inhouse.engine.backends.ort.embed import OrtEncoder
    from inhouse.models.e5.onnx_graph import write_e5_onnx
    from inhouse.models.e5.s1 import read_e5s1

    with tempfile.TemporaryDirectory(prefix="inhouse-ort-selftest-") as tmp:
        source = write_e5s1(Path(tmp) / "tiny.bin", max_positions=32)
        graph = Path(tmp) / "tiny.onnx"
        write_e5_onnx(source, graph)
        m = read_e5s1(source)
        try:
            rng = np.random.default_rng(7)
            seqs = [[m.bos, *rng.integers(4, m.n_vocab, n).tolist(), m.eos] for n in (3, 9, 17, 30, 30, 12)]
            enc = OrtEncoder(graph, n_embd=m.hidden, max_positions=m.max_positions,
                             input_embeddings=m.word_embeddings, n_threads=2, batch_tokens=64)
            try:
                got = enc.encode(seqs)
            finally:
                enc.close()
            worst = 1.0
            for seq, vec in zip(seqs, got, strict=True):
                ref = reference_forward(m, seq)
                worst = min(worst, float(vec @ ref / (np.linalg.norm(vec) * np.linalg.norm(ref))))
        finally:
            m.close()
    print(json.dumps({"min_cosine": worst}))
    return 0


def _ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return ""


def run_check(command: list[str] | None = None) -> Int8Check:
    """Run the child (``command``: another one, for tests) and judge it (no cache)."""
    ort_version = _ort_version()
    if not ort_version:
        return Int8Check(False, "onnxruntime is not installed", "", 0.0)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command or [sys.executable, "-m", __name__], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    except subprocess.TimeoutExpired:
        return Int8Check(False, f"timed out after {CHILD_TIMEOUT_S:.0f} s", ort_version, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return Int8Check(False, f"the int8 kernels crashed ({name})", ort_version, seconds)
    try:
        worst = float(json.loads(proc.stdout.strip().splitlines()[-1])["min_cosine"])
    except (ValueError, KeyError, IndexError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Int8Check(False, f"the self-test failed (exit {proc.returncode}): {tail}", ort_version, seconds)
    if worst < MIN_COSINE:
        return Int8Check(False, f"wrong results (cosine {worst:.4f} to the reference)", ort_version, seconds)
    return Int8Check(True, f"cosine {worst:.4f} to the reference", ort_version, seconds)


def check_int8(cache_dir: Path, machine: str, *, run: Callable[[], Int8Check] = run_check) -> Int8Check:
    """The answer for this machine (``machine``: the CPU signature) and this ONNX Runtime version: read from
    ``cache_dir``, or found by ``run_check`` (~2 s) and recorded there."""
    path = Path(cache_dir) / f"ort-int8-check-{machine}-{_ort_version() or 'none'}.json"
    try:
        return Int8Check(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    result = run()
    if not result.ok:
        log.warning("ONNX Runtime's int8 kernels are not used for embeddings here: %s. Using llama.cpp.",
                    result.detail)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache: the check runs again next time
        log.warning("could not record the int8 self-test in %s: %s", path, exc)
    return result


if __name__ == "__main__":
    from inhouse.testing.e5s1 import reference_forward, write_e5s1

    sys.exit(_child(write_e5s1, reference_forward))
