"""CPU detection from a fake /proc + /sys tree, RSS parsing, a tiny bandwidth run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inhouse.hardware.cpu import (
    descendant_pids,
    detect_cpu,
    measure_bandwidth,
    process_rss_bytes,
    process_tree_rss_bytes,
)

CPUINFO = """processor : 0
model name : Test CPU 9000
flags : fpu sse avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile some_new_flag

processor : 1
model name : Test CPU 9000
flags : fpu sse avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile some_new_flag
"""


def fake_tree(root: Path, *, smt: bool, flags_line: str | None = None) -> Path:
    (root / "proc").mkdir(parents=True)
    text = CPUINFO if flags_line is None else CPUINFO.replace(CPUINFO.splitlines()[2], flags_line)
    (root / "proc/cpuinfo").write_text(text)
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0-3\n")
    for i in range(4):
        topo = cpu / f"cpu{i}/topology"
        topo.mkdir(parents=True)
        siblings = f"{i - i % 2},{i - i % 2 + 1}" if smt else str(i)
        topo.joinpath("thread_siblings_list").write_text(siblings + "\n")
    for idx, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                               (3, "Unified", "32M")]):
        d = cpu / f"cpu0/cache/index{idx}"
        d.mkdir(parents=True)
        d.joinpath("level").write_text(f"{level}\n")
        d.joinpath("type").write_text(kind + "\n")
        d.joinpath("size").write_text(size + "\n")
    for n in range(2):
        (root / f"sys/devices/system/node/node{n}").mkdir(parents=True)
    return root


def test_detect_cpu_reads_topology_caches_and_flags(tmp_path: Path) -> None:
    info = detect_cpu(fake_tree(tmp_path, smt=True))
    assert info.model_name == "Test CPU 9000"
    assert (info.logical_cpus, info.physical_cores, info.smt, info.numa_nodes) == (4, 2, True, 2)
    assert info.cache_bytes == {"L1d": 48 * 1024, "L2": 2048 * 1024, "L3": 32 * 1024**2}
    assert info.has("avx512_vnni") and info.has("amx_tile") and not info.has("avx512_bf16")
    assert "some_new_flag" not in info.flags  # only flags that change kernels
    assert len(info.signature) == 16


def test_signature_ignores_irrelevant_flags_but_not_simd(tmp_path: Path) -> None:
    base = detect_cpu(fake_tree(tmp_path / "a", smt=False))
    extra = detect_cpu(fake_tree(tmp_path / "b", smt=False,
                                 flags_line=CPUINFO.splitlines()[2] + " brand_new_thing"))
    no_avx512 = detect_cpu(fake_tree(tmp_path / "c", smt=False, flags_line="flags : fpu avx avx2 fma f16c"))
    assert base.signature == extra.signature
    assert base.signature != no_avx512.signature
    assert base.physical_cores == 4 and not base.smt


def test_detect_cpu_on_this_machine_does_not_fail() -> None:
    info = detect_cpu()
    assert info.physical_cores >= 1 and info.logical_cpus >= info.physical_cores
    assert info.signature == detect_cpu().signature  # stable


def test_process_rss(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  123456 kB\nThreads: 3\n")
    assert process_rss_bytes(status) == 123456 * 1024
    assert process_rss_bytes(tmp_path / "missing") == 0
    assert process_rss_bytes() > 0


def test_descendants_are_found_and_their_memory_and_cpu_count_as_ours() -> None:
    script = "import sys, time; x = bytearray(64 * 2**20); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert child.pid in descendant_pids()
        # The child's 64 MB are touched (bytearray zero-fills): the tree holds them, this process alone does not.
        assert process_tree_rss_bytes() - process_rss_bytes() >= 64 * 2**20
    finally:
        child.kill()
        child.wait()
    assert child.pid not in descendant_pids()


def test_measure_bandwidth_small() -> None:
    bw = measure_bandwidth(size_bytes=8 * 2**20, runs=2, threads=1)
    assert bw.gb_s > 0 and bw.array_bytes == 8 * 2**20


def test_foreign_load_sampling() -> None:
    from inhouse.hardware.cpu import CpuSample, cpu_sample, foreign_load

    a = cpu_sample()
    assert a.busy_ticks > 0 and a.own_ticks >= 0
    tick = os.sysconf("SC_CLK_TCK")
    b = CpuSample(at_s=a.at_s + 2, busy_ticks=a.busy_ticks + 3 * tick, own_ticks=a.own_ticks + tick)
    assert foreign_load(a, b) == 1.0  # 3 core-seconds busy in 2 s, 1 of them ours → one core of others
    assert foreign_load(b, a) == 0.0
