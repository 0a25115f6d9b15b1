"""OpenDocument (.odt, .ods, .odp and the flat .fodt, .fods): read into the blocks the Microsoft formats give.

The fixtures were saved by LibreOffice (``data/odf/make_fixtures.py``), most from the very sources of the Word, Excel
and PowerPoint fixtures, so the main check is that a document reads the same whichever suite saved it.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
from docfactory import make_pptx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.governance.labels import Label
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.markings import MarkingReader
from inhouse.kb.parse import ParseLimits, detect_format, parse_file

ODF = Path(__file__).parent / "data" / "odf"
LEGACY = Path(__file__).parent / "data" / "legacy"
LABEL_ID = "3f1c2b4a-9d8e-4f7a-b6c5-1a2b3c4d5e6f"


def blocks(document: ParsedDocument) -> list[tuple[str, int, int | None, tuple[str, ...], str]]:
    return [(b.kind, b.level, b.page, b.section, b.text) for b in document.blocks]


def odf(name: str) -> ParsedDocument:
    return parse_file(ODF / name)


def rezip(name: str, **parts: bytes) -> bytes:
    """A fixture package with some parts replaced (``content_xml`` for content.xml) or, given b"", left out."""
    out = io.BytesIO()
    with zipfile.ZipFile(ODF / name) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        replaced = {k.replace("_xml", ".xml").replace("META_INF_", "META-INF/"): v for k, v in parts.items()}
        for info in src.infolist():
            data = replaced.pop(info.filename, None)
            if data is None:
                dst.writestr(info, src.read(info))
            elif data:
                dst.writestr(info.filename, data)
    return out.getvalue()


@pytest.mark.parametrize(("name", "counterpart"), [
    ("notes.odt", "notes.docx"),  # footnotes, endnotes, a text box: after the paragraph that refers to them
    ("table-note.odt", "table-note.docx"),  # a table cell's footnote: after the table
    ("travel.odt", "travel.doc"),  # headings, a table, a numbered list, Chinese
    ("budget.ods", "budget.xls"),  # numbers and dates as their values, a formula's result, an empty sheet
])
def test_a_document_reads_the_same_whichever_suite_saved_it(name: str, counterpart: str) -> None:
    parsed, other = odf(name), parse_file(LEGACY / counterpart)
    assert blocks(parsed) == blocks(other)
    assert parsed.title == other.title
    assert {k: v for k, v in parsed.metadata.items() if k != "date"} == {
        k: v for k, v in other.metadata.items() if k != "date"}


def test_slides_read_as_pptx_and_the_footer_is_a_marking() -> None:
    parsed, pptx = odf("footer.odp"), parse_file(make_pptx(footer="Qinglan Components | Confidential"), "d.pptx")
    assert blocks(parsed) == blocks(pptx)
    assert parsed.page_count == 2 and parsed.mime == "application/vnd.oasis.opendocument.presentation"
    assert parsed.markings == pptx.markings == (Marking("footer", "Qinglan Components | Confidential"),)
    assert "Confidential" not in parsed.text and "2026-12-01" not in parsed.text  # the footer and date boxes


def test_a_text_document_headers_styles_lists_and_what_is_not_content() -> None:
    parsed = odf("policy.odt")
    assert blocks(parsed) == blocks(odf("policy.fodt"))  # the flat file LibreOffice saved it from
    assert [(b.kind, b.level, b.text) for b in parsed.blocks] == [
        ("heading", 1, "Salary Review 2027"),  # a paragraph in the Title style
        ("heading", 1, "Scope"),  # text:h, after the table of contents (not read: it repeats the headings)
        ("paragraph", 0, "Applies to all permanent staff."),  # the comment on it is not read
        ("heading", 2, "Bands"),  # an automatic style derived from Heading 2, inside a section
        ("list", 0, "- Band A: 1.5%\n  - Managers: 2%\n- Band B: 3%"),  # a nested item indented
        ("paragraph", 0, "工资调整于 四月生效。"),
    ]
    assert parsed.metadata == {"author": "Zhang Min", "subject": "Compensation", "date": "2026-10-02T09:30:00"}
    assert parsed.title == "Salary Review Policy"
    # The page style's header and footer are markings, the page number and count left out of them.
    assert parsed.markings == (Marking("header", "Qinglan Components — CONFIDENTIAL"), Marking("footer", "Page of"))
    marked = MarkingReader().read(parsed)
    assert marked is not None and marked.label == Label.CONFIDENTIAL


def test_a_spreadsheet_values_repeated_rows_and_its_page_header() -> None:
    parsed = odf("payroll.ods")
    assert blocks(parsed) == blocks(odf("payroll.fods"))
    assert [(b.kind, b.text) for b in parsed.blocks] == [
        ("heading", "March"),
        # A currency is its value, a date ISO; a row stored once "repeated 3 times" is three rows, and the million
        # empty rows a sheet stores at its end cost nothing.
        ("table", "Name | Salary | Paid\nWang Fang | 18500 | 2027-03-25\n(vacant)\n(vacant)\n(vacant)"),
    ]
    # Each region of the header is a line; the sheet-name field is not a word the sheet says.
    assert parsed.markings == (Marking("header", "Confidential"), Marking("footer", "Page"))


def test_a_purview_label_libreoffice_kept_is_read() -> None:
    parsed = odf("board.odt")
    assert parsed.markings == (Marking("label", "Highly Confidential", label_id=LABEL_ID),)
    assert MarkingReader().read(parsed) is not None


def test_rows_past_the_limit_are_dropped_and_said() -> None:
    parsed = parse_file(ODF / "payroll.ods", limits=ParseLimits(max_table_rows=3, max_table_cols=2))
    assert parsed.blocks[1].text == "Name | Salary\nWang Fang | 18500\n(vacant)"
    assert parsed.metadata["truncated"] == "rows after 3 dropped in: March"
    # Exactly at the limit nothing was dropped.
    assert "truncated" not in parse_file(ODF / "payroll.ods", limits=ParseLimits(max_table_rows=5)).metadata


def test_the_bytes_decide_the_format() -> None:
    data = (ODF / "policy.odt").read_bytes()
    assert detect_format(data, "policy.zip") == detect_format(data, "policy.docx") == "odf"
    assert detect_format((ODF / "policy.fodt").read_bytes(), "policy.fodt") == "odf"
    with pytest.raises(DocumentRejected, match="content does not match"):
        parse_file(b"plain text", "policy.odt")


@pytest.mark.parametrize(("data", "reason"), [
    (rezip("policy.odt", META_INF_manifest_xml=b'<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument'
           b':xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data/>'
           b'</manifest:file-entry></manifest:manifest>'), "password-protected"),
    (rezip("policy.odt", content_xml=b"\x9c\x01 encrypted bytes"), "content.xml is not well-formed"),
    (rezip("policy.odt", content_xml=b'<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:'
           b'office:1.0"><office:body><office:database/></office:body></office:document-content>'),
     r"unsupported OpenDocument type \(database\)"),
    (rezip("policy.odt", content_xml=b'<r xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"/>'),
     "no office:body"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><d>&e;</d>', "no office:body"),
])
def test_bad_odf_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentRejected, match=reason):
        parse_file(data, "bad.odt" if data.startswith(b"PK") else "bad.fodt")


def test_a_damaged_styles_part_loses_the_markings_not_the_text() -> None:
    parsed = parse_file(rezip("policy.odt", styles_xml=b"<not xml"), "policy.odt")
    assert parsed.markings == () and "Applies to all permanent staff." in parsed.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["policy.fodt", "payroll.fods"]),
       edits=st.lists(st.tuples(st.integers(0, 1 << 14), st.sampled_from(b'<>/"=: x0&;9-')), min_size=1, max_size=8),
       cut=st.none() | st.integers(40, 1 << 12))
def test_damaged_odf_never_raises_anything_but_document_rejected(
        which: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray((ODF / which).read_bytes())
    for at, value in edits:
        data[at % len(data)] = value
    with contextlib.suppress(DocumentRejected):
        parse_file(bytes(data[:cut] if cut else data), which)
