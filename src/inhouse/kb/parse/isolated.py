"""``parse_file`` in child processes, so a file that crashes, hangs or floods memory costs that file, not the server.

Parsers are native code fed untrusted bytes: PDFium, lxml, ONNX Runtime for OCR, zlib, our readers of binary
Office formats. Fuzzing the legacy readers found one damaged file that grew past 24 GB until the kernel killed
the process, and one that spun for minutes; the same can happen in any of them. In the server's own process that
would take every user's requests down with it. So ingestion parses in a small pool of worker processes
(``kb.parse_workers``), each:

- under an address-space limit (``kb.parse_memory_mb``): a Python parser gets ``MemoryError``, which rejects the
  file; native code that cannot allocate aborts, which is the next case;
- watched: a worker that dies (a signal, an abort) ends that file with "the parser stopped on this file", and the
  next file gets a new worker. Nothing of the file was stored: parsing comes before any write. A worker killed
  from outside (SIGKILL, SIGTERM: the kernel's OOM killer, an operator) says nothing about the file: the file is
  parsed again in a new worker, and if that one is killed too the caller gets ``ParserUnavailable`` (503, retry);
  counted as ``lost``, not as a file that stopped a worker;
- timed: a file that makes no progress for ``kb.parse_timeout_s`` (OCR reports each page, so a long scan keeps
  going) is stopped, and its worker killed;
- released when idle: a worker exits after ``kb.parse_idle_s`` without work, with the OCR model it loaded.

A worker keeps its own OCR reader (built from the settings in the child; its model loads on the first scanned
page), and reports OCR pages back to the caller's progress as they are read.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from inhouse.errors import DocumentRejected, ParserUnavailable
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.safety import ParseLimits

log = logging.getLogger(__name__)

PageProgress = Callable[[int, int], None]
# (data, filename, limits, ocr, on_page) -> document; a module-level function (it is pickled into the child).
ParseTarget = Callable[..., ParsedDocument]


def parse_in_child(data: bytes, filename: str, *, limits: ParseLimits, ocr: Any,
                   on_page: PageProgress | None) -> ParsedDocument:
    from inhouse.kb.parse import parse_file

    return parse_file(data, filename, limits=limits, ocr=ocr, on_page=on_page)


@dataclass(frozen=True)
class _Config:
    limits: ParseLimits
    ocr_factory: Callable[[], Any] | None
    memory_bytes: int
    idle_s: float
    target: ParseTarget


class IsolatedParser:
    """A ``(data, filename, on_page) -> ParsedDocument`` that runs in worker processes (see the module doc)."""

    def __init__(self, limits: ParseLimits, *, ocr_factory: Callable[[], Any] | None = None, workers: int = 2,
                 timeout_s: float = 300.0, memory_mb: int = 4096, idle_s: float = 120.0,
                 target: ParseTarget = parse_in_child) -> None:
        """``ocr_factory`` builds the worker's OCR reader (picklable: it crosses into the child); ``target`` is
        what the worker runs (tests swap in parsers that crash, hang or allocate)."""
        self._config = _Config(limits, ocr_factory, memory_mb * 1024 * 1024 if memory_mb else 0, idle_s, target)
        self._timeout = timeout_s
        self._context = multiprocessing.get_context("spawn")  # no fork: the server has threads and open sockets
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(max(1, workers))
        self._lock = threading.Lock()
        self._closed = False
        # Files that stopped a worker, by why: the signal or exit status of a crash, "timeout", "memory".
        self.stops: Counter[str] = Counter()

    @property
    def crashes(self) -> int:
        """Workers that died under a file."""
        return sum(n for why, n in self.stops.items() if why not in ("timeout", "memory", "lost"))

    def __call__(self, data: bytes, filename: str, on_page: PageProgress | None = None, *,
                 limits: ParseLimits | None = None) -> ParsedDocument:
        """Parse in a worker, under ``limits`` (default: the pool's, from the knowledge-base settings)."""
        with self._slots:
            for attempt in (1, 2):
                worker = self._take()
                try:
                    return self._run(worker, data, filename, on_page, limits or self._config.limits)
                except _Lost as lost:
                    self.stops["lost"] += 1
                    if attempt == 2:
                        raise ParserUnavailable(f"{filename}: the parser process was {lost.how} twice, from outside "
                                                "(out of memory on the machine?); nothing was stored, retry "
                                                "later") from None
                    log.warning("the parser process was %s while parsing %s, from outside: parsing it again in a "
                                "new process", lost.how, filename)
                finally:
                    self._give_back(worker)
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    # -- workers ------------------------------------------------------------------------------------------

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the parser pool is closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.stop()  # it exited after its idle time: reap it
        return _Worker(self._context, self._config)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and not self._closed:
                self._idle.append(worker)
                return
        worker.stop()

    def _run(self, worker: _Worker, data: bytes, filename: str, on_page: PageProgress | None,
             limits: ParseLimits) -> ParsedDocument:
        for attempt in (1, 2):
            try:
                worker.conn.send((data, filename, limits))
                break
            except (BrokenPipeError, EOFError, OSError):
                if attempt == 2 or worker.exitcode() not in (0, None):
                    raise self._stopped(worker, filename) from None
                # It had just exited at the end of its idle time: a new worker takes the file.
                worker.stop()
                worker.replace(_Worker(self._context, self._config))
        deadline = time.monotonic() + self._timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                worker.kill()
                self.stops["timeout"] += 1
                log.warning("parsing %s made no progress for %.0f s: stopped", filename, self._timeout)
                raise DocumentRejected(filename, f"parsing made no progress for {self._timeout:.0f} s and was "
                                                 "stopped; nothing was stored")
            try:
                ready = worker.conn.poll(min(remaining, 0.5))
                message = worker.conn.recv() if ready else None
            except (EOFError, OSError):
                raise self._stopped(worker, filename) from None
            if message is None:
                if not worker.alive():
                    raise self._stopped(worker, filename)
                continue
            kind = message[0]
            if kind == "page":
                deadline = time.monotonic() + self._timeout
                if on_page is not None:
                    on_page(message[1], message[2])
            elif kind == "ok":
                document: ParsedDocument = message[1]
                return document
            else:
                if kind == "memory":
                    self.stops["memory"] += 1
                raise DocumentRejected(filename, message[1])

    def _stopped(self, worker: _Worker, filename: str) -> Exception:
        """Why the worker's pipe closed: the file stopped it (``DocumentRejected``), or something outside killed it
        (``_Lost``, when it had exited by SIGKILL or SIGTERM before we kill it ourselves)."""
        worker.process.join(timeout=1.0)  # its pipe closed as it died: its exit status follows
        outside = worker.exitcode() in _KILLED_FROM_OUTSIDE
        worker.kill()
        code = worker.exitcode()
        how = _describe_exit(code)
        if outside:
            return _Lost(how)
        self.stops[_exit_label(code)] += 1
        log.error("the parser process stopped on %s (%s); the file was rejected and the next file gets a new "
                  "process", filename, how)
        return DocumentRejected(filename, f"the parser stopped on this file ({how}); nothing was stored")


_KILLED_FROM_OUTSIDE = (-signal.SIGKILL, -signal.SIGTERM)


class _Lost(Exception):
    """The worker was killed from outside while it parsed (``how``: "killed by SIGKILL")."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


def _exit_label(code: int | None) -> str:
    """A crash as a metric label: the signal's name, or "exit N"."""
    return _describe_exit(code).removeprefix("killed by ")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no answer"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Worker:
    """One child process and the parent's end of its pipe."""

    def __init__(self, context: Any, config: _Config) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, config), name="inhouse-parse", daemon=True)
        self.process.start()
        child.close()
        self.conn: Connection = parent

    def replace(self, other: _Worker) -> None:
        self.process, self.conn = other.process, other.conn

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def exitcode(self) -> int | None:
        code = self.process.exitcode
        return int(code) if code is not None else None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)

    def stop(self) -> None:
        """Ask it to exit (it finishes nothing: it is idle); kill it if it does not."""
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            self.conn.send(None)
        self.process.join(timeout=2)
        self.kill()
        self.conn.close()


def _serve(conn: Connection, config: _Config) -> None:
    """The worker: parse each (data, filename, limits) it is sent; answer with the document, or why it was refused."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops its workers
    if config.memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (config.memory_bytes, config.memory_bytes))
    ocr = None
    ocr_built = False
    while True:
        if config.idle_s and not conn.poll(config.idle_s):
            return  # idle: give the memory back (the parent starts a new worker for the next file)
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        data, filename, limits = request
        if not ocr_built and config.ocr_factory is not None:
            ocr_built = True
            ocr = config.ocr_factory()

        def on_page(done: int, total: int) -> None:
            conn.send(("page", done, total))

        try:
            conn.send(("ok", config.target(data, filename, limits=limits, ocr=ocr, on_page=on_page)))
        except DocumentRejected as exc:
            conn.send(("rejected", exc.reason))
        except MemoryError:
            conn.send(("memory", f"the file needs more than {config.memory_bytes // 2**20} MB to parse"))
        except Exception as exc:  # the parent reports it as this file's problem
            conn.send(("rejected", f"could not parse ({type(exc).__name__}: {exc})"[:500]))
