"""Plain text, and the one text-decoding policy every text-based format (CSV, Markdown, HTML, e-mail) uses.

Decoding policy, in order:

1. a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), strictly;
2. strict UTF-8;
3. UTF-8 that is *almost* valid (real multi-byte sequences, at most 1 bad byte in 1,000 — a truncated or
   spliced file) is decoded with U+FFFD replacements, and ``metadata["encoding"]`` says how many;
4. strict GB18030 (a superset of GBK and GB2312: what Windows tools in mainland China save) or strict Big5 (Windows
   code page 950: Taiwan and Hong Kong). Almost every Big5 file is also valid GB18030, as garbage (員工 reads as
   "T炵"), so when both decode, the one whose Chinese is the everyday kind wins: the share of its Han characters
   among the 3,755 of GB2312's first level, or among Big5's 5,401 frequently used ones (its A440-C67E block). Real
   text scores near 1 in its own encoding and 0.3-0.6 in the other; a tie goes to GB18030;
5. otherwise the file is rejected as "not valid UTF-8, GB18030 or Big5 text". We never guess further (Latin-1
   accepts any bytes and would turn binary or mis-encoded files into plausible garbage in the index).

UTF-16 without a byte-order mark is read when its ASCII characters show it (a NUL in every other byte, always the
same one: before step 2), or, with no ASCII at all, when one byte order gives everyday Chinese (before step 4).
Text containing NUL bytes after decoding is binary and rejected.

Text whose charset is declared (an e-mail part, an HTML ``<meta charset>``) is read in the codec ``codec_of`` gives
its label: Chinese mail clients and web pages label GBK text "gb2312", so both names read as their superset GB18030.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import unicodedata

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
_GB_LABELS = frozenset(("gb2312", "gbk", "x-gbk"))  # canonical names and the alias Python lacks
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
    utf16 = _utf16_by_nuls(data)  # before UTF-8, which reads NULs too
    if utf16 is not None:
        return utf16
    try:
        return _check_binary(data.decode("utf-8"), filename), "utf-8"
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    multibyte = len(data) - len(text)  # > 0 only when real multi-byte sequences were decoded
    if bad <= max(1, len(data) * _MAX_BAD_UTF8_SHARE) and multibyte > bad * 2:
        return _check_binary(text, filename), f"utf-8 ({bad} invalid byte sequences replaced)"
    utf16 = _utf16_han(data)
    if utf16 is not None:
        return utf16
    decoded = {}
    for codec in ("gb18030", "cp950"):
        with contextlib.suppress(UnicodeDecodeError):
            decoded[codec] = data.decode(codec)
    if len(decoded) == 2 and (_everyday_share(decoded["cp950"], "cp950")
                              > _everyday_share(decoded["gb18030"], "gb18030") + 0.1):
        del decoded["gb18030"]
    for codec, text in decoded.items():
        return _check_binary(text, filename), "big5" if codec == "cp950" else codec
    raise DocumentRejected(filename, "not valid UTF-8, GB18030 or Big5 text (invalid byte sequences)")


def _utf16_by_nuls(data: bytes) -> tuple[str, str] | None:
    """UTF-16 without a byte-order mark, told by its ASCII characters: a NUL in every other byte, on one side only
    (a Han character such as 一 U+4E00 rarely puts one on the other). None when it is not that."""
    sample = data[: min(len(data), 4096) // 2 * 2]
    pairs = len(sample) // 2
    if pairs < 4 or len(data) % 2:  # a few bytes say nothing
        return None
    high, low = sample[1::2].count(0), sample[0::2].count(0)  # the NUL halves of little- and big-endian units
    if high >= pairs * 0.3 and low <= pairs * 0.02:
        return _utf16_text(data, "utf-16-le")
    if low >= pairs * 0.3 and high <= pairs * 0.02:
        return _utf16_text(data, "utf-16-be")
    return None


def _utf16_han(data: bytes) -> tuple[str, str] | None:
    """UTF-16 without a byte-order mark nor ASCII (no NULs to tell it): read when one byte order gives Chinese,
    nearly all everyday characters. GB18030 or UTF-8 bytes read as UTF-16 give Hangul, Yi, private-use characters,
    surrogates, and Han characters picked at random (about 1 in 5 of them everyday ones)."""
    if len(data) % 2 or len(data) < 8 or b"\x00" in data:
        return None
    for codec in ("utf-16-le", "utf-16-be"):
        sample = data[: _SAMPLE_CHARS * 2].decode(codec, errors="replace")  # the whole file only if it passes
        han = sum(1 for c in sample if "\u3400" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c
                  <= "\uffef" or c in "\n\r\t ")
        if han >= len(sample) * 0.9 and _everyday_share(sample, "gb18030") >= 0.6:
            return _utf16_text(data, codec)
    return None


def _utf16_text(data: bytes, codec: str) -> tuple[str, str] | None:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:  # a lone surrogate: not UTF-16 text
        return None
    # binary read as UTF-16 gives control and unassigned characters
    sample = text[:2048]
    bad = sum(1 for c in sample if (c < " " and c not in "\t\n\r\f") or unicodedata.category(c) == "Cn")
    return (text, codec) if bad <= len(sample) // 100 else None


def codec_of(label: str | None) -> str | None:
    """The Python codec for a declared charset label (GB2312 and GBK read as GB18030), or None when unknown."""
    label = (label or "").split("*", 1)[0].strip().lower()  # RFC 2231 appends a language: "utf-8*en"
    if label in _GB_LABELS:
        return "gb18030"
    try:
        name = codecs.lookup(label).name if label else None
    except LookupError:
        return None
    if name == "big5":  # Taiwanese mail labels Microsoft's superset (the one the detection above reads) "big5"
        return "cp950"
    return "gb18030" if name in _GB_LABELS else name


def codec_declared_in_ascii(label: str | None) -> str | None:
    """``codec_of`` for a label found in the file's own ASCII bytes (an HTML ``<meta charset>``): a UTF-16 or UTF-32
    label there is wrong (the bytes it was read from are not UTF-16; Word's "Unicode" web page re-saved), so None, and
    the plain-text policy (UTF-8 first) reads the file, as the HTML standard says."""
    codec = codec_of(label)
    return None if codec and codec.startswith(("utf-16", "utf-32")) else codec


def decode_declared(data: bytes, label: str | None, filename: str) -> tuple[str, str]:
    """Bytes with a declared charset → (text, encoding label): that charset strictly, else the policy above, else
    that charset with replacement characters. A label Python does not know is no better than none."""
    codec = codec_of(label)
    if codec:
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError:
            pass
        except LookupError:  # a codec that is not a text encoding ("base64")
            codec = None
    try:
        return decode_text(data, filename)
    except DocumentRejected:
        if codec is None:
            raise
    return data.decode(codec, errors="replace"), f"{codec} (invalid byte sequences replaced)"


# The everyday characters of each encoding, by the lead byte of their code: GB2312's first level (sorted by
# pronunciation, the 3,755 most used) and Big5's frequently used characters (sorted by strokes, 5,401).
_EVERYDAY = {"gb18030": ("gb2312", 0xB0, 0xD7), "cp950": ("cp950", 0xA4, 0xC6)}
_SAMPLE_CHARS = 4_000


def _everyday_share(text: str, codec: str) -> float:
    """The share of the Han (and private-use) characters of ``text``'s start that are everyday ones in ``codec``."""
    charset, lo, hi = _EVERYDAY[codec]
    everyday = total = 0
    for char in text[:_SAMPLE_CHARS * 4]:
        if not ("\u3400" <= char <= "\u9fff" or "\ue000" <= char <= "\uf8ff"):
            continue
        total += 1
        with contextlib.suppress(UnicodeEncodeError):  # a character the code page does not have
            everyday += lo <= char.encode(charset)[0] <= hi
        if total == _SAMPLE_CHARS:
            break
    return everyday / total if total else 0.0


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
