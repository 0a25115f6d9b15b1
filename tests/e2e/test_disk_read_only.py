"""The data disk turned read-only under a running server, as the kernel does after an I/O error: an ext4 filesystem
on a loop device mounted ``errors=remount-ro``, its error triggered through ``/sys/fs/ext4/<dev>/trigger_fs_error``
(a real ext4 error: the journal is aborted and the filesystem refuses every write from then on).

Every request then fails with 503 ``storage_read_only`` in the one error shape (not a 500, not a traceback), the
server stays up, ``/ready`` says why, the CLI exits 5 with the reason; and after the disk is repaired (unmounted,
``e2fsck``, mounted again) what was acknowledged before is there, what was refused left nothing, and the audit chain
and the index check clean."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_server import FAKE_MODEL, run_live_server

from inhouse.testing.crash import inhouse_argv


@dataclass
class Disk:
    image: Path
    mount: Path
    device: str  # loopN

    def fail(self) -> None:
        """An ext4 error, as a failing sector would raise it: the filesystem turns read-only at once."""
        Path(f"/sys/fs/ext4/{self.device}/trigger_fs_error").write_text("1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open("/proc/mounts") as mounts:
                if any(line.split()[1] == str(self.mount) and "ro" in line.split()[3].replace("emergency_ro", "ro")
                       .split(",") for line in mounts):
                    return
            time.sleep(0.05)
        raise AssertionError("the filesystem did not turn read-only")

    def repair(self) -> str:
        """What an operator does: unmount, check, mount again. The checker's report."""
        subprocess.run(["umount", str(self.mount)], check=True)
        fsck = subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, text=True)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors corrected
        subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mount)], check=True)
        return fsck.stdout


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    image, mount = tmp_path / "disk.img", tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "256M", str(image)], check=True)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(mount)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount an ext4 image on a loop device here (needs root and loop devices)")
    try:
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)], capture_output=True, text=True,
                                check=True).stdout.strip()
        yield Disk(image, mount, Path(source).name)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def assert_read_only(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["code"] == "storage_read_only", error
    assert "read-only" in error["message"] and str(Path("/")) + "tmp" not in error["message"], error  # no path


def test_a_disk_turned_read_only_is_reported_and_loses_nothing(disk: Disk) -> None:
    data = disk.mount / "data"
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data), "INHOUSE_KB__EMBEDDER": "fake"}
    with run_live_server(data, settings={"kb": {"embedder": "fake"}}) as server:
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=30)
        col = http.post("/v1/collections", json={"name": "docs"}).json()["id"]

        def upload(name: str) -> httpx.Response:
            return http.post(f"/v1/collections/{col}/documents",
                             files={"file": (name, f"# {name}\n\nThe {name} figures for the quarter.\n".encode())})

        def chat(stream: bool = False) -> httpx.Response:
            return http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "max_tokens": 4, "stream": stream,
                                                           "messages": [{"role": "user", "content": "hi"}]})

        assert upload("before.md").status_code == 201
        assert http.post("/v1/admin/users", json={"name": "bob"}).status_code == 201
        assert chat().status_code == 200
        assert httpx.get(server.url + "/ready").status_code == 200
        os.sync()  # what was acknowledged reached the disk (the kernel writes it back within seconds anyway)
        disk.fail()
        for r in (upload("after.md"), http.post("/v1/admin/users", json={"name": "carol"}), chat(),
                  chat(stream=True), http.post("/v1/search", json={"query": "figures"}),
                  http.post("/v1/conversations", json={"title": "x"}), http.get("/v1/status")):
            assert_read_only(r)
        assert httpx.get(server.url + "/health").status_code == 200  # the server stays up
        ready = httpx.get(server.url + "/ready")
        assert_read_only(ready)  # a load balancer stops sending requests here
        assert http.get("/metrics").status_code == 200
        cli = subprocess.run(inhouse_argv("users", "add", "dave"), capture_output=True, text=True, timeout=120,
                             env=env)
        assert cli.returncode == 5 and "read-only" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr[-800:]
    # The server closed without a hang or an error; the operator repairs the disk, and inhouse starts again on it.
    disk.repair()

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(inhouse_argv(*argv), capture_output=True, text=True, timeout=300, env=env)

    verify = run("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    check = run("kb", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    users = run("users", "list").stdout
    assert "bob" in users and "carol" not in users and "dave" not in users
    shown = run("collections", "show", "docs").stdout
    assert "before.md" in shown and "after.md" not in shown
    assert run("users", "add", "erin").returncode == 0  # and it writes again
