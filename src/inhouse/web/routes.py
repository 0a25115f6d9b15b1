"""The web UI: server-rendered page shells, static assets, and a sign-in form that works without JavaScript.

The pages hold no data. Their scripts call the same ``/v1/…`` API as any client, with the API key the person
typed (kept in ``sessionStorage``, never in a URL or a cookie), so the UI has no authority of its own and no
cookie auth to protect against CSRF. Every page carries a strict Content-Security-Policy: scripts and styles
only from this origin, no inline code, images only from here or ``data:``, no framing.

Routes (each declares an action like every other route): ``GET /``, ``/documents``, ``/assistants``,
``/admin`` (page shells), ``GET|POST /signin``, ``GET /static/{name}``, and ``GET /assistants/widget-preview``: a
stand-in customer page running the real support widget (``/widget.js``) with the signed-in key, framed by the
Assistants page. It is the one page that may be framed, and only by this origin (``frame-ancestors 'self'``).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Form, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, Response

from inhouse.api.audit_trail import request_audit
from inhouse.api.auth import public
from inhouse.api.openapi import errors, media
from inhouse.errors import AuthenticationFailed, NotFound
from inhouse.types import ANONYMOUS_ADMIN, Actor

if TYPE_CHECKING:
    from inhouse.services import Services

HERE = Path(__file__).parent
LANGS = ("en", "zh")
LANG_COOKIE = "inhouse_lang"

CSP = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; script-src 'self'; style-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# The widget preview is framed by the Assistants page: same policy, but framing by this origin is allowed.
PREVIEW_HEADERS = {**PAGE_HEADERS, "X-Frame-Options": "SAMEORIGIN",
                   "Content-Security-Policy": CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")}
PREVIEW_PATH = "/assistants/widget-preview"
# The shells of the signed-in part; each names its template and its page script.
PAGES = {"/": "chat", "/documents": "documents", "/assistants": "assistants", "/admin": "admin"}
_SIGNIN_ERRORS = {"revoked_api_key": "signin.revoked", "expired_api_key": "signin.expired"}
_MAX_KEY_CHARS = 512
# A key as pasted: spaces, tabs and a line end around it; not other control characters, which the API refuses too
# (a key with \x1f appended is not the key: tests/e2e/test_auth_fuzz.py).
_PASTED = " \t\r\n"
SIGNIN_JSON = {"type": "object", "required": ["ok"], "properties": {
    "ok": {"type": "boolean"}, "message": {"type": ["string", "null"]}, "actor": {"type": "object"}}}


@dataclass(frozen=True)
class Asset:
    data: bytes
    media_type: str
    etag: str


def load_assets(folder: Path) -> dict[str, Asset]:
    """Every file of ``static/`` read once at start-up: only these names can ever be served."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media.startswith("text/") or media in ("application/javascript", "image/svg+xml"):
                media += "; charset=utf-8"
            assets[path.name] = Asset(data, media, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    return assets


def load_strings(path: Path) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    missing = set(table["en"]) ^ set(table["zh"])
    if missing:  # a half-translated interface is a bug: refuse to start with one
        raise ValueError(f"i18n keys present in one language only: {sorted(missing)}")
    return table


def pick_lang(request: Request) -> str:
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGS:
        return cookie
    accept = request.headers.get("accept-language", "").lower()
    return "zh" if accept.startswith("zh") else "en"


def available_apps(routes: Any) -> set[str]:
    """Assistants whose API is registered on this app (``/v1/apps/<name>…``): their cards say so."""
    names = set()
    for route in routes:
        parts = str(getattr(route, "path", "")).split("/")
        if len(parts) > 3 and parts[1:3] == ["v1", "apps"]:
            names.add(parts[3])
    return names


def _json_for_script(value: Any) -> str:
    # Embedded in <script type="application/json">: "<" escaped so no string can close the element.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


class WebUI:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.assets = load_assets(HERE / "static")
        self.strings = load_strings(HERE / "i18n.json")
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True)
        # Asset URLs carry their content hash so a new release is never served from a stale cache.
        self.version = hashlib.sha256(b"".join(a.etag.encode() for a in self.assets.values())).hexdigest()[:10]

    def render(self, request: Request, template: str, *, status: int = 200,
               headers: dict[str, str] = PAGE_HEADERS, **ctx: Any) -> HTMLResponse:
        lang = pick_lang(request)
        strings = self.strings[lang]
        t: Callable[[str], str] = lambda key: strings.get(key, key)  # noqa: E731
        html = self.env.get_template(template).render(
            lang=lang, t=t, v=self.version, strings_json=_json_for_script(strings), **ctx)
        return HTMLResponse(html, status_code=status, headers=headers)

    def check_key(self, key: str) -> Actor:
        if self.services.settings.server.allow_unauthenticated:
            return ANONYMOUS_ADMIN
        return self.services.keys.authenticate(key)

    def who(self, actor: Actor) -> dict[str, Any]:
        user = None
        if actor.user_id:
            try:
                u = self.services.directory.get_user(actor.user_id)
                user = {"id": u.id, "name": u.name, "display_name": u.display_name}
            except NotFound:
                user = None
        return {"key_id": actor.key_id, "name": actor.name, "role": actor.role, "groups": sorted(actor.groups),
                "user": user}


def add_web_routes(router: APIRouter, services: Services) -> None:
    ui = WebUI(services)
    read = [Depends(public("web:read"))]

    def page(name: str) -> Callable[[Request], Any]:
        async def handler(request: Request) -> HTMLResponse:
            return ui.render(request, f"{name}.html", page=name, available=available_apps(request.app.routes))

        handler.__name__ = f"web_{name}"
        return handler

    for path, name in PAGES.items():
        router.add_api_route(path, page(name), methods=["GET"], dependencies=read, response_class=HTMLResponse,
                             tags=["web"])

    @router.get(PREVIEW_PATH, dependencies=read, response_class=HTMLResponse, tags=["web"])
    async def widget_preview(request: Request) -> HTMLResponse:
        # A shell like the others: the key, the collections and the title come from the framing page's script.
        return ui.render(request, "widget_preview.html", page="widget-preview", headers=PREVIEW_HEADERS)

    @router.get("/signin", dependencies=read, response_class=HTMLResponse, tags=["web"])
    async def signin_page(request: Request) -> HTMLResponse:
        return ui.render(request, "signin.html", page="signin")

    @router.post("/signin", dependencies=[Depends(public("web:signin"))], response_class=HTMLResponse, tags=["web"],
                 response_model=None, responses={200: {"description": "The page again, or with `Accept: "
                                                       "application/json` whether the key is good.",
                                                       "content": {"application/json": {"schema": SIGNIN_JSON}}}})
    async def signin(request: Request, key: str = Form("", max_length=_MAX_KEY_CHARS)) -> Response:
        """Check a key. Scripts ask for JSON (200 either way, so a typo is not a console error); the plain
        form gets the page again with the message. The key is never stored or echoed back."""
        wants_json = "application/json" in request.headers.get("accept", "")
        strings = ui.strings[pick_lang(request)]
        error: str | None = None
        actor: Actor | None = None
        key = key.strip(_PASTED)
        if not key:
            error = strings["signin.empty"]
            request_audit(request).refused = "missing_api_key"
        else:
            try:
                actor = await run_in_threadpool(ui.check_key, key)
                request.state.actor = actor  # the audit record of this sign-in names the key
            except AuthenticationFailed as exc:
                error = strings[_SIGNIN_ERRORS.get(exc.code, "signin.invalid")]
                request_audit(request).refused = exc.code  # a wrong key is "denied" in the log, as on the API
        if wants_json:
            body = {"ok": False, "message": error} if actor is None else {"ok": True, "actor": ui.who(actor)}
            return JSONResponse(body, headers={"Cache-Control": "no-store"})
        if actor is None:
            # 200, not 401: the page itself is fine (a 401 document is logged by browsers as a console error).
            return ui.render(request, "signin.html", page="signin", error=error)
        return ui.render(request, "signin.html", page="signin", notice=strings["signin.needs_js"])

    @router.get("/static/{name}", dependencies=read, response_class=Response, tags=["web"], response_model=None,
                responses={200: media("*/*", description="A file of the UI."), 304: {"description": "Not modified."},
                           **errors(404, why={404: "No such file."})})
    async def static(name: str, request: Request) -> Response:
        asset = ui.assets.get(name)
        if asset is None:
            raise NotFound(f"No static file '{name}'.")
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.data, media_type=asset.media_type, headers=headers)
