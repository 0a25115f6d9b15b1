"""Joining split weights, digest caching, package lookup without import, and the pip subprocess."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from inhouse.errors import InvalidModelFile, StorageFull, Unavailable
from inhouse.models.assemble import (
    assemble_parts,
    cached_sha256,
    default_sidecar,
    locate_package_dir,
    pip_install,
    sha256_file,
)


def make_parts(tmp_path: Path, data: bytes, n: int) -> list[Path]:
    step = -(-len(data) // n)
    parts = []
    for i in range(n):
        p = tmp_path / "parts" / f"part{i + 1:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data[i * step : (i + 1) * step])
        parts.append(p)
    return parts


DATA = os.urandom(100_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_sha256_file_reports_progress(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(DATA)
    seen: list[tuple[int, int]] = []
    assert sha256_file(p, lambda d, t, m="": seen.append((d, t))) == SHA
    assert seen[-1] == (len(DATA), len(DATA))


def test_assemble_joins_in_order_and_verifies(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, DATA, 3)
    dest = tmp_path / "cache" / "model.gguf"
    seen: list[str] = []
    out = assemble_parts(parts, dest, len(DATA), SHA, lambda d, t, m="": seen.append(m))
    assert out == dest and dest.read_bytes() == DATA
    assert "joining part 3/3" in seen
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)
    assert default_sidecar(dest).is_file()  # the digest is cached for the next start
    assert [p.name for p in dest.parent.iterdir() if p.name.endswith(".partial")] == []


def test_assemble_refuses_wrong_digest_and_leaves_nothing(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, DATA, 3)
    parts[0], parts[1] = parts[1], parts[0]  # wrong order: same size, other digest
    dest = tmp_path / "cache" / "model.gguf"
    with pytest.raises(InvalidModelFile, match=f"expected {SHA}"):
        assemble_parts(parts, dest, len(DATA), SHA)
    assert list(dest.parent.iterdir()) == []


def test_assemble_refuses_wrong_size_and_missing_parts(tmp_path: Path) -> None:
    parts = make_parts(tmp_path, DATA, 2)
    with pytest.raises(InvalidModelFile, match="add up to 100000 bytes, expected 100001"):
        assemble_parts(parts, tmp_path / "m.gguf", len(DATA) + 1, SHA)
    with pytest.raises(InvalidModelFile, match="missing"):
        assemble_parts([*parts, tmp_path / "nope.bin"], tmp_path / "m.gguf", len(DATA), SHA)
    assert not (tmp_path / "m.gguf").exists()


def test_cached_sha256_trusts_sidecar_only_for_same_file(tmp_path: Path) -> None:
    p = tmp_path / "f.gguf"
    p.write_bytes(DATA)
    calls: list[int] = []

    def progress(done: int, total: int, message: str = "") -> None:
        calls.append(done)

    assert cached_sha256(p, progress=progress) == SHA
    n = len(calls)
    assert cached_sha256(p, progress=progress) == SHA and len(calls) == n  # no re-hash
    p.write_bytes(DATA[:-1] + b"\x00" if DATA[-1] else DATA[:-1] + b"\x01")  # same size, new content+mtime
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    assert cached_sha256(p, progress=progress) != SHA and len(calls) > n


def test_cached_sha256_ignores_corrupt_sidecar(tmp_path: Path) -> None:
    p = tmp_path / "f.gguf"
    p.write_bytes(DATA)
    side = tmp_path / "digests" / "f.sha256"
    side.parent.mkdir()
    side.write_text("{not json")
    assert cached_sha256(p, sidecar=side) == SHA
    assert SHA in side.read_text()


def test_locate_package_dir_does_not_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "inhouse_test_datapkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert locate_package_dir("inhouse_test_datapkg") == pkg
    assert "inhouse_test_datapkg" not in sys.modules
    assert locate_package_dir("inhouse_no_such_package_xyz") is None
    assert locate_package_dir("not-an-identifier") is None
    assert locate_package_dir("json.decoder") is None


def fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fakepython"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_pip_install_command_and_progress(tmp_path: Path) -> None:
    log = tmp_path / "args"
    py = fake_python(tmp_path, f'echo "$@" > {log}\necho "Successfully installed x"\n')
    seen: list[str] = []
    pip_install(["a==1", "b==2"], extra_args=["--find-links", "/w"], python=py,
                progress=lambda d, t, m="": seen.append(m))
    args = log.read_text().split()
    assert args[:3] == ["-m", "pip", "install"] and "--no-deps" in args
    assert args[-4:] == ["--find-links", "/w", "a==1", "b==2"]
    assert "Successfully installed x" in seen


def test_pip_install_failure_carries_pip_output(tmp_path: Path) -> None:
    py = fake_python(tmp_path, 'echo "Collecting a"\n'
                               'echo "ERROR: No matching distribution found for a" >&2\nexit 1\n')
    with pytest.raises(Unavailable, match="No matching distribution") as info:
        pip_install(["a==1"], python=py)
    assert info.value.code == "model_install_failed"
    with pytest.raises(Unavailable, match="Could not run pip"):
        pip_install(["a"], python=str(tmp_path / "missing-python"))


def test_pip_install_on_a_full_disk_is_storage_full(tmp_path: Path) -> None:
    py = fake_python(tmp_path, 'echo "Collecting a"\n'
                               'echo "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on '
                               'device"\nexit 1\n')
    with pytest.raises(StorageFull, match="ran out of disk space") as info:
        pip_install(["a==1"], python=py)
    assert info.value.code == "storage_full" and "No space left" in info.value.message


def test_pip_install_timeout(tmp_path: Path) -> None:
    py = fake_python(tmp_path, "exec sleep 30\n")
    with pytest.raises(Unavailable, match="timed out"):
        pip_install(["a"], python=py, timeout_s=0.5)
