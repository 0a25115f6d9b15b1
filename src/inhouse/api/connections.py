"""Connection limits under uvicorn's h11 protocol: idle and slow connections cannot pile up.

uvicorn (0.55) never closes a connection that sends no request, or sends its headers a byte at a time (its
keep-alive timer restarts on any data), and has no cap on open connections but its ``limit_concurrency``, which
answers in plain text. ``http_protocol`` returns a subclass of its ``H11Protocol`` that adds:

* **a head timeout**: a request's head must be complete ``header_timeout_s`` after the connection opens (or after
  the previous response on a kept-alive connection), else the connection is closed;
* **a connection cap**: beyond ``max_connections`` open connections a new one is answered at once with 503 in the
  one error shape, ``Retry-After``, and closed;
* **a write timeout**: when a client stops reading (the transport stays paused for ``write_timeout_s``), the
  connection is closed; the app sees the disconnect and the generation is aborted, so a slow reader holds no
  engine slot and no memory beyond the socket buffers.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from inhouse.api.errors import error_body

if TYPE_CHECKING:
    from inhouse.config import ServerSettings


def _refusal(retry_after_s: int) -> bytes:
    body = json.dumps(error_body("The server has too many open connections. Retry shortly.", "server_error",
                                 "too_many_connections")).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: {retry_after_s}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0
    write_timeout_s: float = 30.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            transport.write(_refusal(1))
            transport.close()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel("_head_timer")
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name, None)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()  # no complete request head in time: an idle or slowloris connection

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request head arrived
            self._cancel("_head_timer")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request on this kept-alive connection gets the same limit

    def pause_writing(self) -> None:
        super().pause_writing()
        self._cancel("_write_timer")
        self._write_timer = self.loop.call_later(self.write_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel("_write_timer")

    def _write_stalled(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.transport.abort()  # the client stopped reading: drop it (the app sees a disconnect)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel("_head_timer")
        self._cancel("_write_timer")
        super().connection_lost(exc)


def http_protocol(server: ServerSettings) -> Any:
    """The protocol class to pass to uvicorn as ``http=``, with the limits of ``server``."""
    return type("InhouseH11Protocol", (GuardedH11Protocol,), {
        "header_timeout_s": server.header_timeout_s, "write_timeout_s": server.write_timeout_s,
        "max_connections": server.max_connections})
