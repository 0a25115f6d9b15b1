"""A model's engine in a supervised child process, behind ``EngineClient``.

Native code can crash: a new model, a new CPU, a llama.cpp bug (an AMX miscompile faulted on the first decode
of every request). In-process that kills the server; here it kills one child, and the server goes on:

* ``ProcessEngine`` starts ``python -m inhouse.engine.worker`` with one end of a socketpair, sends it the
  ``EngineRecipe`` (name, path, the ``EngineSettings`` and every extra build option, pickled whole) and waits for
  ``ready``. Requests, aborts, ``tokenize`` and ``stats`` go over the control socket (engine/wire.py), read by a
  reader thread per child; the deltas, all deltas of one step in one frame, come on the delta socket, which the
  event loop of each request reads itself (engine/delta_socket.py) and hands to each request's inbox
  (engine/delivery.py): one wake-up of the loop per engine step, no thread in between.
* A supervisor thread per engine starts the child and waits for it. When the child dies unasked, every request in
  flight ends with ``EngineCrashed`` (a final error delta: 503 / an SSE error event), ``healthy()`` turns false
  (``/ready`` answers 503), ``on_crash`` callbacks run (an audit record), ``before_restart`` may return another
  recipe (the safe fallback the hardware probe knows), and after a backoff a new child starts. Meanwhile
  ``tokenize`` (and every other blocking call) raises ``EngineCrashed`` at once: it runs on the server's shared
  worker threads, which every other request needs too, so none may be parked for a restart; ``generate`` waits on
  its event loop, without a thread (up to ``RestartPolicy.wait_s``). At the ``max_crashes``-th death within
  ``window_s``: no more restarts, the engine reports unhealthy until it is unloaded.
* The child never outlives the server (worker.py: PR_SET_PDEATHSIG, end-of-stream), and ``close()`` (unload,
  idle release, shutdown) asks it to free the model and exit, then kills it if it does not.

The same seam will carry engines on other nodes: nothing above ``EngineClient`` knows a process exists.
Design and measurements: docs/engine-process.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inhouse.config import EngineSettings
from inhouse.engine.build import build_llama_engine
from inhouse.engine.delivery import Inbox, Item, LoopMailbox, Mailboxes, batches
from inhouse.engine.delta_socket import DeltaSocket
from inhouse.engine.params import Delta, GenerationRequest
from inhouse.engine.protocol import EngineStats
from inhouse.engine.wire import FrameReader, delta_from_wire, encode, error_from_wire
from inhouse.errors import EngineCrashed, InhouseError, Unavailable

log = logging.getLogger(__name__)

_GAUGES = ("model", "waiting", "running", "queue_wait_estimate_s", "crashes")


@dataclass(frozen=True)
class EngineRecipe:
    """Everything the child needs to build the engine: ``build(name, path, settings, n_ctx=…, **options)``.

    Pickled whole into the child, so a field added to ``EngineSettings`` or a new build option (``options``)
    reaches ``build_llama_engine`` unchanged. ``build`` must be a module-level function (pickled by reference);
    tests pass one that builds a fake engine. ``env`` is added to the child's environment before it starts (the
    OpenMP runtime reads it when llama.cpp loads).
    """

    name: str
    path: Path | None
    settings: EngineSettings
    n_ctx: int
    options: Mapping[str, Any] = field(default_factory=dict)
    build: Callable[..., Any] = build_llama_engine
    env: Mapping[str, str] = field(default_factory=dict)

    def build_engine(self) -> Any:
        return self.build(self.name, self.path, self.settings, n_ctx=self.n_ctx, **dict(self.options))


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 0.5  # before the first restart; doubled for each further crash in the window
    max_backoff_s: float = 30.0
    max_crashes: int = 5  # the engine stays down (unhealthy) after this many crashes within window_s
    window_s: float = 600.0
    wait_s: float = 60.0  # how long ``generate`` waits for a restarting engine before a 503 (tokenize: not at all)
    start_timeout_s: float = 600.0  # a child that is not ready by then is killed (counted as a crash)
    stop_timeout_s: float = 10.0  # close(): then SIGKILL


@dataclass(frozen=True)
class EngineCrash:
    """One death of an engine's child, as told to ``on_crash`` and ``before_restart``."""

    model: str
    pid: int
    returncode: int
    reason: str  # "SIGSEGV", "SIGKILL", "exit 1", "start timed out"
    at: float  # time.time()
    in_flight: int  # requests that ended with EngineCrashed
    crashes_in_window: int
    restarting: bool  # False: max_crashes reached, the engine stays down
    recipe: EngineRecipe  # what the dead child ran
    fallback: EngineRecipe | None = None  # what ``before_restart`` chose instead (None: the same recipe)


CrashHook = Callable[[EngineCrash], None]
RestartHook = Callable[[EngineCrash], "EngineRecipe | None"]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


@dataclass(eq=False)
class _Child:
    proc: subprocess.Popen[bytes]
    sock: socket.socket  # control: read by the reader thread
    deltas: DeltaSocket  # the deltas of every step: read by the event loops of the requests
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    started: threading.Event = field(default_factory=threading.Event)
    info: dict[str, Any] | None = None
    load_error: InhouseError | None = None
    reader: threading.Thread | None = None
    reason: str | None = None  # set when we killed it (start timeout)

    def send(self, message: tuple[Any, ...]) -> None:
        """Raises OSError when the child is gone (its supervisor then fails what waits on it)."""
        frame = encode(message)
        with self.send_lock:
            self.sock.sendall(frame)


@dataclass(eq=False)
class _Waiter:
    request_id: str
    mailbox: LoopMailbox  # of the loop the request's generator runs on
    inbox: Inbox
    child: _Child


class ProcessEngine:
    """``EngineClient`` over a supervised child process. Blocks in ``__init__`` until the engine is ready (or
    raises what loading raised / ``Unavailable`` when the child kept crashing)."""

    def __init__(self, recipe: EngineRecipe, *, policy: RestartPolicy | None = None,
                 on_crash: Sequence[CrashHook] = (), before_restart: RestartHook | None = None) -> None:
        self._recipe = recipe
        self._name = recipe.name
        self._policy = policy or RestartPolicy()
        self._on_crash = list(on_crash)
        self._before_restart = before_restart
        self._cond = threading.Condition()
        self._state = "starting"  # starting → running ⇄ restarting → failed | closed
        self._closing = False
        self._child: _Child | None = None
        self._failure: InhouseError | None = None
        self._info: dict[str, Any] = {}
        self._pending: dict[str, _Waiter] = {}
        # generate() calls waiting on their loops for the restart to end: resolved by _notify_locked.
        self._restart_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._mailboxes = Mailboxes()
        self._calls: dict[int, tuple[Future[Any], _Child]] = {}
        self._call_ids = itertools.count(1)
        self._crash_times: collections.deque[float] = collections.deque()
        self._crashes: collections.Counter[str] = collections.Counter()
        self._base = EngineStats(model=self._name)  # counters of children that are gone
        self._last: EngineStats | None = None  # the current child's counters, as last read
        self.restarts = 0
        self._supervisor = threading.Thread(target=self._supervise, name=f"engine-supervisor-{self._name}",
                                            daemon=True)
        self._supervisor.start()
        with self._cond:
            # Through restarts too: a child that crashes while loading is retried like any other.
            self._cond.wait_for(lambda: self._state in ("running", "failed", "closed"))
            state, failure = self._state, self._failure
        if state != "running":
            self._supervisor.join(self._policy.stop_timeout_s)
            raise failure or Unavailable(f"The engine of '{self._name}' did not start.")

    # -- EngineClient -------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def n_ctx(self) -> int:
        return int(self._info["n_ctx"])

    @property
    def model_path(self) -> Path | None:
        path = self._info.get("model_path")
        return Path(path) if path else None

    @property
    def pid(self) -> int | None:
        """The child's process id (None while none runs)."""
        with self._cond:
            return self._child.proc.pid if self._child is not None and self._state == "running" else None

    @property
    def state(self) -> str:
        return self._state

    def healthy(self) -> bool:
        return self._state == "running"

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        tokens: list[int] = self._call("tokenize", {"text": text, "add_special": add_special,
                                                    "parse_special": parse_special}, timeout_s=60.0)
        return tokens

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        rid = request.request_id
        loop = asyncio.get_running_loop()
        inbox = Inbox()
        child = self._running_child() or await self._wait_running(loop)
        with self._cond:
            if self._child is not child or self._state != "running":  # it died in between
                raise EngineCrashed(f"The engine of '{self._name}' stopped; retry.")
            self._pending[rid] = _Waiter(rid, self._mailboxes.of(loop), inbox, child)
        child.deltas.watch(loop)
        with contextlib.suppress(OSError):  # a dead child: its supervisor fails the waiter
            child.send(("submit", rid, request.prompt_tokens, request.params, request.arrival_s,
                        request.cache_owner))
        finished = False
        try:
            while True:
                # Everything that arrived since the last look, consecutive deltas as one (engine/delivery.py).
                for item in batches(await inbox.take()):
                    if isinstance(item, BaseException):
                        finished = True
                        raise item
                    refusal = item.refusal()
                    if refusal is not None:  # never admitted within the queue-wait bound: a 429, not a stream
                        finished = True
                        raise refusal
                    yield item
                    if item.finish_reason is not None:
                        finished = True
                        return
        finally:
            if not finished:
                self.abort(rid)

    def abort(self, request_id: str) -> None:
        with self._cond:
            waiter = self._pending.pop(request_id, None)
        if waiter is not None:
            with contextlib.suppress(OSError):
                waiter.child.send(("abort", request_id))

    def stats(self) -> EngineStats:
        current: EngineStats | None = None
        if self._state == "running":
            try:
                current = self._call("stats", {}, timeout_s=5.0)
            except InhouseError:
                current = None
        with self._cond:
            if current is not None and self._state == "running":
                self._last = current
            else:
                current = None
            out = _add_counters(self._base, self._last) if self._last is not None else dataclasses.replace(
                self._base)
            if current is None:
                out.waiting = out.running = 0
                out.queue_wait_estimate_s = 0.0
            out.crashes = dict(self._crashes)
            return out

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the child (it fails what is live with "unloaded", frees the model and exits); kill it if it
        does not exit in time. Idempotent; no child survives it."""
        timeout = self._policy.stop_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            if self._closing:
                return
            self._closing = True
            child, state = self._child, self._state
            self._notify_locked()
        if child is not None:
            if state == "running":
                with contextlib.suppress(OSError):
                    child.send(("close",))
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("the engine of %s did not stop in %.0f s; killing it", self._name, timeout)
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        self._supervisor.join(timeout + 5)
        with self._cond:
            self._state = "closed"
            waiters, calls = self._take_waiting()
            self._notify_locked()
        self._fail_waiting(waiters, calls, Unavailable(f"The model '{self._name}' was unloaded; retry.",
                                                       code="model_unloaded"))

    # -- calls --------------------------------------------------------------------------------------------

    def _call(self, method: str, kwargs: dict[str, Any], *, timeout_s: float) -> Any:
        """Never waits for a restart: the caller is a worker thread (module doc)."""
        child = self._running_child()
        if child is None:
            raise self._not_running()
        future: Future[Any] = Future()
        call_id = next(self._call_ids)
        with self._cond:
            if self._child is not child or self._state != "running":
                raise EngineCrashed(f"The engine of '{self._name}' stopped; retry.")
            self._calls[call_id] = (future, child)
        with contextlib.suppress(OSError):
            child.send(("call", call_id, method, kwargs))
        try:
            return future.result(timeout_s)
        except TimeoutError:
            with self._cond:
                self._calls.pop(call_id, None)
            raise Unavailable(f"The engine of '{self._name}' did not answer {method} in {timeout_s:g} s.") from None

    def _running_child(self) -> _Child | None:
        with self._cond:
            return self._child if self._state == "running" else None

    async def _wait_running(self, loop: asyncio.AbstractEventLoop) -> _Child:
        """Wait on ``loop``, holding no thread, until the engine runs again (after a crash); raise what
        ``_not_running`` says when it will not (in time)."""
        deadline = loop.time() + self._policy.wait_s
        while True:
            with self._cond:
                if self._state != "restarting":
                    break
                changed: asyncio.Future[None] = loop.create_future()
                self._restart_waiters.append((loop, changed))
            try:
                await asyncio.wait_for(changed, max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
            finally:
                with self._cond, contextlib.suppress(ValueError):
                    self._restart_waiters.remove((loop, changed))
        child = self._running_child()
        if child is None:
            raise self._not_running()
        return child

    def _not_running(self) -> InhouseError:
        """Why no child serves now (restarting: a retry will be served; failed; closed)."""
        with self._cond:
            state, failure = self._state, self._failure
        if state in ("restarting", "starting"):
            return EngineCrashed(f"The engine of '{self._name}' is restarting after a crash; retry in a few seconds.")
        if state == "failed":
            return failure or Unavailable(f"The engine of '{self._name}' failed.")
        return Unavailable(f"The model '{self._name}' was unloaded; retry.", code="model_unloaded")

    def _notify_locked(self) -> None:
        """Called with the lock held after ``_state`` changed: wake the threads and the loops that wait on it."""
        self._cond.notify_all()
        for loop, changed in self._restart_waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing waits there any more
                loop.call_soon_threadsafe(_resolve, changed)
        self._restart_waiters.clear()

    # -- the reader thread of one child -------------------------------------------------------------------

    def _read(self, child: _Child) -> None:
        reader = FrameReader(child.sock)
        try:
            while True:
                frames = reader.read()
                if frames is None:
                    return
                self._dispatch(child, frames)
        except Exception:  # a corrupt stream: kill the child, the supervisor restarts it
            log.exception("the stream from the engine of %s is broken", self._name)
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        finally:
            child.started.set()

    def _dispatch(self, child: _Child, frames: list[Any]) -> None:
        """Frames of the control socket (the deltas come on the other one: engine/delta_socket.py)."""
        for frame in frames:
            kind = frame[0]
            if kind == "reply":
                _, call_id, ok, value = frame
                with self._cond:
                    entry = self._calls.pop(call_id, None)
                if entry is not None:
                    if ok:
                        entry[0].set_result(value)
                    else:
                        entry[0].set_exception(error_from_wire(value))
            elif kind == "refused":
                with self._cond:
                    waiter = self._pending.pop(frame[1], None)
                if waiter is not None:
                    waiter.mailbox.post([(waiter.inbox, error_from_wire(frame[2]))])
            elif kind == "ready":
                child.info = frame[1]
                child.started.set()
            elif kind == "load_failed":
                child.load_error = error_from_wire(frame[1])
                child.started.set()

    # -- the delta socket, read by the event loops (engine/delta_socket.py) --------------------------------

    def _route_deltas(self, frames: list[Any], here: asyncio.AbstractEventLoop | None) -> None:
        """Hand the deltas of ``frames`` to their requests: directly into the inbox of a request on ``here`` (the
        loop running this), through the mailbox (one wake-up) to a request on another loop."""
        out: dict[LoopMailbox, list[tuple[Inbox, Item]]] = {}
        with self._cond:
            for frame in frames:
                for wire in frame[1]:
                    d = delta_from_wire(wire)
                    waiter = self._pending.get(d.request_id)
                    if waiter is None:  # aborted meanwhile
                        continue
                    if d.finish_reason is not None:
                        del self._pending[d.request_id]
                    if waiter.mailbox.loop is here:
                        waiter.inbox.put(d)
                    else:
                        out.setdefault(waiter.mailbox, []).append((waiter.inbox, d))
        for mailbox, items in out.items():
            mailbox.post(items)

    # -- the supervisor thread ----------------------------------------------------------------------------

    def _spawn(self, recipe: EngineRecipe) -> _Child:
        """Start a child from the supervisor thread: PR_SET_PDEATHSIG ties the child to this thread."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        deltas_end, child_deltas_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        level = logging.getLevelName(logging.getLogger("inhouse").getEffectiveLevel())
        cmd = [sys.executable, "-m", "inhouse.engine.worker", "--fd", str(child_end.fileno()),
               "--delta-fd", str(child_deltas_end.fileno()), "--parent-pid", str(os.getpid()),
               "--log-level", str(level)]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(child_end.fileno(), child_deltas_end.fileno()),
                                    env={**os.environ, **recipe.env})
        except BaseException:
            parent_end.close()
            deltas_end.close()
            raise
        finally:
            child_end.close()
            child_deltas_end.close()
        child = _Child(proc, parent_end, DeltaSocket(deltas_end, self._route_deltas,
                                                     on_corrupt=lambda: _kill(proc)))
        with contextlib.suppress(OSError):  # a child dead at birth shows as end-of-stream
            child.send(("start", recipe))
        child.reader = threading.Thread(target=self._read, args=(child,), name=f"engine-reader-{self._name}",
                                        daemon=True)
        child.reader.start()
        return child

    def _supervise(self) -> None:
        recipe: EngineRecipe | None = self._recipe
        while recipe is not None and not self._closing:
            try:
                child = self._spawn(recipe)
            except OSError as exc:
                with self._cond:
                    self._failure = Unavailable(f"The engine process of '{self._name}' could not start: {exc}")
                    self._state = "failed"
                    self._notify_locked()
                break
            with self._cond:
                self._child = child
                closing = self._closing
            if closing:  # close() ran while we spawned: it could not see this child
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
            if not child.started.wait(self._policy.start_timeout_s):
                child.reason = "start timed out"
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
            if child.info is not None:
                with self._cond:
                    self._info = child.info
                    if not self._closing:
                        self._state = "running"
                        self._notify_locked()
                log.info("engine of %s running in process %d", self._name, child.proc.pid)
            returncode = child.proc.wait()
            if child.reader is not None:
                child.reader.join()  # everything the child sent before dying is delivered first
            child.deltas.retire()
            child.sock.close()
            if self._closing:
                break
            if child.load_error is not None:
                with self._cond:
                    self._state, self._failure = "failed", child.load_error
                    waiters, calls = self._take_waiting()
                    self._notify_locked()
                self._fail_waiting(waiters, calls, Unavailable(f"The model '{self._name}' failed to load: "
                                                               f"{child.load_error.message}"))
                break
            recipe = self._after_crash(child, returncode, recipe)
            if recipe is None:
                break
            delay = min(self._policy.max_backoff_s,
                        self._policy.backoff_s * 2 ** max(0, len(self._crash_times) - 1))
            with self._cond:
                self._cond.wait_for(lambda: self._closing, delay)
        with self._cond:
            if self._state in ("starting", "restarting"):
                self._state = "closed" if self._closing else "failed"
            self._notify_locked()

    def _after_crash(self, child: _Child, returncode: int, recipe: EngineRecipe) -> EngineRecipe | None:
        """Fail what was in flight, count and report the crash; the recipe of the next child, or None."""
        now = time.time()
        reason = child.reason or describe_exit(returncode)
        policy = self._policy
        with self._cond:
            self._crash_times.append(now)
            while self._crash_times and self._crash_times[0] < now - policy.window_s:
                self._crash_times.popleft()
            restarting = len(self._crash_times) < policy.max_crashes  # the max_crashes-th crash stays down
            self._crashes[reason] += 1
            if self._last is not None:
                self._base = _add_counters(self._base, self._last)
                self._last = None
            self._state = "restarting" if restarting else "failed"
            if not restarting:
                self._failure = Unavailable(
                    f"The engine of '{self._name}' crashed {len(self._crash_times)} times in "
                    f"{policy.window_s:g} s (last: {reason}); it stays down until the model is reloaded.",
                    code="engine_failed")
            waiters, calls = self._take_waiting()
            self._notify_locked()
        error = EngineCrashed(f"The inference engine of '{self._name}' stopped ({reason}) while serving this "
                              "request; it is being restarted. Retry the request.")
        self._fail_waiting(waiters, calls, error)
        crash = EngineCrash(model=self._name, pid=child.proc.pid, returncode=returncode, reason=reason, at=now,
                            in_flight=len(waiters), crashes_in_window=len(self._crash_times),
                            restarting=restarting, recipe=recipe)
        log.error("the engine of %s (process %d) died: %s, %d request(s) in flight; %s", self._name,
                  child.proc.pid, reason, len(waiters),
                  "restarting" if restarting else
                  f"{len(self._crash_times)} crash(es) in {policy.window_s:g} s: not restarting")
        if restarting and self._before_restart is not None:
            try:
                fallback = self._before_restart(crash)
            except Exception:
                log.exception("the before_restart hook of %s failed; restarting unchanged", self._name)
                fallback = None
            if fallback is not None:
                crash = dataclasses.replace(crash, fallback=fallback)
                log.warning("restarting the engine of %s with a fallback recipe", self._name)
        for hook in self._on_crash:
            try:
                hook(crash)
            except Exception:  # e.g. the audit log is unavailable: the restart must still happen
                log.exception("an on_crash hook of %s failed", self._name)
        if restarting:
            self.restarts += 1
            return crash.fallback or recipe
        return None

    def _take_waiting(self) -> tuple[list[_Waiter], list[Future[Any]]]:
        """Called with the lock held: everything waiting on the current child."""
        waiters = list(self._pending.values())
        self._pending.clear()
        calls = [f for f, _ in self._calls.values()]
        self._calls.clear()
        return waiters, calls

    @staticmethod
    def _fail_waiting(waiters: list[_Waiter], calls: list[Future[Any]], error: InhouseError) -> None:
        out: dict[LoopMailbox, list[tuple[Inbox, Item]]] = {}
        for w in waiters:
            out.setdefault(w.mailbox, []).append((w.inbox, Delta(w.request_id, finish_reason="error",
                                                                 error=error.message, error_code=error.code)))
        for mailbox, items in out.items():
            mailbox.post(items)
        for future in calls:
            if not future.done():
                future.set_exception(error)


def start_engine(recipe: EngineRecipe, *, on_crash: Sequence[CrashHook] = (),
                 before_restart: RestartHook | None = None) -> Any:
    """The engine of ``recipe`` where ``recipe.settings.isolation`` puts it: a supervised child process
    (``ProcessEngine``) or, with ``thread``, an ``Engine`` in this process. ``inhouse serve`` and ``inhouse tune``
    both start engines here, so the tuner measures what the server runs. Close it with ``close()``."""
    es = recipe.settings
    if es.isolation == "thread":
        return recipe.build_engine()
    return ProcessEngine(recipe, policy=RestartPolicy(max_crashes=es.max_crashes, window_s=es.crash_window_s),
                         on_crash=on_crash, before_restart=before_restart)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # timed out or cancelled meanwhile
        future.set_result(None)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _add_counters(a: EngineStats, b: EngineStats) -> EngineStats:
    """``a`` + ``b`` for every counter; the gauges (waiting, running) of ``b``."""
    out = dataclasses.replace(a, waiting=b.waiting, running=b.running, queue_wait_estimate_s=b.queue_wait_estimate_s)
    for f in dataclasses.fields(EngineStats):
        if f.name not in _GAUGES:
            setattr(out, f.name, getattr(a, f.name) + getattr(b, f.name))
    return out
