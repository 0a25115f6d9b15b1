"""What a real share holds, uploaded to a real server over HTTP: OpenDocument files LibreOffice saved (a text
document, a spreadsheet, slides; the flat single-XML kind too), a ZIP archive of documents with Chinese names, a Big5
text file. Each is read, found by search, and stored no lower than its own markings say.

The embedder is the fake (search still has its keyword half); the parsers, store and server are the real ones."""

from __future__ import annotations

import io
import mailbox
import zipfile
from email.message import EmailMessage
from pathlib import Path

import httpx
from live_server import run_live_server
from tests.unit.kb.docfactory import make_docx, make_watermarked_docx

ODF = Path(__file__).parents[1] / "unit" / "kb" / "data" / "odf"


def test_a_share_of_opendocument_archives_and_big5_uploads_and_keeps_its_labels(tmp_path: Path) -> None:
    with run_live_server(tmp_path / "live", settings={"kb": {"embedder": "fake"}}) as live, \
            httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.admin_key}"}, timeout=120) as http:
        col = http.post("/v1/collections", json={"name": "shared-drive"}).json()["id"]
        uploaded = {}
        for name in ("policy.odt", "payroll.fods", "footer.odp", "notes.odt"):
            r = http.post(f"/v1/collections/{col}/documents", data={"label": "internal"},
                          files={"file": (name, (ODF / name).read_bytes(), "application/octet-stream")})
            assert r.status_code == 201, (name, r.text)
            uploaded[name] = r.json()
        # The text document's and the sheet's page headers say CONFIDENTIAL, the slides' footer too: none is stored
        # as the "internal" they were uploaded as. The notes have no marking and keep it.
        assert {name: doc["label"] for name, doc in uploaded.items()} == {
            "policy.odt": "confidential", "payroll.fods": "confidential", "footer.odp": "confidential",
            "notes.odt": "internal"}
        assert uploaded["policy.odt"]["metadata"]["marking"] == '"CONFIDENTIAL" in the header'
        assert uploaded["policy.odt"]["title"] == "Salary Review Policy"

        for query, source in (("Band A managers", "policy.odt"), ("Wang Fang", "payroll.fods"),
                              ("Mention the new plant", "footer.odp"),
                              ("trade fair week hotel limit", "notes.odt")):  # a footnote
            hits = http.post("/v1/search", json={"query": query, "top_k": 5}).json()["data"]
            assert source in {h["source_path"] for h in hits}, (query, hits)

        # An archive of a department's documents: one document, found by what its files say, as confidential as its
        # most confidential file (the memo's watermark); a Big5 notice from the Taipei office, readable.
        for name, data in (("board-2026.zip", _archive()), ("通知.txt", "台北辦公室週五下午停電維修。".encode("big5"))):
            r = http.post(f"/v1/collections/{col}/documents", data={"label": "internal"},
                          files={"file": (name, data, "application/octet-stream")})
            assert r.status_code == 201, (name, r.text)
            uploaded[name] = r.json()
        assert uploaded["board-2026.zip"]["label"] == "confidential"
        notice = uploaded["通知.txt"]
        assert notice["label"] == "internal" and notice["title"] == "台北辦公室週五下午停電維修。"
        for query, source in (("Kestrel acquisition", "board-2026.zip"), ("Shanghai hotel limit", "board-2026.zip"),
                              ("台北辦公室停電", "通知.txt")):
            hits = http.post("/v1/search", json={"query": query, "top_k": 5}).json()["data"]
            assert source in {h["source_path"] for h in hits}, (query, hits)

        # A team's mailbox exported from Google Takeout or Thunderbird: one document, a part per message, as
        # confidential as its most confidential message.
        r = http.post(f"/v1/collections/{col}/documents", data={"label": "internal"},
                      files={"file": ("team.mbox", _mailbox(tmp_path / "team.mbox"), "application/mbox")})
        assert r.status_code == 201, r.text
        assert r.json()["label"] == "confidential" and r.json()["metadata"]["messages"] == "2"
        hits = http.post("/v1/search", json={"query": "Project Falcon launches", "top_k": 5}).json()["data"]
        found = [h for h in hits if h["source_path"] == "team.mbox"]
        assert found and "Message: 2026-01-07 Launch plan" in found[0]["section"], hits

        # A database (an ODF package, but not a document) is refused in the one error shape.
        r = http.post(f"/v1/collections/{col}/documents",
                      files={"file": ("contacts.odb", _database(), "application/octet-stream")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "document_rejected", r.text
        assert "unsupported OpenDocument type (database)" in r.json()["error"]["message"]


def _archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("董事会/收购备忘录.docx", make_watermarked_docx())
        zf.writestr("制度/travel.docx", make_docx())
    return out.getvalue()


def _mailbox(path: Path) -> bytes:
    box = mailbox.mbox(path)
    for subject, date, body, sensitivity in (
            ("Q3 supplier review", "Mon, 05 Jan 2026 09:30:00 +0800", "The supplier review moves to 12 October.", ""),
            ("Launch plan", "Wed, 07 Jan 2026 08:00:00 +0000", "Project Falcon launches in March.",
             "Company-Confidential")):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"], m["Date"] = "li.na@example.com", "team@example.com", subject, date
        if sensitivity:
            m["Sensitivity"] = sensitivity
        m.set_content(body)
        box.add(m)
    box.close()
    return path.read_bytes()


def _database() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.base")
        zf.writestr("content.xml", '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:'
                                   'office:1.0"><office:body><office:database/></office:body></office:document-content>')
    return out.getvalue()
