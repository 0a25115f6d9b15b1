"""Word, Excel and PowerPoint 97-2003 files, an Outlook message and an RTF file (its footnote found), uploaded to a
real server over HTTP (multipart), are read, stored and found by search; a password-protected one answers 400 in the one
error shape.

The embedder is the fake (search still has its keyword half); the parsers, store and server are the real ones."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import httpx
import olefile
from live_server import run_live_server
from tests.unit.kb.docfactory import make_docx

from inhouse.testing.outlook import Attachment, Message, outlook_message, write_compound

LEGACY = Path(__file__).parents[1] / "unit" / "kb" / "data" / "legacy"


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def _locked(doc: bytes) -> bytes:
    """The same Word document with its FIB's encryption flag set (Word's "password to open")."""
    ole = olefile.OleFileIO(doc)
    streams = {"/".join(p): ole.openstream(p).read() for p in ole.listdir()}
    word = bytearray(streams["WordDocument"])
    struct.pack_into("<H", word, 0x0A, struct.unpack_from("<H", word, 0x0A)[0] | 0x0100)
    streams["WordDocument"] = bytes(word)
    return write_compound(streams)


def test_legacy_office_files_and_outlook_mail_upload_and_search(tmp_path: Path) -> None:
    mail = outlook_message(Message(
        subject="Travel rules for Q2", sender=("Li Wei", "li.wei@example.com"), to=[("Team", "team@example.com")],
        body="The new reimbursement deadline is ten working days.", sent=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        attachments=[Attachment("rules.docx", make_docx(), "application/octet-stream")]))
    uploads = [("travel.doc", (LEGACY / "travel.doc").read_bytes(), "Travel Rules"),
               ("budget.xls", (LEGACY / "budget.xls").read_bytes(), "Budget 2026"),
               ("deck.ppt", (LEGACY / "deck.ppt").read_bytes(), "Results"),
               ("travel.msg", mail, "Travel rules for Q2"),
               ("notes.rtf", (LEGACY / "notes.rtf").read_bytes(), "Expense Rules")]
    with run_live_server(tmp_path / "live", settings={"kb": {"embedder": "fake"}}) as live, \
            client(live.url, live.admin_key) as http:
        col = http.post("/v1/collections", json={"name": "archive"}).json()["id"]
        for name, data, title in uploads:
            r = http.post(f"/v1/collections/{col}/documents",
                          files={"file": (name, data, "application/octet-stream")})
            assert r.status_code == 201, (name, r.text)
            assert r.json()["title"] == title, r.json()
        for query, source in (("Shanghai hotel limit", "travel.doc"), ("合计", "budget.xls"),
                              ("Mention the new plant", "deck.ppt"), ("reimbursement deadline", "travel.msg"),
                              ("员工出差须提前三天申请", "travel.msg"),  # the mail's Word attachment
                              ("trade fair week hotel limit", "notes.rtf")):  # an RTF footnote
            hits = http.post("/v1/search", json={"query": query, "top_k": 5}).json()["data"]
            assert source in {h["source_path"] for h in hits}, (query, hits)

        r = http.post(f"/v1/collections/{col}/documents",
                      files={"file": ("locked.doc", _locked((LEGACY / "rich.doc").read_bytes()), "application/msword")})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "document_rejected" and "password-protected" in err["message"]
        listed = http.get(f"/v1/collections/{col}/documents").json()["data"]
        assert sorted(d["source_path"] for d in listed) == sorted(name for name, _, _ in uploads)
