"""The one error hierarchy of inhouse.

Cores raise these; only the edges (``api/``, ``cli/``, ``web/``) turn them into HTTP statuses or exit
codes. Each class names the OpenAI-style ``type`` and a stable machine ``code`` it travels with::

    InhouseError
     ├── InvalidRequest             bad input from a caller            (type invalid_request_error)
     │    ├── ContextLengthExceeded  prompt + max_tokens do not fit
     │    ├── InvalidModelFile       GGUF header or chat template refused
     │    └── DocumentRejected       a file that cannot be parsed safely; carries ``filename`` + ``reason``
     ├── AuthenticationFailed       no key, bad key, expired, revoked  (type authentication_error)
     ├── PermissionDenied           authenticated but not allowed      (type permission_error)
     ├── NotFound                   unknown id (also used to hide ids of others)
     │    └── ModelNotFound          a model name that is not registered
     ├── Conflict                   the resource already exists / is in another state
     ├── Overloaded                 queue full or quota exceeded; carries ``retry_after_s``
     ├── Unavailable                the engine is loading, stopping or failed
     │    ├── AuditUnavailable       the audit record could not be written: the action must not happen
     │    ├── StorageFull            the disk is full: nothing was written; retry once space is back
     │    ├── AuditStorageFull       (both of the above) the audit record could not be written: disk full
     │    ├── StorageReadOnly        the data disk cannot be written (read-only after an I/O error): code
     │    │                          ``storage_read_only``; the disk needs repairing and a restart
     │    ├── AuditStorageReadOnly   (audit + read-only) the audit record could not be written
     │    ├── StoreUnavailable       the database cannot be written for now: PostgreSQL down or restarting, or an
     │    │                          SQLite write lock held by another process (code ``store_busy``)
     │    ├── AuditStoreUnavailable  (audit + store) the audit record could not be written: database away
     │    ├── ParserUnavailable      the parse workers were killed from outside (OOM killer); retry
     │    └── EngineCrashed          the engine's process died; it is being restarted
     └── EngineFailure              llama.cpp returned an error we could not recover from

This module imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil


class InhouseError(Exception):
    """Base of every error inhouse raises on purpose."""

    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class InvalidRequest(InhouseError):
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, n_prompt: int, n_ctx: int, *, max_tokens: int = 0) -> None:
        if max_tokens:
            msg = (
                f"This model's context is {n_ctx} tokens, but the prompt has {n_prompt} tokens "
                f"and at least 1 more must be generated (max_tokens={max_tokens})."
            )
        else:
            msg = f"This model's context is {n_ctx} tokens, but the prompt has {n_prompt} tokens."
        super().__init__(msg, param="messages")
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx


class InvalidModelFile(InvalidRequest):
    code = "invalid_model_file"


class InvalidSettings(InvalidRequest):
    """A setting (environment variable or ``INHOUSE_CONFIG`` file) that cannot be used: every command says which."""

    code = "invalid_settings"


class DocumentRejected(InvalidRequest):
    """One file refused by a parser (empty, encrypted, too big, zip bomb, unsupported...); the batch goes on."""

    code = "document_rejected"

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"{filename}: {reason}", param="file")
        self.filename = filename
        self.reason = reason


class AuthenticationFailed(InhouseError):
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(InhouseError):
    type = "permission_error"
    code = "permission_denied"


class NotFound(InhouseError):
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, name: str, available: list[str]) -> None:
        listing = ", ".join(sorted(available)) or "none"
        super().__init__(f"The model '{name}' is not registered. Available models: {listing}.", param="model")
        self.name = name
        self.available = sorted(available)


class Conflict(InhouseError):
    type = "invalid_request_error"
    code = "conflict"


class Overloaded(InhouseError):
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class Unavailable(InhouseError):
    type = "server_error"
    code = "unavailable"


class AuditUnavailable(Unavailable):
    """The audit log could not record an action (write failed, or the log no longer matches its signed
    head). The action it was meant to record must fail: nothing happens unaudited."""

    code = "audit_unavailable"


class StorageFull(Unavailable):
    """A write failed because the filesystem holding the data is full (or over quota). The write was rolled back
    or never renamed into place, so nothing is half-written; the same request succeeds once space returns."""

    code = "storage_full"


class AuditStorageFull(AuditUnavailable, StorageFull):
    """The audit record could not be written because the disk is full (so the action does not happen: 507)."""

    code = "storage_full"


class StorageReadOnly(Unavailable):
    """A write failed because the filesystem holding the data cannot be written any more: it is read-only (the
    kernel remounts a disk read-only after an I/O error, ext4's ``errors=remount-ro``) or fails every write. Nothing
    was written (SQLite rolls the transaction back; a file is never renamed into place). It lasts until the disk is
    repaired, which needs the server stopped: ``/ready`` says so meanwhile (the HTTP requests that must be recorded in
    the audit log fail with it, reads too; ``/health`` and ``/metrics`` answer)."""

    code = "storage_read_only"


class AuditStorageReadOnly(AuditUnavailable, StorageReadOnly):
    """The audit record could not be written because the data disk is read-only (so the action does not happen)."""

    code = "storage_read_only"


class StoreUnavailable(Unavailable):
    """The database server cannot be reached (stopped, restarting, failing over, or the network to it is down). The
    statement did not run or was rolled back; the same request succeeds once the server is back."""

    code = "store_unavailable"
    retry_after_s = 5.0


class AuditStoreUnavailable(AuditUnavailable, StoreUnavailable):
    """The audit record could not be written because the database server cannot be reached (so the action does not
    happen: 503 with Retry-After)."""

    code = "store_unavailable"


class ParserUnavailable(Unavailable):
    """A file's parse worker was killed from outside twice (SIGKILL or SIGTERM: the kernel's OOM killer, an operator),
    not by the file: the file is not at fault and nothing was stored; the same request may succeed later."""

    code = "parser_unavailable"
    retry_after_s = 5.0


def shown(value: object, limit: int = 60) -> str:
    """``value`` as an error message may quote it: its ``repr``, cut to ``limit`` characters. Messages go back to
    the caller, so input must never come back whole (a 100,000-character label would)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def is_storage_full(exc: BaseException, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``exc`` (from the OS, the stdlib sqlite3, apsw or psycopg) means the disk is full. With ``path``,
    also any error while the filesystem holding ``path`` has (almost) no space left: an SQLite extension may report
    a failed write in its own words (sqlite-vec: "could not write vector blob")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if getattr(exc, "sqlite_errorcode", None) == 13 or type(exc).__name__ == "FullError":  # SQLITE_FULL
        return True
    if getattr(exc, "sqlstate", None) == "53100":  # PostgreSQL disk_full (on the database server)
        return True
    if "database or disk is full" in str(exc):
        return True
    if path is None:
        return False
    try:
        return shutil.disk_usage(path).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


_NEARLY_FULL_BYTES = 1 << 20


def is_read_only(exc: BaseException, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``exc`` (from the OS, the stdlib sqlite3 or apsw) means the filesystem cannot be written: EROFS; or,
    with ``path``, SQLite's READONLY or an I/O error (EIO, SQLite's "disk I/O error": what a write into a database
    on a disk the kernel just turned read-only reports) while ``path`` cannot be written (``writable``). SQLite says
    READONLY for other reasons too (``PRAGMA query_only``, a file opened read-only): those are not a disk's."""
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    refused = ((isinstance(exc, OSError) and exc.errno == errno.EIO)
               or primary in (8, 10)  # SQLITE_READONLY, SQLITE_IOERR (and their extended codes)
               or (type(exc).__module__ == "apsw" and type(exc).__name__ in ("ReadOnlyError", "IOError"))
               or any(words in str(exc) for words in ("readonly database", "disk I/O error", "Read-only file system")))
    return refused and path is not None and not writable(path)


def writable(directory: str | os.PathLike[str]) -> bool:
    """Whether a file can be created in ``directory`` now (a probe file, created and removed): False on a read-only
    or failing filesystem; True otherwise (a full disk or a missing directory is another matter)."""
    probe = os.path.join(directory, f".inhouse-write-probe.{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        return exc.errno not in (errno.EROFS, errno.EIO)
    try:
        os.write(fd, b"1")
    except OSError as exc:
        return exc.errno not in (errno.EROFS, errno.EIO)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return True


def storage_read_only(what: str) -> StorageReadOnly:
    return StorageReadOnly(f"{what}: the data disk cannot be written (it is read-only: a disk is turned read-only "
                           "after an I/O error); nothing was written. Writing needs the disk repaired and inhouse "
                           "restarted.")


def is_busy(exc: BaseException) -> bool:
    """Whether an SQLite error (stdlib sqlite3 or apsw) means another connection held the write lock for longer than
    the busy timeout (SQLITE_BUSY and its extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return ((isinstance(code, int) and code & 0xFF == 5) or type(exc).__name__ == "BusyError"
            or "database is locked" in str(exc))


def store_busy(what: str) -> StoreUnavailable:
    return StoreUnavailable(f"{what}: the database is busy (another process holds its write lock, e.g. an "
                            "`inhouse` command or a backup); nothing was written. Retry shortly.", code="store_busy")


def storage_full(what: str, exc: BaseException) -> StorageFull:
    return StorageFull(f"{what}: the disk is full (nothing was written; retry when space is freed).")


class EngineCrashed(Unavailable):
    """The child process running a model's engine died (a signal, e.g. SIGSEGV in native code). In-flight
    requests end with this; the supervisor restarts the engine, so a retry is the right answer."""

    code = "engine_crashed"
    retry_after_s = 5.0  # a backoff and a model load: about what a small model's restart takes


class EngineFailure(InhouseError):
    type = "server_error"
    code = "engine_failure"
