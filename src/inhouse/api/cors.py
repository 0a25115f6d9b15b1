"""CORS for the embeddable support widget: the support routes and ``/widget.js`` only, for the origins listed in
``apps.widget_origins`` only. Preflights from those origins are answered here, before authentication (browsers
send no key with them); every other path and origin passes through untouched (no CORS headers at all).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUPPORT_PREFIX = "/v1/apps/support/"
WIDGET_PATH = "/widget.js"


class WidgetCorsMiddleware:
    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.app = app
        self.origins = {o.rstrip("/") for o in origins}

    def _applies(self, scope: Scope) -> tuple[bool, str | None]:
        """Whether the answer depends on the Origin (a widget path, with origins listed), and the allowed origin."""
        if scope["type"] != "http" or not self.origins:
            return False, None
        path: str = scope.get("path", "")
        if not (path.startswith(SUPPORT_PREFIX) or path == WIDGET_PATH):
            return False, None
        origin = Headers(scope=scope).get("origin")
        return True, origin if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        varies, origin = self._applies(scope)
        if not varies:
            await self.app(scope, receive, send)
            return
        # Vary on every answer of these paths, not only the allowed origins': a shared cache (``/widget.js`` is
        # public for 5 minutes) would otherwise hand an answer without the CORS header to an allowed page.
        cors = [(b"vary", b"Origin")]
        if origin is not None:
            cors.append((b"access-control-allow-origin", origin.encode("latin-1")))
        if origin is not None and scope["method"] == "OPTIONS" and Headers(scope=scope).get(
                "access-control-request-method"):
            headers = [*cors, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                       (b"access-control-allow-headers", b"authorization, content-type"),
                       (b"access-control-max-age", b"600"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
