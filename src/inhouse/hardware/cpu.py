"""What this machine is, as far as CPU inference cares: the CPU (model, cores, SMT, NUMA, caches, the SIMD
flags llama.cpp's kernels dispatch on) and the memory read bandwidth that bounds decoding.

Everything is read from ``/proc/cpuinfo`` and ``/sys`` (Linux); a missing file degrades to "unknown" rather
than failing, because containers hide parts of sysfs. ``CpuInfo.signature`` names the hardware a tuned
profile was measured on: the same signature means the profile's numbers still describe this machine.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The flags that change which llama.cpp kernels run (and so what the best settings are). A kernel update
# that adds an unrelated flag must not invalidate every profile, so only these enter the signature.
RELEVANT_FLAGS: tuple[str, ...] = (
    "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx_vnni",
    "amx_tile", "amx_int8", "amx_bf16",
)


@dataclass(frozen=True)
class CpuInfo:
    model_name: str
    logical_cpus: int  # CPUs this process may run on (affinity)
    physical_cores: int  # of those, distinct cores (SMT siblings count once)
    smt: bool  # more than one hardware thread per core
    numa_nodes: int
    cache_bytes: dict[str, int] = field(default_factory=dict)  # "L1d", "L2", "L3" per instance
    flags: tuple[str, ...] = ()  # the RELEVANT_FLAGS present, in that order

    @property
    def signature(self) -> str:
        """Stable id of this hardware for tuned profiles: model name + relevant flags + core counts."""
        text = "|".join([self.model_name, ",".join(self.flags), str(self.physical_cores), str(self.logical_cpus)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def summary(self) -> str:
        simd = ", ".join(self.flags) or "no AVX"
        smt = "SMT" if self.smt else "no SMT"
        return (f"{self.model_name}: {self.physical_cores} cores / {self.logical_cpus} CPUs ({smt}), "
                f"{self.numa_nodes} NUMA node(s); {simd}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flags": list(self.flags), "signature": self.signature}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _parse_size(text: str) -> int | None:
    """sysfs cache sizes: '32K', '2048K', '32M'."""
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * mult if digits.isdigit() else None


def _cpuinfo_fields(text: str) -> tuple[str, set[str]]:
    model = "unknown CPU"
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = " ".join(value.split())
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def cgroup_dirs(root: Path = Path("/"), controller: str | None = None) -> list[Path]:
    """This process's own cgroup v2 directory and its ancestors up to the mount point, innermost first; with
    ``controller`` ("memory", "cpu"), the same in that controller's cgroup v1 hierarchy (RHEL 7 and 8, older
    Docker and Kubernetes hosts: mounted at ``/sys/fs/cgroup/<controllers>``), or none without one.

    A limit can sit on any level (``docker run -m``/``--cpus`` on the container's root, systemd's ``MemoryMax=``/
    ``CPUQuota=`` on the service's own cgroup), so callers take the tightest. Without a cgroup namespace the
    path in ``/proc/self/cgroup`` may not exist under the mount: reading a missing file there costs nothing, and
    the mount point itself is always last (the root fallback)."""
    mount = root / "sys/fs/cgroup"
    own: str | None = "" if controller is None else None
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controller is None and number == "0" and not controllers:  # the unified (v2) hierarchy
            own = path.strip()
            break
        if controller is not None and controller in controllers.split(","):
            own = path.strip()
            mount = mount / controllers if (mount / controllers).is_dir() else mount / controller
            break
    if own is None:
        return []
    parts = [p for p in own.split("/") if p and p not in (".", "..")]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), 0, -1)] + [mount]


def cpu_quota(root: Path = Path("/")) -> int | None:
    """CPUs' worth of time the cgroup quota allows (v2 ``cpu.max``: "QUOTA PERIOD"; v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``, -1 when unlimited), rounded up; None when unlimited. A thread per host core under
    ``--cpus=2`` only makes llama.cpp's threads wait for each other at every layer's barrier while the quota
    throttles them."""
    quotas: list[list[str]] = [(_read(d / "cpu.max") or "").split() for d in cgroup_dirs(root)]
    quotas += [[(_read(d / name) or "").strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")]
               for d in cgroup_dirs(root, "cpu")]
    best: int | None = None
    for fields in quotas:
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]) > 0:
            cpus = max(1, math.ceil(int(fields[0]) / int(fields[1])))
            best = cpus if best is None else min(best, cpus)
    return best


def detect_cpu(root: Path = Path("/")) -> CpuInfo:
    """Read the CPU description; ``root`` lets tests point at a fake ``/proc`` + ``/sys`` tree. Core counts
    are capped by the cgroup CPU quota (``cpu_quota``)."""
    model, all_flags = _cpuinfo_fields(_read(root / "proc/cpuinfo") or "")
    cpu_dir = root / "sys/devices/system/cpu"
    cpus = sorted(os.sched_getaffinity(0)) if root == Path("/") else _online_cpus(cpu_dir)
    cores: set[str] = set()
    smt = False
    for cpu in cpus:
        siblings = _read(cpu_dir / f"cpu{cpu}/topology/thread_siblings_list")
        if siblings is None:
            cores.add(str(cpu))
            continue
        siblings = siblings.strip()
        cores.add(siblings)
        smt = smt or ("," in siblings or "-" in siblings)
    nodes = [p for p in (root / "sys/devices/system/node").glob("node[0-9]*")]
    caches: dict[str, int] = {}
    first = cpus[0] if cpus else 0
    for index in sorted((cpu_dir / f"cpu{first}/cache").glob("index[0-9]*")):
        level = (_read(index / "level") or "").strip()
        kind = (_read(index / "type") or "").strip()
        size = _parse_size(_read(index / "size") or "")
        if not level or size is None or kind == "Instruction":
            continue
        caches[f"L{level}d" if kind == "Data" else f"L{level}"] = size
    quota = cpu_quota(root) or len(cpus)
    return CpuInfo(
        model_name=model,
        logical_cpus=max(1, min(len(cpus), quota)),
        physical_cores=max(1, min(len(cores), quota)),
        smt=smt,
        numa_nodes=max(1, len(nodes)),
        cache_bytes=caches,
        flags=tuple(f for f in RELEVANT_FLAGS if f in all_flags),
    )


def physical_cores(root: Path = Path("/")) -> int:
    """Physical cores this process may run on (SMT siblings count once), at most the cgroup CPU quota.

    llama.cpp's matrix kernels saturate a core's SIMD units with one thread; a second hyper-thread on the
    same core only adds contention, so thread counts default to physical cores.
    """
    cpus = os.sched_getaffinity(0) if root == Path("/") else set(_online_cpus(root / "sys/devices/system/cpu"))
    quota = cpu_quota(root) or len(cpus)
    cores: set[str] = set()
    for cpu in cpus:
        siblings = _read(root / f"sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        if siblings is None:  # no sysfs topology (containers on some kernels): assume no SMT
            return max(1, min(len(cpus), quota))
        cores.add(siblings.strip())
    return max(1, min(len(cores), quota))


def _online_cpus(cpu_dir: Path) -> list[int]:
    text = (_read(cpu_dir / "online") or "0").strip()
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out.extend(range(int(lo), int(hi) + 1 if hi.isdigit() else int(lo) + 1))
    return out or [0]


@dataclass(frozen=True)
class Bandwidth:
    gb_s: float  # best of the runs, 1e9 bytes/s
    array_bytes: int
    threads: int
    runs: int
    foreign_cores: float = 0.0  # cores other processes used while it was measured (measure_bandwidth_quietly)


def measure_bandwidth(size_bytes: int = 512 * 2**20, runs: int = 5, threads: int = 0,
                      clock: Callable[[], float] = time.perf_counter) -> Bandwidth:
    """Memory read bandwidth: numpy sums a float32 array of ``size_bytes`` (≥ 512 MB: far above the L3),
    one slice per thread (numpy releases the GIL), best of ``runs``. Decoding reads every weight once per
    token, so this is the roofline decode speed is compared with."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    threads = threads or len(os.sched_getaffinity(0))
    n = size_bytes // 4
    arr = np.ones(n, dtype=np.float32)  # touching every page now keeps page faults out of the timing
    slices = [arr[i * n // threads : (i + 1) * n // threads] for i in range(threads)]
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda s: s.sum(), slices))  # warm-up
        for _ in range(runs):
            t0 = clock()
            list(pool.map(lambda s: s.sum(), slices))
            dt = clock() - t0
            if dt > 0:
                best = max(best, arr.nbytes / dt / 1e9)
    del arr, slices
    return Bandwidth(gb_s=best, array_bytes=n * 4, threads=threads, runs=runs)


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Memory the kernel can still give without swapping (``MemAvailable``: free + reclaimable cache),
    None where /proc is not available."""
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def process_rss_bytes(status: Path = Path("/proc/self/status")) -> int:
    """Resident set size of this process (``VmRSS``), 0 where /proc is not available."""
    text = _read(status) or ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return 0


def descendant_pids(pid: int | str = "self", proc: Path = Path("/proc")) -> list[int]:
    """Every live descendant of ``pid`` (children first), from ``/proc/PID/task/*/children``; [] without /proc."""
    out: list[int] = []
    todo = [str(pid)]
    while todo:
        current = todo.pop()
        for task in (proc / current / "task").glob("*"):
            for child in (_read(task / "children") or "").split():
                if child.isdigit() and int(child) not in out:
                    out.append(int(child))
                    todo.append(child)
    return out


def process_tree_rss_bytes() -> int:
    """RSS of this process and its descendants (the engines' child processes hold the models)."""
    return process_rss_bytes() + sum(process_rss_bytes(Path(f"/proc/{pid}/status")) for pid in descendant_pids())


def return_free_heap() -> bool:
    """Ask glibc to hand freed heap pages back to the kernel (``malloc_trim(0)``); False where unavailable.
    After a model is freed its KV cache and compute buffers are free *to malloc*; this makes them free to
    the machine."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def drop_file_cache(path: Path) -> bool:
    """Tell the kernel the page cache of ``path`` is no longer needed (``POSIX_FADV_DONTNEED``). A freed
    model's weights are unmapped from the process already; this also gives their cached pages back, so
    the memory is really available to other work (the next load reads the file again)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CpuSample:
    at_s: float
    busy_ticks: int  # all CPUs: everything but idle and iowait
    own_ticks: int  # this process (all its threads) and its children (the engine processes), live or reaped


def _own_ticks(stat: str, *, with_reaped: bool) -> int:
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) <= 14:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    return ticks + int(fields[13]) + int(fields[14]) if with_reaped else ticks


def cpu_sample() -> CpuSample:
    """A point for ``foreign_load``: how busy the machine and this process (with its children) have been."""
    busy = own = 0
    text = _read(Path("/proc/stat")) or ""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)
            break
    own = _own_ticks(_read(Path("/proc/self/stat")) or "", with_reaped=True)
    for pid in descendant_pids():
        own += _own_ticks(_read(Path(f"/proc/{pid}/stat")) or "", with_reaped=False)
    return CpuSample(at_s=time.monotonic(), busy_ticks=busy, own_ticks=own)


def foreign_load(a: CpuSample, b: CpuSample) -> float:
    """Cores used by other processes between two samples (1.0 = one core fully taken). On a small machine
    llama.cpp's threads meet at a barrier after every layer, so even a fraction of a core taken by someone
    else slows a measurement down several times: tuning records this next to every figure."""
    wall = b.at_s - a.at_s
    if wall <= 0:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((b.busy_ticks - a.busy_ticks) - (b.own_ticks - a.own_ticks)) / ticks / wall)


# Other processes' load (cores) under which the machine counts as quiet for a measurement.
QUIET_CORES = 0.3


def wait_for_quiet(threshold_cores: float = QUIET_CORES, max_wait_s: float = 20.0, window_s: float = 1.0) -> float:
    """Wait (at most ``max_wait_s``) until other processes use less than ``threshold_cores`` for one
    ``window_s``; returns the last load seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        a = cpu_sample()
        time.sleep(window_s)
        load = foreign_load(a, cpu_sample())
        if load < threshold_cores or time.monotonic() >= deadline:
            return load


def measure_bandwidth_quietly(threshold_cores: float = QUIET_CORES, max_wait_s: float = 3.0, *,
                              measure: Callable[[], Bandwidth] = measure_bandwidth,
                              sample: Callable[[], CpuSample] = cpu_sample,
                              wait: Callable[[float, float, float], float] = wait_for_quiet) -> Bandwidth:
    """``measure_bandwidth`` with the load other processes put on the machine meanwhile (``foreign_cores``). On
    a quiet machine that is one measurement (no waiting); under load — a second ``inhouse doctor``, a build — the
    figure is several times too low, so it waits (at most ``max_wait_s``: the probe must stay quick) for the
    machine to go quiet and measures again, keeping the better of the two with its load."""
    a = sample()
    first = measure()
    load = foreign_load(a, sample())
    first = Bandwidth(first.gb_s, first.array_bytes, first.threads, first.runs, load)
    if load < threshold_cores:
        return first
    wait(threshold_cores, max_wait_s, 0.5)
    a = sample()
    again = measure()
    again = Bandwidth(again.gb_s, again.array_bytes, again.threads, again.runs, foreign_load(a, sample()))
    return max(first, again, key=lambda b: b.gb_s)
