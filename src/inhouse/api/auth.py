"""Authentication (API key → Actor) and per-route permissions.

Every route declares the action it performs with ``Depends(require("…"))`` (or ``public("…")``); the
dependency carries its action so ``route_actions(app)`` can list them and a meta-test can fail on a route
that declares none. The decision itself is ``inhouse.governance.acl.allowed`` (the one check; the action
catalogue lives there too). Metered actions (model use) also pass the per-key quotas.

A refused request on a route that names a resource in its path (``/v1/admin/users/{user_id}``) answers
404, not 403, whatever the id: a caller who may not act there cannot learn which ids exist.

While the store that holds the keys is away (a PostgreSQL outage), a request gets 503 ``store_unavailable`` before
its key can be checked, except on the actions of ``READABLE_DURING_OUTAGE`` (a Prometheus scrape: counters, no
content, not audited), where a key this process verified within ``OUTAGE_GRACE_S`` is still taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from inhouse.api.deps import refuse_lone_surrogates, services_of
from inhouse.errors import AuthenticationFailed, NotFound, PermissionDenied, StoreUnavailable
from inhouse.governance.acl import ACTIONS, METERED_ACTIONS, Need, allowed, refusal
from inhouse.types import ANONYMOUS_ADMIN, Actor

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

__all__ = ["ACTIONS", "AuthFirstRoute", "Need", "authenticate_request", "public", "require", "route_actions"]

_MAX_HEADER_CHARS = 512
# HTTP's optional whitespace only: str.strip() would also drop control characters such as \x1f, so a key with
# one appended would authenticate as the key (found by tests/e2e/test_auth_fuzz.py).
_OWS = " \t"
READABLE_DURING_OUTAGE = frozenset({"metrics:read"})


def key_from_headers(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip(_OWS):
            return token.strip(_OWS)[: _MAX_HEADER_CHARS + 1]
        raise AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
    key = request.headers.get("x-api-key")
    return key.strip(_OWS)[: _MAX_HEADER_CHARS + 1] if key else None


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _local_caller(request: Request) -> None:
    """Without authentication: refuse a request whose Host is not this machine's loopback name (a page whose domain
    was rebound to 127.0.0.1 would be same-origin with the API, and read every answer) and a state-changing request
    another site's page sent (a cross-site form needs no CORS preflight: it would upload or create keys). Clients
    that are not browsers send neither Origin nor Sec-Fetch-Site and pass."""
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    if host not in _LOOPBACK_NAMES:
        raise PermissionDenied("Without authentication this server answers only requests addressed to localhost, "
                               "127.0.0.1 or [::1].", code="host_not_local")
    if request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    cross = request.headers.get("sec-fetch-site") in ("cross-site", "same-site")
    if cross or (origin is not None and urlsplit(origin).netloc != request.headers.get("host", "")):
        raise PermissionDenied("Without authentication this server refuses requests sent by another site's page.",
                               code="cross_site_request")


def authenticate_request(request: Request, *, during_outage: bool = False) -> Actor:
    """The caller's actor; cached on ``request.state``. ``during_outage``: when the store that holds the keys cannot
    be asked, a key this process verified recently is taken (``KeyStore.recently_verified``)."""
    cached = getattr(request.state, "actor", None)
    if isinstance(cached, Actor):
        return cached
    services = services_of(request)
    if services.settings.server.allow_unauthenticated:
        # Loopback-only mode (enforced by the CLI): every caller is the anonymous admin, whatever key
        # a client library insists on sending. A browser on this machine reaches loopback too, so only requests
        # addressed to it and not sent by another site's page are anyone's (``_local_caller``).
        _local_caller(request)
        actor = ANONYMOUS_ADMIN
    else:
        secret = key_from_headers(request)
        if secret is None:
            raise AuthenticationFailed("Missing API key. Pass it as 'Authorization: Bearer <key>'.")
        try:
            actor = services.keys.authenticate(secret)
        except StoreUnavailable:
            recent = services.keys.recently_verified(secret) if during_outage else None
            if recent is None:
                raise
            actor = recent
    request.state.actor = actor
    return actor


class _Permission:
    """A FastAPI dependency that knows its action (so routes can be audited)."""

    def __init__(self, action: str, check: Callable[[Request], Awaitable[Actor | None]], *, open: bool = False) -> None:
        self.action = action
        self.open = open  # anyone may call (no key): the OpenAPI description says so
        self._check = check

    async def __call__(self, request: Request) -> Actor | None:
        # Checked once per request: AuthFirstRoute runs it before the body is read, the dependency then finds
        # it passed (a metered action must not be counted twice).
        passed: dict[str, Actor | None] = getattr(request.state, "permissions_passed", {})
        if self.action in passed:
            return passed[self.action]
        actor = await self._check(request)
        request.state.permissions_passed = {**passed, self.action: actor}
        return actor


def require(action: str) -> Any:
    """Dependency: authenticate the caller and check it may perform ``action``. Returns the Actor."""
    need = ACTIONS[action]  # KeyError: an undeclared action is a programming error

    async def check(request: Request) -> Actor | None:
        if need == "public":
            return None
        actor = authenticate_request(request, during_outage=action in READABLE_DURING_OUTAGE)
        if not allowed(actor, action):
            if request.path_params:
                raise NotFound("Not found, or not yours.")
            raise PermissionDenied(refusal(actor, action))
        if action in METERED_ACTIONS:
            services_of(request).quotas.check(actor.key_id)
        return actor

    return _Permission(action, check, open=need == "public")


def public(action: str) -> Any:
    """Dependency for routes anyone may call (liveness). Still declares an action."""
    if ACTIONS[action] != "public":
        raise ValueError(f"action {action!r} is not public")

    async def check(_: Request) -> None:
        return None

    return _Permission(action, check, open=True)


def open_to_all(action: str, is_open: bool) -> Any:
    """``require(action)``, or no check at all when a setting opens the route (``server.metrics_public``,
    ``server.openapi_public``): still declares ``action``."""
    if not is_open:
        return require(action)

    async def check(_: Request) -> None:
        return None

    return _Permission(action, check, open=True)


class AuthFirstRoute(APIRoute):
    """The route class of the app: the route's permission runs before FastAPI reads the body.

    FastAPI parses a JSON or form body before it solves dependencies, so an unreadable body (invalid UTF-8, a multipart
    request without a boundary) would be answered 400 before the caller was identified. Here the caller without a
    valid key gets 401, and one who may not use the route gets its 403/404, whatever the body holds. Then a JSON body
    with a lone UTF-16 surrogate is a 400 (``deps.refuse_lone_surrogates``).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        permissions = permissions_of(self.dependant)
        has_body = self.body_field is not None

        async def authenticated_first(request: Request) -> Response:
            for perm in permissions:
                await perm(request)
            if has_body:
                await refuse_lone_surrogates(request)
            return await handler(request)

        return authenticated_first


def permissions_of(dependant: Dependant) -> list[_Permission]:
    """The permission dependencies a route declares (at any depth)."""
    found: list[_Permission] = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, _Permission):
            found.append(dep.call)
        found.extend(permissions_of(dep))
    return found


def route_actions(app: FastAPI) -> dict[tuple[str, str], list[str]]:
    """``(method, path) → declared actions`` for every API route of ``app``."""
    table: dict[tuple[str, str], list[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            acts = [p.action for p in permissions_of(route.dependant)]
            for method in sorted(route.methods or ()):
                table[(method, route.path)] = acts
    return table
