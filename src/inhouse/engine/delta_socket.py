"""The delta socket of an engine's child process, read by the event loops that stream its requests.

The child sends one ``deltas`` frame per engine step on a socket of its own (engine/wire.py). Instead of a thread
in ``recv`` that wakes the event loop for every frame (two wake-ups per token in the server process, on a box
where every extra runnable thread preempts one of llama.cpp's), the loop of each request puts a reader on it
(``loop.add_reader``): a frame costs the loop one wake-up and one ``recv``, and its deltas go straight to the
requests (``route``). Design: docs/engine-process.md.

* Several loops may watch one socket (the server runs one; tests and tools run their own): reads are serialised
  by a lock, and ``route`` sends a delta for a request on another loop through that loop's mailbox. A loop routes
  what it read before it lets go of the lock: ``retire`` takes it too, so the frames a loop had read are routed
  before the supervisor routes the last ones and fails the requests (routed after, they found no request: a hole
  in the stream). Lock order: this lock, then the engine's.
* A loop that sees the end of the stream (the child exited) removes its reader. The supervisor then ``retire``\\ s
  the socket: it reads what is left and routes it (before it fails the requests in flight, so a stream gets every
  token the child sent), has every watching loop remove its reader on its own thread, and the last one closes the
  socket. Closing it first would leave a stale registration in a loop's selector under a number a restarted
  child's socket may get; waiting for the loops could deadlock with a ``close()`` running on one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from inhouse.engine.wire import FrameReader

log = logging.getLogger(__name__)

Route = Callable[[list[Any], "asyncio.AbstractEventLoop | None"], None]  # (frames, the loop running it or None)


class DeltaSocket:
    def __init__(self, sock: socket.socket, route: Route, on_corrupt: Callable[[], None]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._reader = FrameReader(sock)
        self._route = route
        self._on_corrupt = on_corrupt  # kill the child: its supervisor restarts it
        self._lock = threading.Lock()  # reading, and the two below
        self._watchers: set[asyncio.AbstractEventLoop] = set()
        self._done = False  # end of stream seen, or retired: nobody reads any more

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``loop`` (running this) read the socket, unless it already does or the stream is over."""
        with self._lock:
            for gone in [lp for lp in self._watchers if lp.is_closed()]:
                self._watchers.discard(gone)
            if self._done or loop in self._watchers:
                return
            loop.add_reader(self.sock.fileno(), self._readable, loop)
            self._watchers.add(loop)

    def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            corrupt = False
            try:
                frames, ended = ([], True) if self._done else self._reader.read_nowait()
            except Exception:
                log.exception("the delta stream from an engine child is broken")
                frames, ended, corrupt = [], True, True
            if frames:  # under the lock: before ``retire`` routes what came after and the requests are failed
                self._route(frames, loop)
            if ended:  # the child exited (``retire`` closes the socket) or its stream is corrupt: stop watching
                self._unwatch_locked(loop)
        if corrupt:
            self._on_corrupt()

    def _unwatch_locked(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done = True
        self._watchers.discard(loop)
        loop.remove_reader(self.sock.fileno())

    def retire(self) -> None:
        """The child has exited (supervisor thread): route what it sent last, stop the loops, close the socket."""
        frames: list[Any] = []
        with self._lock:
            if not self._done:
                with contextlib.suppress(Exception):  # a corrupt tail: the requests still get their error
                    frames, _ = self._reader.read_nowait(drain=True)
            self._done = True
            watchers = [lp for lp in self._watchers if not lp.is_closed()]
            self._watchers.clear()
        if frames:
            self._route(frames, None)
        fd, sock = self.sock.fileno(), self.sock
        left = [len(watchers)]
        count_lock = threading.Lock()

        def one_done() -> None:
            with count_lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                sock.close()

        def unwatch(loop: asyncio.AbstractEventLoop) -> None:
            loop.remove_reader(fd)
            one_done()

        if not watchers:
            sock.close()
        for loop in watchers:
            try:
                loop.call_soon_threadsafe(unwatch, loop)
            except RuntimeError:  # closed meanwhile: its selector is gone with it
                one_done()
