"""What crosses the Ray boundary between the ingress and a model replica, besides ``GenerationRequest`` and ``Delta``
(plain dataclasses, pickled by Ray as they are).

An ``inhouse.errors`` exception raised in a replica before the first delta (queue full, context too long, a bad
grammar) is sent as an ``ErrorRecord`` and raised again at the ingress as the same kind of error, so it keeps its
HTTP status and its code: exception classes with their own constructor arguments do not survive pickling as they
are.
"""

from __future__ import annotations

from dataclasses import dataclass

from inhouse import errors

# Most specific first; each takes (message, *, code, param) except Overloaded.
_KINDS: tuple[type[errors.InhouseError], ...] = (
    errors.InvalidRequest, errors.AuthenticationFailed, errors.PermissionDenied, errors.NotFound, errors.Conflict,
    errors.Overloaded, errors.StorageFull, errors.Unavailable, errors.EngineFailure,
)


@dataclass(frozen=True)
class ErrorRecord:
    kind: str
    message: str
    code: str
    param: str | None = None
    retry_after_s: float = 1.0


@dataclass(frozen=True)
class ReplicaInfo:
    """Who a model replica is and what it runs (``ModelServer.describe``)."""

    model: str
    replica: str  # Serve's unique replica id
    node_id: str
    pid: int
    n_ctx: int
    max_running: int
    profile: str  # the tuned profile applied on this machine, or why none was


def error_record(exc: errors.InhouseError) -> ErrorRecord:
    kind = next((k for k in _KINDS if isinstance(exc, k)), errors.EngineFailure)
    return ErrorRecord(kind.__name__, exc.message, exc.code, exc.param,
                       getattr(exc, "retry_after_s", 1.0))


def error_from(record: ErrorRecord) -> errors.InhouseError:
    kind = next((k for k in _KINDS if k.__name__ == record.kind), errors.EngineFailure)
    if kind is errors.Overloaded:
        return errors.Overloaded(record.message, retry_after_s=record.retry_after_s, code=record.code)
    return kind(record.message, code=record.code, param=record.param)
