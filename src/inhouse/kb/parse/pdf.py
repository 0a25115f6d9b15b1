"""PDF text layer via pypdfium2 (PDFium), page numbers kept.

Chosen over pypdf and pdfminer.six: on the corpus PDFs repeated to 300 pages it extracted the text ~6x faster than
pypdf (0.23 s vs 1.47 s on 2 cores), keeps Chinese intact, keeps table rows on one line, and exposes font sizes.
Headings are the lines set in a larger font than the body text (the most common size, weighted by characters);
distinct heading sizes, largest first, give levels 1, 2, 3... Wrapped lines are re-joined: without a space between
two Han characters, with a space otherwise; a line ending in sentence punctuation ends its paragraph; a line much
shorter than the page's longest keeps its line break (table rows, lists, addresses).

Encrypted PDFs that need a password are rejected; image-only (scanned) PDFs are rejected as having no text layer
(no OCR here).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, meaningful, pick_title
from inhouse.kb.parse.safety import ParseLimits

# PDFium is not thread-safe (pypdfium2 documents this): every call into it, from any thread, must be serialised.
# The lock guards a process-wide C library, so it is process-wide state by nature, not a convenience global.
_PDFIUM_LOCK = threading.Lock()

_SENTENCE_END = tuple("。！？；.!?;:：\"”')）")
_CJK_PUNCT = set(",.;:!?()，。；：！？（）、“”《》")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PDF_DATE = re.compile(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?([Zz+\-])?(\d{2})?'?(\d{2})?")
_HEADING_RATIO = 1.15
_SHORT_LINE = 0.6


@dataclass
class _Line:
    text: str
    size: float
    page: int


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF-" not in data[:1024]:
        raise DocumentRejected(filename, "not a PDF file (no %PDF header)")
    with _PDFIUM_LOCK:
        pages, info = _extract(data, filename, limits)
    lines = [line for page in pages for line in page]
    if not any(line.text for line in lines):
        raise DocumentRejected(filename, "PDF has no text layer (scanned or image-only?); OCR is not supported")
    blocks = _to_blocks(pages)
    metadata = {k: v for k, v in (("author", meaningful(info.get("Author"))),
                                  ("subject", meaningful(info.get("Subject"))),
                                  ("date", _pdf_date(info.get("CreationDate") or info.get("ModDate")))) if v}
    all_text = "\n".join(line.text for line in lines)
    return ParsedDocument(
        title=pick_title([info.get("Title")], blocks.blocks, filename),
        blocks=tuple(blocks.blocks),
        language=guess_language(all_text),
        filename=filename,
        mime="application/pdf",
        metadata=metadata,
        page_count=len(pages),
    )


def _extract(data: bytes, filename: str, limits: ParseLimits) -> tuple[list[list[_Line]], dict[str, str]]:
    import pypdfium2 as pdfium  # lazy: only PDFs need it
    import pypdfium2.raw as pdfium_c

    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentRejected(
                filename, "PDF is password-protected (encrypted); remove the password first"
            ) from None
        raise DocumentRejected(filename, f"unreadable PDF ({exc})") from None
    try:
        if len(doc) > limits.max_pages:
            raise DocumentRejected(filename, f"PDF has {len(doc)} pages, above the limit of {limits.max_pages}")
        info = {k: str(v) for k, v in doc.get_metadata_dict(skip_empty=True).items()}
        pages: list[list[_Line]] = []
        for index in range(len(doc)):
            page = doc[index]
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_range()
                lines: list[_Line] = []
                pos = 0
                # get_text_range yields one character per PDFium char index, generated "\r\n" included.
                for raw in text.split("\r\n"):
                    stripped = raw.lstrip()
                    size = pdfium_c.FPDFText_GetFontSize(textpage.raw, pos + len(raw) - len(stripped)) if raw else 0
                    lines.append(_Line(clean_inline(raw), float(size), index + 1))
                    pos += len(raw) + 2
                pages.append(lines)
            finally:
                textpage.close()
                page.close()
        return pages, info
    finally:
        doc.close()


def _to_blocks(pages: list[list[_Line]]) -> BlockList:
    sizes: Counter[float] = Counter()
    for line in (line for page in pages for line in page):
        sizes[round(line.size, 1)] += len(line.text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    heading_sizes = sorted({s for s in sizes if body and s >= body * _HEADING_RATIO}, reverse=True)
    level_of = {s: min(i + 1, 6) for i, s in enumerate(heading_sizes)}

    out = BlockList()
    for page in pages:
        out.page = page[0].page if page else None
        widest = max((len(line.text) for line in page), default=0)
        para = ""
        for line in page:
            if not line.text:
                continue
            size = round(line.size, 1)
            if size in level_of and len(line.text) <= 120 and not line.text.endswith(tuple("。.，,;；")):
                out.add("paragraph", para)
                para = ""
                out.heading(line.text, level_of[size])
                continue
            para = _join(para, line.text) if para else line.text
            if line.text.endswith(_SENTENCE_END):
                out.add("paragraph", para)
                para = ""
            elif len(line.text) < widest * _SHORT_LINE:
                para += "\n"
        out.add("paragraph", para)
    return out


def _join(left: str, right: str) -> str:
    if left.endswith("\n"):
        return left + right
    # Wrapped Chinese lines join without a space, also across punctuation PDFium maps to ASCII ("计算,\n休息").
    if _HAN.match(right[:1]) and (_HAN.match(left[-1:]) or (left[-1] in _CJK_PUNCT and _HAN.match(left[-2:-1]))):
        return left + right
    if _HAN.match(left[-1:]) and right[:1] in _CJK_PUNCT:
        return left + right
    return f"{left} {right}"


def _pdf_date(value: str | None) -> str | None:
    """``D:20261125194540+00'00'`` → ``2026-11-25T19:45:40+00:00`` (None when unparseable)."""
    match = _PDF_DATE.match(value or "")
    if not match:
        return None
    y, mo, d, h, mi, s, sign, tzh, tzm = match.groups()
    iso = f"{y}-{mo or '01'}-{d or '01'}"
    if h:
        iso += f"T{h}:{mi or '00'}:{s or '00'}"
        if sign in ("Z", "z"):
            iso += "+00:00"
        elif sign:
            iso += f"{sign}{tzh or '00'}:{tzm or '00'}"
    return iso
