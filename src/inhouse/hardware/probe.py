"""The hardware probe: what this machine is, and which of llama.cpp's weight paths actually run on it.

``inhouse doctor`` shows it, ``inhouse status`` and ``/v1/status`` report it, and the engine loads models
only the ways it proved (``hardware/weights.py``). It finds:

* the CPU (vendor, model, cores), memory (total, available, a cgroup limit) and the measured memory read
  bandwidth (``cpu.measure_bandwidth_quietly``: decoding reads every weight once per token), with the load other
  processes put on the machine meanwhile; a figure measured under load never replaces a better one;
* the instruction sets llama.cpp's kernels dispatch on (AVX2, AVX-512 F/BW/VNNI/BF16/FP16, AMX
  tile/int8/bf16), as the CPU advertises them;
* whether the OS grants this process AMX tile state (``amx.tile_permission``);
* whether each weight path **executes**: three short-lived child processes, one per weight-buffer choice
  (``amx``: every extra buffer type, ``repack``: the CPU repack without AMX, ``plain``: none), each running
  llama.cpp's own prefill + one-token decode on a generated model (``engine/backends/llama_cpp/selftest.py``).
  A child that dies of a fault it raised itself is an answer ("AMX advertised but unusable here: general
  protection fault or invalid memory access (SIGSEGV, signal 11) during prefill"); a child whose logits differ
  from the plain path by more than ``REL_TOLERANCE`` (or are not finite) is refuted too ("runs but computes
  wrong results"). A kill from outside, a timeout or an exit failure is ``failed``: no answer.

The answer is cached per machine (``CpuInfo.signature``) and per llama.cpp build (``BuildIdentity.id``: the
hash of the shared libraries and the llama-cpp-python version) in ``<data_dir>/hardware/``: a rebuilt
library or another CPU is probed again, and ``inhouse doctor --refresh`` (``current(force=True)``) re-runs
it. What the key does not cover is checked on reading: memory is read again, and a changed AMX tile permission
(on an AMX CPU) means probing again. An answer with a ``failed`` path is not written. One probe runs at a time
per cache directory (``probe.lock``), and the generated self-test model is checked against its recorded digest.
Reading the cache takes milliseconds; a probe takes a few seconds (docs/hardware.md has the figures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from inhouse.hardware.amx import TilePermission, tile_permission
from inhouse.hardware.cpu import QUIET_CORES, Bandwidth, cgroup_dirs, detect_cpu, measure_bandwidth_quietly

log = logging.getLogger(__name__)

PROBE_FORMAT = 1
# The ISA flags llama.cpp's CPU kernels can use, as /proc/cpuinfo names them.
ISA_FLAGS: tuple[str, ...] = (
    "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
)
PATHS: tuple[str, ...] = ("amx", "repack", "plain")
# Largest RMS difference of a path's logits from the plain path's, relative to the spread (std) of the plain
# logits, still counted as the same computation. Different kernels quantize activations and sum in different
# orders: plain vs CPU repack differ by 1.3-1.7 % on the self-test model; a kernel that skips or garbles a
# matrix moves the logits by tens of percent.
REL_TOLERANCE = 0.05
CHILD_TIMEOUT_S = 60.0
_SELFTEST_MODULE = "inhouse.engine.backends.llama_cpp.selftest"


@dataclass(frozen=True)
class PathResult:
    """What one weight path did in its child process."""

    weight_buffers: str  # amx | repack | plain
    status: str  # ok | crashed | wrong | failed
    detail: str = ""
    placed: dict[str, float] = field(default_factory=dict)  # buffer type → MiB of the self-test weights
    extra_buffer_types: list[str] = field(default_factory=list)  # what this build offered in the child
    tokens: list[int] = field(default_factory=list)
    rel_error: float | None = None  # RMS logits difference from plain ÷ std of plain's logits
    signal: int | None = None
    phase: str = ""  # the last step the child reached (load, prefill, decode, done)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def uses(self, buffer_type: str) -> bool:
        return buffer_type in self.placed


@dataclass(frozen=True)
class ProbeReport:
    created_at: str
    cpu_vendor: str
    cpu_model: str
    cpu_signature: str
    physical_cores: int
    logical_cpus: int
    memory_total_bytes: int
    memory_available_bytes: int
    bandwidth_gb_s: float
    isa: dict[str, bool]
    amx_os: TilePermission
    build_id: str
    build_version: str
    system_info: str
    paths: dict[str, PathResult]
    probe_seconds: float = 0.0
    format: int = PROBE_FORMAT
    bandwidth_foreign_cores: float = 0.0  # cores other processes used while the bandwidth was measured

    @property
    def bandwidth_under_load(self) -> bool:
        """The bandwidth was measured while other processes kept the machine busy: it is likely too low."""
        return self.bandwidth_foreign_cores >= QUIET_CORES

    # -- what it means ----------------------------------------------------------------------------------

    @property
    def amx_advertised(self) -> bool:
        return self.isa.get("amx_tile", False) and self.isa.get("amx_int8", False)

    @property
    def amx_compiled(self) -> bool:
        return "AMX_INT8 = 1" in self.system_info

    def works(self, path: str) -> bool:
        result = self.paths.get(path)
        return result is not None and result.ok

    @property
    def amx_in_use(self) -> bool:
        """The AMX path ran, really placed weights in AMX buffers, and agreed with plain."""
        result = self.paths.get("amx")
        return result is not None and result.ok and result.uses("AMX")

    @property
    def repack_in_use(self) -> bool:
        result = self.paths.get("repack")
        return result is not None and result.ok and result.uses("CPU_REPACK")

    def amx_verdict(self) -> str:
        """One sentence on AMX here."""
        amx = self.paths.get("amx")
        if not self.amx_advertised:
            return "No AMX on this CPU."
        if amx is not None and amx.status in ("crashed", "wrong"):
            return f"AMX advertised but unusable here: {amx.detail}"
        if self.amx_os.status != "granted":
            return f"AMX advertised but the OS does not grant tile state: {self.amx_os.detail}."
        if not self.amx_compiled:
            return ("AMX advertised and granted, but this llama.cpp build has no AMX code (it was compiled for "
                    "another CPU or without AMX): rebuild with scripts/build_llama.sh.")
        if self.amx_in_use:
            return "AMX executes through llama.cpp here and agrees with the plain path."
        if amx is not None and amx.ok:
            return "AMX is compiled in and granted, but llama.cpp placed no weights in AMX buffers."
        return f"AMX could not be checked: {amx.detail if amx else 'the probe did not run it'}"

    def path_lines(self) -> list[str]:
        lines = []
        for name in PATHS:
            r = self.paths.get(name)
            if r is None:
                continue
            where = ", ".join(f"{k} {v:.1f} MiB" for k, v in r.placed.items()) or "-"
            err = f", logits within {r.rel_error:.1%} of plain" if r.rel_error is not None and name != "plain" else ""
            lines.append(f"{name:>6}: {r.status}{err}; weights in {where}" + (f" — {r.detail}" if r.detail else ""))
        return lines

    # -- (de)serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["amx_verdict"] = self.amx_verdict()
        return out

    def summary(self) -> dict[str, Any]:
        """The short form for ``/v1/status`` and the admin page (no logits, no paths on disk)."""
        return {
            "cpu": f"{self.cpu_vendor} {self.cpu_model}".strip(),
            "cores": self.physical_cores,
            "memory_total_bytes": self.memory_total_bytes,
            "memory_available_bytes": self.memory_available_bytes,
            "bandwidth_gb_s": round(self.bandwidth_gb_s, 1),
            "isa": [k for k, v in self.isa.items() if v],
            "amx": self.amx_verdict(),
            "paths": {k: v.status for k, v in self.paths.items()},
            "build": self.build_version,
            "probed_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> ProbeReport:
        """The report ``to_dict`` wrote; ValueError for anything else (a hand-edited file, another tool's): every
        field is checked against its declared type, so a wrong-typed one (``"isa": null``) is refused here instead
        of failing later in whatever reads it."""
        if not isinstance(doc, dict):
            raise ValueError("not a hardware probe report")
        doc = dict(doc)
        doc.pop("amx_verdict", None)
        _check_fields(cls, doc, "report")
        doc["amx_os"] = TilePermission(**_check_fields(TilePermission, doc["amx_os"], "amx_os"))
        doc["paths"] = {k: PathResult(**_check_fields(PathResult, v, f"paths.{k}")) for k, v in doc["paths"].items()}
        return cls(**doc)

    @property
    def settled(self) -> bool:
        """Every path gave an answer about itself (no ``failed``: a timeout, a kill, a missing reference);
        only a settled report is worth keeping across restarts. A plain path refuted for good (it crashed or
        computed wrong results) settles it too: the others then have no reference, and probing again at every
        start would only say so again."""
        plain = self.paths.get("plain")
        if plain is not None and plain.status in ("crashed", "wrong"):
            return True
        return all(r.status != "failed" for r in self.paths.values())


def _check_fields(cls: type, doc: Any, where: str) -> dict[str, Any]:
    """``doc`` when it holds exactly ``cls``'s fields (those with defaults may be missing), each of its declared
    type (a nested dataclass: a dict, checked by its own call); ValueError naming the first that is not."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not an object")
    hints = typing.get_type_hints(cls)
    declared = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - set(declared))
    missing = sorted(name for name, f in declared.items() if name not in doc
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise ValueError(f"{where}: unknown field(s) {unknown}, missing field(s) {missing}")
    for name, value in doc.items():
        if not _has_type(value, hints[name]):
            raise ValueError(f"{where}.{name}: expected {hints[name]}, got {type(value).__name__}")
    return doc


def _has_type(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_has_type(value, a) for a in args)
    if origin is dict:
        return isinstance(value, dict) and all(_has_type(k, args[0]) and _has_type(v, args[1])
                                               for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:  # JSON writes 2.0 as 2.0 but a hand edit may write 2
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return False


# -- the child processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildOutcome:
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


ChildRunner = Callable[[str, Path], ChildOutcome]

_SIGNAL_MEANING: dict[int, str] = {
    signal.SIGSEGV: "general protection fault or invalid memory access",
    signal.SIGILL: "illegal instruction (the CPU or OS refused an instruction)",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic fault",
    signal.SIGABRT: "abort (a failed assertion in llama.cpp)",
    signal.SIGKILL: "killed (out of memory?)",
}
_SELF_INFLICTED = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT})


def run_child(argv: list[str]) -> ChildOutcome:
    """Run ``argv`` (a self-test) in a fresh process with the same environment; a crash or a hang is an outcome."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return ChildOutcome(-signal.SIGKILL, _text(exc.stdout), _text(exc.stderr), time.perf_counter() - t0, True)
    return ChildOutcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


def run_selftest_child(weight_buffers: str, model_path: Path) -> ChildOutcome:
    """Run llama.cpp's self-test for one weight path in a fresh interpreter (same Python, same environment)."""
    return run_child([sys.executable, "-m", _SELFTEST_MODULE, "--weight-buffers", weight_buffers,
                      "--model", str(model_path)])


def _text(raw: str | bytes | None) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")


def _last_phase(stderr: str) -> str:
    phases = [line[6:].strip() for line in stderr.splitlines() if line.startswith("phase=")]
    return phases[-1] if phases else "start"


def interpret(name: str, outcome: ChildOutcome) -> tuple[PathResult, dict[str, Any] | None]:
    """A child's exit → a ``PathResult`` (before comparing logits) and its parsed output."""
    phase = _last_phase(outcome.stderr)
    if outcome.timed_out:
        return PathResult(name, "failed", f"no answer within {CHILD_TIMEOUT_S:.0f} s (during {phase})",
                          phase=phase, seconds=outcome.seconds), None
    if outcome.returncode < 0:
        sig = -outcome.returncode
        try:
            sig_name = signal.Signals(sig).name
        except ValueError:
            sig_name = f"signal {sig}"
        meaning = _SIGNAL_MEANING.get(sig, "killed by a signal")
        # Only a fault the child raised itself refutes the path; a signal sent from outside (the OOM killer's
        # SIGKILL, an operator's SIGTERM) says nothing about it, like WeightDemotions' NATIVE_CRASHES.
        status = "crashed" if sig in _SELF_INFLICTED else "failed"
        return PathResult(name, status, f"{meaning} ({sig_name}, signal {sig}) during {phase}", signal=sig,
                          phase=phase, seconds=outcome.seconds), None
    tail = " ".join(outcome.stderr.strip().splitlines()[-3:])[-300:]
    if outcome.returncode != 0:
        return PathResult(name, "failed", f"exit code {outcome.returncode} during {phase}: {tail}", phase=phase,
                          seconds=outcome.seconds), None
    try:
        data = json.loads(outcome.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return PathResult(name, "failed", f"no result on stdout: {tail}", phase=phase,
                          seconds=outcome.seconds), None
    return PathResult(name, "ok", placed=dict(data.get("placed", {})),
                      extra_buffer_types=list(data.get("extra_buffer_types", [])),
                      tokens=list(data.get("tokens", [])), phase=phase, seconds=outcome.seconds), data


def relative_error(logits: list[list[float]], reference: list[list[float]]) -> float:
    """Largest over the steps of RMS(logits − reference) ÷ std(reference); inf for NaN on either side or a
    shape mismatch (NaN would compare as within any tolerance)."""
    import numpy as np

    worst = 0.0
    if len(logits) != len(reference):
        return math.inf
    for a, b in zip(logits, reference, strict=True):
        x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if x.shape != y.shape or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
            return math.inf
        spread = float(y.std()) or 1.0
        worst = max(worst, float(np.sqrt(np.mean((x - y) ** 2))) / spread)
    return worst


def _finite(logits: list[list[float]]) -> bool:
    import numpy as np

    return all(bool(np.all(np.isfinite(np.asarray(step, dtype=np.float64)))) for step in logits)


def check_paths(outcomes: dict[str, ChildOutcome]) -> dict[str, PathResult]:
    """Interpret every child and compare each path's logits with the plain path's."""
    results: dict[str, PathResult] = {}
    data: dict[str, dict[str, Any]] = {}
    for name, outcome in outcomes.items():
        results[name], parsed = interpret(name, outcome)
        if parsed is not None:
            data[name] = parsed
    ref = data.get("plain")
    if ref is not None and not _finite(ref["logits"]):
        results["plain"] = _replace(results["plain"], status="wrong",
                                    detail="runs but computes wrong results (its logits are not finite)")
        ref = None
    for name, r in list(results.items()):
        if not r.ok or name == "plain":
            if name == "plain" and r.ok:
                results[name] = _replace(r, rel_error=0.0)
            continue
        if ref is None:
            results[name] = _replace(r, status="failed", detail="the plain path gave no reference to compare with")
            continue
        err = relative_error(data[name]["logits"], ref["logits"])
        if err > REL_TOLERANCE:
            shown = "not finite" if not math.isfinite(err) else f"{err:.1%} of the logits' spread"
            results[name] = _replace(r, status="wrong", rel_error=err if math.isfinite(err) else None,
                                     detail=f"runs but computes wrong results (differs from plain by {shown}, "
                                            f"tolerance {REL_TOLERANCE:.0%})")
        else:
            results[name] = _replace(r, rel_error=err)
    return results


def _replace(r: PathResult, **changes: Any) -> PathResult:
    return PathResult(**{**asdict(r), **changes})


# -- facts ----------------------------------------------------------------------------------------------


def read_memory(meminfo: Path = Path("/proc/meminfo"), cgroup_max: Path | None = None, *,
                root: Path = Path("/")) -> tuple[int, int]:
    """(total, available) bytes, read now. A cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) below
    the machine's memory caps the total, and what the cgroup has left (``memory.max`` − ``memory.current``) caps
    what is available: a container's host may have plenty free while the container has almost used its own.
    Every level from this process's own cgroup up counts (``cpu.cgroup_dirs``: systemd's ``MemoryMax=`` sits on
    the service's cgroup, not the root); ``cgroup_max`` names one cgroup's ``memory.max`` instead (tests)."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    if cgroup_max is not None:
        limits = [(cgroup_max, cgroup_max.with_name("memory.current"))]
    else:  # v2, then v1 (whose "no limit" is a number far above any machine's memory)
        limits = [(d / "memory.max", d / "memory.current") for d in cgroup_dirs(root)]
        limits += [(d / "memory.limit_in_bytes", d / "memory.usage_in_bytes") for d in cgroup_dirs(root, "memory")]
    for limit_file, used_file in limits:
        limit = _read_int(limit_file)  # "max" (no limit) and a missing file read as None
        if limit is None or limit <= 0:
            continue
        used = _read_int(used_file) or 0
        if limit < total:
            total = limit
        available = min(available, max(0, limit - used))
    return total, available


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, dict[str, bool]]:
    """(vendor, {flag: present}) from the first processor entry."""
    vendor, flags = "unknown", set[str]()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id" and vendor == "unknown":
                vendor = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return vendor, {f: f in flags for f in ISA_FLAGS}


# -- the probe ------------------------------------------------------------------------------------------


class HardwareProbe:
    """Runs the probe or reads its cached answer. ``run_child``, ``bandwidth`` and ``memory`` are seams for
    tests."""

    def __init__(self, cache_dir: Path, *, run_child: ChildRunner = run_selftest_child,
                 bandwidth: Callable[[], Bandwidth] = measure_bandwidth_quietly,
                 build_id: Callable[[], tuple[str, str]] | None = None,
                 cpu_signature: Callable[[], str] | None = None,
                 memory: Callable[[], tuple[int, int]] | None = None) -> None:
        self._dir = Path(cache_dir)
        self._run_child = run_child
        self._bandwidth = bandwidth
        self._memory = memory or read_memory
        self._build_id = build_id or _installed_build
        self._cpu_signature = cpu_signature or (lambda: detect_cpu().signature)
        self._lock = threading.Lock()
        self._memo: tuple[Path, ProbeReport] | None = None
        self._key: tuple[str, str, str] | None = None  # (cpu signature, build id, version), found once

    @property
    def directory(self) -> Path:
        return self._dir

    def _identity(self) -> tuple[str, str, str]:
        """This machine and the llama.cpp build, hashed once per probe object (the library a process has
        loaded does not change under it)."""
        if self._key is None:
            build, version = self._build_id()
            self._key = (self._cpu_signature(), build, version)
        return self._key

    def cache_path(self) -> Path:
        cpu, build, _ = self._identity()
        return self._dir / f"probe-{cpu}-{build}.json"

    def cached(self) -> ProbeReport | None:
        """The answer for this machine and this llama.cpp build, if one was recorded (never probes), with the
        memory figures read now: a container's limit is not part of the cache key and may have changed."""
        path = self.cache_path()
        if self._memo is not None and self._memo[0] == path:
            return self._with_live_memory(self._memo[1])
        try:
            report = ProbeReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring the unreadable hardware probe cache %s (%s); probing again", path, exc)
            return None
        if report.format != PROBE_FORMAT:
            return None
        # The OS's AMX grant is outside the key (a kernel upgrade, a hypervisor or seccomp change): asking again
        # is a few syscalls, and a changed answer means the AMX path may run differently now. It matters only
        # where the CPU advertises AMX (elsewhere llama.cpp has no AMX buffer type to offer).
        if read_isa()[1].get("amx_tile"):
            permission = tile_permission()
            if permission.status != report.amx_os.status:
                log.info("AMX tile permission changed (%s, was %s); probing again", permission.status,
                         report.amx_os.status)
                return None
        self._memo = (path, report)
        return self._with_live_memory(report)

    def _with_live_memory(self, report: ProbeReport) -> ProbeReport:
        total, available = self._memory()
        if total <= 0:  # no /proc/meminfo: keep what the probe saw
            return report
        return replace(report, memory_total_bytes=total, memory_available_bytes=available)

    def current(self, force: bool = False) -> ProbeReport:
        """The cached answer, or a fresh probe (``force``: always probe). Thread-safe, and one probe at a time
        per cache directory across processes; never raises for what the children do — a crash is part of the
        answer."""
        with self._lock, self._exclusive():
            if not force:
                report = self.cached()  # again: another process may have probed while this one waited
                if report is not None:
                    return report
            self._key = None  # a refresh also re-reads which build is installed
            path = self.cache_path()
            report = _better_bandwidth(self.run(), _read_report(path))
            self._dir.mkdir(parents=True, exist_ok=True)
            if report.settled:
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
                os.replace(tmp, path)
            else:
                # A timeout or a kill says nothing lasting: this process keeps the answer, the next start
                # probes again (and an older answer this one replaced must not come back then).
                log.warning("hardware probe not cached (a path failed without an answer): %s",
                            {k: v.detail for k, v in report.paths.items() if v.status == "failed"})
                path.unlink(missing_ok=True)
            self._memo = (path, report)
            return report

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold ``probe.lock`` in the cache directory: two commands started together (two ``inhouse doctor``, a
        doctor during serve's start) would run their children at once and each measure the other's load as the
        memory bandwidth; the second waits for the first and reads its answer. The lock goes with the process."""
        fd = None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._dir / "probe.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only data directory: probe without the lock
            log.warning("hardware probe: cannot take %s (%s); probing without it", self._dir / "probe.lock", exc)
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def run(self) -> ProbeReport:
        t0 = time.perf_counter()
        cpu = detect_cpu()
        vendor, isa = read_isa()
        total, available = self._memory()
        permission = tile_permission()
        _, build, version = self._identity()
        model = self._dir / f"selftest-{build}.gguf"
        self._dir.mkdir(parents=True, exist_ok=True)
        discard_damaged_selftest_model(model)
        # The plain path first: it also writes the self-test model the others load; then the two others at
        # once (each child's own crash is its own answer).
        outcomes = {"plain": self._run_child("plain", model)}
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(self._run_child, name, model) for name in ("amx", "repack")}
            outcomes.update({name: f.result() for name, f in futures.items()})
        paths = check_paths(outcomes)
        plain_data = _system_info(outcomes)
        bandwidth = self._bandwidth()
        report = ProbeReport(
            created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), cpu_vendor=vendor,
            cpu_model=cpu.model_name, cpu_signature=cpu.signature, physical_cores=cpu.physical_cores,
            logical_cpus=cpu.logical_cpus, memory_total_bytes=total, memory_available_bytes=available,
            bandwidth_gb_s=bandwidth.gb_s, isa=isa, amx_os=permission, build_id=build, build_version=version,
            system_info=plain_data, paths={name: paths[name] for name in PATHS if name in paths},
            probe_seconds=time.perf_counter() - t0, bandwidth_foreign_cores=bandwidth.foreign_cores,
        )
        log.info("hardware probe: %s; paths %s (%.1f s)", report.amx_verdict(),
                 {k: v.status for k, v in report.paths.items()}, report.probe_seconds)
        return report


def _selftest_digest_path(model: Path) -> Path:
    return model.with_name(f"{model.name}.sha256")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_selftest_model(model: Path) -> None:
    """Record the sha256 of the self-test model just written (the child writing it calls this)."""
    digest = _selftest_digest_path(model)
    tmp = digest.with_name(f"{digest.name}.{os.getpid()}.tmp")
    tmp.write_text(_file_sha256(model) + "\n", encoding="ascii")
    os.replace(tmp, digest)


def discard_damaged_selftest_model(model: Path) -> bool:
    """Remove the self-test model when it is not the file its writer recorded (cut short by a copy between
    machines, damaged on disk, or written before digests were recorded): the first child writes it again, where a
    damaged copy would fail every child at load, probe after probe. True when it was removed."""
    digest = _selftest_digest_path(model)
    try:
        if digest.read_text(encoding="ascii").strip() == _file_sha256(model):
            return False
    except FileNotFoundError:
        if not model.exists():
            return False
    except (OSError, UnicodeDecodeError):
        pass
    log.warning("hardware probe: the self-test model %s does not match its recorded sha256; writing it again", model)
    model.unlink(missing_ok=True)
    digest.unlink(missing_ok=True)
    return True


def _read_report(path: Path) -> ProbeReport | None:
    """The answer stored at ``path`` as it was written (no AMX grant asked, no live memory), None when there is
    none to read."""
    try:
        return ProbeReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _better_bandwidth(report: ProbeReport, earlier: ProbeReport | None) -> ProbeReport:
    """``report``, with the earlier answer's bandwidth when this one was measured under load and is lower: the
    figure picks the default model, and a busy moment must not replace a good measurement of the same machine
    (a quiet measurement replaces it, higher or lower)."""
    if not report.bandwidth_under_load:
        return report
    if earlier is None or earlier.bandwidth_gb_s <= report.bandwidth_gb_s:
        log.warning("memory bandwidth measured while other processes used %.1f cores: %.1f GB/s is likely too low "
                    "(`inhouse doctor --refresh` on a quiet machine measures it again)",
                    report.bandwidth_foreign_cores, report.bandwidth_gb_s)
        return report
    log.warning("memory bandwidth measured under load (%.1f cores busy elsewhere): %.1f GB/s; keeping the %.1f GB/s "
                "measured before", report.bandwidth_foreign_cores, report.bandwidth_gb_s, earlier.bandwidth_gb_s)
    return replace(report, bandwidth_gb_s=earlier.bandwidth_gb_s,
                   bandwidth_foreign_cores=earlier.bandwidth_foreign_cores)


def _system_info(outcomes: dict[str, ChildOutcome]) -> str:
    """llama.cpp's compile-time feature line, from the first child that answered."""
    for outcome in outcomes.values():
        if outcome.returncode == 0:
            try:
                return str(json.loads(outcome.stdout.strip().splitlines()[-1]).get("system_info", ""))
            except (ValueError, IndexError):
                continue
    return ""


def _installed_build() -> tuple[str, str]:
    from inhouse.engine.backends.llama_cpp import build_identity

    ident = build_identity()
    return ident.id, ident.version
