"""The delta socket (engine/delta_socket.py): frames a loop has read reach their requests even when the child dies
while the loop is routing them. The supervisor (``retire``, then failing the requests) is played by the test, and the
interleaving is forced through the socket's lock, not hoped for with sleeps."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from inhouse.engine.delta_socket import DeltaSocket
from inhouse.engine.wire import encode

pytestmark = pytest.mark.timeout(30)


class _ContendedLock:
    """The socket's lock, telling the test when ``contender`` finds it held (and so must wait for it)."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended
        self.contender: threading.Thread | None = None

    def __enter__(self) -> None:
        if threading.current_thread() is self.contender and self._lock.locked():
            self._contended.set()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_frames_a_loop_read_are_routed_before_the_supervisor_retires_the_socket_and_fails_the_requests() -> None:
    ours, childs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    routed: list[Any] = []
    failed = threading.Event()  # the supervisor has failed the requests in flight: later frames find nobody
    outcome = threading.Event()  # the supervisor waits for the lock, or has finished
    supervisor_done = threading.Event()

    def supervise() -> None:  # the child sends its last frame and dies; the supervisor retires and fails
        childs.sendall(encode(("deltas", ["last"])))
        childs.close()
        ds.retire()
        failed.set()
        supervisor_done.set()
        outcome.set()

    supervisor = threading.Thread(target=supervise)

    def route(frames: list[Any], here: asyncio.AbstractEventLoop | None) -> None:
        if here is not None and not supervisor.is_alive() and not supervisor_done.is_set():
            # The loop has read the first frame and not yet routed it: the child dies now.
            supervisor.start()
            outcome.wait(10)
        if not failed.is_set():
            routed.extend(frames)

    ds = DeltaSocket(ours, route, on_corrupt=lambda: None)
    lock = _ContendedLock(outcome)
    lock.contender = supervisor
    ds._lock = lock  # type: ignore[assignment]

    async def stream() -> None:
        ds.watch(asyncio.get_running_loop())
        childs.sendall(encode(("deltas", ["first"])))
        await asyncio.to_thread(supervisor_done.wait, 10)
        await asyncio.sleep(0)  # the retired socket's unwatch, on this loop

    asyncio.run(asyncio.wait_for(stream(), 20))
    supervisor.join(10)
    assert routed == [("deltas", ["first"]), ("deltas", ["last"])]
