"""Do ONNX Runtime's int8 kernels run here, and compute the right thing? The embedding engine's counterpart of the
weight-path probe (``probe.py``), asked by ``kb.embed_engine = auto`` (``kb/embed.engine_choice``).

The check runs ``engine/backends/ort/selftest.py`` in a short-lived child process through the probe's own runner
and judge (``probe.run_child``, ``probe.interpret``), so that a crash in native code (an AMX tile path a
hypervisor advertises but does not really grant, say) is an answer, never the server's death. The child embeds
a tiny random e5 through the int8 graph and reports its worst cosine to a float64 reference; below
``MIN_COSINE`` the kernels are refuted. The answer is kept per machine (CPU signature) and ONNX Runtime version
and the graph's version (the child builds the graph with the code that will serve, so a changed graph is checked
again) in a small JSON file (0.8 s once).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from inhouse.hardware.probe import ChildOutcome, interpret, run_child

log = logging.getLogger(__name__)

MIN_COSINE = 0.99  # int8 noise on the tiny model is ~0.999; a wrong kernel gives noise, not a close vector
_CHILD_MODULE = "inhouse.engine.backends.ort.selftest"


@dataclass(frozen=True)
class Int8Check:
    ok: bool
    detail: str  # the worst cosine, or how the child failed
    ort_version: str
    seconds: float
    refuted: bool = False  # not ok for a lasting reason: wrong results, or the child crashed in native code

    @property
    def settled(self) -> bool:
        """Worth recording: a timeout, a kill or an exit failure may not happen next time, so it is not."""
        return self.ok or self.refuted


def _ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return ""


def run_check(run: Callable[[list[str]], ChildOutcome] = run_child,
              command: list[str] | None = None) -> Int8Check:
    """Run the child (``command``: another one, for tests) and judge it (no cache)."""
    ort_version = _ort_version()
    if not ort_version:
        return Int8Check(False, "onnxruntime is not installed", "", 0.0)
    outcome = run(command or [sys.executable, "-m", _CHILD_MODULE])
    result, data = interpret("onnx-int8", outcome)
    if data is None:
        return Int8Check(False, f"the int8 kernels {result.status}: {result.detail}", ort_version, outcome.seconds,
                         refuted=result.status == "crashed")
    try:
        worst = float(data["min_cosine"])
    except (KeyError, TypeError, ValueError):
        return Int8Check(False, f"the self-test printed no cosine: {outcome.stdout.strip()[-200:]}", ort_version,
                         outcome.seconds)
    if worst < MIN_COSINE:
        return Int8Check(False, f"wrong results (cosine {worst:.4f} to the reference)", ort_version, outcome.seconds,
                         refuted=True)
    return Int8Check(True, f"cosine {worst:.4f} to the reference", ort_version, outcome.seconds)


def check_int8(cache_dir: Path, machine: str, *, graph_version: int = 0,
               run: Callable[[], Int8Check] = run_check) -> Int8Check:
    """The answer for this machine (``machine``: the CPU signature), this ONNX Runtime version and this version of
    the int8 graph: read from ``cache_dir``, or found by ``run`` (~1 s) and recorded there when it is settled (a
    pass, or a refutation: a timeout on a busy machine is tried again at the next start)."""
    path = Path(cache_dir) / f"ort-int8-check-{machine}-{_ort_version() or 'none'}-g{graph_version}.json"
    try:
        recorded = Int8Check(**json.loads(path.read_text(encoding="utf-8")))
        if recorded.settled:  # older versions recorded timeouts too: those are checked again
            return recorded
    except (OSError, ValueError, TypeError):
        pass
    result = run()
    if not result.ok:
        log.warning("ONNX Runtime's int8 kernels are not used for embeddings here: %s. Using llama.cpp.",
                    result.detail)
    if not result.settled:
        return result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache: the check runs again next time
        log.warning("could not record the int8 self-test in %s: %s", path, exc)
    return result
