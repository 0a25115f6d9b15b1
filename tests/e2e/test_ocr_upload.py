"""Scans uploaded to a real server (HTTP, multipart) are read by the real OCR model and found by search; bad images
and a server with OCR off answer 400 in the one error shape. The embedder and the chat model are fakes: only OCR is
real here."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from live_server import run_live_server
from PIL import Image

from inhouse.models.ocr import OCR_NAME, ocr_model_present
from inhouse.testing.scans import Scanner, image_file, image_pdf, scan, typeset

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ocr_model_present(),
                       reason=f"the OCR model is not installed (inhouse models pull {OCR_NAME})"),
]

TEXT = [("heading", "访客登记 Visitor registration"),
        ("paragraph", "所有访客须在前台登记并佩戴访客证，离开时交还。"),
        ("paragraph", "Visitors sign in at reception and wear a badge; the host escorts them at all times.")]


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def test_scans_upload_are_read_and_searchable(tmp_path: Path) -> None:
    page = typeset(TEXT, dpi=300)[0]
    scanner = Scanner(150, 75, skew_deg=1.0)
    pdf = image_pdf([scan(page, scanner, from_dpi=300)], scanner)
    png = image_file(scan(page, Scanner(110, None), from_dpi=300), Scanner(110, None))
    with run_live_server(tmp_path / "live", settings={"kb": {"embedder": "fake"}}) as live, \
            client(live.url, live.admin_key) as http:
        col = http.post("/v1/collections", json={"name": "front-desk"}).json()["id"]
        r = http.post(f"/v1/collections/{col}/documents", files={"file": ("visitors-scan.pdf", pdf, "application/pdf")})
        assert r.status_code == 201, r.text
        assert r.json()["title"].startswith("访客登记")
        r = http.post(f"/v1/collections/{col}/documents", files={"file": ("visitors.png", png, "image/png")})
        assert r.status_code == 201, r.text
        for query in ("访客证", "reception badge"):
            hits = http.post("/v1/search", json={"query": query, "top_k": 5}).json()["data"]
            assert {h["source_path"] for h in hits} >= {"visitors-scan.pdf", "visitors.png"}, (query, hits)

        buf = io.BytesIO()
        Image.new("L", (400, 300), 255).save(buf, "PNG")
        for name, data, reason in (("blank.png", buf.getvalue(), "OCR found no text"),
                                   ("cut.png", buf.getvalue()[:120], "image"),
                                   ("notes.jpg", b"plain words, not a picture", "not a valid .jpg file")):
            r = http.post(f"/v1/collections/{col}/documents", files={"file": (name, data, "image/png")})
            assert r.status_code == 400, (name, r.text)
            err = r.json()["error"]
            assert err["code"] == "document_rejected" and reason in err["message"] and set(err) >= {"message", "type"}


def test_a_server_with_ocr_off_says_so(tmp_path: Path) -> None:
    page = typeset(TEXT[:1], dpi=200)[0]
    pdf = image_pdf([page], Scanner(200, 75))
    with run_live_server(tmp_path / "live", settings={"kb": {"embedder": "fake", "ocr": False}}) as live, \
            client(live.url, live.admin_key) as http:
        col = http.post("/v1/collections", json={"name": "scans"}).json()["id"]
        r = http.post(f"/v1/collections/{col}/documents", files={"file": ("scan.pdf", pdf, "application/pdf")})
        assert r.status_code == 400
        assert "OCR is off or not installed" in r.json()["error"]["message"]
