"""Every supported format round-trips through parse_file: structure, pages, metadata, Chinese intact."""

from __future__ import annotations

import codecs
import io
from email.message import EmailMessage
from pathlib import Path

import pytest
from docfactory import make_docx, make_pdf, make_pptx, make_xlsx

from inhouse.errors import DocumentRejected
from inhouse.kb.parse import ParseLimits, detect_format, parse_file

DATA = Path(__file__).parent / "data"


def kinds(doc) -> list[str]:  # type: ignore[no-untyped-def]
    return [b.kind for b in doc.blocks]


def test_pdf_headings_by_font_size_pages_and_metadata() -> None:
    pdf = make_pdf(
        [[(18, "Guide"), (11, "Intro text here."), (14, "Part one"), (11, "Body line one.")],
         [(11, "Second page text.")]],
        info_title="guide.md",
    )
    doc = parse_file(pdf, "guide.pdf")
    assert doc.title == "Guide"  # the Info title looks like a file name, so the first heading wins
    assert doc.mime == "application/pdf" and doc.page_count == 2
    assert doc.metadata == {"author": "Jane Doe", "date": "2026-01-02T03:04:05+00:00"}
    assert [(b.kind, b.level, b.page) for b in doc.blocks] == [
        ("heading", 1, 1), ("paragraph", 0, 1), ("heading", 2, 1), ("paragraph", 0, 1), ("paragraph", 0, 2)]
    assert doc.blocks[-1].section == ("Guide", "Part one")


def test_chinese_pdf_text_intact_and_lines_joined() -> None:
    doc = parse_file(DATA / "zh-handbook.pdf")
    assert doc.language == "zh" and doc.filename == "zh-handbook.pdf"
    assert "每位员工每年享有 3000 元的外部培训预算。" in doc.text
    # a sentence wrapped over two lines is re-joined without a space between Han characters
    assert "工作日加班按 1.5 倍工资计算,休息日加班优先安排调休" in doc.text
    assert [b.text for b in doc.blocks if b.kind == "heading"][1:3] == ["一、工作时间", "二、加班"]
    assert {b.page for b in doc.blocks} == {1}


def test_docx_headings_tables_lists_metadata() -> None:
    doc = parse_file(make_docx(), "rules.docx")
    assert doc.title == "Travel Rules" and doc.metadata["author"] == "Li Wei"
    assert kinds(doc) == ["heading", "paragraph", "heading", "table", "heading", "list", "heading", "paragraph"]
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.text == "City | Limit\nShanghai | 1200 CNY\nOther | 500 CNY"
    assert table.section == ("Travel Rules", "Hotels")
    assert doc.blocks[-1].text == "员工出差须提前三天申请。" and doc.language == "mixed"


def test_pptx_slide_is_page_with_title_bullets_table_notes() -> None:
    doc = parse_file(make_pptx(), "review.pptx")
    assert doc.title == "Q3 Review" and doc.page_count == 2
    assert [(b.kind, b.page) for b in doc.blocks] == [
        ("heading", 1), ("list", 1), ("paragraph", 1), ("heading", 2), ("table", 2)]
    assert doc.blocks[1].text == "- Revenue grew 12%\n- Margin stable"
    assert doc.blocks[2].text == "Notes: Mention the new plant."
    assert doc.blocks[4].section == ("Regions",)


def test_xlsx_sheets_become_tables_with_bounded_rows() -> None:
    doc = parse_file(make_xlsx(), "prices.xlsx")
    assert [(b.kind, b.text.split("\n")[0], b.page) for b in doc.blocks] == [
        ("heading", "Prices", 1), ("table", "Item | Price", 1), ("heading", "人员", 2), ("table", "姓名 | 部门", 2)]
    assert "item-2 | 12" in doc.blocks[1].text and "张三 | 财务部" in doc.text
    assert "author" not in doc.metadata  # "openpyxl" is a placeholder, not an author
    small = parse_file(make_xlsx(rows=10), "prices.xlsx", limits=ParseLimits(max_table_rows=4))
    assert small.blocks[1].text.count("\n") == 3 and "Prices" in small.metadata["truncated"]


def test_xlsx_rows_past_an_understated_dimension_are_read_and_still_bounded() -> None:
    import re
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(make_xlsx(rows=10)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():  # the first sheet says it ends at A1 (a streaming writer's guess)
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data, n = re.subn(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>', data)
                assert n == 1
            out.writestr(info, data)
    doc = parse_file(buf.getvalue(), "prices.xlsx")
    assert doc.blocks[1].text.count("\n") == 10 and "item-9 | 19" in doc.blocks[1].text
    small = parse_file(buf.getvalue(), "prices.xlsx", limits=ParseLimits(max_table_rows=4))
    assert small.blocks[1].text.count("\n") == 3 and "Prices" in small.metadata["truncated"]


def test_csv_gbk_semicolons_and_tsv() -> None:
    data = "姓名;部门;电话\n张三;财务部;7001\n李四;人事部;7002\n".encode("gbk")
    doc = parse_file(data, "staff.csv")
    assert doc.blocks[0].text == "姓名 | 部门 | 电话\n张三 | 财务部 | 7001\n李四 | 人事部 | 7002"
    assert doc.metadata["encoding"] == "gb18030" and doc.language == "zh"
    tsv = parse_file(b"a\tb\n1\t2\n", "x.tsv")
    assert tsv.blocks[0].text == "a | b\n1 | 2"


HTML = """<!DOCTYPE html><html lang="zh"><head><meta charset="gbk"><title>入职指南</title>
<meta name="author" content="HR"><style>p {color: red}</style><script>var x = "secret script";</script></head>
<body><header><a href="/">Home</a> | Intranet</header><nav><ul><li>Menu item</li></ul></nav>
<div class="cookie-banner">We use cookies</div>
<main><h1>入职指南</h1><p>欢迎加入<strong>青岚</strong>。第一天请到前台报到。</p>
<h2>Checklist</h2><ul><li>Laptop</li><li>Badge <em>photo</em></li></ul>
<table><tr><th>Day</th><th>Task</th></tr><tr><td>1</td><td>IT setup</td></tr></table>
<pre>ssh  user@host</pre><blockquote>Ask questions.</blockquote><div>Loose <b>text</b> here</div></main>
<aside>Related links</aside><footer>Copyright 2026</footer></body></html>"""


def test_html_main_content_only() -> None:
    doc = parse_file(HTML.encode("gbk"), "onboarding.html")
    text = doc.text
    for junk in ("Home", "Menu item", "cookies", "secret script", "color", "Related links", "Copyright"):
        assert junk not in text
    assert kinds(doc) == ["heading", "paragraph", "heading", "list", "table", "code", "quote", "paragraph"]
    assert doc.blocks[1].text == "欢迎加入青岚。第一天请到前台报到。"
    assert doc.blocks[3].text == "- Laptop\n- Badge photo"
    assert doc.blocks[4].text == "Day | Task\n1 | IT setup"
    assert doc.blocks[5].text == "ssh  user@host"
    assert doc.blocks[-1].text == "Loose text here"
    assert doc.title == "入职指南" and doc.metadata["author"] == "HR" and doc.metadata["encoding"] == "gb18030"


MARKDOWN = """---
title: Security Policy
author: IT
---
# Security

Intro paragraph.

## Passwords

- at least 12 characters
- rotate yearly

| Rule | Value |
| --- | --- |
| MFA | required |

```bash
echo hi
```

> Quoted note.

Setext heading
--------------
Text under setext.
"""


def test_markdown_structure_and_front_matter() -> None:
    doc = parse_file(MARKDOWN.encode(), "sec.md")
    assert doc.title == "Security Policy" and doc.metadata["author"] == "IT"
    assert [(b.kind, b.level) for b in doc.blocks] == [
        ("heading", 1), ("paragraph", 0), ("heading", 2), ("list", 0), ("table", 0), ("code", 0), ("quote", 0),
        ("heading", 2), ("paragraph", 0)]
    assert doc.blocks[4].text == "Rule | Value\nMFA | required"
    assert doc.blocks[5].text == "```bash\necho hi\n```"
    assert doc.blocks[6].text == "Quoted note."
    assert doc.blocks[-1].section == ("Security", "Setext heading")


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("第一段。\n\n第二段 second.".encode(), "utf-8"),
        (codecs.BOM_UTF8 + "第一段。\n\n第二段 second.".encode(), "utf-8"),
        ("第一段。\n\n第二段 second.".encode("gb18030"), "gb18030"),
        (codecs.BOM_UTF16_LE + "第一段。\n\n第二段 second.".encode("utf-16-le"), "utf-16-le"),
    ],
)
def test_plain_text_encodings(data: bytes, encoding: str) -> None:
    doc = parse_file(data, "notes.txt")
    assert [b.text for b in doc.blocks] == ["第一段。", "第二段 second."]
    assert doc.metadata["encoding"] == encoding and doc.language in ("zh", "mixed")


TRADITIONAL = "員工出差須提前三天申請。緊急出差可事後補辦，住宿標準為每晚新臺幣三千元。"
SIMPLIFIED = "员工出差须提前三天申请。紧急出差可事后补办，住宿标准为每晚一千二百元。"


def test_big5_and_gbk_files_are_told_apart() -> None:
    """Nearly every Big5 file is also valid GB18030, as garbage: the everyday characters decide."""
    for name, data in (("notes.txt", TRADITIONAL.encode("big5")),
                       ("notes.md", f"# 差旅規定\n\n{TRADITIONAL}".encode("cp950")),
                       ("staff.csv", "姓名,部門,分機\n陳美玲,財務部,7001\n".encode("big5"))):
        doc = parse_file(data, name)
        assert doc.metadata["encoding"] == "big5", (name, doc.text)
        assert "員工" in doc.text or "陳美玲" in doc.text
    doc = parse_file(SIMPLIFIED.encode("gbk"), "notes.txt")
    assert doc.metadata["encoding"] == "gb18030" and doc.text == SIMPLIFIED
    # Characters both scripts share, in either encoding.
    assert parse_file("出差三天".encode("big5") * 3, "a.txt").text == "出差三天" * 3
    assert parse_file("出差三天".encode("gbk") * 3, "a.txt").text == "出差三天" * 3


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_read_not_refused_as_binary(codec: str) -> None:
    english = "Annual leave: 15 days after 3 years.\n员工手册：年假十五天。\n"
    doc = parse_file(english.encode(codec), "leave.txt")
    assert (doc.metadata["encoding"], doc.text) == (codec, english.strip())
    chinese = "员工手册年假规定工作满三年后每年十五天带薪年假"  # no ASCII: no NULs to tell it by
    assert parse_file(chinese.encode(codec), "leave.txt").metadata["encoding"] == codec
    # What is not UTF-16 stays what it was: GBK and Big5 Chinese (even lengths), binary with NULs on both sides.
    assert parse_file(SIMPLIFIED.encode("gbk"), "a.txt").metadata["encoding"] == "gb18030"
    assert parse_file(TRADITIONAL.encode("big5"), "a.txt").metadata["encoding"] == "big5"
    with pytest.raises(DocumentRejected, match="NUL bytes"):
        parse_file(b"\x00\x01\x00\x00ab\x00\x00" * 20, "data.txt")


def test_almost_valid_utf8_is_repaired_and_said_so() -> None:
    data = ("中文内容。" * 400).encode() + b"\xff" + b" end"
    doc = parse_file(data, "notes.txt")
    assert "\ufffd" in doc.text and doc.metadata["encoding"].startswith("utf-8 (1 invalid")


def _email(attachments: list[tuple[bytes, str, str, str]], *, html: bool = False) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "Quarterly numbers 季度数据"
    msg["From"] = "Zhang San <zhang@example.com>"
    msg["To"] = "team@example.com"
    msg["Date"] = "Tue, 14 Oct 2026 09:30:00 +0800"
    if html:
        msg.set_content("<html><body><nav>menu</nav><p>See the <b>attached</b> file.</p></body></html>", "html")
    else:
        msg.set_content("Hi team,\n\nSee the attached file.\n")
    for data, maintype, subtype, name in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_eml_headers_body_and_attachments_parsed_recursively() -> None:
    raw = _email([
        (make_docx(), "application", "vnd.openxmlformats-officedocument.wordprocessingml.document", "rules.docx"),
        (b"\x89PNG\r\n\x1a\nxxxx", "image", "png", "logo.png"),
        (b"# Notes\n\nAttached markdown.", "text", "markdown", "../../etc/notes.md"),
    ])
    doc = parse_file(raw, "mail.eml")
    assert doc.title == "Quarterly numbers 季度数据" and doc.mime == "message/rfc822"
    assert doc.metadata["from"] == "Zhang San <zhang@example.com>"
    assert doc.metadata["date"] == "2026-10-14T09:30:00+08:00"
    assert doc.blocks[0].text == "Hi team," and doc.blocks[1].text == "See the attached file."
    headings = [b.text for b in doc.blocks if b.kind == "heading" and b.level == 1]
    assert headings == ["Attachment: rules.docx", "Attachment: notes.md"]
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.section == ("Attachment: rules.docx", "Travel Rules", "Hotels")
    # Without an OCR reader an image attachment is skipped, with the reason (tests/unit/kb/test_ocr_parse.py: with one).
    assert "logo.png: an image is read with OCR, which is off" in doc.metadata["skipped_attachments"]


def test_eml_html_body_and_nested_depth_bound() -> None:
    doc = parse_file(_email([], html=True), "m.eml")
    assert doc.text == "See the attached file."
    inner = _email([])
    for _ in range(5):  # e-mail attached to e-mail attached to e-mail...
        inner = _email([(inner, "application", "octet-stream", "fwd.eml")])
    deep = parse_file(inner, "deep.eml")
    assert deep.text.count("Attachment: fwd.eml") == 3  # depth 1, 2, 3 parsed; depth 4 refused and reported
    assert deep.metadata["skipped_attachments"] == (
        "fwd.eml > fwd.eml > fwd.eml > fwd.eml: nested deeper than 3 levels (attachments in attachments)")


def _mixed(*parts: EmailMessage, subtype: str = "mixed") -> EmailMessage:
    msg = EmailMessage()
    msg.set_type(f"multipart/{subtype}")
    for part in parts:
        msg.attach(part)
    return msg


def _part(content: str | bytes, filename: str | None = None) -> EmailMessage:
    part = EmailMessage()
    if isinstance(content, bytes):
        part.set_content(content, maintype="application", subtype="pkcs7-signature", filename=filename)
    else:
        part.set_content(content)
        if filename:
            part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def test_eml_attachments_inside_nested_multiparts_are_read() -> None:
    # S/MIME: multipart/signed wraps the multipart/mixed holding the body and the attachment.
    signed = _mixed(_mixed(_part("The contract is attached."), _part("Penalty: 5% a week.", "contract.txt")),
                    _part(b"0\x82sig", "smime.p7s"), subtype="signed")
    signed["Subject"] = "Contract"
    doc = parse_file(signed.as_bytes(), "signed.eml")
    assert doc.text.startswith("The contract is attached.") and "Attachment: contract.txt" in doc.text
    assert "Penalty: 5% a week." in doc.text and "skipped_attachments" not in doc.metadata  # smime.p7s: a signature
    # A body, then a nested multipart/mixed holding its own text part, a forwarded message and a report.
    forwarded = EmailMessage()
    forwarded["Subject"] = "Budget"
    forwarded.set_content("Travel budget approved.")
    fwd = EmailMessage()
    fwd.set_content(forwarded)
    inner = _mixed(_part("A note before the files."), fwd, _part("Q3 report numbers.", "q3.txt"))
    doc = parse_file(_mixed(_part("See below."), inner).as_bytes(), "fwd.eml")
    assert doc.blocks[0].text == "See below." and "skipped_attachments" not in doc.metadata
    assert [b.text for b in doc.blocks if b.kind == "heading" and b.level == 1] == [
        "Attachment: attachment-1", "Attachment: attachment-2", "Attachment: q3.txt"]
    assert all(t in doc.text for t in ("A note before the files.", "Travel budget approved.", "Q3 report numbers."))
    # A hostile mail nesting multiparts hundreds deep: read down to the bound, the rest reported.
    deep = _part("Deep attachment.", "deep.txt")
    for _ in range(200):
        deep = _mixed(deep)
    doc = parse_file(_mixed(_part("Top body."), _part("Shallow.", "a.txt"), deep).as_bytes(), "deep.eml")
    assert "Shallow." in doc.text and "Deep attachment." not in doc.text
    assert doc.metadata["skipped_attachments"] == "attachment-2: MIME parts nested deeper than 8 levels"


def test_eml_declared_charsets_gb2312_gbk_and_unknown() -> None:
    # Chinese mail clients label GBK text "gb2312": 镕 and 堃 are GBK, not GB2312. Headers say so too.
    body = "朱镕基 会议纪要：请王堃在周五前提交。"
    def word(text: str, charset: str) -> str:
        return f"=?{charset}?B?{codecs.encode(text.encode('gbk'), 'base64').decode().strip()}?="

    for charset in ("gb2312", "GBK", "x-unknown"):
        raw = (f"Subject: {word('王堃的纪要', 'gb2312')}\r\nFrom: {word('王堃经理', charset)} <a@b.c>\r\n"
               f"MIME-Version: 1.0\r\n"
               f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
               ).encode() + body.encode("gbk")
        doc = parse_file(raw, "m.eml")
        assert (doc.title, doc.metadata["from"], doc.text) == ("王堃的纪要", "王堃经理 <a@b.c>", body), charset
    # Bytes no policy can read: the body is reported, the attachment still read.
    mail = _mixed(_part("x"), _part("The attachment.", "a.txt"))
    raw = mail.as_bytes().replace(b"charset=\"utf-8\"", b"charset=x-unknown", 1).replace(
        b"\n\nx\n", b"\n\n\xff\x00\xfe\n", 1)
    doc = parse_file(raw, "bad.eml")
    assert doc.text.endswith("The attachment.") and doc.metadata["skipped_attachments"].startswith("body: ")


def test_a_chinese_character_split_between_two_encoded_words_is_joined() -> None:
    data = "王堃的纪要".encode("gbk")
    words = [data[:3], data[3:]]  # 王 and the first byte of 堃, then the rest
    subject = " ".join(f"=?gbk?B?{codecs.encode(w, 'base64').decode().strip()}?=" for w in words)
    utf8 = "李四".encode()
    sender = f"=?utf-8?B?{codecs.encode(utf8[:4], 'base64').decode().strip()}?=\r\n =?utf-8?Q?" + "".join(
        f"={b:02X}" for b in utf8[4:]) + "?= <li@b.c>"
    raw = f"Subject: Re: {subject} (1)\r\nFrom: {sender}\r\n\r\nBody.\r\n".encode()
    doc = parse_file(raw, "m.eml")
    assert (doc.title, doc.metadata["from"]) == ("Re: 王堃的纪要 (1)", "李四 <li@b.c>")


def test_a_signed_mails_signature_is_not_an_attachment() -> None:
    for subtype in ("pkcs7-signature", "x-pkcs7-signature"):
        signed = EmailMessage()
        signed["Subject"] = "Signed"
        signed.set_content("The signed text.")
        signed.add_attachment(b"0\x82\x05\x00\x06\t*\x86H", maintype="application", subtype=subtype,
                              filename="smime.p7s")
        doc = parse_file(signed.as_bytes(), "signed.eml")
        assert doc.text == "The signed text." and "skipped_attachments" not in doc.metadata, doc.metadata


def test_raw_8bit_gbk_headers_are_decoded_like_the_text() -> None:
    subject, body = "2026年员工手册修订", "年假天数：工作满3年后每年15天。"
    for content_type in ("Content-Type: text/plain; charset=gbk\r\n", ""):  # declared, else detected
        data = (f"From: 张三 <zhang@example.com>\r\nTo: all@example.com\r\nSubject: {subject}\r\n"
                f"MIME-Version: 1.0\r\n{content_type}Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
                ).encode("gb18030")
        doc = parse_file(data, "mail.eml")
        assert (doc.title, doc.metadata["from"]) == (subject, "张三 <zhang@example.com>"), content_type
    utf8 = f"From: 张三 <zhang@example.com>\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
    assert parse_file(utf8, "mail.eml").title == subject


@pytest.mark.parametrize("label", ["utf-16", "UTF-16LE", "utf-32"])
def test_html_meta_saying_utf16_without_a_bom_is_read_as_utf8(label: str) -> None:
    page = (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={label}">'
            "<title>Leave policy</title></head><body><p>15 days after 3 years. 年假十五天。</p></body></html>")
    doc = parse_file(page.encode(), "leave.html")
    assert (doc.metadata["encoding"], doc.title) == ("utf-8", "Leave policy")
    assert doc.text == "15 days after 3 years. 年假十五天。"
    bom = parse_file(codecs.BOM_UTF16_LE + page.encode("utf-16-le"), "leave.html")  # a real UTF-16 page
    assert bom.text == doc.text


def test_detect_format_by_magic_and_extension() -> None:
    assert detect_format(b"%PDF-1.7 ...", "report.bin") == "pdf"
    assert detect_format(make_docx(), "no-extension") == "docx"
    assert detect_format(make_xlsx(), "misnamed.docx") == "xlsx"  # content wins for containers
    assert detect_format(b"<!DOCTYPE html><p>x", "page") == "html"
    assert detect_format(b"From: a@b.c\nSubject: x\n\nbody", "message") == "eml"
    assert detect_format(b"just words", "README") == "text"
    with pytest.raises(DocumentRejected, match="unsupported file type"):
        detect_format(b"{}", "data.json")


def test_text_about_pdf_is_not_sniffed_as_a_pdf() -> None:
    md = b"# PDF/A checklist\n\nEvery file must start with `%PDF-1.7` and end with `%%EOF`.\n"
    for name, fmt in (("checklist.md", "markdown"), ("notes.txt", "text"), ("page.html", "html")):
        assert detect_format(md, name) == fmt
    assert parse_file(md, "checklist.md").blocks[1].text.startswith("Every file must start with `%PDF-1.7`")
    assert detect_format(b"junk before the header\n%PDF-1.4 ...", "scan.pdf") == "pdf"  # readers accept it
    assert detect_format(b"junk before the header\n%PDF-1.4 ...", "scan") == "pdf"


def test_markdown_script_and_style_blocks_are_not_text() -> None:
    """Raw HTML blocks in Markdown were indexed with their tags stripped: a <script>'s code became a paragraph."""
    md = (b"# Page\n\nIntro text.\n\n<script>\nvar token = 'abc'; track(token);\n</script>\n\n"
          b"<style>\n.x { color: red }\n</style>\n\n<div>Kept <b>words</b></div>\n\nEnd.\n")
    text = "\n".join(b.text for b in parse_file(md, "page.md").blocks)
    assert "Intro text." in text and "Kept words" in text and "End." in text
    assert "track" not in text and "color" not in text, text


def test_declared_big5_reads_as_microsofts_superset() -> None:
    """Mail labelled "big5" holds cp950 text (characters such as 碁 and 銹 are not in Big5 proper): read under its
    label, not left to the detection, which can take a short Big5 text for GB18030."""
    from inhouse.kb.parse.text import codec_of, decode_declared

    assert codec_of("big5") == codec_of("BIG5") == "cp950" and codec_of("gb2312") == "gb18030"
    assert codec_of("big5-hkscs") == "big5hkscs" and codec_of("x-unknown") is None
    assert decode_declared("碁銹公司".encode("cp950"), "big5", "m.eml") == ("碁銹公司", "cp950")
