"""What crosses the boundary between the server and an engine's child process, and how.

Two Unix stream sockets (``socketpair``) per child: the control socket carries everything but the deltas, the
delta socket only the ``deltas`` frames, so that the event loop streaming them reads that socket itself (no
thread between the child and the loop: engine/process.py). A frame is a 4-byte little-endian length and a
pickled tuple whose first item names the message. Pickle is safe here: both ends are this package, and the socket
exists only between a parent and the child it started. Per token the cost is a tuple of primitives (about 1 µs
to pickle and unpickle; a ``Delta`` dataclass would cost several times that), and the child sends one frame per
engine step whatever the number of streams in it.

Parent → child::

    ("start", recipe)                      first frame: build the engine (EngineRecipe, pickled whole)
    ("submit", request_id, prompt_tokens, params, arrival_s, cache_owner)   cache_owner: whose KV it may reuse
    ("abort", request_id)
    ("call", call_id, method, kwargs)      tokenize / stats
    ("close",)                             unload: fail what is live, free the model, exit 0

Child → parent::

    ("ready", info)                        the engine is built: {"n_ctx", "pid", "model_path"}
    ("load_failed", error)                 building it raised (a bad file): not a crash, no restart
    ("deltas", [delta, ...])               every delta of one step (see ``delta_to_wire``): the delta socket
    ("refused", request_id, error)         ``submit`` raised (queue full, bad grammar): no delta follows
    ("reply", call_id, ok, value_or_error)
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

from inhouse import errors
from inhouse.engine.params import Delta
from inhouse.errors import EngineFailure, InhouseError

_HEADER = struct.Struct("<I")
MAX_FRAME_BYTES = 256 * 2**20  # a tokenized book is ~1 MB; anything near this is a bug
_RECV_BYTES = 1 << 16

WireDelta = tuple[Any, ...]  # the fields of Delta, in order
WireError = tuple[str, tuple[Any, ...], dict[str, Any]]


def encode(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME_BYTES:
        raise EngineFailure(f"An engine message of {len(body)} bytes is above the {MAX_FRAME_BYTES} limit.")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Reads frames from a blocking socket. ``read`` returns every frame already received (at least one), so a
    reader that fell behind handles a backlog in one go; None at end of stream (the other side exited)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def read(self) -> list[Any] | None:
        while True:
            frames = self._parse()
            if frames:
                return frames
            try:
                chunk = self._sock.recv(_RECV_BYTES)
            except OSError:  # reset / closed under us: the same as the other side going away
                return None
            if not chunk:
                return None
            self._buf += chunk

    def read_nowait(self, *, drain: bool = False) -> tuple[list[Any], bool]:
        """For a non-blocking socket: the whole frames of one ``recv`` (of everything that can be read now with
        ``drain``), and whether the stream ended (the other side exited, or the socket was reset). Without
        ``drain`` a full buffer is read again, and the caller's level-triggered watch brings it back for a rest:
        the usual case, one frame per engine step, costs one system call."""
        while True:
            try:
                chunk = self._sock.recv(_RECV_BYTES)
            except BlockingIOError:
                return self._parse(), False
            except OSError:
                return self._parse(), True
            if not chunk:
                return self._parse(), True
            self._buf += chunk
            if not drain and len(chunk) < _RECV_BYTES:
                return self._parse(), False

    def _parse(self) -> list[Any]:
        buf = self._buf
        out: list[Any] = []
        off = 0
        size = _HEADER.size
        while len(buf) - off >= size:
            (n,) = _HEADER.unpack_from(buf, off)
            if n > MAX_FRAME_BYTES:
                raise EngineFailure(f"An engine frame claims {n} bytes; the stream is corrupt.")
            if len(buf) - off - size < n:
                break
            out.append(pickle.loads(memoryview(buf)[off + size : off + size + n]))
            off += size + n
        if off:
            del buf[:off]
        return out


def delta_to_wire(d: Delta) -> WireDelta:
    """A delta as a tuple in ``Delta``'s field order (``delta_from_wire`` is ``Delta(*t)``): every field, so a
    field added to ``Delta`` must be added here (a test compares the two)."""
    return (d.request_id, d.text, d.token_ids, d.finish_reason, d.n_prompt_tokens, d.n_generated_tokens,
            d.n_cached_tokens, d.error, d.logprobs, d.prompt_logprobs, d.error_code, d.retry_after_s)


def delta_from_wire(t: WireDelta) -> Delta:
    return Delta(*t)


def error_to_wire(exc: BaseException) -> WireError:
    """An exception raised in the child, as data. ``InhouseError`` subclasses keep their class and attributes
    (``retry_after_s``, ``param``, ``n_ctx`` …): pickling them directly would call ``__init__`` with the
    wrong arguments. Anything else becomes an ``EngineFailure`` naming its type."""
    if isinstance(exc, InhouseError) and getattr(errors, type(exc).__name__, None) is type(exc):
        state = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool, type(None)))}
        return (type(exc).__name__, tuple(str(a) for a in exc.args), state)
    return ("EngineFailure", (f"{type(exc).__name__}: {exc}",), {"message": f"{type(exc).__name__}: {exc}"})


def error_from_wire(wire: WireError) -> InhouseError:
    name, args, state = wire
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, InhouseError)):
        return EngineFailure(f"{name}: {' '.join(args)}")
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc
