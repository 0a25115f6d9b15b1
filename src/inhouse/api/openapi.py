"""The app's OpenAPI description, served at ``/openapi.json`` (``api/system_routes.py``).

FastAPI writes the paths, parameters, request bodies and the success responses the routes declare. This module
adds what FastAPI cannot know and removes what is not true:

* **security**: a bearer scheme (and the ``X-API-Key`` header); public routes say ``security: []``;
* **the real error statuses**, each with the one error shape (``responses.ErrorResponse``) as its schema.
  Derived from what every route declares already: its permission (none for public routes; else 401, and 403 —
  or 404 when the path names an id, never revealing which ids exist), metering (429), a body (400, 413),
  query parameters (400), writing methods (507, a full disk), and 503 on every route (the audit log cannot
  record, the engine is unavailable, or the server is at ``server.max_connections``). Statuses only the route
  knows (409, a 404 for a name in the body) it declares itself with ``errors(…)``;
* **no phantom 422**: validation errors are 400 in the one shape (``api/errors.py``).

Media types are declared by the routes (``response_class``, ``responses={200: {"content": …}}``) and request
bodies FastAPI does not see (a JSON-or-multipart body, an ``.ics`` file) with ``openapi_extra=request_body(…)``.
The description is checked by a meta-test (every route documented) and by the schema-driven fuzzer (every
answer has a documented status, media type and schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from inhouse.api.auth import permissions_of
from inhouse.api.bounds import MAX_INT64, MIN_INT64
from inhouse.api.responses import ErrorResponse
from inhouse.governance.acl import METERED_ACTIONS

if TYPE_CHECKING:
    from fastapi import FastAPI

REF = "#/components/schemas/"
ERROR_SCHEMA = {"$ref": REF + "ErrorResponse"}
BEARER = "bearer"
API_KEY_HEADER = "apiKeyHeader"
WRITING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: a parameter or body field is missing, out of range or unreadable (the message and "
         "`param` name it).",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The key may not perform this route's action (its role or its scopes).",
    404: "Not found, or not the caller's to see (the two answers are the same); on routes that run a model, also "
         "a model that is not registered.",
    409: "Conflict: it exists already, or it is in a state that does not allow this.",
    413: "The request body is larger than this server's limit.",
    429: "Too many requests: the key's quota or the engine's queue is full; `Retry-After` says when to retry.",
    503: "Unavailable: the audit log cannot record the request (so it is not done), the engine is loading or "
         "failed, or the server is at its connection limit.",
    507: "The disk is full: nothing was written; the same request succeeds once space is freed.",
}


def errors(*statuses: int, why: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error statuses only the route knows it returns (409, a 404 for a name in the
    body); ``why`` replaces the generic description."""
    return {s: {"description": (why or {}).get(s, DESCRIPTIONS[s]),
                "content": {"application/json": {"schema": ERROR_SCHEMA}}} for s in statuses}


def media(*types: str, description: str | None = None) -> dict[str, Any]:
    """A response that is not JSON (or not only): each media type with a string body."""
    out: dict[str, Any] = {"content": {t: {"schema": {"type": "string"}} for t in types}}
    if description:
        out["description"] = description
    return out


def request_body(*, json: type[BaseModel] | None = None, multipart: Mapping[str, Any] | None = None,
                 raw: str | None = None, description: str | None = None) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads its body itself: a JSON model, multipart form fields
    (``{"file": BINARY, "name": {"type": "string"}}``; ``file`` is required), or one raw media type."""
    content: dict[str, Any] = {}
    if json is not None:
        content["application/json"] = {"schema": json.model_json_schema(ref_template=REF + "{model}")}
    if multipart is not None:
        content["multipart/form-data"] = {"schema": {
            "type": "object", "properties": dict(multipart), "required": ["file"] if "file" in multipart else []}}
    if raw is not None:
        content[raw] = {"schema": {"type": "string"}}
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return {"requestBody": body}


BINARY = {"type": "string", "format": "binary"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of ``app``."""
    doc = get_openapi(title=app.title, version=app.version, description=_DESCRIPTION, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template=REF + "{model}")
    _hoist_defs(doc, schemas)
    _exact_integer_bounds(doc)
    components["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "An inhouse API key: `Bearer ih_…`."},
        API_KEY_HEADER: {"type": "apiKey", "in": "header", "name": "X-API-Key",
                         "description": "The same key in the X-API-Key header."},
    }
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is not None:
                _document_errors(route, method, op)
                op.setdefault("tags", [tag_of(route.path_format)])
    return doc


# Operations are grouped by the first matching path prefix.
_TAGS = (("/v1/admin/audit", "audit"), ("/widget.js", "assistants"), ("/v1/admin/", "identity"),
         ("/v1/me", "identity"), ("/v1/keys", "identity"), ("/v1/apps/", "assistants"),
         ("/v1/collections", "knowledge"), ("/v1/search", "knowledge"), ("/v1/conversations", "conversations"),
         ("/v1/status", "system"), ("/v1/", "openai"), ("/", "system"))


def tag_of(path: str) -> str:
    return next(tag for prefix, tag in _TAGS if path.startswith(prefix))


def _document_errors(route: APIRoute, method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    responses.pop("422", None)
    perms = permissions_of(route.dependant)
    open_route = all(p.open for p in perms)
    auto: set[int] = {503}
    if open_route:
        op["security"] = []
    else:
        op["security"] = [{BEARER: []}, {API_KEY_HEADER: []}]
        # A refusal on a route with an id in its path is a 404 (api/auth.py): ids are never confirmed.
        auto |= {401, 404 if route.dependant.path_params else 403}
        if any(p.action in METERED_ACTIONS for p in perms):
            auto |= {404, 429}  # the model it runs on (named, or configured) may not be registered
        if method in WRITING_METHODS:
            auto.add(507)
    if "requestBody" in op:
        auto |= {400, 413}
    if route.dependant.query_params:
        auto.add(400)
    for status in sorted(auto):
        responses.setdefault(str(status), errors(status)[status])
    op["responses"] = dict(sorted(responses.items()))


def _hoist_defs(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Move the ``$defs`` of inline pydantic schemas (request bodies of ``request_body``) into the components."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            defs = node.pop("$defs", None)
            if isinstance(defs, dict):
                found.update(defs)
                walk(defs)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for name, schema in found.items():
        schemas.setdefault(name, schema)


def _exact_integer_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model holds ``minimum``/``maximum`` as floats, so 2**63 - 1 comes out as 2**63 (a value
    SQLite cannot store). Integer bounds go back to integers, clamped to the 64-bit range."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = max(MIN_INT64, min(MAX_INT64, int(value)))
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)


def openapi_of(app: FastAPI) -> dict[str, Any]:
    """The description of ``app``, built once (the routes do not change once it serves)."""
    cached: dict[str, Any] | None = getattr(app.state, "openapi_doc", None)
    if cached is None:
        cached = build_openapi(app)
        app.state.openapi_doc = cached
    return cached


_DESCRIPTION = """Private AI on the company's own CPUs: an OpenAI-compatible server, company knowledge, assistants and
governance.

Every route but the probes (`/health`, `/ready`), the web UI and the widget script needs an API key
(`Authorization: Bearer ih_…` or `X-API-Key`). Every error, whatever its status, is
`{"error": {"message", "type", "code", "param"}}`."""
