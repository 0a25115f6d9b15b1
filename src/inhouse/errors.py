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
     │    ├── StoreUnavailable       the database cannot be written for now: PostgreSQL down or restarting, or an
     │    │                          SQLite write lock held by another process (code ``store_busy``)
     │    ├── AuditStoreUnavailable  (audit + store) the audit record could not be written: database away
     │    └── EngineCrashed          the engine's process died; it is being restarted
     └── EngineFailure              llama.cpp returned an error we could not recover from

This module imports nothing from the package.
"""

from __future__ import annotations

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


class StoreUnavailable(Unavailable):
    """The database server cannot be reached (stopped, restarting, failing over, or the network to it is down). The
    statement did not run or was rolled back; the same request succeeds once the server is back."""

    code = "store_unavailable"
    retry_after_s = 5.0


class AuditStoreUnavailable(AuditUnavailable, StoreUnavailable):
    """The audit record could not be written because the database server cannot be reached (so the action does not
    happen: 503 with Retry-After)."""

    code = "store_unavailable"


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


class EngineFailure(InhouseError):
    type = "server_error"
    code = "engine_failure"
