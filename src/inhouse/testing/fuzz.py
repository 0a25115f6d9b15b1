"""Schema-driven fuzzing of every route (schemathesis over the app's own ``/openapi.json``), as an admin and as a
member, with real ids in the path.

Used by the CI test (``tests/e2e/test_fuzz.py``: a bounded number of examples per operation, over HTTP against a
real uvicorn server with the production wiring) and the benchmark (``python -m benchmarks.fuzz --examples 1000``:
in-process over ASGI, through every middleware, which is several times faster per case).

How it goes, per role:

1. **Seed** through the API itself (``httpx``): a member user in a group, that user's key, and per refresh new
   users, groups, keys, a collection with a document, a conversation, a calendar event, a support session and a
   stored response, owned by the caller where a caller owns things; the model ids are the served ones. Path
   parameters get these ids (``key_id`` never the caller's own key, so the run cannot lock itself out); one case
   in eight keeps its generated value instead (an unknown id: 404). A write whose path names ids may have deleted
   or revoked them: those kinds are made anew before the next operation, so the operations after it still reach
   real resources.
2. **Generate** positive (schema-valid) and negative (schema-violating) cases for each operation, half each.
3. **Check** every answer: no 5xx; no 422 (FastAPI's own validation answer: ours are 400s in the one shape); no
   traceback, neither in a body nor logged by the server while the case ran; every error in the one shape; a
   documented status, media type and body schema (schemathesis' ``status_code_conformance``,
   ``content_type_conformance``, ``response_schema_conformance``); schema-violating input refused with a 4xx
   (``negative_data_rejection``).

A finding is kept once per (operation, check, status) with the first example that showed it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx

# Checks by name (schemathesis' own), and ours.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection", "ignored_auth", "unsupported_method")
ERROR_SHAPE = "error_shape"
SERVER_ERROR = "server_error"
TRACEBACK = "traceback"
UNPROCESSABLE = "status_422"
# What a Python traceback looks like in text, in any language's error page.
_TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "site-packages/")
KEEP_GENERATED_ONE_IN = 8
_MODEL = "fake-model"
EMBEDDING_MODEL = "multilingual-e5-small"


@dataclass
class Finding:
    operation: str
    check: str
    status: int
    message: str
    example: str  # a curl command

    def to_dict(self) -> dict[str, Any]:
        return vars(self)


@dataclass
class FuzzReport:
    role: str
    examples_per_operation: int
    operations: list[str] = field(default_factory=list)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    findings: dict[tuple[str, str, int], Finding] = field(default_factory=dict)
    failures_by_check: Counter[str] = field(default_factory=Counter)  # every failing case, not just the first
    no_negative_cases: list[str] = field(default_factory=list)  # operations with nothing to violate
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, finding: Finding) -> None:
        self.failures_by_check[finding.check] += 1
        self.findings.setdefault((finding.operation, finding.check, finding.status), finding)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role, "examples_per_operation": self.examples_per_operation,
            "operations": len(self.operations), "cases": self.cases, "seconds": round(self.seconds, 1),
            "server_errors": self.server_errors, "statuses": dict(sorted(self.statuses.items())),
            "failures_by_check": dict(self.failures_by_check),
            "findings": [f.to_dict() for f in self.findings.values()],
            "by_operation": {op: dict(sorted(c.items())) for op, c in self.by_operation.items()},
        }

    def summary(self) -> str:
        lines = [f"{self.role}: {len(self.operations)} operations, {self.cases} cases in {self.seconds:.0f} s, "
                 f"statuses {dict(sorted(self.statuses.items()))}, {len(self.findings)} findings"]
        lines += [f"  {f.operation} [{f.check}] {f.status}: {f.message.splitlines()[0][:200]}\n    {f.example}"
                  for f in self.findings.values()]
        return "\n".join(lines)


# -- seeding -------------------------------------------------------------------------------------------------------


@dataclass
class Keys:
    admin: str
    member: str
    member_key_id: str
    member_user_id: str
    group_name: str


class Seeder:
    """Creates what the path parameters name, through the API (so the ids are those a client would see)."""

    def __init__(self, keys: Keys, role: str, *, app: Any = None, base_url: str | None = None) -> None:
        self.app = app
        self.base_url = base_url or "http://seed"
        self.keys = keys
        self.role = role
        self.caller = keys.admin if role == "admin" else keys.member
        self._n = 0
        self._collection_name = ""

    async def _call(self, key: str, method: str, path: str, **kw: Any) -> Any:
        transport = httpx.ASGITransport(app=self.app) if self.app is not None else None
        async with httpx.AsyncClient(transport=transport, base_url=self.base_url, timeout=60) as c:
            r = await c.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)
        if r.status_code >= 400:
            raise SeedingFailed(f"seeding {method} {path} failed: {r.status_code} {r.text[:300]}")
        return r.json()

    async def pool(self, previous: Mapping[str, list[str]] | None = None,
                   kinds: Iterable[str] | None = None) -> dict[str, list[str]]:
        """New resources of the ``kinds`` named (path parameter names; all when None, or without ``previous``) and
        of those made inside them (a collection's documents and support sessions): path parameter name → ids; the
        other kinds keep their ``previous`` ids. A kind that cannot be made any more (the fuzzer filled a quota:
        keys per user, conversations, sessions per key) keeps its previous ids too."""
        self._n += 1
        n, admin, caller = self._n, self.keys.admin, self.caller
        out: dict[str, list[str]] = {"name": static_names(), "model_id": [_MODEL, EMBEDDING_MODEL],
                                     **(previous or {})}
        wanted = set(KINDS if kinds is None or not previous else kinds)
        wanted |= {inner for kind in list(wanted) for inner in INSIDE.get(kind, ())}

        async def fresh(name: str, make: Any) -> None:
            try:
                out[name] = await make()
            except SeedingFailed:
                if not previous or name not in previous:
                    raise
                out[name] = list(previous[name])

        async def users() -> list[str]:
            return [(await self._call(admin, "POST", "/v1/admin/users", json={"name": f"fuzz-u{n}-{i}"}))["id"]
                    for i in range(2)]

        async def groups() -> list[str]:
            made = [(await self._call(admin, "POST", "/v1/admin/groups", json={"name": f"fuzz-g{n}-{i}"}))["id"]
                    for i in range(2)]
            await self._call(admin, "PUT", f"/v1/admin/groups/{made[0]}/members/{out['user_id'][0]}")
            return made

        async def keys() -> list[str]:
            if self.role == "admin":
                return [(await self._call(admin, "POST", "/v1/admin/keys", json={
                    "name": f"fuzz-k{n}-{i}", "user_id": out["user_id"][i]}))["id"] for i in range(2)]
            # The member's own keys, never the one it calls with; revoke the fuzzer's earlier ones when full.
            mine = (await self._call(caller, "GET", "/v1/keys"))["data"]
            active = [k["id"] for k in mine if k["revoked_at"] is None and k["id"] != self.keys.member_key_id]
            for key_id in active[:-4] if len(active) > 20 else []:
                await self._call(caller, "DELETE", f"/v1/keys/{key_id}")
            return [(await self._call(caller, "POST", "/v1/keys", json={"name": f"fuzz-k{n}-{i}"}))["id"]
                    for i in range(2)]

        async def collections() -> list[str]:
            # Collections the member's group may use, each with a document the caller uploaded.
            made = [(await self._call(admin, "POST", "/v1/collections", json={
                "name": f"fuzz-c{n}-{i}", "access": {"groups": [self.keys.group_name]}}))["id"] for i in range(2)]
            self._collection_name = f"fuzz-c{n}-0"
            return made

        async def documents() -> list[str]:
            return [(await self._call(caller, "POST", f"/v1/collections/{col}/documents", files={
                "file": (f"note-{n}.md", f"# Note {n}\n\nThe fuzz run {n} wrote this.\n".encode())}))["id"]
                for col in out["collection_id"]]

        async def conversations() -> list[str]:
            return [(await self._call(caller, "POST", "/v1/conversations", json={
                "title": f"fuzz {n}", "messages": [{"role": "user", "content": "hello"}]}))["id"]]

        async def events() -> list[str]:
            return [(await self._call(caller, "POST", "/v1/apps/schedule/events", json={
                "title": f"fuzz {n}", "start": f"2031-03-{1 + n % 27:02d} 10:00",
                "duration_minutes": 30}))["event"]["id"]]

        async def sessions() -> list[str]:
            return [(await self._call(caller, "POST", "/v1/apps/support/sessions", json={
                "collections": [self._collection_name]}))["id"]]

        async def responses() -> list[str]:
            return [(await self._call(caller, "POST", "/v1/responses", json={
                "model": _MODEL, "input": f"fuzz {n}", "max_output_tokens": 8, "store": True}))["id"]]

        makers = {"user_id": users, "group_id": groups, "key_id": keys, "collection_id": collections,
                  "document_id": documents, "conversation_id": conversations, "event_id": events,
                  "session_id": sessions, "response_id": responses}
        for name in KINDS:  # in this order: groups take a user, documents and sessions a collection
            if name in wanted:
                await fresh(name, makers[name])
        return out


# The kinds of resource the path parameters name, in the order they are made; and what lives inside a kind.
KINDS = ("user_id", "group_id", "key_id", "collection_id", "document_id", "conversation_id", "event_id",
         "session_id", "response_id")
INSIDE = {"collection_id": ("document_id", "session_id")}


class SeedingFailed(RuntimeError):
    pass


def static_names() -> list[str]:
    folder = resources.files("inhouse.web").joinpath("static")
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))[:3]


def create_callers(services: Any) -> Keys:
    """An admin key, and a member user in a group with its own key."""
    _, admin = services.keys.create_key("fuzz admin", role="admin")
    by = services.keys.authenticate(admin)
    user = services.directory.create_user("fuzz-member", by=by)
    group = services.directory.create_group("fuzz-team", by=by)
    services.directory.add_member(group.id, user.id, by=by)
    member_rec, member = services.keys.create_key("fuzz member", user_id=user.id, by=by)
    return Keys(admin, member, member_rec.id, user.id, group.name)


# -- the run -------------------------------------------------------------------------------------------------------


def run_fuzz(doc: Mapping[str, Any], keys: Keys, *, role: str, examples: int, seed: int = 0,
             only: Iterable[str] = (), app: Any = None, base_url: str | None = None) -> FuzzReport:
    """Fuzz every operation of ``doc`` (the app's OpenAPI description) as ``role`` ('admin' or 'member') with
    ``examples`` cases per operation (half schema-valid, half schema-violating), either over HTTP against a running
    server at ``base_url`` or in-process against the ASGI ``app``. ``only``: operation labels (``"POST
    /v1/search"``) to limit the run to. The same ``seed`` and description give the same cases."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import load_all_checks
    from schemathesis.core.result import Ok

    if (app is None) == (base_url is None):
        raise ValueError("run_fuzz needs exactly one of app and base_url")
    load_all_checks()
    checks = _checks_by_name(CHECKS)
    seeder = Seeder(keys, role, app=app, base_url=base_url)
    headers = {"Authorization": f"Bearer {seeder.caller}"}
    own_key = keys.member_key_id if role == "member" else None
    ids: dict[str, list[str]] = asyncio.run(seeder.pool())
    report = FuzzReport(role, examples)
    # An explicit configuration (never a schemathesis.toml found in the working directory): a refusal of
    # schema-violating input is any of our 4xx, 413 (too large) included.
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]}}})
    schema = schemathesis.openapi.from_dict(copy.deepcopy(dict(doc)), config=config)
    if app is not None:
        schema.app = app
    started = time.monotonic()
    wanted = set(only)
    with requests.Session() as session, _logged_tracebacks() as logged:
        call = Call(headers, base_url, session if base_url else None, logged)
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                raise RuntimeError(f"an operation of our own description is invalid: {result.err()}")
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            if wanted and label not in wanted:
                continue
            report.operations.append(label)
            one = _case_runner(report, label, ids, own_key, call, checks)
            for mode, n in ((GenerationMode.POSITIVE, (examples + 1) // 2), (GenerationMode.NEGATIVE, examples // 2)):
                if n == 0:
                    continue
                test = settings(max_examples=n, deadline=None, database=None, derandomize=False, print_blob=False,
                                suppress_health_check=list(HealthCheck))(given(operation.as_strategy(mode))(one))
                try:
                    hypothesis_seed(_seed_of(seed, label, mode))(test)()
                except Unsatisfiable:  # nothing to violate: an operation without parameters or body
                    report.no_negative_cases.append(label)
            named = set(re.findall(r"\{(\w+)\}", operation.path))
            if operation.method.upper() in ("POST", "PUT", "PATCH", "DELETE") and named & set(KINDS):
                # It may have deleted, revoked or changed the ids it was given: new ones of those kinds, in place
                # (`one` holds this dict). A write with no id in its path leaves the others as they were.
                ids.update(asyncio.run(seeder.pool(ids, named)))
    report.seconds = time.monotonic() - started
    return report


@dataclass
class Call:
    """How a case is sent: the caller's headers, over HTTP (``base_url`` and a kept-alive ``session``) or to the
    schema's ASGI app; ``logged`` collects what the server logs with a traceback meanwhile."""
    headers: Mapping[str, str]
    base_url: str | None
    session: Any
    logged: list[logging.LogRecord]

    def send(self, case: Any) -> Any:
        if self.base_url is None:
            return case.call(headers=dict(self.headers))
        return case.call(base_url=self.base_url, session=self.session, headers=dict(self.headers), timeout=60)


class _TracebackCollector(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.into.append(record)


@contextmanager
def _logged_tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Records logged with a traceback (or at ERROR and above) while the block runs, by the app (the root logger)
    and by uvicorn (whose loggers do not propagate), when the server runs in this process."""
    records: list[logging.LogRecord] = []
    handler = _TracebackCollector(records)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield records
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def _case_runner(report: FuzzReport, label: str, ids: Mapping[str, list[str]], own_key: str | None,
                 call: Call, checks: list[Any]) -> Any:
    """What runs for each generated case of one operation: call, count, check, record."""
    from schemathesis.core.failures import FailureGroup

    counts = report.by_operation.setdefault(label, Counter())
    numbers = itertools.count()

    def one(case: Any) -> None:
        if next(numbers) % KEEP_GENERATED_ONE_IN:
            _use_real_ids(case, ids, own_key)
        headers = call.headers
        logged_before = len(call.logged)
        try:
            response = call.send(case)
        except Exception as exc:  # the app raised through every handler, or the server dropped the connection
            report.add(Finding(label, SERVER_ERROR, 0, f"{type(exc).__name__}: {exc}", _curl(case, headers)))
            return
        report.cases += 1
        report.statuses[response.status_code] += 1
        counts[response.status_code] += 1
        for finding in _our_checks(label, case, response, call.logged[logged_before:]):
            report.add(finding)
        try:
            case.validate_response(response, checks=checks, headers=dict(headers))
        except (FailureGroup, Exception) as exc:
            for failure in getattr(exc, "exceptions", [exc]):
                if _check_name(failure) == "negative_data_rejection" and not _violates_on_the_wire(case):
                    continue
                title, detail = getattr(failure, "title", ""), getattr(failure, "message", "")
                detail += _mutation_of(case)
                report.add(Finding(label, _check_name(failure), response.status_code,
                                   f"{title}: {detail}"[:1000] if title else str(failure)[:1000], _curl(case, headers)))

    return one


def _use_real_ids(case: Any, ids: Mapping[str, list[str]], own_key_id: str | None) -> None:
    """Replace generated path parameters with seeded ids (picked by the generated value, so they vary)."""
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        pool = [i for i in ids.get(name, []) if i != own_key_id]
        if pool:
            h = int(hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest(), 16)
            params[name] = pool[h % len(pool)]


def _our_checks(label: str, case: Any, response: Any, logged: list[logging.LogRecord]) -> list[Finding]:
    status = response.status_code
    found = []
    if status >= 500:
        found.append(Finding(label, SERVER_ERROR, status, _text(response), _curl(case)))
    if status == 422:
        found.append(Finding(label, UNPROCESSABLE, status, _text(response), _curl(case)))
    if status >= 400 and not _is_error_shape(response):
        found.append(Finding(label, ERROR_SHAPE, status, _text(response), _curl(case)))
    body = bytes(response.content[:200_000]).decode("utf-8", "replace")
    sent = _sent_text(case)
    # A mark that the request itself carried is an echo of the caller's own text (a stored message), not a leak.
    if any(mark in body and mark not in sent for mark in _TRACEBACK_MARKS):
        found.append(Finding(label, TRACEBACK, status, f"in the body: {_text(response)}", _curl(case)))
    for record in logged:
        found.append(Finding(label, TRACEBACK, status, f"logged by {record.name}: {_logged_text(record)}",
                             _curl(case)))
    return found


def _sent_text(case: Any) -> str:
    """Everything the case sent that an answer may echo: its body, query and path parameters, as text."""
    parts = [getattr(case, name, None) for name in ("body", "query", "path_parameters")]
    return json.dumps([p for p in parts if p is not None], ensure_ascii=False, default=str)


def _logged_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
    return text[:500]


def _violates_on_the_wire(case: Any) -> bool:
    """Whether a schema-violating case still violates the schema as sent. Not when its only violations were
    the ``Authorization`` header (the fuzzer sends its caller's key instead), a type or format change of a
    multipart field (``1`` and ``"1"`` are the same text in a form, and any bytes are a ``binary`` file), or
    query parameters the operation does not declare
    (ignored by design, as most HTTP APIs do; OpenAPI cannot say so, schemathesis issue 3730)."""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    mutations = getattr(data, "mutations", None)
    if not mutations:
        return True
    multipart = (case.media_type or "").startswith("multipart/")
    for m in mutations:
        where = str(getattr(m.parameter_location, "value", m.parameter_location))
        if where == "header" and str(m.parameter).lower() == "authorization":
            continue
        if where == "body" and multipart and tuple(m.keywords) in (("type",), ("format",)):
            continue
        if where == "query" and tuple(m.keywords) == ("additionalProperties",):
            continue
        return True
    return False


def _mutation_of(case: Any) -> str:
    """What a schema-violating case changed (schemathesis records it on the case)."""
    data = getattr(getattr(getattr(case, "meta", None), "phase", None), "data", None)
    parts = [getattr(data, "description", None) or ""]
    for m in getattr(data, "mutations", ()) or ():
        parts.append(f"{getattr(m, 'parameter_location', '')}:{'/'.join(map(str, getattr(m, 'path', ())))} "
                     f"{getattr(m, 'keywords', '')}")
    text = "; ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _text(response: Any) -> str:
    return bytes(response.content[:300]).decode("utf-8", "replace")


def _is_error_shape(response: Any) -> bool:
    if not response.headers.get("content-type", [""])[0].startswith("application/json"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    err = body.get("error") if isinstance(body, dict) else None
    return (set(body) == {"error"} and isinstance(err, dict) and set(err) == {"message", "type", "code", "param"}
            and all(isinstance(err[k], str) for k in ("message", "type", "code"))
            and (err["param"] is None or isinstance(err["param"], str)))


def _checks_by_name(names: Iterable[str]) -> list[Any]:
    from schemathesis.checks import CHECKS as REGISTRY

    by_name = {f.__name__: f for f in REGISTRY.get_all()}
    return [by_name[n] for n in names]


def _check_name(failure: Any) -> str:
    checks = getattr(failure, "checks", ())
    return str(checks[0]) if checks else type(failure).__name__


def _curl(case: Any, headers: Mapping[str, str] | None = None) -> str:
    try:
        text = str(case.as_curl_command(headers=dict(headers or {})))
    except Exception:
        text = f"{case.method} {case.formatted_path}"
    return text.replace(str((headers or {}).get("Authorization", "\0")), "Bearer <key>")[:2000]


def _seed_of(seed: int, label: str, mode: Any) -> int:
    return int(hashlib.sha256(f"{seed}|{label}|{mode}".encode()).hexdigest()[:8], 16)
