"""The web UI's server side: page shells with a strict CSP and no inline code, the static files, the sign-in
form that works without JavaScript, the language choice, and the string tables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import route_actions
from inhouse.web.routes import CSP, PAGES, available_apps, load_strings

WEB = Path(__file__).resolve().parents[3] / "src" / "inhouse" / "web"


@pytest.fixture
def web(services: Any) -> TestClient:
    return TestClient(build_app(services))


def test_routes_declare_public_web_actions(services: Any) -> None:
    table = route_actions(build_app(services))
    for path in [*PAGES, "/signin", "/static/{name}"]:
        assert table[("GET", path)] == ["web:read"], path
    assert table[("POST", "/signin")] == ["web:signin"]


@pytest.mark.parametrize("path", [*PAGES, "/signin"])
def test_pages_have_a_strict_csp_and_no_inline_code(web: TestClient, path: str) -> None:
    r = web.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
    for attrs, body in scripts:
        # Code only from files; the one inline element is inert JSON data.
        assert ("src=" in attrs and not body.strip()) or 'type="application/json"' in attrs, attrs
    assert not re.search(r"\son[a-z]+=", r.text), "inline event handler"
    assert "style=" not in r.text


def test_static_files_are_served_with_an_etag_and_only_from_the_folder(web: TestClient) -> None:
    r = web.get("/static/app.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert web.get("/static/app.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    for bad in ("/static/..%2Froutes.py", "/static/nope.js", "/static/%2e%2e%2fi18n.json"):
        resp = web.get(bad)
        assert resp.status_code == 404 and set(resp.json()["error"]) == {"message", "type", "code", "param"}


def test_sign_in_form_without_javascript(web: TestClient, services: Any) -> None:
    empty = web.post("/signin", data={"key": " "})
    assert empty.status_code == 200 and "Enter your API key." in empty.text
    wrong = web.post("/signin", data={"key": "ih_abc_def"})
    assert "This API key is not valid" in wrong.text and 'aria-invalid="true"' in wrong.text
    rec, secret = services.keys.create_key("temp")
    services.keys.revoke(rec.id)
    assert "has been revoked" in web.post("/signin", data={"key": secret}).text
    ok = web.post("/signin", data={"key": services.member_key})
    assert "needs JavaScript" in ok.text and services.member_key not in ok.text
    assert "set-cookie" not in ok.headers  # no cookie auth: nothing to forge
    too_long = web.post("/signin", data={"key": "x" * 600})
    assert too_long.status_code == 400
    # Refusals answered with the page (200, for the browser) are "denied" in the audit log, as on the API: an
    # administrator looking for key guessing saw them as successes.
    signins = services.audit.records(action="web:signin")
    assert [(r.outcome, r.reason) for r in signins] == [
        ("denied", "missing_api_key"), ("denied", "invalid_api_key"), ("denied", "revoked_api_key"),
        ("success", None), ("failure", signins[-1].reason)], [(r.outcome, r.reason) for r in signins]
    assert signins[3].actor_key_id is not None and signins[1].actor_key_id is None


def test_sign_in_for_scripts_answers_json(web: TestClient, services: Any) -> None:
    h = {"Accept": "application/json"}
    bad = web.post("/signin", data={"key": "nope"}, headers=h).json()
    assert bad == {"ok": False, "message": "This API key is not valid. Check it and try again."}
    good = web.post("/signin", data={"key": services.admin_key}, headers=h).json()
    assert good["ok"] is True and good["actor"]["role"] == "admin" and "secret" not in json.dumps(good)
    pasted = web.post("/signin", data={"key": f" {services.admin_key}\r\n"}, headers=h).json()
    assert pasted["ok"] is True  # a key pasted with its line end
    # Not other control characters: the API refuses a key with \x1f appended (tests/e2e/test_auth_fuzz.py).
    assert web.post("/signin", data={"key": services.admin_key + "\x1f"}, headers=h).json()["ok"] is False


def test_language_from_cookie_then_accept_language(web: TestClient) -> None:
    assert '<html lang="en"' in web.get("/signin").text
    assert '<html lang="zh-CN"' in web.get("/signin", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    web.cookies.set("inhouse_lang", "en")
    assert '<html lang="en"' in web.get("/signin", headers={"Accept-Language": "zh-CN"}).text
    web.cookies.set("inhouse_lang", "zh")
    page = web.get("/signin").text
    assert "登录" in page and '"signin.invalid": "此 API 密钥无效' in page


def test_embedded_strings_cannot_close_the_script_element(services: Any) -> None:
    from inhouse.web.routes import _json_for_script

    assert "</script>" not in _json_for_script({"x": "</script><script>alert(1)</script>"})


def test_every_string_used_exists_in_both_languages() -> None:
    strings = load_strings(WEB / "i18n.json")
    used = set()
    for path in (WEB / "templates").glob("*.html"):
        used |= set(re.findall(r"t\('([a-z_.]+)'\)", path.read_text()))
    for path in (WEB / "static").glob("*.js"):
        used |= set(re.findall(r"\bt\(\"([a-z_.]+[a-z])\"", path.read_text()))
    used |= {f"admin.tab_{t}" for t in ("overview", "users", "groups", "keys", "policies", "audit")}
    used |= {f"admin.chart_{c}" for c in ("tokens", "queue", "ttft", "dest")}
    missing = sorted(k for k in used if k not in strings["en"])
    assert not missing, missing


def test_no_script_builds_html_from_strings() -> None:
    for path in (WEB / "static").glob("*.js"):
        text = re.sub(r"/\*.*?\*/|^\s*//.*$|\s//\s.*$", "", path.read_text(), flags=re.S | re.M)  # no comments
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert banned not in text, f"{path.name} uses {banned}"


def test_assistant_cards_follow_the_registered_routes() -> None:
    class R:
        def __init__(self, path: str) -> None:
            self.path = path

    assert available_apps([R("/v1/apps/minutes"), R("/v1/apps/support/sessions"), R("/v1/models")]) == {
        "minutes", "support"}
