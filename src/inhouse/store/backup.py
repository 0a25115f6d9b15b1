"""Online backup and restore of a data directory: every database, the audit key and head, the egress policy,
tuned profiles and the list of registered models, with a manifest of sha256 hashes.

**Consistent while the server serves.** Each SQLite file is copied with SQLite's online backup API, which gives
a consistent snapshot of that file however many writers are busy. Across files the order matters:

1. ``kb.db`` and ``inhouse.db`` first;
2. then the audit log, last: its write lock is taken (``BEGIN IMMEDIATE``) and held while ``audit.db``, the
   signed head and the key are copied, so the copied head names exactly the copied tail.

Every security action is recorded in the audit log *before* its own database commits, so an audit snapshot taken
after the other databases holds a record of everything they contain (it may hold a few more: actions in flight).

**Embedded installs only.** With ``store.url`` naming PostgreSQL, users, keys, conversations, the audit chain and
the index live in the database server, which has its own consistent online backup (``pg_dump``); a copy of the
data directory alone would miss them, and one of them taken apart from the other would not agree. So ``inhouse
backup`` and ``restore`` refuse there (``require_embedded``), and docs/operations.md says what to keep instead.

**Nothing half-written.** The backup is written to ``DIR.partial`` and renamed to ``DIR`` when complete; restore
stages its files in the data directory and renames each into place, after every hash has been checked; it refuses
a directory holding a database's leftover ``-wal``, ``-shm`` or ``-journal`` (SQLite would replay them into the
restored file), and runs ``PRAGMA quick_check`` on each database once in place, taking the files out again if one
fails. Model weights are not copied (they come from packages or files you still have): the manifest lists the
registered models, and ``inhouse models pull`` / ``add`` bring them back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from inhouse.errors import Conflict, InhouseError, InvalidRequest, StorageFull, is_storage_full, shown

FORMAT = "inhouse-backup-1"
MANIFEST = "MANIFEST.json"
DATABASES = ("kb.db", "inhouse.db")  # copied first; audit.db last, under its write lock
AUDIT_FILES = ("audit.db", "audit.head", "audit.key")
_SECRET_FILES = frozenset({"audit.key"})
_STAGING = ".restore-staging"  # in the data directory, while a restore copies
_SQLITE_FILES = (*DATABASES, "audit.db")
_SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's files beside a database, read back into it when it opens


@dataclass
class BackupResult:
    path: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    audit_head: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_db(conn: sqlite3.Connection, dest: Path) -> None:
    """SQLite's online backup of ``conn``'s database into ``dest``, checked and fsynced."""
    out = sqlite3.connect(dest)
    try:
        conn.backup(out)
        out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        result = out.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise InvalidRequest(f"The copy of {dest.name} fails its integrity check: {result}")
    finally:
        out.close()
    _fsync(dest)


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


@contextlib.contextmanager
def _audit_locked(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A reader of the audit database while a second connection holds its write lock (no append, no head write)
    for as long as the block runs. (SQLite's backup cannot read through the connection that holds the lock.)"""
    if not path.exists():
        yield None
        return
    lock, reader = _open(path), _open(path)
    try:
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield reader
        finally:
            lock.execute("ROLLBACK")
    finally:
        reader.close()
        lock.close()


def require_embedded(store_url: str, command: str) -> None:
    """Refuse ``command`` (``backup``/``restore``) on an install whose shared data is in PostgreSQL."""
    if store_url:
        raise InvalidRequest(
            f"`inhouse {command}` copies the SQLite files of an embedded install, but store.url names PostgreSQL: "
            "users, keys, conversations, the audit chain and the knowledge index are in that database. Back it up "
            "with pg_dump (pg_dump --format=custom --file=inhouse.dump URL; restore with pg_restore into an empty "
            "database), and keep audit.key, policy.toml and profiles/ of each node's data directory with it. See "
            "docs/operations.md.", param="store.url")


def backup_data_dir(data_dir: Path, dest: Path, *, policy_file: Path | None = None) -> BackupResult:
    """Write a backup of ``data_dir`` to ``dest`` (which must not exist yet)."""
    start = time.monotonic()
    if dest.exists() and not dest.is_dir():
        raise InvalidRequest(f"{dest} is a file; back up into a new directory.", param="dir")
    if dest.exists() and any(dest.iterdir()):
        raise Conflict(f"{dest} exists and is not empty; back up into a new directory.", param="dir")
    if not (data_dir / "inhouse.db").exists():
        raise InvalidRequest(f"{data_dir} holds no inhouse data (no inhouse.db).", param="data_dir")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        result = _write_backup(data_dir, partial, dest, policy_file)
    except BaseException as exc:
        # Only the destination is written, so a full disk here is the destination's (its free space is looked at
        # before the partial copy goes: SQLite may only say "disk I/O error").
        full = isinstance(exc, OSError | sqlite3.Error) or _is_apsw_error(exc)
        full = full and is_storage_full(exc, partial.parent if partial.parent.exists() else None)
        shutil.rmtree(partial, ignore_errors=True)  # nothing half-written is left on the backup disk
        if full:
            raise StorageFull(f"The backup could not be written to {dest}: the disk holding it is full (the data "
                              f"directory's databases take {_database_bytes(data_dir) / 1e6:.1f} MB); nothing was "
                              "kept there. Free space on that disk or back up to another one.") from exc
        raise
    os.replace(partial, dest)
    _fsync(dest.parent)
    result.seconds = time.monotonic() - start
    return result


def _write_backup(data_dir: Path, partial: Path, dest: Path, policy_file: Path | None) -> BackupResult:
    """Every file of the backup into ``partial``, the manifest last; ``dest`` is made ready for the rename."""
    partial.mkdir(parents=True)
    result = BackupResult(dest)
    if (data_dir / "kb.db").exists():
        from inhouse.kb.index.sqlite.backup import backup_index  # through the knowledge index's own SQLite library

        backup_index(data_dir / "kb.db", partial / "kb.db")
        _fsync(partial / "kb.db")
    conn = _open(data_dir / "inhouse.db")
    try:
        _copy_db(conn, partial / "inhouse.db")
    finally:
        conn.close()
    with _audit_locked(data_dir / "audit.db") as audit:
        if audit is not None:
            _copy_db(audit, partial / "audit.db")
        for name in ("audit.head", "audit.key"):
            if (data_dir / name).exists():
                shutil.copy2(data_dir / name, partial / name)
    head_file = partial / "audit.head"
    if head_file.exists():
        head = json.loads(head_file.read_text())
        result.audit_head = {"seq": head.get("seq"), "hash": head.get("hash")}
    policy = policy_file or data_dir / "policy.toml"
    if policy.is_file():
        shutil.copy2(policy, partial / "policy.toml")
    if (data_dir / "profiles").is_dir():
        shutil.copytree(data_dir / "profiles", partial / "profiles")
    registry = data_dir / "models" / "registry.json"
    if registry.is_file():
        (partial / "models").mkdir()
        shutil.copy2(registry, partial / "models" / "registry.json")
    for path in sorted(p for p in partial.rglob("*") if p.is_file()):
        if path.name in _SECRET_FILES:
            path.chmod(0o600)
        result.files.append({"path": path.relative_to(partial).as_posix(), "sha256": sha256_file(path),
                             "bytes": path.stat().st_size})
    manifest = {"format": FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "source": str(data_dir), "policy_source": str(policy) if policy.is_file() else None,
                "audit_head": result.audit_head, "files": result.files}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync(partial / MANIFEST)
    if dest.exists():
        dest.rmdir()
    return result


def _is_apsw_error(exc: BaseException) -> bool:
    """An error of apsw (the knowledge index's SQLite), told by module: it is not imported here."""
    return any(cls.__module__ == "apsw" for cls in type(exc).__mro__)


def _database_bytes(data_dir: Path) -> int:
    return sum((data_dir / name).stat().st_size for name in _SQLITE_FILES if (data_dir / name).is_file())


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest, with its shape and every file's size and sha256 checked; raises InvalidRequest naming the first
    bad one."""
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"{backup} is not an inhouse backup (no readable {MANIFEST}: {exc}).") from None
    if not isinstance(manifest, dict):
        raise InvalidRequest(f"{backup}: {MANIFEST} is not a JSON object; the backup is damaged.")
    if manifest.get("format") != FORMAT:
        raise InvalidRequest(f"{backup}: unknown backup format {shown(manifest.get('format'))}.")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise InvalidRequest(f"{backup}: {MANIFEST} has no list of files; the backup is damaged.")
    seen: set[str] = set()
    for n, entry in enumerate(files, 1):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)
                and type(entry.get("bytes")) is int and entry["bytes"] >= 0):
            raise InvalidRequest(f"{backup}: file {n} of {MANIFEST} is not {{path, sha256, bytes}} "
                                 f"({shown(entry)}); the backup is damaged.")
        _check_path(backup, entry["path"])
        if entry["path"] in seen:
            raise InvalidRequest(f"{backup}: {MANIFEST} lists {shown(entry['path'])} twice; the backup is damaged.")
        seen.add(entry["path"])
    for entry in files:
        path = backup / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise InvalidRequest(f"{backup}: {entry['path']} is missing or does not match its hash; "
                                 "the backup is damaged.")
    return manifest


def _check_path(backup: Path, path: str) -> None:
    """A manifest path names a file inside the backup, and the same one inside the data directory: relative, with no
    ``..`` (``../x`` would be read from outside the backup and written outside the data directory)."""
    parts = PurePosixPath(path).parts
    if (not parts or path.startswith("/") or ".." in parts or "\x00" in path or "\\" in path
            or parts[0] == _STAGING):
        raise InvalidRequest(f"{backup}: {MANIFEST} names {shown(path)}, which is not a path inside the backup; "
                             "the backup is damaged or was altered.")


def restore_data_dir(backup: Path, data_dir: Path) -> dict[str, Any]:
    """Bring ``backup`` back into ``data_dir``, which must hold no inhouse data yet, nor any file the backup holds
    (a restore never overwrites). Returns the manifest."""
    manifest = read_manifest(backup)
    present = [n for n in (*DATABASES, *AUDIT_FILES, "policy.toml") if (data_dir / n).exists()]
    if present:
        raise Conflict(f"{data_dir} already holds inhouse data ({', '.join(present)}); restore into a new, empty "
                       "data directory (move the current one aside first).", param="data_dir")
    # A -wal left by a killed server is replayed into whatever database of that name opens next: the restored one
    # would silently become the old one's pages (or malformed). A -journal is rolled back into it the same way.
    leftovers = [f"{db}{suffix}" for db in _SQLITE_FILES for suffix in _SIDECARS
                 if os.path.lexists(data_dir / f"{db}{suffix}")]
    if leftovers:
        raise Conflict(f"{data_dir} holds {', '.join(leftovers)}: SQLite's files of a database that is no longer "
                       "there, which SQLite would read into the restored database and damage it. Move them aside with "
                       "the database they belong to (or delete them), then restore.", param="data_dir")
    # Registered models, tuned profiles: files a new install may have made already (`models add` before the restore).
    taken = [e["path"] for e in manifest["files"] if os.path.lexists(data_dir / e["path"])]
    if taken:
        listed = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise Conflict(f"{data_dir} already holds {listed}, which the backup would replace; a restore never "
                       "overwrites: move them aside, or restore into a new, empty data directory.", param="data_dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for entry in manifest["files"]:
            target = staging / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(backup / entry["path"], target)
            if target.name in _SECRET_FILES:
                target.chmod(0o600)
            _fsync(target)
        # Databases and the audit files go in last, the audit head after its database.
        order = sorted(manifest["files"], key=lambda e: (e["path"] in (*DATABASES, *AUDIT_FILES),
                                                         e["path"] == "audit.head"))
        for entry in order:
            target = data_dir / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / entry["path"], target)
        _fsync(data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    damaged = _check_databases(data_dir, [e["path"] for e in manifest["files"] if e["path"] in _SQLITE_FILES])
    if damaged:
        # Every file placed was absent before (checked above): taking them back leaves the directory as it was.
        for entry in manifest["files"]:
            suffixes = ("", *_SIDECARS) if entry["path"] in _SQLITE_FILES else ("",)
            for suffix in suffixes:
                with contextlib.suppress(FileNotFoundError):
                    (data_dir / f"{entry['path']}{suffix}").unlink()
        raise InhouseError(f"The restored {'; '.join(damaged)}. The restored files were taken out of {data_dir} "
                           "again; check the backup's copy (sqlite3 FILE 'PRAGMA integrity_check') and restore an "
                           "older backup if it is damaged.")
    return manifest


def _check_databases(data_dir: Path, names: list[str]) -> list[str]:
    """``PRAGMA quick_check`` of each restored database as the server will open it (a -wal beside it would be
    replayed first); what fails, as "NAME fails its integrity check: …". kb.db through the stdlib's SQLite too:
    nothing else has it open yet, so the two libraries' locks cannot clash (``backup_index``)."""
    damaged = []
    for name in names:
        try:
            conn = sqlite3.connect(data_dir / name)
            try:
                rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:  # not a database at all, or a header SQLite cannot read
            rows = [str(exc)]
        if rows != ["ok"]:
            damaged.append(f"{name} fails its integrity check: {'; '.join(rows[:3])}")
    return damaged
