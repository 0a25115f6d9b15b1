"""OpenDocument files LibreOffice saved (a text document, a spreadsheet, slides), uploaded to a real server over HTTP,
are read, found by search, and stored no lower than their page header says; the flat single-XML kind too.

The embedder is the fake (search still has its keyword half); the parsers, store and server are the real ones."""

from __future__ import annotations

from pathlib import Path

import httpx
from live_server import run_live_server

ODF = Path(__file__).parents[1] / "unit" / "kb" / "data" / "odf"


def test_opendocument_files_upload_search_and_keep_the_label_their_header_gives(tmp_path: Path) -> None:
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

        # A database (an ODF package, but not a document) is refused in the one error shape.
        r = http.post(f"/v1/collections/{col}/documents",
                      files={"file": ("contacts.odb", _database(), "application/octet-stream")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "document_rejected", r.text
        assert "unsupported OpenDocument type (database)" in r.json()["error"]["message"]


def _database() -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.base")
        zf.writestr("content.xml", '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:'
                                   'office:1.0"><office:body><office:database/></office:body></office:document-content>')
    return out.getvalue()
