"""``node.json`` outlives its node (a reboot, a SIGKILLed foreground node) and its PID is then reused: ``cluster
down`` must not signal the process that got it, ``up``/``join`` must not refuse because of it (cluster/nodes.py).
No Ray node is started here: the processes are stand-ins."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from inhouse.cluster.nodes import NodeRecord, _ray_start, cluster_dir, node_running, stop_node
from inhouse.errors import Conflict
from inhouse.governance.process import started_at

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def sleeper(spawn: list[subprocess.Popen[bytes]], *argv: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(list(argv) or ["sleep", "300"])
    spawn.append(proc)
    return proc


def fake_ray(tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A process whose command line is `…/python …/ray start --block`, as a node started before the start time was
    recorded."""
    script = tmp_path / "ray"
    script.write_text("import time\ntime.sleep(300)\n")
    proc = sleeper(spawn, sys.executable, str(script), "start", "--block")
    deadline = time.monotonic() + 10
    while b"start" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # exec'ed
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def write_record(data_dir: Path, pid: int, start: int | None, *, legacy: bool = False) -> NodeRecord:
    record = NodeRecord("head", pid, "127.0.0.2:6379", "127.0.0.1", None, "x", start)
    fields = asdict(record)
    if legacy:  # written by a version that kept no start time
        del fields["start"]
    cluster_dir(data_dir).mkdir(parents=True, exist_ok=True)
    (cluster_dir(data_dir) / "node.json").write_text(json.dumps(fields))
    return record


def check_refused(data_dir: Path) -> bool:
    try:
        _ray_start(data_dir, head=True, address=None, port=6379, node_ip="127.0.0.1", num_cpus=None, token_file=None)
    except Conflict:
        return True
    return False


def test_a_reused_pid_is_not_our_node_down_leaves_its_process_alone_and_up_does_not_refuse(
        tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    victim = sleeper(spawn)  # got the PID after the node died: same PID, another start time
    start = started_at(victim.pid)
    assert start is not None
    record = write_record(tmp_path, victim.pid, start - 1)
    assert not node_running(record)
    assert not check_refused(tmp_path)
    assert stop_node(tmp_path) == record
    time.sleep(0.2)
    assert victim.poll() is None and not (cluster_dir(tmp_path) / "node.json").exists()


def test_our_node_with_its_start_time_is_refused_and_stopped(tmp_path: Path,
                                                              spawn: list[subprocess.Popen[bytes]]) -> None:
    node = sleeper(spawn)
    record = write_record(tmp_path, node.pid, started_at(node.pid))
    assert node_running(record) and check_refused(tmp_path)
    stop_node(tmp_path)
    assert node.wait(10) is not None
    assert not node_running(record)


def test_a_record_without_start_time_counts_only_while_its_pid_runs_a_node_command_line(
        tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    victim = sleeper(spawn)
    write_record(tmp_path, victim.pid, None, legacy=True)
    assert not check_refused(tmp_path)
    stop_node(tmp_path)
    time.sleep(0.2)
    assert victim.poll() is None

    node = fake_ray(tmp_path, spawn)
    write_record(tmp_path, node.pid, None, legacy=True)
    assert check_refused(tmp_path)
    stop_node(tmp_path)
    assert node.wait(10) is not None


def test_a_process_of_another_user_is_not_taken_for_our_node() -> None:
    # alive() counts a PID we may not signal (PermissionError) as alive; the start time still tells it apart.
    start = started_at(1)
    assert start is not None
    record = NodeRecord("head", 1, "127.0.0.2:6379", "127.0.0.1", None, "x", start + 1)
    assert not node_running(record)
