"""How much CPU other processes take while we measure.

On 2 cores, llama.cpp runs one thread per core and its threads meet at a barrier after every layer: one
foreign process taking a core half the time makes decode several times slower, not 2× slower. So every
scenario waits for the machine to be quiet first, and records the foreign load it actually ran under
(in cores: 1.0 = one core fully taken by processes that are not this harness or its children).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    at_s: float
    busy_ticks: int  # all CPUs, everything but idle and iowait
    our_ticks: int  # this process, its reaped children and its live descendants


def _read_stat(pid: str) -> tuple[int, list[str]] | None:
    try:
        after = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(after[1]), after  # ppid, fields from "state" on


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return sum(values) - values[3] - values[4]


def _ticks(fields: list[str]) -> int:
    # utime, stime, cutime, cstime are fields 14-17 of proc(5); fields[0] is field 3.
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


def process_ticks(pid: int) -> int:
    """CPU ticks of ``pid`` and its reaped children (0 when it is gone)."""
    st = _read_stat(str(pid))
    return 0 if st is None else _ticks(st[1])


def snapshot(root_pid: int | None = None) -> CpuSnapshot:
    root = root_pid or os.getpid()
    stats: dict[int, tuple[int, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _read_stat(entry)
            if st is not None:
                stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    ours = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        st = stats.get(pid)
        if st is None:
            continue
        ours += _ticks(st[1])
        stack.extend(children.get(pid, []))
    return CpuSnapshot(at_s=time.monotonic(), busy_ticks=_busy_ticks(), our_ticks=ours)


def foreign_cores(a: CpuSnapshot, b: CpuSnapshot) -> float:
    wall = b.at_s - a.at_s
    if wall <= 0:
        return 0.0
    foreign = (b.busy_ticks - a.busy_ticks) - (b.our_ticks - a.our_ticks)
    return max(0.0, foreign / _TICKS / wall)


def wait_for_quiet(
    threshold_cores: float = 0.1, max_wait_s: float = 120.0, window_s: float = 1.0, say: object = None
) -> tuple[float, float]:
    """Block until two consecutive ``window_s`` windows show less than ``threshold_cores`` of foreign load,
    or ``max_wait_s`` passed. Returns (seconds waited, last foreign load)."""
    t0 = time.monotonic()
    quiet = 0
    load = 0.0
    told = False
    while True:
        a = snapshot()
        time.sleep(window_s)
        load = foreign_cores(a, snapshot())
        quiet = quiet + 1 if load < threshold_cores else 0
        waited = time.monotonic() - t0
        if quiet >= 2 or waited >= max_wait_s:
            return waited, load
        if not told and load >= threshold_cores and callable(say):
            say(f"  waiting for other processes to quiet down ({load:.2f} cores busy) …")
            told = True
