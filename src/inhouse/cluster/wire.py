"""What crosses the Ray boundary between the ingress and a model replica, besides ``GenerationRequest`` and ``Delta``
(plain dataclasses, pickled by Ray as they are).

An ``inhouse.errors`` exception raised in a replica before the first delta (queue full, context too long, a bad
grammar) is sent as an ``ErrorRecord`` and raised again at the ingress as the same kind of error, so it keeps its
HTTP status and its code: exception classes with their own constructor arguments do not survive pickling as they
are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inhouse import errors
from inhouse.engine.delivery import merge_deltas
from inhouse.engine.params import Delta

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


_END = object()


async def coalesce(deltas: AsyncIterator[Delta], interval_s: float) -> AsyncIterator[Delta]:
    """``deltas`` with at most one item per ``interval_s``: what arrived in between, merged (``merge_deltas``).

    Every item crossing Ray costs the replica, the ingress and Serve's proxy a message; on a fast model that is a
    message per few milliseconds, taken from the cores the engine decodes on. A delta that comes after a quiet
    ``interval_s`` (and the final one) goes at once, so the first token and a slow model's tokens are never held
    back; a held delta is sent when the interval ends even if nothing follows it. The source is read by a task of
    its own; closing this generator cancels it (which closes the source: the engine aborts the request)."""
    if interval_s <= 0:
        async for delta in deltas:
            yield delta
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for delta in deltas:
                queue.put_nowait(delta)
            queue.put_nowait(_END)
        except Exception as exc:  # handed to the reader, which raises it after the deltas before it
            queue.put_nowait(exc)

    task = asyncio.create_task(pump())
    held: list[Delta] = []
    last = -float("inf")
    try:
        while True:
            item: object = None
            if not held:
                item = await queue.get()
            else:
                with contextlib.suppress(TimeoutError):  # the interval is over: send what is held
                    item = await asyncio.wait_for(queue.get(), max(0.0, last + interval_s - loop.time()))
            if isinstance(item, Delta):
                held.append(item)
                if item.finish_reason is None and loop.time() - last < interval_s:
                    continue
            if held:
                yield merge_deltas(held)
                held, last = [], loop.time()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
