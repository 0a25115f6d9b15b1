"""Pure ASGI middlewares: body size and time limits, request counting, and the last-resort 500.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses and client disconnects pass through
untouched and the body limit applies while the body is still arriving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inhouse.api.errors import error_body

if TYPE_CHECKING:
    from inhouse.api.metrics import Metrics
    from inhouse.config import Settings

log = logging.getLogger(__name__)


# Both close the connection with their answer: the rest of the body is not worth reading.
CLOSE = {"connection": "close"}


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` once the body passes the limit. An HTTPException so FastAPI's body
    parsing re-raises it unchanged (it wraps other exceptions into a 400)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is too large.", headers=CLOSE)


class BodyTooSlow(StarletteHTTPException):
    """Raised from ``receive`` when the body has not arrived in the time its size allows (``BodyLimitMiddleware``)."""

    def __init__(self, received: int, waited_s: float) -> None:
        super().__init__(status_code=408, headers=CLOSE, detail=(
            f"The request body arrived too slowly: {received} bytes in {waited_s:.0f} s. Send it at once, or "
            "raise server.body_timeout_s / lower server.body_min_rate."))


async def send_json_error(send: Send, status: int, message: str, type_: str, code: str,
                          param: str | None = None, *, retry_after_s: int | None = None) -> None:
    body = json.dumps(error_body(message, type_, code, param)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimitMiddleware:
    """A body larger than the limit is a 413 (before a byte is read when Content-Length says so); a body that does
    not arrive in time is a 408. The time rule is Apache mod_reqtimeout's: ``timeout_s`` plus one second for every
    ``min_rate`` bytes received, counting only time the app spends waiting for the body (not its own work between
    reads). A client dripping a byte a second is cut after ``timeout_s``; a 200 MB upload at 1 MB/s is not, whatever
    its length. Without it, such a client holds its handler (and, for an upload, its temp file) for as long as it
    likes: the head timeout (``api/connections.py``) ends once the head is complete."""

    def __init__(self, app: ASGIApp, max_body_bytes: int,
                 limit_for_path: Callable[[str], int | None] | None = None, *,
                 timeout_s: float = 20.0, min_rate: int = 500,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Routes that take files (document upload) have their own, larger limit; everything else the default.
        self.limit_for_path = limit_for_path
        self.timeout_s = timeout_s
        self.min_rate = min_rate
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        override = self.limit_for_path(scope.get("path", "")) if self.limit_for_path else None
        limit = override or self.max_body_bytes
        too_large = f"The request body is larger than this server's limit of {limit} bytes."
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json_error(send, 400, "Invalid Content-Length header.",
                                          "invalid_request_error", "invalid_request")
                    return
                if declared > limit:
                    # Refused before reading a byte of it.
                    await send_json_error(send, 413, too_large, "invalid_request_error", "request_too_large")
                    return
        received = 0
        waited = 0.0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, waited, complete
            if complete:  # after the body, receive() waits for the disconnect (a stream's listener): no limit
                return await receive()
            allowed = self.timeout_s + (received / self.min_rate if self.min_rate else 0.0) - waited
            t = self.clock()
            try:
                async with asyncio.timeout(max(allowed, 0.0)):  # a timer on this task; wait_for made a task a call
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(received, waited + self.clock() - t) from None
            waited += self.clock() - t
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:  # chunked body or a lying Content-Length
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await send_json_error(send, 413, too_large, "invalid_request_error", "request_too_large")
        except BodyTooSlow as exc:
            if started:
                raise
            await send_json_error(send, 408, exc.detail, "invalid_request_error", "request_timeout")


def repeated_query_parameter(query_string: bytes) -> str | None:
    """The first query parameter given more than once, if any. No route takes a list in its query string, so a
    repeated one is a mistake (or a probe) whose meaning would otherwise be "the last one wins", silently."""
    seen: set[str] = set()
    for key, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return key
        seen.add(key)
    return None


def client_left(exc: BaseException) -> bool:
    """Whether ``exc`` says the client went away rather than that the server failed: the connection gone under a read
    (``ClientDisconnect``) or a write (``OSError``), the request's task cancelled (how Ray Serve's proxy reports a
    client that left), or an anyio task group's ``ExceptionGroup`` (``SSEResponse``'s disconnect watcher) holding
    only those."""
    if isinstance(exc, BaseExceptionGroup):
        return all(client_left(e) for e in exc.exceptions)
    return isinstance(exc, (ClientDisconnect, OSError, asyncio.CancelledError))


class EdgeMiddleware:
    """Counts requests by route template and status; turns any escaped exception into a 500 in the one
    error shape (logged once here, not re-raised to the server); a path with a NUL character is a 404, a query
    parameter given twice a 400."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        if "\x00" in scope.get("path", ""):
            # No resource is named with a NUL character, and PostgreSQL text cannot even hold one to compare: the
            # answer is the 404 of an unknown id on every store, before a route looks it up.
            status = 404
            await send_json_error(send, 404, "Not found.", "invalid_request_error", "not_found")
            self.metrics.requests_total.labels(route="unmatched", status="404").inc()
            return
        repeated = repeated_query_parameter(scope.get("query_string", b""))
        if repeated is not None:
            await send_json_error(send, 400, f"The query parameter '{repeated}' is given more than once.",
                                  "invalid_request_error", "invalid_request", param=repeated)
            self.metrics.requests_total.labels(route="unmatched", status="400").inc()
            return

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if client_left(exc):  # nothing to answer and nothing wrong on our side
                log.debug("client disconnected on %s %s", scope.get("method"), scope.get("path"))
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if status == 0:
                status = 500
                await send_json_error(send, 500, "Internal server error.", "server_error", "internal_error")
        finally:
            route = scope.get("route")
            # The route template, never the raw path: unknown paths must not create label values.
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests_total.labels(route=label, status=str(status or 499)).inc()


def upload_limits(settings: Settings) -> Callable[[str], int | None]:
    """The larger body limits of the routes that take files: document uploads (the largest accepted file plus
    room for the multipart envelope) and the assistants' transcripts, recordings and documents."""
    limit = int(settings.kb.max_file_mb * 1024 * 1024) + 64 * 1024
    apps_limit = int(settings.apps.max_upload_mb * 1024 * 1024) + 64 * 1024

    def for_path(path: str) -> int | None:
        if path.rstrip("/") in ("/v1/apps/minutes", "/v1/apps/outline"):
            return apps_limit
        return limit if path.startswith("/v1/collections/") and path.rstrip("/").endswith("/documents") else None

    return for_path
