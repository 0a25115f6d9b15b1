"""Plain text, and the one text-decoding policy every text-based format (CSV, Markdown, HTML, e-mail) uses.

Decoding policy, in order:

1. a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), strictly;
2. strict UTF-8;
3. UTF-8 that is *almost* valid (real multi-byte sequences, at most 1 bad byte in 1,000 — a truncated or
   spliced file) is decoded with U+FFFD replacements, and ``metadata["encoding"]`` says how many;
4. strict GB18030 (a superset of GBK and GB2312: Chinese files saved by Windows tools);
5. otherwise the file is rejected as "not valid UTF-8 or GB18030 text". We never guess further (Latin-1 accepts
   any bytes and would turn binary or mis-encoded files into plausible garbage in the index).

Text containing NUL bytes after decoding is binary and rejected.
"""

from __future__ import annotations

import codecs
import re

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_text, guess_language, pick_title

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_MAX_BAD_UTF8_SHARE = 0.001


def decode_text(data: bytes, filename: str) -> tuple[str, str]:
    """Bytes → (text, encoding label), following the policy in the module docstring."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                reason = f"invalid {codec} text after its byte-order mark ({exc.reason})"
                raise DocumentRejected(filename, reason) from None
            return _check_binary(text, filename), codec
    try:
        return _check_binary(data.decode("utf-8"), filename), "utf-8"
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    multibyte = len(data) - len(text)  # > 0 only when real multi-byte sequences were decoded
    if bad <= max(1, len(data) * _MAX_BAD_UTF8_SHARE) and multibyte > bad * 2:
        return _check_binary(text, filename), f"utf-8 ({bad} invalid byte sequences replaced)"
    try:
        return _check_binary(data.decode("gb18030"), filename), "gb18030"
    except UnicodeDecodeError:
        pass
    raise DocumentRejected(filename, "not valid UTF-8 or GB18030 text (invalid byte sequences)")


def _check_binary(text: str, filename: str) -> str:
    if "\x00" in text:
        raise DocumentRejected(filename, "binary content (NUL bytes) in a text file")
    return text


def parse(data: bytes, filename: str, mime: str = "text/plain") -> ParsedDocument:
    text, encoding = decode_text(data, filename)
    return parse_str(text, filename, mime=mime, metadata={"encoding": encoding})


def parse_str(text: str, filename: str, *, mime: str, metadata: dict[str, str]) -> ParsedDocument:
    """Paragraphs are separated by blank lines; line breaks inside a paragraph are kept (lists, transcripts)."""
    out = BlockList()
    for para in _PARAGRAPH_BREAK.split(clean_text(text)):
        out.add("paragraph", para)
    first_line = out.blocks[0].text.split("\n", 1)[0] if out.blocks else ""
    title = first_line if 0 < len(first_line) <= 120 else pick_title([], [], filename)
    return ParsedDocument(
        title=title,
        blocks=tuple(out.blocks),
        language=guess_language(text),
        filename=filename,
        mime=mime,
        metadata=metadata,
    )
