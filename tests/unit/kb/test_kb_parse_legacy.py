"""Word, Excel and PowerPoint 97-2003 and Outlook .msg: read as their modern counterparts are, refused with a reason
when not.

The .doc, .xls and .ppt fixtures were saved by LibreOffice from sources in ``data/legacy/make_fixtures.py``; the .msg
files are built by ``inhouse.testing.outlook`` (nothing here writes real Outlook files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib.util
import struct
from collections.abc import Callable
from pathlib import Path

import olefile
import pytest
from docfactory import make_docx, make_pdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.kb.parse import detect_format, parse_file
from inhouse.testing.outlook import Attachment, Message, outlook_message, write_compound

LEGACY = Path(__file__).parent / "data" / "legacy"


def fixture(name: str) -> bytes:
    return (LEGACY / name).read_bytes()


def rejected(data: bytes, name: str) -> str:
    with pytest.raises(DocumentRejected) as info:
        parse_file(data, name)
    return info.value.reason


def streams_of(data: bytes) -> dict[str, bytes]:
    ole = olefile.OleFileIO(data)
    return {"/".join(path): ole.openstream(path).read() for path in ole.listdir()}


def shape(doc: object) -> list[tuple[str, str, int, tuple[str, ...]]]:
    return [(b.kind, b.text, b.level, b.section) for b in doc.blocks]  # type: ignore[attr-defined]


# --- Word 97-2003 -------------------------------------------------------------------------------------------------


def test_doc_reads_as_the_docx_it_was_saved_from(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", LEGACY / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    source.travel_docx(tmp_path / "travel.docx")
    modern = parse_file(tmp_path / "travel.docx")
    legacy = parse_file(fixture("travel.doc"), "travel.doc")
    assert shape(legacy) == shape(modern)
    assert len(legacy.blocks) == 159 and legacy.blocks[-1].section == ("Travel Rules", "差旅", "Receipts")
    assert legacy.title == "Travel Rules" and legacy.mime == "application/msword" and legacy.language == "en"
    assert legacy.metadata["author"] == "Li Wei" and legacy.metadata["subject"] == "Expenses"
    assert legacy.metadata["date"] == modern.metadata["date"]
    table = next(b for b in legacy.blocks if b.kind == "table")
    assert table.text == "City | Limit | Note\nShanghai | 1200 CNY\nOther | 500 CNY | per night"


def test_doc_fields_breaks_lists_and_nested_tables() -> None:
    doc = parse_file(fixture("rich.doc"), "rich.doc")
    assert shape(doc) == [
        ("heading", "Security Handbook", 1, ()),
        # the hyperlink field keeps its text, not its code; a line break reads as a space
        ("paragraph", "See the VPN guide before travel. Second line after a break.", 0, ("Security Handbook",)),
        ("heading", "Accounts", 2, ("Security Handbook",)),
        ("list", "- Use a password manager.\n- Turn on two-factor sign-in.", 0, ("Security Handbook", "Accounts")),
        # a table inside a cell is read into that cell; an empty cell keeps its column
        ("table", "System | Owner\nMail | IT inner a inner b\n | Finance", 0, ("Security Handbook", "Accounts")),
        ("heading", "账户安全", 3, ("Security Handbook", "Accounts")),
        ("paragraph", "密码至少十二位。", 0, ("Security Handbook", "Accounts", "账户安全")),
    ]


def _with_fib(data: bytes, change: dict[str, bytes] | None = None, **fields: int) -> bytes:
    """The same document rebuilt, with FIB fields overwritten (offset=value) and streams replaced."""
    streams = streams_of(data)
    word = bytearray(streams["WordDocument"])
    for offset, value in fields.items():
        struct.pack_into("<H", word, int(offset.lstrip("_"), 16), value)
    streams["WordDocument"] = bytes(word)
    streams.update(change or {})
    return write_compound(streams)


def test_doc_piece_table_split_in_pieces_of_both_widths() -> None:
    """Word saves edits as new pieces, 8-bit and UTF-16 mixed. Rebuild the text as three pieces: the middle one,
    inside the first paragraph, 8-bit and appended to the stream (its paragraph mark stays where the paragraph
    properties say), and point the piece table at them."""
    streams = streams_of(fixture("travel.doc"))
    word, table = bytearray(streams["WordDocument"]), bytearray(streams["1Table"])
    base = 154  # FibRgFcLcb97 in a Word 97 FIB: csw 14, cslw 22
    fc_clx, lcb_clx = struct.unpack_from("<II", word, base + 33 * 8)
    clx = bytes(table[fc_clx:fc_clx + lcb_clx])
    cps = struct.unpack_from("<2i", clx, 5)
    fc = struct.unpack_from("<I", clx, 5 + 8 + 2)[0]
    assert not fc & 0x40000000  # LibreOffice writes one UTF-16 piece
    text = bytes(word[fc:fc + 2 * cps[1]]).decode("utf-16-le")
    first, second = text.index("These rules"), text.index("Bold part.")
    assert text[first:second].isascii()
    ascii_at = len(word)
    word += text[first:second].encode("cp1252")
    pieces = [(0, first, fc), (first, second, (ascii_at * 2) | 0x40000000), (second, cps[1], fc + 2 * second)]
    plc = struct.pack(f"<{len(pieces) + 1}i", *[p[0] for p in pieces], cps[1]) + b"".join(
        struct.pack("<HIH", 0, p[2], 0) for p in pieces)
    new_clx = b"\x02" + struct.pack("<I", len(plc)) + plc
    struct.pack_into("<II", word, base + 33 * 8, len(table), len(new_clx))
    table += new_clx
    streams.update({"WordDocument": bytes(word), "1Table": bytes(table)})
    assert shape(parse_file(write_compound(streams), "travel.doc")) == shape(parse_file(fixture("travel.doc"),
                                                                                        "travel.doc"))


def test_doc_piece_table_with_a_negative_formatting_size_is_refused_not_looped() -> None:
    streams = streams_of(fixture("rich.doc"))
    word, table = bytearray(streams["WordDocument"]), bytearray(streams["1Table"])
    fc_clx, lcb_clx = struct.unpack_from("<II", word, 154 + 33 * 8)
    clx = b"\x01" + struct.pack("<h", -3) + bytes(table[fc_clx:fc_clx + lcb_clx])  # a Prc that points back at itself
    struct.pack_into("<II", word, 154 + 33 * 8, len(table), len(clx))
    streams.update({"WordDocument": bytes(word), "1Table": bytes(table + clx)})
    assert "negative size" in rejected(write_compound(streams), "loop.doc")


def test_doc_encrypted_obfuscated_and_word95_are_refused_with_a_reason() -> None:
    flags = struct.unpack_from("<H", streams_of(fixture("rich.doc"))["WordDocument"], 0x0A)[0]
    assert "password" in rejected(_with_fib(fixture("rich.doc"), _0A=flags | 0x0100), "locked.doc")
    assert "password" in rejected(_with_fib(fixture("rich.doc"), _0A=flags | 0x8000), "xor.doc")
    assert "Word 6/95" in rejected(_with_fib(fixture("rich.doc"), _02=104), "old.doc")
    no_table = _with_fib(fixture("rich.doc"), _0A=flags ^ 0x0200)  # points at a 0Table the file does not have
    assert rejected(no_table, "broken.doc") == "corrupt Word document (its table stream is missing)"


# --- Excel 97-2003 ------------------------------------------------------------------------------------------------


def test_xls_sheets_dates_and_calculated_values() -> None:
    doc = parse_file(fixture("budget.xls"), "budget.xls")
    assert shape(doc) == [
        ("heading", "Budget", 1, ()),
        ("table", "Item | Amount | Date\nHotel | 1200 | 2026-03-01\nTaxi | 35.5 | 2026-03-02T14:30:00\n合计 | 1235.5",
         0, ("Budget",)),
        ("heading", "空表", 1, ()),
        ("heading", "Notes", 1, ()),
        ("table", "Approved by CFO", 0, ("Notes",)),
    ]
    assert [b.page for b in doc.blocks] == [1, 1, 2, 3, 3] and doc.page_count == 3
    assert doc.title == "Budget 2026" and doc.metadata["author"] == "Li Wei"
    assert doc.mime == "application/vnd.ms-excel"


# --- PowerPoint 97-2003 -------------------------------------------------------------------------------------------


def _with_record(data: bytes, kind: int, replace: Callable[[bytes], tuple[int, bytes]]) -> bytes:
    """The workbook with the first record of type ``kind`` in its Workbook stream replaced by ``(type, body)`` of the
    same size (so that every offset the stream holds stays right)."""
    streams = streams_of(data)
    book = bytearray(streams["Workbook"])
    at = 0
    while struct.unpack_from("<H", book, at)[0] != kind:
        at += 4 + struct.unpack_from("<H", book, at + 2)[0]
    size = struct.unpack_from("<H", book, at + 2)[0]
    new_kind, body = replace(bytes(book[at + 4:at + 4 + size]))
    assert len(body) == size
    book[at:at + 4 + size] = struct.pack("<HH", new_kind, size) + body
    streams["Workbook"] = bytes(book)
    return write_compound(streams)


def test_xls_page_headers_from_excel_2007_and_damaged_ones() -> None:
    from inhouse.kb.document import Marking

    # Excel 2007 and later keep the first-page and even-page ones in a HeaderFooter record (0x089C): here it stands
    # in for the FOOTER record, with a first-page header of 15 one-byte characters.
    first_page = _with_record(fixture("payroll.xls"), 0x0015, lambda body: (0x089C, (
        bytes(30) + struct.pack("<4H", 0, 0, 15, 0) + b"\x00&CInternal only").ljust(len(body), b"\x00")))
    assert parse_file(first_page, "p.xls").markings == (Marking("header", "Confidential"),
                                                        Marking("header", "Internal only"))
    # A header whose character count runs past its record, one zeroed, one too short for its type: skipped, the
    # sheet still read.
    for damage in (lambda body: (0x0014, b"\xff\x00" + body[2:]),
                   lambda body: (0x0014, body[:2] + bytes(len(body) - 2)),
                   lambda body: (0x089C, body)):
        parsed = parse_file(_with_record(fixture("payroll.xls"), 0x0014, damage), "p.xls")
        assert Marking("header", "Confidential") not in parsed.markings
        assert "Chen Jing" in parsed.text


def test_ppt_saved_by_libreoffice_reads_each_slide_as_a_page() -> None:
    doc = parse_file(fixture("deck.ppt"), "deck.ppt")
    assert [(b.kind, b.text, b.page) for b in doc.blocks] == [
        ("heading", "Results", 1), ("list", "- Revenue grew 12%\n- Margin stable", 1),
        ("paragraph", "Notes: Mention the new plant.", 1),
        ("heading", "Regions", 2),
        # a .ppt table is a drawing of separate boxes: its cells come out one by one, in order
        ("paragraph", "Region", 2), ("paragraph", "Sales", 2), ("paragraph", "East", 2), ("paragraph", "42", 2)]
    assert doc.page_count == 2 and doc.mime == "application/vnd.ms-powerpoint"


def _record(kind: int, body: bytes, *, instance: int = 0, container: bool = False) -> bytes:
    return struct.pack("<HHI", (instance << 4) | (0xF if container else 0), kind, len(body)) + body


def _powerpoint_file(*, stale_edit: bool = True, current_user: bool = True, token: int = 0xE391C05F) -> bytes:
    """A deck laid out the way PowerPoint writes it: placeholder text in the slide list, the slide's boxes
    pointing at it, a free text box with its own 8-bit text, speaker notes on slide 1; saved twice, the second
    edit replacing slide 2."""
    def header(kind: int) -> bytes:
        return _record(0x0F9F, struct.pack("<I", kind))

    def chars(text: str) -> bytes:
        return _record(0x0FA0, text.encode("utf-16-le"))

    def slide(*boxes: bytes, notes_id: int = 0, kind: int = 0x03EE) -> bytes:
        textboxes = b"".join(_record(0xF00D, box, container=True) for box in boxes)
        atom = _record(0x03EF, struct.pack("<I8sIIHH", 0, b"", 0x80000000, notes_id, 0, 0))
        return _record(kind, atom + _record(0x040C, _record(0xF002, textboxes, container=True), container=True),
                       container=True)

    def persist(pid: int, slide_id: int = 256) -> bytes:
        return _record(0x03F3, struct.pack("<IIiII", pid, 0, 0, slide_id, 0))

    def outline_ref(index: int) -> bytes:
        return _record(0x0F9E, struct.pack("<I", index))

    slide_list = _record(0x0FF0, b"".join([
        persist(2), header(0), chars("Quarterly results"), header(1), chars("Revenue up 12%\rCosts flat"),
        persist(3), header(0), chars("季度展望"), header(1), chars("继续扩大华东市场"),
    ]), container=True)
    notes_list = _record(0x0FF0, persist(4, slide_id=7), instance=2, container=True)
    document = _record(0x03E8, _record(0x1001, b"\0" * 40) + slide_list + notes_list, container=True)
    old_slide = slide(outline_ref(0), header(4) + chars("stale text, replaced by the second save"))
    slide_one = slide(outline_ref(0), outline_ref(1), header(4) + _record(0x0FA8, b"Prepared by Finance"),
                      notes_id=7)
    notes_one = slide(header(2) + chars("Say the margin first."), kind=0x03F0)
    slide_two = slide(outline_ref(0), outline_ref(1))
    stream = bytearray()

    def add(record: bytes) -> int:
        stream.extend(record)
        return len(stream) - len(record)

    at_doc, at_one, at_old, at_notes = add(document), add(slide_one), add(old_slide), add(notes_one)
    first_dir = add(_record(0x1772, struct.pack("<I", (4 << 20) | 1)
                            + struct.pack("<IIII", at_doc, at_one, at_old, at_notes)))
    first_edit = add(_record(0x0FF5, struct.pack("<IHBBIII", 3, 0, 0, 3, 0, first_dir, 1) + b"\0" * 8))
    last_edit = first_edit
    if stale_edit:
        at_two = add(slide_two)
        second_dir = add(_record(0x1772, struct.pack("<I", (1 << 20) | 3) + struct.pack("<I", at_two)))
        last_edit = add(_record(0x0FF5, struct.pack("<IHBBIII", 3, 0, 0, 3, first_edit, second_dir, 1) + b"\0" * 8))
    else:
        stream[first_dir + 16:first_dir + 20] = struct.pack("<I", at_one)  # slide 2 shares slide 1's record
    user = struct.pack("<HHI", 0, 0x0FF6, 20) + struct.pack("<IIIHHBBH", 20, token, last_edit, 0, 0, 3, 0, 0)
    streams = {"PowerPoint Document": bytes(stream)}
    if current_user:
        streams["Current User"] = user
    return write_compound(streams)


def test_ppt_as_powerpoint_writes_it_placeholders_and_edits() -> None:
    doc = parse_file(_powerpoint_file(), "q3.ppt")
    assert [(b.kind, b.text, b.page) for b in doc.blocks] == [
        ("heading", "Quarterly results", 1), ("list", "- Revenue up 12%\n- Costs flat", 1),
        ("paragraph", "Prepared by Finance", 1), ("paragraph", "Notes: Say the margin first.", 1),
        # the second save's slide 2: the first save's copy, still in the file, is not read
        ("heading", "季度展望", 2), ("paragraph", "继续扩大华东市场", 2)]
    assert doc.title == "Quarterly results" and doc.language == "mixed"


def test_ppt_without_a_persist_directory_reads_the_slides_in_file_order() -> None:
    doc = parse_file(_powerpoint_file(stale_edit=False, current_user=False), "q3.ppt")
    # no slide list to resolve the placeholders: the slides' own text, each slide under its number
    assert [(b.kind, b.text, b.page) for b in doc.blocks] == [
        ("heading", "Slide 1", 1), ("paragraph", "Prepared by Finance", 1),
        ("heading", "Slide 2", 2), ("paragraph", "stale text, replaced by the second save", 2)]


def test_ppt_encrypted_is_refused() -> None:
    assert "password" in rejected(_powerpoint_file(token=0xF3D1C4DF), "locked.ppt")


# --- Outlook ------------------------------------------------------------------------------------------------------


def _message(**kw: object) -> Message:
    base: dict[str, object] = dict(
        subject="Travel rules for Q2", sender=("Li Wei", "li.wei@example.com"),
        to=[("Wang Fang", "wang.fang@example.com"), ("Zhang San", "zhang.san@example.com")],
        cc=[("HR", "hr@example.com")], body="Hello team,\r\n\r\nThe new travel rules apply from April.\r\n",
        sent=dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC))
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def test_msg_headers_body_and_attachments() -> None:
    reply = Message(subject="Re: 报销", sender=("王芳", "wang.fang@example.com"), body="已批准。")
    msg = _message(attachments=[
        Attachment("rules.docx", make_docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                   ),
        Attachment("logo.png", b"\x89PNG\r\n\x1a\n", "image/png", hidden=True),  # an inline signature image
        Attachment("Re: 报销", message=reply),
    ])
    doc = parse_file(outlook_message(msg), "travel.msg")
    assert doc.title == "Travel rules for Q2" and doc.mime == "application/vnd.ms-outlook"
    assert doc.metadata == {"from": "Li Wei <li.wei@example.com>", "subject": "Travel rules for Q2",
                            "to": "Wang Fang <wang.fang@example.com>, Zhang San <zhang.san@example.com>",
                            "date": "2026-03-01T08:30:00+00:00"}
    assert shape(doc)[:2] == [("paragraph", "Hello team,", 0, ()),
                              ("paragraph", "The new travel rules apply from April.", 0, ())]
    headings = [b.text for b in doc.blocks if b.kind == "heading" and b.level == 1]
    assert headings == ["Attachment: rules.docx", "Attachment: Re: 报销.eml"]
    assert doc.blocks[-1].text == "已批准。" and doc.blocks[-1].section == ("Attachment: Re: 报销.eml",)
    assert "员工出差须提前三天申请。" in doc.text and "skipped_attachments" not in doc.metadata


def test_msg_html_only_body_and_an_ansi_message_in_its_code_page() -> None:
    html = "<html><head><meta charset='utf-8'></head><body><h2>议程</h2><p>预算评审</p></body></html>"
    doc = parse_file(outlook_message(_message(body=None, html=html.encode())), "m.msg")
    assert shape(doc) == [("heading", "议程", 2, ()), ("paragraph", "预算评审", 0, ("议程",))]
    ansi = outlook_message(_message(subject="差旅报销", body="请在周五前提交。", code_page=936))
    doc = parse_file(ansi, "ansi.msg")
    assert doc.title == "差旅报销" and doc.text == "请在周五前提交。"


def test_msg_html_body_declared_gb2312_holding_gbk_reads_as_eml_and_html_do() -> None:
    html = "<html><head><meta charset='gb2312'></head><body><p>朱镕基 会议纪要：王堃</p></body></html>"
    doc = parse_file(outlook_message(_message(body=None, html=html.encode("gbk"))), "m.msg")
    assert doc.text == "朱镕基 会议纪要：王堃"


# An HTML mail's body as Outlook keeps it when it stores no HTML or plain body: RTF encapsulating the HTML.
ENCAPSULATED = (
    b"{\\rtf1\\ansi\\ansicpg936\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}\r\n"
    b"{\\*\\htmltag19 <html>}{\\*\\htmltag34 <head>}{\\*\\htmltag241 <style>}{\\*\\htmltag241 p \\{margin:0\\}}"
    b"{\\*\\htmltag249 </style>}{\\*\\htmltag41 </head>}{\\*\\htmltag50 <body>}\\htmlrtf \\lang2052 \\htmlrtf0 "
    b"{\\*\\htmltag64 <h2>}\\htmlrtf {\\htmlrtf0 \\'d2\\'e9\\'b3\\'cc\\htmlrtf }\\htmlrtf0 {\\*\\htmltag72 </h2>}"
    b"\\htmlrtf \\par \\htmlrtf0 {\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 Budget review, caf\\u233\\'e9\\htmlrtf }"
    b"\\htmlrtf0 {\\*\\htmltag72 </p>}{\\*\\htmltag0 \\par }{\\*\\htmltag58 </body>}{\\*\\htmltag27 </html>}}"
)


@functools.cache
def _rtf_message() -> bytes:
    return outlook_message(_message(body=None, rtf=ENCAPSULATED))


def test_msg_with_only_a_compressed_rtf_body() -> None:
    """Outlook's PR_RTF_COMPRESSED ([MS-OXRTFCP]): an HTML mail's encapsulated HTML ([MS-OXRTFEX]) is read as
    HTML, a rich-text mail's RTF as text. The compressor in inhouse.testing and the decompressor were both
    checked against an independent implementation (compressed-rtf 1.0.7, which also checks the CRC)."""
    doc = parse_file(outlook_message(_message(body=None, rtf=ENCAPSULATED)), "html.msg")
    assert shape(doc) == [("heading", "议程", 2, ()), ("paragraph", "Budget review, café", 0, ("议程",))]
    rich = b"{\\rtf1\\ansi{\\fonttbl{\\f0 Arial;}}\\pard\\outlinelevel0 Agenda\\par\\pard Budget review\\par}"
    doc = parse_file(outlook_message(_message(body=None, rtf=rich)), "rich.msg")
    assert doc.text == "Agenda\n\nBudget review"
    # A damaged body costs the body, not the message: its attachment is still read.
    broken = outlook_message(_message(body=None, rtf=rich, attachments=[Attachment("rules.docx", make_docx())]))
    at = broken.index(b"LZFu")
    doc = parse_file(broken[:at] + b"XXXX" + broken[at + 4:], "broken.msg")
    assert "Attachment: rules.docx" in doc.text and "Agenda" not in doc.text


def test_msg_encapsulated_html_with_an_emoji_written_as_a_surrogate_pair() -> None:
    emoji = ENCAPSULATED.replace(b"caf\\u233\\'e9", b"caf\\u233\\'e9 \\u-10179?\\u-8694? \\'d2\\'e9")
    assert emoji != ENCAPSULATED
    doc = parse_file(outlook_message(_message(body=None, rtf=emoji)), "emoji.msg")
    assert doc.blocks[1].text == "Budget review, café 😊 议"


def test_msg_without_any_content_is_refused() -> None:
    reason = rejected(outlook_message(Message(body=None)), "empty.msg")
    assert reason in ("Outlook message has no subject, sender or body", "e-mail has no readable text body or "
                      "attachment")


def test_an_attached_msg_in_an_eml_is_read_too() -> None:
    from email.message import EmailMessage

    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("See attached.")
    outer.add_attachment(outlook_message(_message()), maintype="application", subtype="vnd.ms-outlook",
                         filename="rules.msg")
    doc = parse_file(outer.as_bytes(), "fwd.eml")
    assert "The new travel rules apply from April." in doc.text


# --- Compound files we do not read, and bad input -----------------------------------------------------------------


def test_other_compound_files_are_refused_with_what_to_do() -> None:
    assert rejected(write_compound({"PowerPoint Document": b"\0" * 64}), "deck.ppt") == "PowerPoint file has no slides"
    locked = write_compound({"EncryptionInfo": b"\4\0\4\0", "EncryptedPackage": b"\0" * 64})
    assert "password-protected" in rejected(locked, "locked.docx")
    assert "not a Word, Excel, PowerPoint or Outlook file" in rejected(write_compound({"Contents": b"x"}), "thing.doc")
    assert rejected(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "old.doc").startswith("corrupt OLE2")
    assert "content does not match" in rejected(b"plain text", "notes.doc")


def test_the_bytes_decide_not_the_extension() -> None:
    assert detect_format(fixture("budget.xls"), "budget.doc") == "xls"
    assert detect_format(fixture("travel.doc"), "travel") == "doc"
    assert detect_format(outlook_message(_message()), "mail.eml") == "msg"
    assert detect_format(make_pdf([[(11, "x")]]), "scan.doc") == "pdf"
    assert detect_format(b"From: a@example.com\r\nSubject: hi\r\n\r\nbody", "saved.msg") == "eml"


@pytest.mark.parametrize(("fixture_name", "wps_name"), [("travel.doc", "travel.wps"), ("budget.xls", "budget.et"),
                                                    ("deck.ppt", "deck.dps")])
def test_wps_office_files_in_the_office_97_form_read_as_word_excel_and_powerpoint(fixture_name: str,
                                                                                  wps_name: str) -> None:
    assert parse_file(fixture(fixture_name), wps_name).blocks == parse_file(fixture(fixture_name), fixture_name).blocks
    assert "content does not match" in rejected(b"plain text", wps_name)


def _mutated(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[512 + at % (len(out) - 512)] = value  # past the header: the streams and their tables
    return bytes(out)


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["travel.doc", "rich.doc", "budget.xls", "deck.ppt", "q3.ppt", "mail.msg", "board.doc",
                              "notes.doc", "footer.ppt", "rtf.msg", "watermark.doc", "payroll.xls"]),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=12),
       cut=st.none() | st.integers(513, 1 << 16))
def test_damaged_legacy_files_never_raise_anything_but_document_rejected(
        which: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    made = {"mail.msg": lambda: outlook_message(_message(html=b"<p>x</p>")), "q3.ppt": _powerpoint_file,
            "rtf.msg": _rtf_message}
    data = made[which]() if which in made else fixture(which)
    data = _mutated(data, edits)
    with contextlib.suppress(DocumentRejected):
        parse_file(data[:cut] if cut else data, which)


NOTES_BLOCKS = [
    ("heading", "Expense Rules"),
    ("paragraph", "Hotels in Shanghai are reimbursed up to 1,200 CNY a night."),
    ("paragraph", "Footnote 1: Except during the trade fair week, when the limit is 1,800 CNY."),
    ("list", "- Book through the travel desk.\n- Keep every receipt."),
    ("paragraph", "Footnote 2: Travel desk: extension 8100."),  # a list item's note: after the list
    ("paragraph", "Taxi receipts must show the route."),
    ("paragraph", "Endnote 1: Ride-hailing screenshots count as receipts."),
    ("paragraph", "Questions go to the finance desk."),
    ("paragraph", "Approval hotline: extension 8123."),  # the text box anchored in that paragraph, once
    ("paragraph", "员工出差须提前三天申请。"),
    ("paragraph", "Footnote 3: 紧急出差可事后补办。"),
]


@pytest.mark.parametrize("name", ["notes.docx", "notes.doc", "notes.rtf"])
def test_notes_and_text_boxes_are_read_after_the_paragraph_that_refers_to_them(name: str) -> None:
    """LibreOffice wrote both files from one source: .docx keeps notes in their own parts and the text box twice
    (a drawing and its VML fallback); Word 97 keeps them in stories after the main text."""
    parsed = parse_file(fixture(name), name)
    assert [(b.kind, b.text) for b in parsed.blocks] == NOTES_BLOCKS
    assert parsed.blocks[2].section == ("Expense Rules",)


@pytest.mark.parametrize("name", ["table-note.docx", "table-note.doc", "table-note.rtf"])
def test_a_note_referred_to_from_a_table_cell_follows_the_table(name: str) -> None:
    assert [(b.kind, b.text) for b in parse_file(fixture(name), name).blocks] == [
        ("paragraph", "Limits by city."), ("table", "City | Limit\nShanghai | 1200 CNY"),
        ("paragraph", "Footnote 1: 1800 CNY during the trade fair."), ("paragraph", "After the table.")]


def test_a_powerpoint_97_footer_is_a_marking_and_running_placeholders_are_not_content() -> None:
    from inhouse.kb.document import Marking

    parsed = parse_file(fixture("footer.ppt"), "footer.ppt")
    assert parsed.markings == (Marking("footer", "Qinglan Components | Confidential"),)
    assert "Confidential" not in parsed.text
    # PowerPoint marks the date, number and footer boxes with a placeholder atom (LibreOffice, which wrote this
    # file, does not): turn the title's placeholder into a footer one and its box stops being content.
    ole = olefile.OleFileIO(fixture("footer.ppt"))
    streams = {"/".join(p): ole.openstream(p).read() for p in ole.listdir()}
    ole.close()
    stream = bytearray(streams["PowerPoint Document"])
    title_atom = bytes.fromhex("0000c30b08000000") + bytes.fromhex("000000000d000000")  # OEPlaceholderAtom, title
    at = bytes(stream).index(title_atom)
    stream[at + 8 + 4] = 9  # MasterFooter
    streams["PowerPoint Document"] = bytes(stream)
    patched = parse_file(write_compound(streams), "footer.ppt")
    assert "Results" not in patched.text and patched.blocks[0].text == "Slide 1"
