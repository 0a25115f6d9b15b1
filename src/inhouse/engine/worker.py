"""The main of an engine's child process:
``python -m inhouse.engine.worker --fd N --delta-fd D --parent-pid P``.

The parent (engine/process.py) passes one end of two socketpairs, the control socket as fd N and the delta socket
as fd D, and sends the ``EngineRecipe`` as the first frame on the control socket. The child builds the engine
exactly as an in-process server would (``recipe.build``, normally ``build_llama_engine``), answers ``ready``, then
serves the control socket on its main thread:

* requests are admitted with ``Engine.submit``; their deltas are collected by the step thread and sent as one
  frame on the delta socket at the end of each step (``Engine.on_step_end``), so no Python thread wakes per token
  besides the step thread itself, and the server's event loop, SSE writers, audit and metrics never hold this
  process's GIL;
* ``tokenize`` and ``stats`` are answered on the main thread, next to the step thread, as in-process.

The child never outlives the server: ``PR_SET_PDEATHSIG`` (SIGKILL when the thread that started it ends, i.e.
the supervisor thread or the whole server) and end-of-stream on the socket both end it. It ignores SIGINT so that
Ctrl-C in a terminal stops the server first and the server then unloads its engines in order.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from inhouse.engine.params import Delta, GenerationRequest
from inhouse.engine.wire import FrameReader, delta_to_wire, encode, error_to_wire

log = logging.getLogger("inhouse.engine.worker")

_PR_SET_PDEATHSIG = 1
_CALLS = ("tokenize", "stats")


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent thread ends (Linux); exit now if the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: end-of-stream on the socket still ends the child
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


class WorkerServer:
    """Serves one engine over ``sock`` (control) and ``deltas``. Only ``send`` writes to the control socket and only
    ``flush`` to the delta socket (each under its lock)."""

    def __init__(self, engine: Any, sock: socket.socket, deltas: socket.socket) -> None:
        self._engine = engine
        self._sock = sock
        self._deltas = deltas
        self._send_lock = threading.Lock()
        self._deltas_lock = threading.Lock()
        self._outbox: list[Any] = []
        self._outbox_lock = threading.Lock()
        engine.on_step_end = self.flush

    def send(self, message: tuple[Any, ...]) -> None:
        frame = encode(message)
        with self._send_lock:
            self._sock.sendall(frame)

    def deliver(self, delta: Delta) -> None:
        """The engine's ``DeltaSink`` for every request: collect; ``flush`` sends after the step."""
        with self._outbox_lock:
            self._outbox.append(delta_to_wire(delta))

    def flush(self) -> None:
        with self._outbox_lock:
            batch, self._outbox = self._outbox, []
        if batch:
            frame = encode(("deltas", batch))
            with contextlib.suppress(OSError), self._deltas_lock:  # the parent is gone: the main thread sees it
                self._deltas.sendall(frame)

    def serve(self, reader: FrameReader, frames: list[Any] | None = None) -> None:
        """Handle ``frames``, then frames from ``reader`` until ``close`` (returns) or end of stream (the parent
        died: exit at once, without waiting for the step thread)."""
        while True:
            if frames is None:
                frames = reader.read()
            if frames is None:
                os._exit(0)
            batch, frames = frames, None
            for frame in batch:
                if frame[0] == "close":
                    self._engine.close()
                    self.flush()  # the "unloaded" errors of requests still live
                    return
                self._handle(frame)

    def _handle(self, frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == "submit":
            _, rid, tokens, params, arrival_s, cache_owner = frame
            try:
                request = GenerationRequest(rid, tokens, params, arrival_s=arrival_s, cache_owner=cache_owner)
                self._engine.submit(request, self.deliver)
            except Exception as exc:
                self.send(("refused", rid, error_to_wire(exc)))
        elif kind == "abort":
            self._engine.abort(frame[1])
        elif kind == "call":
            _, call_id, method, kwargs = frame
            try:
                if method not in _CALLS:
                    raise ValueError(f"unknown engine call {method!r}")
                value = getattr(self._engine, method)(**kwargs)
            except Exception as exc:
                self.send(("reply", call_id, False, error_to_wire(exc)))
            else:
                self.send(("reply", call_id, True, value))
        else:
            log.error("unknown frame %r from the server", kind)


def run(fd: int, delta_fd: int, parent_pid: int) -> int:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a native crash prints the Python stack to the server's log before the child dies
    sock = socket.socket(fileno=fd)
    reader = FrameReader(sock)
    first = reader.read()
    if not first or first[0][0] != "start":
        return 2
    recipe = first[0][1]
    try:
        engine = recipe.build_engine()
    except Exception as exc:
        log.exception("building the engine of %s failed", recipe.name)
        sock.sendall(encode(("load_failed", error_to_wire(exc))))
        return 0
    server = WorkerServer(engine, sock, socket.socket(fileno=delta_fd))
    backend = getattr(engine, "backend", None)
    info = {"n_ctx": engine.n_ctx, "pid": os.getpid(),
            "model_path": str(getattr(backend, "model_path", "") or "")}
    server.send(("ready", info))
    server.serve(reader, first[1:])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inhouse.engine.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--delta-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s engine[{os.getpid()}] %(name)s: %(message)s")
    return run(args.fd, args.delta_fd, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
