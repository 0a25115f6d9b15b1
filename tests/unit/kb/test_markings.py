"""A document's own sensitivity markings: where each format keeps them (kb/parse/markings.py and the parsers),
what they mean (kb/markings.py), and what ingestion does with them (a label raised, never lowered, and why)."""

from __future__ import annotations

import contextlib
import email.message
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docfactory import (
    label_info_xml,
    make_docx,
    make_pdf,
    make_pptx,
    make_watermarked_docx,
    make_xlsx,
    purview_properties,
    with_ooxml_parts,
)

from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.document import Block, Marking, ParsedDocument
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import FileSource, Ingestor
from inhouse.kb.markings import _PHRASES, _STEMS, MarkingReader
from inhouse.kb.parse import parse_file
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.testing.outlook import Message, outlook_message

LABEL_ID = "3f1c2b4a-9d8e-4f7a-b6c5-1a2b3c4d5e6f"
LEGACY = Path(__file__).parent / "data" / "legacy"
ODF = Path(__file__).parent / "data" / "odf"


def doc(*blocks: Block, title: str = "Notes", markings: tuple[Marking, ...] = ()) -> ParsedDocument:
    return ParsedDocument(title=title, blocks=blocks or (Block("paragraph", "Some text."),), language="en",
                          filename="notes.md", mime="text/markdown", markings=markings)


def read(document: ParsedDocument, **names: str) -> tuple[Label, str] | None:
    marked = MarkingReader(names).read(document)
    return None if marked is None else (marked.label, marked.reason)


# --- what markings mean ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("title", "label"), [
    ("Salary Bands 2027: CONFIDENTIAL", Label.CONFIDENTIAL),
    ("Q3 2026 Financial Results: DRAFT, CONFIDENTIAL", Label.CONFIDENTIAL),
    ("[INTERNAL] Q3 plan", Label.INTERNAL),
    ("STRICTLY CONFIDENTIAL — Board pack", Label.RESTRICTED),
    ("工资标准（机密）", Label.CONFIDENTIAL),
    ("并购方案 绝密★10年", None),  # no delimiter before the level: one phrase with the title, not a banner
    ("机密★1年", Label.CONFIDENTIAL),
    ("【内部资料】员工手册", Label.INTERNAL),
    ("Classification: Restricted", Label.RESTRICTED),
    ("密级：秘密", Label.CONFIDENTIAL),
])
def test_a_title_marks_the_document(title: str, label: Label | None) -> None:
    found = read(doc(title=title))
    assert (found[0] if found else None) == label, found


@pytest.mark.parametrize("text", [
    "We keep your data confidential.",  # running text
    "CONFIDENTIAL INFORMATION",  # a contract's heading: the phrase is part of a longer name
    "Internal Audit",
    "NON-CONFIDENTIAL",
    "Salary Bands 2027: Confidential",  # outside headers and footers, a marking is written in capitals
    "Public / Internal / Confidential / Restricted",  # a scheme, not a marking
    "PUBLIC, INTERNAL, CONFIDENTIAL",
    "Classification: public",
    "API SECRET",
    "GENERAL",
    "商业机密保护制度",  # "trade secret protection rules": a phrase inside a name
])
def test_ordinary_words_are_not_markings(text: str) -> None:
    assert read(doc(Block("heading", text, level=1), Block("paragraph", text), title=text)) is None


def test_where_a_banner_may_stand() -> None:
    assert read(doc(Block("heading", "Appendix B: CONFIDENTIAL", level=2)))[0] == Label.CONFIDENTIAL  # type: ignore[index]
    assert read(doc(Block("paragraph", "**CONFIDENTIAL**")))[0] == Label.CONFIDENTIAL  # type: ignore[index]
    long_paragraph = "CONFIDENTIAL. " + "The parties agree to the terms below. " * 5
    assert read(doc(Block("paragraph", long_paragraph))) is None  # a long paragraph is text, not a banner
    assert read(doc(Block("table", "Level | CONFIDENTIAL"))) is None
    # Headers and footers are where markings live: any case.
    footer = Marking("footer", "© 2026 Qinglan Components · Confidential")
    assert read(doc(markings=(footer,))) == (Label.CONFIDENTIAL, '"Confidential" in the footer')
    header = Marking("header", "Internal use only")
    assert read(doc(markings=(header,))) == (Label.INTERNAL, '"Internal use only" in the header')
    prop = Marking("property", "Sensitivity: Company-Confidential")
    assert read(doc(markings=(prop,)))[0] == Label.CONFIDENTIAL  # type: ignore[index]


@pytest.mark.parametrize(("text", "label"), [
    ("INTERNAL\nAUDIT CHARTER 2027", None),  # a name wrapped over two lines is still the name ("Internal Audit")
    ("CONFIDENTIAL\nINFORMATION", None),  # a contract's heading
    ("STRICTLY\nCONFIDENTIAL", Label.RESTRICTED),  # one phrase, not "CONFIDENTIAL" alone
    ("INTERNAL  AUDIT", None),
    ("Salary bands 2027:\nCONFIDENTIAL", Label.CONFIDENTIAL),  # a delimiter still sets it apart
])
def test_a_line_break_does_not_set_a_banner_apart(text: str, label: Label | None) -> None:
    found = read(doc(Block("paragraph", text)))
    assert (found[0] if found else None) == label, found


def test_a_banner_word_wrapped_by_a_line_break_in_html_is_not_a_marking() -> None:
    page = (b"<html><head><title>Charter</title></head><body><p>INTERNAL<br>AUDIT CHARTER 2027</p>"
            b"<p>The audit function reports to the board and reviews every department once a year.</p></body></html>")
    parsed = parse_file(page, "charter.html")
    assert parsed.blocks[0].text == "INTERNAL\nAUDIT CHARTER 2027"
    assert read(parsed) is None


def test_the_most_sensitive_marking_wins() -> None:
    found = read(doc(Block("heading", "Annex: INTERNAL", level=2), title="Plan: CONFIDENTIAL",
                     markings=(Marking("footer", "Highly Confidential"),)))
    assert found == (Label.RESTRICTED, '"Highly Confidential" in the footer')


def test_embedded_labels_map_by_id_then_name_and_unknown_ones_count_as_confidential() -> None:
    labelled = doc(markings=(Marking("label", "General", label_id=LABEL_ID),))
    assert read(labelled) == (Label.INTERNAL, 'sensitivity label "General"')
    assert read(labelled, **{LABEL_ID.upper(): "restricted"})[0] == Label.RESTRICTED  # an id wins over the name
    assert read(labelled, general="confidential")[0] == Label.CONFIDENTIAL  # a company's name wins over the common
    sublabel = doc(markings=(Marking("label", "Highly Confidential\\Finance", label_id=LABEL_ID),))
    assert read(sublabel)[0] == Label.RESTRICTED  # type: ignore[index]
    unknown = doc(markings=(Marking("label", "", label_id=LABEL_ID),))
    label, reason = read(unknown)  # type: ignore[misc]
    assert label == Label.CONFIDENTIAL and LABEL_ID in reason and "kb.label_names" in reason
    assert read(doc(markings=(Marking("label", "Public", label_id=LABEL_ID),))) is None
    # A company's own marking phrase, in any case, wherever a banner stands.
    assert read(doc(title="Qinglan Secret: plan"), **{"Qinglan Secret": "restricted"})[0] == Label.RESTRICTED  # type: ignore[index]


def test_every_phrase_passes_the_quick_test() -> None:
    """The reader skips texts holding none of the stems; a phrase without one would never be found."""
    assert all(any(stem in phrase.lower() for stem in _STEMS) for phrase in _PHRASES)


def test_an_unknown_configured_label_is_refused() -> None:
    from inhouse.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="label"):
        MarkingReader({"Secret": "top-secret"})


# --- where formats keep them ----------------------------------------------------------------------------------------

def test_docx_custom_properties_label_info_and_running_text() -> None:
    import io

    import docx

    labelled = with_ooxml_parts(make_docx(), custom=purview_properties(LABEL_ID, "Confidential"))
    assert parse_file(labelled, "a.docx").markings == (Marking("label", "Confidential", label_id=LABEL_ID),)
    disabled = with_ooxml_parts(make_docx(), custom=purview_properties(LABEL_ID, "Confidential", enabled="false"))
    assert parse_file(disabled, "a.docx").markings == ()
    # LabelInfo (newer Office): the id only, and it decides for the labels it lists.
    other = "0b9f3c1e-2d4a-4e5b-9c6d-7e8f9a0b1c2d"
    both = with_ooxml_parts(make_docx(), custom=purview_properties(LABEL_ID, "Confidential"),
                            label_info=label_info_xml((LABEL_ID, "1", "0"), (other, "1", "0")))
    assert set(parse_file(both, "a.docx").markings) == {Marking("label", "Confidential", label_id=LABEL_ID),
                                                         Marking("label", "", label_id=other)}
    removed = with_ooxml_parts(make_docx(), custom=purview_properties(LABEL_ID, "Confidential"),
                               label_info=label_info_xml((LABEL_ID, "1", "1")))
    assert parse_file(removed, "a.docx").markings == ()
    # Headers and footers are not blocks, but their lines are markings.
    d = docx.Document()
    d.add_paragraph("Body text.")
    d.sections[0].header.paragraphs[0].text = "Qinglan Components — Internal use only"
    d.sections[0].footer.paragraphs[0].text = "Page 1"
    buf = io.BytesIO()
    d.save(buf)
    parsed = parse_file(buf.getvalue(), "h.docx")
    assert parsed.markings == (Marking("header", "Qinglan Components — Internal use only"), Marking("footer", "Page 1"))
    assert "Internal use only" not in parsed.text
    assert read(parsed) == (Label.INTERNAL, '"Internal use only" in the header')


WATERMARKED = {Marking("header", "Board of Directors"), Marking("header", "CONFIDENTIAL"),
               Marking("footer", "Qinglan Components")}


@pytest.mark.parametrize("name", ["watermark.docx", "watermark.doc", "watermark.rtf", "watermark.odt"])
def test_a_watermark_is_a_marking_in_every_word_format(name: str) -> None:
    """Word's "CONFIDENTIAL" watermark is WordArt in the header: a VML text path in .docx; LibreOffice saved the same
    memo as Word 97 (the words in the headers' Office Art drawing), RTF (a shape's ``gtextUNICODE``) and
    OpenDocument (a shape's paragraph in the page style's header). Word 97's header lines are read too."""
    if name == "watermark.docx":
        data = make_watermarked_docx()
    else:
        data = ((ODF if name.endswith(".odt") else LEGACY) / name).read_bytes()
    parsed = parse_file(data, name)
    assert set(parsed.markings) == WATERMARKED
    assert [b.text for b in parsed.blocks] == ["Acquisition plan", "Kestrel Ltd would be bought for 40-45 million."]
    assert read(parsed) == (Label.CONFIDENTIAL, '"CONFIDENTIAL" in the header')
    # The same memo without the watermark is not marked: the words came from it.
    assert read(parse_file(make_watermarked_docx("DRAFT"), "draft.docx")) is None


def test_a_slide_footer_is_a_marking_not_content() -> None:
    parsed = parse_file(make_pptx(footer="Qinglan Components | Confidential"), "deck.pptx")
    assert parsed.markings == (Marking("footer", "Qinglan Components | Confidential"),)
    assert "Confidential" not in parsed.text and "2026-12-01" not in parsed.text  # nor the date, nor the number
    assert [b.text for b in parsed.blocks if b.page == 1][:2] == ["Results", "- Revenue grew 12%\n- Margin stable"]
    assert read(parsed) == (Label.CONFIDENTIAL, '"Confidential" in the footer')


@pytest.mark.parametrize(("code", "lines"), [
    ("&L&A&CConfidential&RPage &P of &N", ["Confidential", "Page of"]),  # sections, sheet name, page fields
    ("&LQinglan Components && Partners&C&D &T&R&F &Z", ["Qinglan Components & Partners"]),
    ('&"Arial,Bold"&14&K000000Internal&K01+000 Only&B&I&U&S&X&Y&E', ["Internal Only"]),  # font, size, colours
    ("&CFinance\nConfidential", ["Finance", "Confidential"]),  # a line break within a section
    ("&G&P+1", []),
    ("Confidential", ["Confidential"]),  # no section code: the centre
    ("R&Q; 5 & 6 &", ["R&Q; 5 & 6 &"]),  # what is not a code is text
    ('&"unclosed font', []),
])
def test_spreadsheet_header_codes_are_stripped(code: str, lines: list[str]) -> None:
    from inhouse.kb.parse.markings import sheet_header_lines

    assert sheet_header_lines(code) == lines


def marked_xlsx(header: str = "Confidential", first_page: str = "&KFF0000Restricted") -> bytes:
    import io

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Payroll"
    ws.append(["Employee", "Salary"])
    ws.append(["Chen Jing", 240000])
    ws.oddHeader.center.text = header
    ws.oddFooter.left.text = "Qinglan Components && Partners"
    ws.oddFooter.right.text = "Page &P of &N"
    if first_page:  # openpyxl writes an empty one as "&R", which its reader then warns it cannot split
        ws.firstHeader.right.text = first_page
    wb.create_sheet("Notes").append(["No header here."])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def with_sheet_xml(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """The workbook with its first sheet's XML edited."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            part = src.read(info)
            dst.writestr(info.filename, edit(part) if info.filename == "xl/worksheets/sheet1.xml" else part)
    return out.getvalue()


def test_a_spreadsheet_page_header_is_a_marking_not_content() -> None:
    parsed = parse_file(marked_xlsx(), "payroll.xlsx")
    assert parsed.markings == (Marking("header", "Confidential"), Marking("footer", "Qinglan Components & Partners"),
                               Marking("footer", "Page of"), Marking("header", "Restricted"))
    assert "Confidential" not in parsed.text and "Chen Jing | 240000" in parsed.text
    assert read(parsed) == (Label.RESTRICTED, '"Restricted" in the header')  # the first page's header counts too
    # Excel 97, as LibreOffice saved the same sheet (make_fixtures.py): the HEADER and FOOTER records.
    legacy = parse_file(LEGACY / "payroll.xls")
    assert legacy.markings == (Marking("header", "Confidential"), Marking("footer", "Qinglan Components & Partners"),
                               Marking("footer", "Page of"))
    assert "Confidential" not in legacy.text and "Chen Jing | P3 | 240000" in legacy.text
    assert read(legacy) == (Label.CONFIDENTIAL, '"Confidential" in the header')
    # No header, no markings; a header with a namespace prefix, as some generators write SpreadsheetML.
    assert parse_file(make_xlsx(), "a.xlsx").markings == parse_file(LEGACY / "budget.xls").markings == ()
    prefixed = with_sheet_xml(marked_xlsx(), lambda xml: xml.replace(
        b"<headerFooter>", b'<x:headerFooter xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
        .replace(b"<oddHeader>", b"<x:oddHeader>").replace(b"</oddHeader>", b"</x:oddHeader>")
        .replace(b"</headerFooter>", b"</x:headerFooter>"))
    assert parse_file(prefixed, "a.xlsx").markings[0] == Marking("header", "Confidential")


def test_a_spreadsheet_repeats_one_line_once_and_keeps_at_most_100() -> None:
    from inhouse.kb.parse.markings import sheet_header_markings

    assert sheet_header_markings([("header", "&CConfidential")] * 3 + [("footer", "&CConfidential")]) == (
        Marking("header", "Confidential"), Marking("footer", "Confidential"))
    assert len(sheet_header_markings(("footer", f"&LDepartment {n}") for n in range(500))) == 100


@pytest.mark.parametrize("edit", [
    lambda xml: xml.replace(b"</oddHeader>", b""),  # an unclosed element
    lambda xml: xml[:xml.index(b"<headerFooter>") + 40],  # the sheet cut inside the element
    lambda xml: xml.replace(b"Confidential", b"Confidential" * 20_000),  # beyond the 64 KB read
    lambda xml: xml.replace(b"<oddHeader>", b"<oddHeader>&#xFFFF;&#99999999;&bogus;"),
])
def test_a_damaged_xlsx_header_is_refused_or_skipped_never_raised(edit: Callable[[bytes], bytes]) -> None:
    from inhouse.errors import DocumentRejected
    from inhouse.kb.parse import xlsx

    damaged = with_sheet_xml(marked_xlsx(), edit)
    with contextlib.suppress(DocumentRejected):  # openpyxl reads the element too, and refuses bad XML
        assert all(m.text for m in parse_file(damaged, "a.xlsx").markings)
    # The search itself skips what it cannot read, a missing part included.
    list(xlsx._header_footer_codes(damaged, ["xl/worksheets/sheet1.xml", "xl/worksheets/missing.xml"]))


def test_xlsx_pptx_and_a_damaged_properties_part() -> None:
    for data, name in ((make_xlsx(), "a.xlsx"), (make_pptx(), "a.pptx")):
        labelled = with_ooxml_parts(data, custom=purview_properties(LABEL_ID, "Highly Confidential"))
        assert parse_file(labelled, name).markings == (Marking("label", "Highly Confidential", label_id=LABEL_ID),)
    broken = with_ooxml_parts(make_docx(), label_info="<clbl:labelList xmlns:clbl='x'><unclosed>")
    assert parse_file(broken, "a.docx").markings == ()  # the text is still read


def test_pdf_information_dictionary_and_xmp() -> None:
    lines = [[(12.0, "Quarterly numbers.")]]
    info = (b" /MSIP_Label_%s_Enabled (true) /MSIP_Label_%s_Name (Highly Confidential)"
            % (LABEL_ID.encode(), LABEL_ID.encode()))
    assert parse_file(make_pdf(lines, info_extra=info), "a.pdf").markings == (
        Marking("label", "Highly Confidential", label_id=LABEL_ID),)
    utf16 = b" /MSIP_Label_%s_Name <FEFF%s>" % (LABEL_ID.encode(), "机密".encode("utf-16-be").hex().encode())
    assert parse_file(make_pdf(lines, info_extra=utf16), "a.pdf").markings[0].text == "机密"
    xmp = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:pdfx="http://ns.adobe.com/'
           b'pdfx/1.3/" pdfx:MSIP_Label_%s_Enabled="true"><pdfx:MSIP_Label_%s_Name>General &amp; More'
           b'</pdfx:MSIP_Label_%s_Name></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
           % (LABEL_ID.encode(), LABEL_ID.encode(), LABEL_ID.encode()))
    assert parse_file(make_pdf(lines, xmp=xmp), "a.pdf").markings == (
        Marking("label", "General & More", label_id=LABEL_ID),)
    assert parse_file(make_pdf(lines), "a.pdf").markings == ()


def test_word_97_user_defined_properties_written_by_libreoffice() -> None:
    parsed = parse_file(LEGACY / "board.doc")
    assert parsed.markings == (Marking("label", "Highly Confidential", label_id=LABEL_ID),)
    assert "Kestrel" in parsed.text
    assert parse_file(LEGACY / "travel.doc").markings == ()


def test_email_headers_and_attachments() -> None:
    msg = email.message.EmailMessage()
    msg["Subject"] = "Q3 numbers"
    msg["From"] = "cfo@qinglan.example"
    msg["msip_labels"] = (f"MSIP_Label_{LABEL_ID}_Enabled=True; MSIP_Label_{LABEL_ID}_SiteId=9a8b; "
                          f"MSIP_Label_{LABEL_ID}_Name=Confidential;")
    msg.set_content("See the attachment.")
    attachment = with_ooxml_parts(make_docx(), custom=purview_properties("0b9f3c1e-2d4a-4e5b-9c6d-7e8f9a0b1c2d",
                                                                         "Highly Confidential"))
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="plan.docx")
    parsed = parse_file(msg.as_bytes(), "q3.eml")
    assert [m.text for m in parsed.markings] == ["Confidential", "Highly Confidential"]  # the attachment's too
    assert read(parsed)[0] == Label.RESTRICTED  # type: ignore[index]

    plain = email.message.EmailMessage()
    plain["Subject"] = "Offsite"
    plain["Sensitivity"] = "Company-Confidential"
    plain.set_content("Dates to follow.")
    assert read(parse_file(plain.as_bytes(), "o.eml"))[0] == Label.CONFIDENTIAL  # type: ignore[index]


def test_outlook_msg_sensitivity_and_received_labels() -> None:
    headers = (f"Received: from mx1\r\nmsip_labels: MSIP_Label_{LABEL_ID}_Enabled=True;\r\n "
               f"MSIP_Label_{LABEL_ID}_Name=Highly Confidential;\r\nSubject: Board\r\n")
    parsed = parse_file(outlook_message(Message(subject="Board", body="Minutes attached.", sensitivity=3,
                                                transport_headers=headers)), "board.msg")
    assert set(parsed.markings) == {Marking("property", "Sensitivity: Company-Confidential"),
                                    Marking("label", "Highly Confidential", label_id=LABEL_ID)}
    assert parse_file(outlook_message(Message(subject="Lunch", body="Noon?")), "lunch.msg").markings == ()


def test_front_matter_and_meta() -> None:
    md = b"---\ntitle: Plan\nclassification: Confidential\n---\n# Plan\n\nText.\n"
    assert read(parse_file(md, "plan.md")) == (Label.CONFIDENTIAL, '"classification: Confidential" in the file\'s '
                                                                   "properties")
    zh = "---\n密级: 机密\n---\n# 计划\n\n正文。\n".encode()
    assert read(parse_file(zh, "plan.md"))[0] == Label.CONFIDENTIAL  # type: ignore[index]
    page = (b'<html><head><title>Wiki</title><meta name="Classification" content="Internal"></head><body><main>'
            b"<p>Text.</p></main><footer>Qinglan intranet | Internal use only</footer></body></html>")
    parsed = parse_file(page, "wiki.html")
    assert Marking("property", "classification: Internal") in parsed.markings
    assert Marking("footer", "Qinglan intranet | Internal use only") in parsed.markings
    assert read(parsed)[0] == Label.INTERNAL  # type: ignore[index]


# --- ingestion ------------------------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIndexStore]:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    yield s
    s.close()


def source(name: str, text: str) -> FileSource:
    return FileSource(name, lambda: text.encode(), name)


def test_ingest_raises_a_label_never_lowers_it_and_says_why(store: SqliteIndexStore) -> None:
    col = store.create_collection("finance", acl=Acl(groups=frozenset({"finance"})))
    ing = Ingestor(store, FakeEmbedder(), markings=MarkingReader())
    report = ing.ingest(col.id, [source("bands.md", "# Salary Bands 2027: CONFIDENTIAL\n\nP1 180,000.\n"),
                                 source("menu.md", "# Canteen menu\n\nNoodles on Monday.\n")], label="internal")
    bands, menu = report.outcomes
    assert (bands.label, bands.marking) == (Label.CONFIDENTIAL, '"CONFIDENTIAL" in the title')
    assert (menu.label, menu.marking) == (Label.INTERNAL, None)
    assert report.to_dict()["raised"] == [{"source_path": "bands.md", "label": "confidential",
                                           "marking": '"CONFIDENTIAL" in the title'}]
    stored = store.get_document(bands.document_id or "")
    assert stored.label == Label.CONFIDENTIAL
    assert stored.metadata["marking"] == '"CONFIDENTIAL" in the title'
    assert stored.metadata["marking_label"] == "confidential"
    # Given a more sensitive label, the document keeps it (and the marking is still recorded).
    again = ing.ingest(col.id, [source("bands-2.md", "# Salary Bands 2028: CONFIDENTIAL\n\nP1 190,000.\n")],
                       label="restricted").outcomes[0]
    assert (again.label, again.marking) == (Label.RESTRICTED, None)
    assert store.get_document(again.document_id or "").metadata["marking_label"] == "confidential"


def test_ingest_of_a_workbook_marked_in_its_page_header(store: SqliteIndexStore) -> None:
    col = store.create_collection("finance", acl=Acl(groups=frozenset({"finance"})))
    ing = Ingestor(store, FakeEmbedder(), markings=MarkingReader())
    data = marked_xlsx(header="Qinglan Components | Confidential", first_page="")
    workbooks = [FileSource("payroll.xlsx", lambda: data, "payroll.xlsx"),
                 FileSource("payroll.xls", lambda: (LEGACY / "payroll.xls").read_bytes(), "payroll.xls")]
    outcomes = ing.ingest(col.id, workbooks, label="internal").outcomes
    assert [(o.label, o.marking) for o in outcomes] == [(Label.CONFIDENTIAL, '"Confidential" in the header')] * 2
    assert store.get_document(outcomes[0].document_id or "").label == Label.CONFIDENTIAL


def test_ingest_without_a_reader_keeps_the_given_label(store: SqliteIndexStore) -> None:
    col = store.create_collection("finance", acl=Acl())
    outcome = Ingestor(store, FakeEmbedder()).ingest(
        col.id, [source("bands.md", "# Salary Bands 2027: CONFIDENTIAL\n\nP1.\n")], label="public").outcomes[0]
    assert (outcome.label, outcome.marking) == (Label.PUBLIC, None)
    assert "marking" not in store.get_document(outcome.document_id or "").metadata


def test_a_review_raises_old_documents_and_records_every_marking(store: SqliteIndexStore) -> None:
    from inhouse.config import KbSettings
    from inhouse.errors import PermissionDenied
    from inhouse.kb.service import KnowledgeBase
    from inhouse.types import Actor

    admin = Actor("key_admin", "admin", role="admin")
    kb = KnowledgeBase(store, FakeEmbedder(), settings=KbSettings(markings=False, parse_workers=0))
    kb.create_collection(admin, "board")
    low = kb.add_document(admin, "board", b"# Plan: CONFIDENTIAL\n\nKestrel.\n", "plan.md", label="internal")
    high = kb.add_document(admin, "board", b"# Memo: CONFIDENTIAL\n\nNotes.\n", "memo.md", label="restricted")
    plain = kb.add_document(admin, "board", b"# Menu\n\nNoodles.\n", "menu.md", label="public")
    assert store.get_document(low.document_id or "").label == Label.INTERNAL  # read without markings
    listed = kb.review_markings(admin, "board")
    assert [(r.document.source_path, r.marked.label) for r in listed] == [("plan.md", Label.CONFIDENTIAL)]
    assert store.get_document(low.document_id or "").label == Label.INTERNAL  # a dry run changes nothing
    kb.review_markings(admin, "board", apply=True)
    raised, kept = store.get_document(low.document_id or ""), store.get_document(high.document_id or "")
    assert raised.label == Label.CONFIDENTIAL and raised.metadata["marking"] == '"CONFIDENTIAL" in the title'
    assert kept.label == Label.RESTRICTED and kept.metadata["marking_label"] == "confidential"  # recorded, not lowered
    assert "marking" not in store.get_document(plain.document_id or "").metadata
    assert kb.review_markings(admin, "board") == []
    with pytest.raises(PermissionDenied, match="Only admins"):
        kb.review_markings(Actor("key_m", "member", role="member"), "board")
