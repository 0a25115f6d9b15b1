"""One audit record per API request, written when it ends; a write-ahead record before any generation.

``AuditMiddleware`` (pure ASGI, inside the edge middleware) gives every request a ``RequestAudit`` on
``request.state.audit``; routes fill in what only they know (model, request id, where it ran, label,
documents, redactions, token counts). When the request ends the middleware writes the record.

"If the audit write fails, the action fails":

* A non-streaming response is held back until its record is written; if the write fails the caller gets
  503 ``audit_unavailable`` (507 ``storage_full`` for a full disk) instead of the answer: nothing was done, only
  read. Not so once the request has written its ``started`` record (below): its action has happened, so its final
  record is kept like a stream's and the caller gets the real answer.
* A generation (chat / completion) first writes a ``started`` record (``write_started``): if that
  fails the request is refused with 503 before a token is generated. A stream's final record is written
  after its last byte; when the store cannot take it for now it is kept and written later
  (``AuditLog.record_finished_request``); if that fails too, the ``started`` record and the server log remain.
* A change to the knowledge index (an upload, a relabel, a delete) is written ahead the same way (``write_ahead``),
  and the store notes each change it commits under the request's id in its run journal: a server killed between
  the commit and the final record leaves a ``started`` record that the next ``serve`` closes naming exactly what was
  committed. Once the final record is written the request's journal entries are dropped (``RequestAudit.then``).

Routes that only declare ``health:read`` or ``metrics:read`` (probes, scrapes: no content) are not recorded;
neither are paths that match no route.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inhouse.api.auth import route_actions
from inhouse.api.deps import services_of
from inhouse.api.errors import retry_after, status_of
from inhouse.api.middleware import client_left, send_json_error
from inhouse.errors import AuditUnavailable
from inhouse.governance.audit import STARTED

if TYPE_CHECKING:
    from inhouse.chat.service import PreparedGeneration
    from inhouse.governance.audit import AuditLog
    from inhouse.governance.egress.router import RoutedRequest
    from inhouse.types import Actor

log = logging.getLogger(__name__)

# web:read = the web UI's page shells and static files: no data in them (the sign-in form IS recorded).
UNAUDITED_ACTIONS = frozenset({"health:read", "metrics:read", "web:read"})
_MAX_ERROR_BODY = 4096


@dataclass
class RequestAudit:
    """What the routes learn about a request, for its audit record."""

    request_id: str | None = None
    model: str | None = None
    location: str | None = None  # 'local' or a provider name; None for requests that use no model
    label: str | None = None
    documents: list[str] = field(default_factory=list)
    redactions: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # A route answering a refusal with a page (200, for the browser) says so here: the record's outcome and reason.
    refused: str | None = None  # the error code; the outcome is then "denied"
    # A response that had started (a stream's 200) and then failed (the engine crashed or was unloaded, the server
    # stopping): the error code of its final event; the outcome is then "error", not the 200's "success".
    failed: str | None = None
    # Run (in a worker thread) once the final record is written; a failure is logged, never the request's. Not for a
    # record kept for later: the run journal then still names what it did (the next start prunes it).
    then: list[Callable[[], None]] = field(default_factory=list)
    # Its ``started`` record is in the chain: what it does from then on can no longer be refused by a failed final
    # record (an upload committed, tokens generated), so that record is kept rather than the answer replaced.
    started: bool = False


def audit_log_of(conn: HTTPConnection) -> AuditLog:
    return services_of(conn).audit


def request_audit(request: Request) -> RequestAudit:
    ctx = getattr(request.state, "audit", None)
    if not isinstance(ctx, RequestAudit):
        ctx = RequestAudit()
        request.state.audit = ctx
    return ctx


def note(request: Request, *, request_id: str | None = None, model: str | None = None,
         location: str | None = None, label: str | None = None, documents: Sequence[str] = (),
         redactions: Mapping[str, int] | None = None, **details: Any) -> None:
    """Add what a route knows to this request's audit record (only the arguments given)."""
    ctx = request_audit(request)
    for name, value in (("request_id", request_id), ("model", model), ("location", location), ("label", label)):
        if value is not None:
            setattr(ctx, name, value)
    ctx.documents.extend(documents)
    ctx.redactions.update(redactions or {})
    ctx.details.update(details)


def note_failure(request: Request, code: str) -> None:
    """The response started but ended with an error event (``RequestAudit.failed``)."""
    request_audit(request).failed = code


def note_route(request: Request, routed: RoutedRequest | None) -> None:
    """What the egress policy decided: where the request runs, its effective label, what was redacted."""
    if routed is None:  # a local model
        return
    d = routed.decision
    note(request, location=d.destination, label=d.label.value if d.label else None,
         redactions=routed.session.report(), egress=d.egress)


def _actor_ids(actor: Actor | None) -> tuple[str | None, str | None]:
    return (actor.key_id, actor.user_id) if actor is not None else (None, None)


async def write_started(request: Request, prepared: PreparedGeneration) -> None:
    """Write the ``started`` record of a local generation (raises ``AuditUnavailable`` → 503: nothing is
    generated). The token counts are noted when it finishes (``serving.py``)."""
    ctx = request_audit(request)
    note(request, request_id=prepared.request_id, model=prepared.model, location=ctx.location or "local")
    await _write_started(request)


async def write_ahead(request: Request, forget: Callable[[str], None]) -> str:
    """Write the ``started`` record of a request about to change the knowledge index, before it changes anything
    (raises ``AuditUnavailable`` → 503: nothing is changed); its request id, under which the change is noted in the
    run journal. ``forget(request_id)`` drops those entries once the final record is written."""
    from inhouse.chat.service import new_request_id

    ctx = request_audit(request)
    rid = ctx.request_id or new_request_id()
    note(request, request_id=rid)
    await _write_started(request)
    ctx.then.append(lambda: forget(rid))
    return rid


async def _write_started(request: Request) -> None:
    ctx = request_audit(request)
    audit = audit_log_of(request)
    key_id, user_id = _actor_ids(getattr(request.state, "actor", None))
    route = request.scope.get("route")
    await anyio.to_thread.run_sync(lambda: audit.record_request(
        action=_action_of(request.scope) or "generation", outcome=STARTED, request_id=ctx.request_id,
        actor_key_id=key_id, user_id=user_id, resource=_resource(request.scope, route), model=ctx.model,
        location=ctx.location, label=ctx.label, documents=ctx.documents, redactions=ctx.redactions,
    ))
    ctx.started = True


def _resource(scope: Scope, route: Any) -> str:
    # The concrete path (it carries the ids acted on) of a matched route only: it is bounded by the route.
    return f"{scope.get('method', '')} {scope.get('path', '')}"[:300] if route is not None else ""


def _action_of(scope: Scope) -> str | None:
    route, app = scope.get("route"), scope.get("app")
    if route is None or app is None:
        return None
    table: dict[tuple[str, str], list[str]] | None = getattr(app.state, "audit_route_actions", None)
    key = (scope.get("method", ""), getattr(route, "path", ""))
    if table is None or key not in table:
        table = route_actions(app)  # routes may be added after the app is built (tests do)
        app.state.audit_route_actions = table
    actions = table.get(key) or []
    return actions[0] if actions else None


def outcome_of(status: int) -> str:
    if 0 < status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status in (0, 499):
        return "aborted"
    return "failure" if status < 500 else "error"


def _error_code(body: bytes) -> str | None:
    if not body or len(body) > _MAX_ERROR_BODY:
        return None
    try:
        err = json.loads(body).get("error")
        return str(err.get("code"))[:100] if isinstance(err, dict) else None
    except (ValueError, AttributeError):
        return None


def _run_quietly(calls: Sequence[Callable[[], None]]) -> None:
    for call in calls:
        try:
            call()
        except Exception:  # housekeeping after the record: the next serve catches up (``Services.close_interrupted``)
            log.warning("after the audit record of a request", exc_info=True)


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestAudit()
        scope.setdefault("state", {})["audit"] = ctx
        status = 0
        held: Message | None = None
        written = replaced = ended = False  # ended: the response's last byte went out

        async def write(status: int, body: bytes = b"", *, answered: bool = False) -> None:
            """``answered``: the response is out, so a record the store cannot take now is kept for later."""
            nonlocal written
            written = True
            action = _action_of(scope)
            if action is None or action in UNAUDITED_ACTIONS:
                return
            audit = services_of(HTTPConnection(scope)).audit
            actor = scope.get("state", {}).get("actor")
            key_id, user_id = _actor_ids(actor)
            details = {"status": status, **ctx.details}
            reason = _error_code(body) if status >= 400 else (ctx.refused or ctx.failed)
            outcome = outcome_of(status)
            if status < 400 and ctx.refused is not None:
                outcome = "denied"
            elif status < 400 and ctx.failed is not None:
                outcome = "error"
            fields: dict[str, Any] = {
                "action": action, "outcome": outcome, "request_id": ctx.request_id, "actor_key_id": key_id,
                "user_id": user_id, "resource": _resource(scope, scope.get("route")), "model": ctx.model,
                "location": ctx.location, "label": ctx.label, "documents": ctx.documents,
                "redactions": ctx.redactions, "reason": reason, "details": details,
            }
            if answered:
                stored = await anyio.to_thread.run_sync(lambda: audit.record_finished_request(**fields))
            else:
                await anyio.to_thread.run_sync(lambda: audit.record_request(**fields))
                stored = True
            if ctx.then and stored:  # a kept record is not written yet: the run journal still names what it did
                await anyio.to_thread.run_sync(_run_quietly, ctx.then)

        async def audit_send(message: Message) -> None:
            nonlocal status, held, replaced, ended
            if replaced:
                return
            if message["type"] == "http.response.pathsend" or (
                    message["type"] == "http.response.body" and not message.get("more_body", False)):
                ended = True
            if message["type"] == "http.response.start":
                status = int(message["status"])
                held = message  # not sent until the record is written (or the response turns out to stream)
                return
            if message["type"] == "http.response.body" and held is not None:
                start, held = held, None
                if not message.get("more_body", False):  # a complete response: record it first
                    try:
                        await write(status, message.get("body", b""), answered=ctx.started)
                    except AuditUnavailable as exc:
                        if ctx.started:
                            # Its action has happened (its `started` record says so): answering "nothing was done"
                            # would be false. The `started` record and the run journal remain; the next start
                            # closes the request naming what it committed.
                            log.critical("the final audit record of request %s could not be written or kept: %s",
                                         ctx.request_id, exc.message)
                            await send(start)
                            await send(message)
                            return
                        replaced = True
                        # 503, or 507 storage_full for a full disk: the status the same error has everywhere else
                        log.error("audit record not written, answering %d instead: %s", status_of(exc), exc.message)
                        await send_json_error(send, status_of(exc), f"The request was not completed: {exc.message}",
                                              exc.type, exc.code, retry_after_s=retry_after(exc))
                        return
                await send(start)
            await send(message)

        try:
            await self.app(scope, receive, audit_send)
        except BaseException as exc:
            if written:
                raise
            if client_left(exc):
                # The client went away (EdgeMiddleware counts it 499): aborted, not a server error. Ray Serve's proxy
                # reports a client that left by cancelling the ingress's request task (and the calls it waits on:
                # ``cluster/ingress.DisconnectOnCancel``). A stopping server does not get here for a generation: it
                # fails them first (their final event, ``model_unloaded``), and a cluster ingress past its grace is
                # killed with no Python left to run (the next one records ``interrupted``).
                with anyio.CancelScope(shield=True):  # the record is written even though the task is cancelled
                    await self._write_quietly(write, 499)
            else:
                await self._write_quietly(write, 500)
            raise
        if held is not None:  # a start without a body (should not happen): send it anyway
            await send(held)
        if not written:
            # A response that never sent its last byte was cut short by the client (SSEResponse stops at the
            # disconnect): aborted like a generation the client left, even though its status line said 200.
            await self._write_quietly(write, status if status and ended else 499)

    @staticmethod
    async def _write_quietly(write: Callable[..., Any], status: int) -> None:
        # Only for what can no longer be refused: a finished stream, a disconnect, a crash.
        try:
            await write(status, answered=True)
        except Exception:
            log.critical("the audit record of a finished request could not be written", exc_info=True)
