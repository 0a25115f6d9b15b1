"""RTF (kb/parse/rtf.py): LibreOffice's RTF reads into the same blocks as the Word 97 file saved from the same
source, and the constructs a Chinese Word writes (GBK escapes, \\ansicpg936, \\uN with fallbacks, fields, old-style
lists, headers, the information group) come out right; bad input is a DocumentRejected, never anything else."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking
from inhouse.kb.markings import MarkingReader
from inhouse.kb.parse import detect_format, parse_file

LEGACY = Path(__file__).parent / "data" / "legacy"


def gbk(text: str) -> bytes:
    """``text`` as a Chinese Word writes it in RTF: each GBK byte as a \\'hh escape."""
    return b"".join(b"\\'%02x" % byte for byte in text.encode("gbk"))


WORD_ZH = (
    b"{\\rtf1\\ansi\\ansicpg936\\deff0\\deflang1033\\deflangfe2052"
    b"{\\fonttbl{\\f0\\froman\\fcharset0 Times New Roman;}{\\f13\\fnil\\fcharset134 " + gbk("宋体") + b";}}"
    b"{\\colortbl;\\red0\\green0\\blue0;}"
    b"{\\stylesheet{\\qj \\fs21 Normal;}{\\s1\\qj\\keepn\\fs44 heading 1;}{\\s2\\fs32 " + gbk("标题 2") + b";}}"
    b"{\\info{\\title " + gbk("差旅制度") + b"}{\\author " + gbk("李伟") + b"}"
    b"{\\creatim\\yr2026\\mo3\\dy1\\hr9\\min30}}"
    b"{\\*\\rsidtbl \\rsid123}{\\*\\generator Microsoft Word 16;}"
    b"{\\header \\pard\\plain \\qc\\f13 " + gbk("内部资料") + b"\\par}"
    b"\\pard\\plain \\s1\\qj\\outlinelevel0\\f13\\fs44 " + gbk("差旅制度") + b"\\par"
    b"\\pard\\plain \\s2\\f13 " + gbk("住宿") + b"\\par"
    b"\\pard\\plain \\f13 " + gbk("上海每晚不超过") + b" 1200 " + gbk("元。") +
    b"{\\field{\\*\\fldinst { HYPERLINK \"https://intranet.example/travel\" }}{\\fldrslt {" + gbk("详见内网") +
    b"}}}\\par"
    b"{\\*\\pn\\pnlvlblt\\pnf2{\\pntxtb \\'b7}}"
    b"\\pard\\plain \\fi-420\\li420{\\pntext\\f2\\'b7\\tab}{\\*\\pn\\pnlvlblt}\\f13 " + gbk("提前三天申请") + b"\\par"
    b"\\pard\\plain \\fi-420\\li420{\\pntext\\f2\\'b7\\tab}{\\*\\pn\\pnlvlblt}\\f13 " + gbk("保留发票") + b"\\par"
    b"\\pard\\plain \\uc2\\u8220\\'a1\\'b0Emoji \\u-10179\\'3f\\'3f\\u-8704\\'3f\\'3f\\u8221\\'a1\\'b1 "
    b"{\\*\\unknowndest hidden text}{\\pict\\wmetafile8 0102ff}{\\object\\objemb{\\*\\objdata 0a0b}}"
    b"\\bin4 {}\\x done\\par"
    b"\\trowd\\cellx2000\\cellx4000\\pard\\intbl\\f13 " + gbk("城市") + b"\\cell " + gbk("限额") + b"\\cell\\row"
    b"\\trowd\\cellx2000\\cellx4000\\pard\\intbl\\f13 " + gbk("上海") + b"\\cell 1200\\nestcell 600\\cell\\row"
    b"\\pard\\plain\\f13 " + gbk("完") + b"\\sect }"
)


def blocks(name_or_data: str | bytes, filename: str = "x.rtf") -> list[tuple[str, str]]:
    parsed = parse_file(LEGACY / name_or_data if isinstance(name_or_data, str) else name_or_data, filename)
    return [(b.kind, b.text) for b in parsed.blocks]


def test_libreoffice_rtf_reads_like_the_word_97_file_of_the_same_source() -> None:
    rtf, doc = parse_file(LEGACY / "travel.rtf"), parse_file(LEGACY / "travel.doc")
    assert [(b.kind, b.text, b.section) for b in rtf.blocks] == [(b.kind, b.text, b.section) for b in doc.blocks]
    assert len(rtf.blocks) == 159 and rtf.title == "Travel Rules" == doc.title
    assert rtf.metadata["author"] == "Li Wei" and rtf.metadata["subject"] == "Expenses"
    assert rtf.mime == "application/rtf"
    # Footnotes, an endnote (\ftnalt) and a text box (\shptxt, its \shprslt copy skipped), as in .docx and .doc.
    assert blocks("notes.rtf") == blocks("notes.doc")


def test_what_a_chinese_word_writes() -> None:
    parsed = parse_file(WORD_ZH, "差旅.rtf")
    assert [(b.kind, b.text) for b in parsed.blocks] == [
        ("heading", "差旅制度"),
        ("heading", "住宿"),  # a style named "标题 2" in the style sheet
        ("paragraph", "上海每晚不超过 1200 元。详见内网"),  # the field's result, not its code
        ("list", "- 提前三天申请\n- 保留发票"),  # old-style \pn numbering; the bullet text (\pntext) left out
        ("paragraph", "“Emoji 😀” done"),  # \uc2 fallbacks skipped, a surrogate pair joined, \bin data skipped
        ("table", "城市 | 限额\n上海 | 1200 600"),  # a nested cell read into its outer cell
        ("paragraph", "完"),
    ]
    assert parsed.title == "差旅制度" and parsed.language == "zh"
    assert parsed.metadata == {"author": "李伟", "date": "2026-03-01T09:30:00"}
    assert parsed.markings == (Marking("header", "内部资料"),)
    marked = MarkingReader().read(parsed)
    assert marked is not None and marked.label.value == "internal"
    assert "hidden text" not in parsed.text and "0102ff" not in parsed.text and "HYPERLINK" not in parsed.text


def test_an_rtf_is_known_by_its_bytes() -> None:
    assert detect_format(WORD_ZH, "saved-by-word.doc") == "rtf"  # Word's "Save as RTF" kept the .doc name
    assert detect_format(WORD_ZH, "notes") == "rtf"
    with pytest.raises(DocumentRejected, match="not an RTF document"):
        parse_file(b"plain words", "notes.rtf")


@pytest.mark.parametrize(("data", "reason"), [
    (b"{\\rtf1 " + b"{" * 1000 + b"x" + b"}" * 1000 + b"}", "nested deeper"),
    (b"{\\rtf1{\\fonttbl{\\f0 Arial;}}{\\*\\generator x;}}", "no text"),
    (b"{\\rtf1 {\\pict 0a0b0c}\\par}", "no text"),
])
def test_bad_rtf_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentRejected, match=reason):
        parse_file(data, "bad.rtf")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["word", "notes.rtf", "watermark.rtf"]),
       edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=12),
       cut=st.none() | st.integers(7, 1 << 14))
def test_damaged_rtf_never_raises_anything_but_document_rejected(
        which: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(WORD_ZH if which == "word" else (LEGACY / which).read_bytes())
    for at, value in edits:
        data[6 + at % (len(data) - 6)] = value  # past "{\rtf1"
    with contextlib.suppress(DocumentRejected):
        parse_file(bytes(data[:cut] if cut else data), "damaged.rtf")
