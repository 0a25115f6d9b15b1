"""``POST /v1/apps/minutes`` and ``/v1/apps/outline`` in-process on the fake engine: JSON and multipart bodies,
the three export formats, the permission, and bad input answered 4xx in the one error shape (never 500)."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.apps.ics import read_ics
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text

MODEL = "fake-model"
TRANSCRIPT = """Meeting: Launch sync
Date: 2026-10-28
Attendees: Mei Lin, Sofia Reyes

[00:10] Mei Lin: Decision: the launch moves to December 2.
[00:20] Mei Lin: Sofia, please send the pricing sheet to finance by next Friday.
[00:30] Sofia Reyes: Will do.
"""
WINDOW = {"action_items": [{"line": 2, "owner": "Sofia", "task": "Send the pricing sheet to finance",
                            "due": "next Friday"}],
          "decisions": [{"line": 1, "decision": "The launch moves to December 2."}], "open_questions": [],
          "next_meeting": {"line": 0, "when": ""}, "title": "Launch", "summary": "The launch moved."}


def canned(responder: Callable[[str], str]) -> Callable[[ScriptInput], int]:
    replies: dict[str, list[int]] = {}

    def script(inp: ScriptInput) -> int:
        if inp.request_id not in replies:
            replies[inp.request_id] = encode_text(responder(decode_tokens(inp.prompt)))
        toks = replies[inp.request_id]
        return toks[len(inp.generated)] if len(inp.generated) < len(toks) else EOS_ID

    return script


def minutes_reply(prompt: str) -> str:
    if "Transcript lines" in prompt:
        return json.dumps(WINDOW)
    if "key points" in prompt:
        return json.dumps({"key_points": ["Annual leave is 15 days per year.", "Unicorns run the payroll."]})
    return json.dumps({"title": "t", "summary": "s"})


@pytest.fixture
def api(make_services: Any) -> tuple[TestClient, Any]:
    s = make_services(fake={"n_ctx": 16384, "script": canned(minutes_reply)})
    s.settings.apps.model = MODEL
    return TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}), s


def test_json_body_returns_verified_minutes(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    r = client.post("/v1/apps/minutes", json={"text": TRANSCRIPT, "filename": "sync.txt"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["title"] == "Launch sync" and data["meeting_date"] == "2026-10-28"
    assert data["action_items"] == [{
        "owner": "Sofia Reyes", "task": "Send the pricing sheet to finance", "due": "2026-11-06",
        "due_text": "next Friday", "flags": [],
        "evidence": [{"line": 2, "timestamp": "00:20", "speaker": "Mei Lin",
                      "text": "Sofia, please send the pricing sheet to finance by next Friday.", "source_line": 6}]}]
    assert [d["text"] for d in data["decisions"]] == ["The launch moves to December 2."]


def test_assistant_tokens_count_against_the_daily_quota(api: tuple[TestClient, Any]) -> None:
    client, services = api
    rec, secret = services.keys.create_key("metered", tokens_per_day_limit=1_000_000)
    r = client.post("/v1/apps/minutes", json={"text": TRANSCRIPT}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    used = services.quotas.status(rec.id).tokens_used_today
    assert used > len(TRANSCRIPT) // 8  # every model call of the pipeline: the prompt holds the whole transcript
    services.keys.set_limits(rec.id, rpm_limit=None, tokens_per_day_limit=used)
    r = client.post("/v1/apps/minutes", json={"text": TRANSCRIPT}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"


def test_multipart_upload_and_formats(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    files = {"file": ("2026-10-28-sync.vtt", b"WEBVTT\n\n00:00:10.000 --> 00:00:12.000\n" + TRANSCRIPT.split(
        "\n\n")[1].encode().replace(b"\n", b" "), "text/vtt")}
    r = client.post("/v1/apps/minutes?format=md", files=files, data={"attendees": "Mei Lin, Sofia Reyes"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# ")
    r = client.post("/v1/apps/minutes?format=ics", json={"text": TRANSCRIPT})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    (todo,) = read_ics(r.text)
    assert todo.kind == "VTODO" and str(todo.due) == "2026-11-06"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"json": {"text": ""}}, "invalid_request"),
    ({"json": {"text": "Meeting: nothing said\n"}}, "invalid_request"),
    ({"json": {"txt": "typo"}}, "invalid_request"),
    ({"json": {"text": "A: hi", "meeting_date": "soon"}}, "invalid_request"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "invalid_request"),
    ({"files": {"file": ("x.mp3", b"definitely not audio" * 20, "audio/mpeg")}}, "document_rejected"),
    ({"files": {"other": ("x.txt", b"A: hi", "text/plain")}}, "invalid_request"),
])
def test_bad_input_is_4xx_in_the_error_shape(api: tuple[TestClient, Any], kwargs: dict[str, Any], code: str) -> None:
    client, _ = api
    r = client.post("/v1/apps/minutes", **kwargs)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["code"] == code


def test_silent_audio_is_a_clear_400(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000)
    r = client.post("/v1/apps/minutes", files={"file": ("quiet.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_speech"


def test_garbage_model_output_is_not_a_500(make_services: Any) -> None:
    s = make_services(fake={"n_ctx": 16384, "script": canned(lambda prompt: "<<garbage>>")})
    s.settings.apps.model = MODEL
    client = TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"})
    r = client.post("/v1/apps/minutes", json={"text": TRANSCRIPT})
    assert r.status_code == 503 and r.json()["error"]["code"] == "invalid_model_output"
    assert "not valid JSON" in r.json()["error"]["message"]


def test_bad_format_and_missing_key(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    assert client.post("/v1/apps/minutes?format=pdf", json={"text": TRANSCRIPT}).status_code == 400
    anon = TestClient(client.app)
    assert anon.post("/v1/apps/minutes", json={"text": TRANSCRIPT}).status_code == 401
    assert anon.post("/v1/apps/outline", json={"text": "# A"}).status_code == 401


def test_outline_from_markdown(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    doc = ("# HR Handbook\n\n## Leave\n\nEmployees get annual leave of 15 days per year.\n\n### Sick leave\n\n"
           "Sick leave needs a note after 3 days.\n\n## Travel\n\nBook trains in second class.\n")
    r = client.post("/v1/apps/outline", json={"text": doc, "filename": "handbook.md"})
    assert r.status_code == 200, r.text
    data = r.json()
    (root,) = data["sections"]
    assert root["title"] == "HR Handbook" and [c["ref"] for c in root["children"]] == ["1.1", "1.2"]
    leave = root["children"][0]
    assert leave["children"][0]["ref"] == "1.1.1" and leave["children"][0]["title"] == "Sick leave"
    assert leave["key_points"] == ["Annual leave is 15 days per year."]  # the unicorn is not in the text
    assert leave["rejected_points"] == 1
    r = client.post("/v1/apps/outline?format=md", files={"file": ("handbook.md", doc.encode(), "text/markdown")},
                    data={"key_points": "false"})
    assert r.status_code == 200 and "### 1.1 Leave" in r.text and "- " not in r.text
    assert client.post("/v1/apps/outline", json={"text": " "}).status_code == 400
    bad = client.post("/v1/apps/outline", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * 50, "image/png")})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "document_rejected"


def test_uploaded_file_names_are_decoded_and_one_file_per_request(api: tuple[TestClient, Any]) -> None:
    """The name a browser sends for 'Q3 "draft".md' is 'Q3 %22draft%22.md' (WHATWG multipart/form-data): the outline
    and the minutes' messages name the file as the user knows it. Two files in one request are a 400, never one
    silently dropped."""
    client, _ = api
    r = client.post("/v1/apps/outline", files={"file": ('Q3 "draft".md', b"# Q3 draft\n\nShip it.\n", "text/markdown")},
                    data={"key_points": "false"})
    assert r.status_code == 200 and r.json()["filename"] == 'Q3 "draft".md', r.text
    r = client.post("/v1/apps/minutes", files={"file": ('Q3 "sync" 100%25.txt', b"\xff\xfe not UTF-8", "text/plain")})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith('Q3 "sync" 100%25.txt:'), r.text
    two = [("file", ("a.txt", b"A: one", "text/plain")), ("file", ("b.txt", b"B: two", "text/plain"))]
    for path in ("/v1/apps/minutes", "/v1/apps/outline"):
        r = client.post(path, files=two)
        assert r.status_code == 400, (path, r.text)
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
        assert "Maximum number of files is 1" in r.json()["error"]["message"]



def test_an_attendee_with_line_breaks_adds_nothing_to_the_ics_export(make_services: Any) -> None:
    """Minutes' attendees (a comma-separated form field, or JSON) reach the .ics writer unchecked, on the next
    meeting's event: the writer keeps a name on one line, so the file holds what the meeting said and nothing more."""
    window = {**WINDOW, "next_meeting": {"line": 4, "when": "2026-11-04 10:00"}}
    s = make_services(fake={"n_ctx": 16384, "script": canned(
        lambda prompt: json.dumps(window) if "Transcript lines" in prompt else minutes_reply(prompt))})
    s.settings.apps.model = MODEL
    client = TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"})
    text = TRANSCRIPT + "[00:40] Mei Lin: Next meeting on 2026-11-04 at 10:00.\n"
    evil = "Bob Lee\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil-1\r\nSUMMARY:Wire transfer\r\nDTSTART:20261105T090000Z"
    for body in ({"json": {"text": text, "attendees": ["Mei Lin", "Sofia Reyes", evil]}},
                 {"files": {"file": ("sync.txt", text.encode(), "text/plain")},
                  "data": {"attendees": f"Mei Lin, Sofia Reyes, {evil}"}}):
        r = client.post("/v1/apps/minutes?format=ics", **body)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        assert sorted(i.kind for i in read_ics(r.text)) == ["VEVENT", "VTODO"], r.text
        (event,) = [i for i in read_ics(r.text) if i.kind == "VEVENT"]
        assert event.attendees[-1] == evil.replace("\r\n", " ") and "\r\nUID:evil-1\r\n" not in r.text
