"""cgroup v2 (and v1) limits on a fake /proc + /sys tree: memory (``memory.max`` − ``memory.current``, on this
process's own cgroup or any ancestor) and the CPU quota (``cpu.max``) that caps the cores thread counts default to."""

from __future__ import annotations

from pathlib import Path

from inhouse.hardware.cpu import cgroup_dirs, cpu_quota, detect_cpu, physical_cores
from inhouse.hardware.probe import read_memory

GiB = 2**30
SERVICE = "system.slice/inhouse.service"


def machine(root: Path, *, cores: int = 16, own_cgroup: str | None = SERVICE) -> Path:
    """A 64 GiB, ``cores``-core host (no SMT) as /proc and /sys show it, this process in ``own_cgroup``."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("processor : 0\nmodel name : Big EPYC\nflags : avx2\n")
    (root / "proc/meminfo").write_text(f"MemTotal: {64 * GiB // 1024} kB\nMemFree: 1 kB\n"
                                       f"MemAvailable: {60 * GiB // 1024} kB\n")
    if own_cgroup is not None:
        (root / "proc/self/cgroup").write_text(f"0::/{own_cgroup}\n")
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text(f"0-{cores - 1}\n")
    for i in range(cores):
        (cpu / f"cpu{i}/topology").mkdir(parents=True)
        (cpu / f"cpu{i}/topology/thread_siblings_list").write_text(f"{i}\n")
    (root / "sys/fs/cgroup").mkdir(parents=True)
    return root / "sys/fs/cgroup"


def test_own_cgroup_first_then_its_ancestors_then_the_mount(tmp_path: Path) -> None:
    mount = machine(tmp_path)
    assert cgroup_dirs(tmp_path) == [mount / SERVICE, mount / "system.slice", mount]
    (tmp_path / "proc/self/cgroup").write_text("12:memory:/x\n0::/\n")
    assert cgroup_dirs(tmp_path) == [mount]


def test_available_memory_is_what_the_cgroup_has_left(tmp_path: Path) -> None:
    cg = tmp_path / "cg"
    cg.mkdir()
    (tmp_path / "meminfo").write_text(f"MemTotal: {64 * GiB // 1024} kB\nMemAvailable: {60 * GiB // 1024} kB\n")
    (cg / "memory.max").write_text(f"{4 * GiB}\n")
    (cg / "memory.current").write_text(f"{int(3.5 * GiB)}\n")
    assert read_memory(tmp_path / "meminfo", cg / "memory.max") == (4 * GiB, GiB // 2)
    (cg / "memory.current").write_text(f"{5 * GiB}\n")  # over the limit for a moment: nothing left, not negative
    assert read_memory(tmp_path / "meminfo", cg / "memory.max")[1] == 0


def test_a_limit_on_the_services_own_cgroup_counts(tmp_path: Path) -> None:
    mount = machine(tmp_path)
    (mount / "memory.max").write_text("max\n")
    (mount / SERVICE).mkdir(parents=True)
    (mount / SERVICE / "memory.max").write_text(f"{4 * GiB}\n")  # systemd MemoryMax=4G
    (mount / SERVICE / "memory.current").write_text(f"{GiB}\n")
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (4 * GiB, 3 * GiB)
    (mount / "system.slice/memory.max").write_text(f"{3 * GiB}\n")  # a tighter slice above it
    (mount / "system.slice/memory.current").write_text(f"{int(2.5 * GiB)}\n")
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (3 * GiB, GiB // 2)


def test_the_mount_point_is_the_fallback(tmp_path: Path) -> None:
    # no cgroup namespace: /proc/self/cgroup names a path the container's mount does not have
    mount = machine(tmp_path, own_cgroup="docker/0123abcd")
    (mount / "memory.max").write_text(f"{8 * GiB}\n")
    (mount / "memory.current").write_text(f"{2 * GiB}\n")
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (8 * GiB, 6 * GiB)
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path / "nowhere") == (64 * GiB, 60 * GiB)


def test_the_cpu_quota_caps_the_cores(tmp_path: Path) -> None:
    mount = machine(tmp_path)
    assert cpu_quota(tmp_path) is None and detect_cpu(tmp_path).physical_cores == 16
    (mount / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None and physical_cores(tmp_path) == 16
    (mount / SERVICE).mkdir(parents=True)
    (mount / SERVICE / "cpu.max").write_text("150000 100000\n")  # systemd CPUQuota=150%: 2 threads
    info = detect_cpu(tmp_path)
    assert cpu_quota(tmp_path) == 2 and (info.physical_cores, info.logical_cpus) == (2, 2)
    assert physical_cores(tmp_path) == 2
    (mount / "cpu.max").write_text("50000 100000\n")  # half a CPU above it: still one thread
    assert physical_cores(tmp_path) == 1


def test_a_quota_above_the_cores_changes_nothing(tmp_path: Path) -> None:
    mount = machine(tmp_path, cores=4)
    (mount / "cpu.max").write_text("800000 100000\n")
    assert detect_cpu(tmp_path).physical_cores == 4 and physical_cores(tmp_path) == 4


def v1_host(root: Path, own: str = "/system.slice/inhouse.service") -> Path:
    """A cgroup v1 host (RHEL 7/8): one hierarchy per controller, cpu mounted as "cpu,cpuacct"."""
    mount = machine(root, own_cgroup=None)
    (root / "proc/self/cgroup").write_text(f"11:memory:{own}\n4:cpu,cpuacct:{own}\n1:name=systemd:{own}\n")
    (mount / "memory").mkdir()
    (mount / "cpu,cpuacct").mkdir()
    (mount / "memory/memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (mount / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    (mount / "cpu,cpuacct/cpu.cfs_period_us").write_text("100000\n")
    return mount


def test_cgroup_v1_limits_count_too(tmp_path: Path) -> None:
    mount = v1_host(tmp_path)
    assert cgroup_dirs(tmp_path, "memory")[-1] == mount / "memory" and cgroup_dirs(tmp_path, "blkio") == []
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (64 * GiB, 60 * GiB)
    assert cpu_quota(tmp_path) is None and physical_cores(tmp_path) == 16
    service = mount / "memory" / SERVICE
    service.mkdir(parents=True)
    (service / "memory.limit_in_bytes").write_text(f"{4 * GiB}\n")
    (service / "memory.usage_in_bytes").write_text(f"{GiB}\n")
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (4 * GiB, 3 * GiB)
    (mount / "cpu,cpuacct/cpu.cfs_quota_us").write_text("250000\n")  # docker run --cpus=2.5
    assert cpu_quota(tmp_path) == 3 and detect_cpu(tmp_path).physical_cores == 3


def test_cgroup_v1_in_a_container_without_a_namespace_reads_the_mount(tmp_path: Path) -> None:
    mount = v1_host(tmp_path, own="/docker/0123abcd")
    (mount / "memory/memory.limit_in_bytes").write_text(f"{8 * GiB}\n")
    (mount / "memory/memory.usage_in_bytes").write_text(f"{2 * GiB}\n")
    assert read_memory(tmp_path / "proc/meminfo", root=tmp_path) == (8 * GiB, 6 * GiB)
