"""The one JSON error shape on the wire, and the handlers that produce it.

Every error response is ``{"error": {"message", "type", "code", "param"}}`` (OpenAI's shape). Cores raise
``inhouse.errors``; this module alone maps them to HTTP statuses. A meta-test sends bad requests of every
kind and checks each answer has exactly this shape.

Messages are bounded here, whatever raised them: at most ``MAX_MESSAGE_CHARS`` characters (``param`` at most
``MAX_PARAM_CHARS``), so no input comes back whole; pydantic's own ``input`` is never quoted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inhouse import errors

log = logging.getLogger(__name__)

# Most specific first: ContextLengthExceeded is an InvalidRequest, ModelNotFound a NotFound.
_STATUS: tuple[tuple[type[errors.InhouseError], int], ...] = (
    (errors.InvalidRequest, 400),
    (errors.AuthenticationFailed, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Overloaded, 429),
    (errors.StorageFull, 507),  # Insufficient Storage: retry once space is freed
    (errors.Unavailable, 503),
    (errors.EngineFailure, 500),
)
MAX_MESSAGE_CHARS = 500
MAX_PARAM_CHARS = 100
_MAX_CONSTRAINT_CHARS = 200  # pydantic's description of the constraint a value missed
# The HTTP errors Starlette and FastAPI raise themselves: their code, type and message (None: keep their detail,
# e.g. "Missing boundary in multipart.").
_HTTP_CODES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_body", "invalid_request_error", None),
    404: ("not_found", "invalid_request_error", "No such route."),
    405: ("method_not_allowed", "invalid_request_error", "Method not allowed on this route."),
    408: ("request_timeout", "invalid_request_error", None),
    413: ("request_too_large", "invalid_request_error", "The request body is too large."),
}


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_body(message: str, type_: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": clip(message, MAX_MESSAGE_CHARS), "type": type_, "code": code,
                      "param": None if param is None else clip(param, MAX_PARAM_CHARS)}}


def error_response(status: int, message: str, type_: str, code: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


def status_of(exc: errors.InhouseError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def retry_after(exc: errors.InhouseError) -> int | None:
    """The seconds to send as Retry-After, for the errors that know when a retry may succeed."""
    if isinstance(exc, (errors.Overloaded, errors.StoreUnavailable, errors.EngineCrashed, errors.ParserUnavailable)):
        return max(1, math.ceil(exc.retry_after_s))
    return None


def inhouse_error_response(exc: errors.InhouseError) -> JSONResponse:
    status = status_of(exc)
    headers: dict[str, str] = {}
    message = exc.message
    if isinstance(exc, errors.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="inhouse"'
    elif isinstance(exc, (errors.StoreUnavailable, errors.EngineCrashed, errors.ParserUnavailable)):
        headers["Retry-After"] = str(retry_after(exc))
    elif isinstance(exc, errors.Overloaded):
        headers["Retry-After"] = str(retry_after(exc))
        # The client is told to come back later: keeping its connection would only hold a socket meanwhile, and a
        # client that retries after exactly the keep-alive time would race the server closing it.
        headers["Connection"] = "close"
    elif status == 500:
        # The details (llama.cpp messages, paths) go to the log, not to the caller.
        log.error("engine failure: %s", exc.message)
        message = "The inference engine failed while serving this request."
    return error_response(status, message, exc.type, exc.code, exc.param, headers or None)


_TYPE_TAGS = ("str", "int", "float", "bool", "list", "dict", "none")


def _is_type_tag(part: Any) -> bool:
    """pydantic names the member of a union it tried in the location (``constrained-str``, ``list[int]``): that is
    no field of the request."""
    p = str(part)
    return "[" in p or p.startswith(("constrained-", "function-", "json-or-python")) or p in _TYPE_TAGS


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header") and not _is_type_tag(p)]
    return ".".join(parts)


def validation_message(errs: Sequence[Any]) -> tuple[str, str | None]:
    """The message and ``param`` of a failed validation (FastAPI's, or a body a route validates itself)."""
    first = errs[0] if errs else {}
    field = clip(_field_name(first.get("loc", ())), MAX_PARAM_CHARS)
    # pydantic's `msg` describes the constraint; `input` (possibly megabytes) is never echoed.
    msg = clip(str(first.get("msg", "invalid value")), _MAX_CONSTRAINT_CHARS)
    more = f" (and {len(errs) - 1} more errors)" if len(errs) > 1 else ""
    text = f"Invalid '{field}': {msg}{more}." if field else f"Invalid request: {msg}{more}."
    return text, field.split(".")[0] if field else None


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    errs = exc.errors()
    if errs and errs[0].get("type") == "json_invalid":
        return error_response(400, "The request body is not valid JSON.", "invalid_request_error",
                              "invalid_json")
    text, param = validation_message(errs)
    return error_response(400, text, "invalid_request_error", "invalid_request", param)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    code, type_, default = _HTTP_CODES.get(
        exc.status_code, ("http_error", "invalid_request_error" if exc.status_code < 500 else "server_error", None)
    )
    detail = exc.detail if isinstance(exc.detail, str) and default is None else default or "HTTP error."
    return error_response(exc.status_code, detail, type_, code, headers=dict(exc.headers) if exc.headers else None)


def install_error_handlers(app: FastAPI) -> None:
    async def on_inhouse(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.InhouseError)
        return inhouse_error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        # The caller passed the route's permission already (api/auth.AuthFirstRoute runs it before the body).
        assert isinstance(exc, RequestValidationError)
        return validation_error_response(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "Internal server error.", "server_error", "internal_error")

    app.add_exception_handler(errors.InhouseError, on_inhouse)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
