"""Scanned PDF pages and image files through ``parse_file`` with a fake OCR reader: which pages are read, what the
document holds, and what bad input gets (no reader, too many pages, a decompression bomb, damaged data)."""

from __future__ import annotations

import email.message
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from tests.unit.kb.docfactory import make_pdf

from inhouse.errors import DocumentRejected, Unavailable
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import Ingestor, IngestProgress
from inhouse.kb.parse import ParseLimits, detect_format, parse_file
from inhouse.kb.parse.ocr import OcrRow
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.testing.scans import Scanner, image_pdf
from inhouse.types import Actor


class FakeReader:
    """Reads every page as the rows ``rows_for(page number)`` gives; records the size of each image it was given."""

    name = "fake-ocr"

    def __init__(self, rows_for: Callable[[int], list[OcrRow]] | None = None, error: Exception | None = None) -> None:
        self.rows_for = rows_for or (lambda n: [OcrRow("Scanned Title", 45, 24, 0.9),
                                                OcrRow(f"Body text of page {n}, read by OCR.", 30, 16, 0.9)])
        self.error = error
        self.seen: list[tuple[int, int]] = []

    def read(self, image: Image.Image) -> list[OcrRow]:
        if self.error is not None:
            raise self.error
        self.seen.append(image.size)
        return self.rows_for(len(self.seen))


def _page(w: int = 850, h: int = 1100) -> Image.Image:
    return Image.new("L", (w, h), 255)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_scanned_pdf_pages_are_read_by_ocr_with_headings_and_page_numbers() -> None:
    reader = FakeReader()
    doc = parse_file(image_pdf([_page(), _page()], Scanner(100, 75)), "scan.pdf", ocr=reader)
    assert len(reader.seen) == 2 and max(reader.seen[0]) == pytest.approx(2000, abs=2)  # rendered at ~2,000 px
    assert doc.metadata["ocr"] == "fake-ocr: 2 of 2 pages" and doc.page_count == 2
    assert [(b.kind, b.page) for b in doc.blocks] == [("heading", 1), ("paragraph", 1), ("heading", 2),
                                                      ("paragraph", 2)]
    assert doc.title == "Scanned Title" and "Body text of page 2, read by OCR." in doc.text


def test_headings_need_both_wider_characters_and_taller_ink() -> None:
    from inhouse.kb.parse.pdf import ocr_lines

    body = [OcrRow("Products can be returned within 30 days of delivery.", 28, 26, 0.9)] * 5
    rows = [OcrRow("Returns and refunds", 32, 40, 0.9),  # no descenders: 1.14x the ink, 1.5x the width
            OcrRow("Installation", 29, 33, 0.9),  # bold, no descenders: 1.04x the ink, 1.27x the width
            OcrRow("15A", 17, 40, 0.9),  # a short value: wide per character, small ink
            OcrRow("Weight | 420g", 29, 33, 0.9),  # a table row
            OcrRow("on 31 March.", 22, 28, 0.9), *body]
    sizes = [line.size for line in ocr_lines(rows, 1)]
    assert sizes[0] == sizes[1] > sizes[2] == sizes[3] == sizes[4] == sizes[5]



def test_a_heading_wrapped_in_a_narrow_column_is_one_heading_and_a_title_above_a_heading_stays_two() -> None:
    from inhouse.kb.parse.pdf import Line, lines_to_blocks

    body = [Line("Employees receive ten days of paid leave each year, taken in half days or more.", 10.0, 1)] * 3
    lines = [Line("Customer Support FAQ", 15.0, 1), Line("Orders and delivery", 15.0, 1), *body,
             Line("4. Bereavement and other", 15.0, 1), Line("leave", 20.0, 1), *body,  # a short word: sized loosely
             Line("5. Holidays falling on a", 15.0, 1), Line("Weekend", 15.0, 1), *body,
             Line("报销标准、", 15.0, 1), Line("审批流程", 15.0, 1), *body]
    blocks = lines_to_blocks([lines]).blocks
    assert [b.text for b in blocks if b.kind == "heading"] == [
        "Customer Support FAQ", "Orders and delivery", "4. Bereavement and other leave",
        "5. Holidays falling on a Weekend", "报销标准、审批流程"]
    assert blocks[-1].section[-1] == "报销标准、审批流程"

def test_only_pages_without_a_text_layer_are_read() -> None:
    reader = FakeReader(lambda n: [OcrRow("Signed copy of the contract", 30, 16, 0.9)])
    pdf = make_pdf([[(12, "The terms of the agreement are set out below in full.")], []])
    doc = parse_file(pdf, "contract.pdf", ocr=reader)
    assert len(reader.seen) == 1
    assert [b.page for b in doc.blocks] == [1, 2]
    assert doc.metadata["ocr"] == "fake-ocr: 1 of 2 pages"


def test_a_text_pdf_never_calls_ocr() -> None:
    reader = FakeReader()
    doc = parse_file(make_pdf([[(12, "Plain text page with enough characters.")]]), "t.pdf", ocr=reader)
    assert reader.seen == [] and "ocr" not in doc.metadata


def test_scanned_pdf_without_ocr_or_without_text_is_refused_with_the_reason() -> None:
    pdf = image_pdf([_page()], Scanner(100, 75))
    with pytest.raises(DocumentRejected, match=r"OCR is off or not installed here .*models pull ppocr-v5"):
        parse_file(pdf, "scan.pdf")
    with pytest.raises(DocumentRejected, match="OCR found no text"):
        parse_file(pdf, "scan.pdf", ocr=FakeReader(lambda n: []))


def test_a_missing_model_is_the_files_error_with_the_command() -> None:
    missing = Unavailable("The OCR model is not installed: run `inhouse models pull ppocr-v5`.")
    with pytest.raises(DocumentRejected, match="page 1 is scanned and needs OCR: The OCR model is not installed"):
        parse_file(image_pdf([_page()], Scanner(100, 75)), "scan.pdf", ocr=FakeReader(error=missing))
    with pytest.raises(DocumentRejected, match="an image needs OCR: The OCR model is not installed"):
        parse_file(_png(_page(200, 100)), "shot.png", ocr=FakeReader(error=missing))


def test_more_scanned_pages_than_the_limit_are_refused() -> None:
    pdf = image_pdf([_page(200, 260)] * 3, Scanner(100, 75))
    limits = ParseLimits(max_ocr_pages=2)
    with pytest.raises(DocumentRejected, match="more than 2 scanned pages"):
        parse_file(pdf, "big.pdf", ocr=FakeReader(), limits=limits)


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "a.png"), ("JPEG", "a.jpg"), ("WEBP", "a.webp"),
                                           ("BMP", "a.bmp"), ("GIF", "a.gif"), ("TIFF", "a.tif")])
def test_image_files_are_read(fmt: str, name: str) -> None:
    buf = io.BytesIO()
    _page(400, 300).convert("RGB" if fmt in ("JPEG", "WEBP") else "L").save(buf, fmt)
    assert detect_format(buf.getvalue(), name) == "image"
    doc = parse_file(buf.getvalue(), name, ocr=FakeReader())
    assert doc.metadata["ocr"] == "fake-ocr" and doc.page_count is None
    assert doc.mime.startswith("image/") and doc.title == "Scanned Title"
    assert all(b.page is None for b in doc.blocks)


def test_a_photo_is_read_the_way_up_the_camera_was_held() -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the sensor's pixels are to be turned 90° clockwise to be upright
    _page(400, 300).convert("RGB").save(buf, "JPEG", exif=exif)
    reader = FakeReader()
    parse_file(buf.getvalue(), "photo.jpg", ocr=reader)
    assert reader.seen == [(300, 400)]

def test_a_multipage_tiff_is_one_document_of_pages() -> None:
    buf = io.BytesIO()
    _page(300, 400).save(buf, "TIFF", save_all=True, append_images=[_page(300, 400), _page(300, 400)])
    doc = parse_file(buf.getvalue(), "fax.tiff", ocr=FakeReader())
    assert doc.page_count == 3 and doc.metadata["ocr"] == "fake-ocr: 3 of 3 pages"
    assert sorted({b.page for b in doc.blocks}) == [1, 2, 3]


def test_images_without_ocr_are_refused_with_the_reason() -> None:
    with pytest.raises(DocumentRejected, match="an image is read with OCR, which is off or not installed"):
        parse_file(_png(_page(200, 100)), "shot.png")


def test_bad_images_get_clear_rejections() -> None:
    reader = FakeReader()
    with pytest.raises(DocumentRejected, match=r"not a valid \.png file"):
        parse_file(b"just some text, not a picture", "notes.png", ocr=reader)
    with pytest.raises(DocumentRejected, match=r"damaged|not an image"):
        parse_file(_png(_page(400, 300))[:200], "cut.png", ocr=reader)
    with pytest.raises(DocumentRejected, match="OCR found no text"):
        parse_file(_png(_page(400, 300)), "blank.png", ocr=FakeReader(lambda n: []))
    assert reader.seen == []


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    big = Image.new("1", (9000, 8000), 1)  # 72 megapixels, a few kilobytes as PNG
    reader = FakeReader()
    with pytest.raises(DocumentRejected, match="9000×8000 pixels, above the limit of 60 megapixels"):
        parse_file(_png(big), "huge.png", ocr=reader)
    assert reader.seen == []


def test_bmp_needs_its_extension_and_text_starting_with_bm_stays_text() -> None:
    assert detect_format(b"BM is how this memo starts.", "memo.txt") == "text"
    assert detect_format(b"BM is how this memo starts.", "memo") == "text"


def _email_with(*attachments: tuple[bytes, str]) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "Signed form"
    msg.set_content("The signed form is attached.\n")
    for data, name in attachments:
        msg.add_attachment(data, maintype="image", subtype="png", filename=name)
    return msg.as_bytes()


def test_email_image_attachments_are_read_and_logos_skipped() -> None:
    reader = FakeReader()
    raw = _email_with((_png(_page(120, 40)), "logo.png"), (_png(_page(850, 1100)), "form.png"))
    doc = parse_file(raw, "mail.eml", ocr=reader)
    assert len(reader.seen) == 1
    assert "Body text of page 1, read by OCR." in doc.text
    assert "logo.png: a small picture (120×40 pixels: a logo or an icon), not read" in doc.metadata[
        "skipped_attachments"]


def test_ingesting_a_scan_moves_the_progress_page_by_page(tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        col = store.create_collection("scans", acl=Acl())
        scan = tmp_path / "minutes.pdf"
        scan.write_bytes(image_pdf([_page(200, 260)] * 3, Scanner(100, 75)))
        seen: list[IngestProgress] = []
        report = Ingestor(store, FakeEmbedder(), ocr=FakeReader()).ingest_paths(col.id, [scan],
                                                                                progress=seen.append)
        assert report.count("added") == 1 and not report.errors
        pages = [p for p in seen if "OCR page" in p.current]
        assert [p.current for p in pages] == [f"minutes.pdf: OCR page {k} of 3" for k in (1, 2, 3)]
        assert [p.bytes_done for p in pages] == sorted(p.bytes_done for p in pages)
        assert 0 < pages[0].bytes_done < pages[-1].bytes_done == scan.stat().st_size
        admin = AccessScope.of(Actor("key_admin", "admin", role="admin"))
        assert store.keyword_search(admin, "Body text of page", SearchFilters(), 5), "the OCR text is indexed"
    finally:
        store.close()


def test_the_outline_assistant_reads_a_scan_with_the_reader_it_was_given() -> None:
    from inhouse.apps.outline.outline import OutlineInput, OutlineOptions, parse_document

    inp = OutlineInput(data=image_pdf([_page(), _page()], Scanner(100, 75)), filename="binder.pdf", key_points=False)
    doc = parse_document(inp, OutlineOptions(), FakeReader())
    assert [b.text for b in doc.blocks if b.kind == "heading"] == ["Scanned Title", "Scanned Title"]
    with pytest.raises(DocumentRejected, match="OCR is off or not installed"):
        parse_document(inp, OutlineOptions())
