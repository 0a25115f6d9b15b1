"""PDF text layer via pypdfium2 (PDFium), page numbers kept.

Chosen over pypdf and pdfminer.six: on the corpus PDFs repeated to 300 pages it extracted the text ~6x faster than
pypdf (0.23 s vs 1.47 s on 2 cores), keeps Chinese intact, keeps table rows on one line, and exposes font sizes.
Headings are the lines set in a larger font than the body text (the most common size, weighted by characters);
distinct heading sizes, largest first, give levels 1, 2, 3... Wrapped lines are re-joined: without a space between
two Han characters, with a space otherwise; a line ending in sentence punctuation ends its paragraph; a line much
shorter than the page's longest keeps its line break (table rows, lists, addresses), and so does a table's row
whose cells stand apart by wide gaps (measured in the four lines at the top and at the bottom of a page, where a
page break falls). A paragraph whose last line on a page is a full one goes on over the page break, and is cited on
the page it starts on; rows of a table do not, nor does a paragraph run into a row opening the next page.

Running headers and footers are not content (as in Word, ODF and RTF): a line among the top or bottom three of a
page whose text and size recur there on at least three pages and on half of them, set apart from the body by a
wide gap on at least half of those, is left out of the blocks and passed on as a header or footer marking
(``kb/markings.py``), its pieces set apart by wide gaps ("CONFIDENTIAL" centred, "Page 3" on the right) as
separate lines. A table's column header row, repeated on each page flush with the rows, is content on every page.
Digits count, except in the top or bottom line when a wide gap sets it apart from the rest of the page, where page
numbers are ("CONFIDENTIAL - Page 3"): "Section 1", "Section 2"... opening each page are headings, and table rows
differing in their numbers are text. A document of one or two pages has no running text to tell apart; a line set
apart in a page's margin is a paragraph of its own there, each of its pieces one, so a footer is read as short
paragraphs and never spliced into the text next to it.

Scanned pages (a page whose text layer holds fewer than ``_OCR_BELOW`` characters) are rendered at about 2,000
pixels on the longer side and read by OCR (``kb/parse/ocr.py``) when a reader is given: each row becomes a line
with a stand-in font size (``ocr_lines``: a row wider per character and taller in ink than the body text is a
heading). Pages with a text layer keep it, so a scanner's own OCR layer is used as it is. Without a reader, or past
``limits.max_ocr_pages`` scanned pages, a PDF without text is rejected with the reason.

Encrypted PDFs that need a password are rejected.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

from inhouse.errors import DocumentRejected, InhouseError
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, meaningful, pick_title
from inhouse.kb.parse.markings import running_markings
from inhouse.kb.parse.safety import ParseLimits

if TYPE_CHECKING:
    from inhouse.kb.parse.ocr import OcrRow, PageReader

# PDFium is not thread-safe (pypdfium2 documents this): every call into it, from any thread, must be serialised.
# The lock guards a process-wide C library, so it is process-wide state by nature, not a convenience global.
_PDFIUM_LOCK = threading.Lock()

_SENTENCE_END = tuple("。！？；.!?;:：\"”')）")
_CJK_PUNCT = set(",.;:!?()，。；：！？（）、“”《》")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PDF_DATE = re.compile(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?([Zz+\-])?(\d{2})?'?(\d{2})?")
_HEADING_RATIO = 1.15
_SHORT_LINE = 0.6
# A heading line ending so goes on on the next line (``_wrapped``).
_OPEN_END = tuple("-–—,&/:、，：（(")
_OPEN_WORDS = frozenset({"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to",
                         "with", "的", "和", "与", "及"})
_OCR_BELOW = 10  # a page with fewer non-blank characters in its text layer is scanned: OCR reads it
_OCR_LONG_SIDE_PX = 2000  # rendering size of a scanned page (A4 at ~180 dpi)
_OCR_MAX_SCALE = 4.0
_OCR_BODY_PT = 10.0  # the font size given to an OCR page's ordinary rows
_OCR_HEADING_RATIO = 1.2  # a row this much wider per character than the body text (and no lower in ink) is a heading
_RUNNING_BAND = 3  # lines at the top and at the bottom of a page that may be running text
_RUNNING_PAGES = 3  # ...when they recur on at least this many pages (and on half of them): never in 1-2 pages
_GAP_EM = 2.0  # a gap this many font sizes wide between two words sets apart two pieces of a line
_MARGIN_GAP = 2.5  # a top or bottom line this many of its font sizes away from the next line stands in the margin
# A running header or footer stands this many of the page's line spacings away from the body; a table's column header
# row repeated on each page stands about one away from its rows (20 points above rows 16 apart).
_BAND_GAP = 1.5
_DIGITS = re.compile(r"\d+")

Source = Literal["header", "footer"]


@dataclass
class Line:
    """A line of a page: its text, its font size (points; for OCR rows a stand-in) and its page (None: unpaged).
    ``y``: how high it stands on the page (its baseline in points; for OCR rows minus the row's number), None when
    unknown; ``runs``: its pieces set apart by wide gaps (a table's cells, a footer's texts), for the four lines at
    the top and at the bottom of a page (empty: one piece, or not measured); ``margin``: "header" or "footer" for a
    line standing apart in the page's top or bottom margin."""

    text: str
    size: float
    page: int | None
    y: float | None = None
    runs: tuple[str, ...] = ()
    margin: Source | None = None


def parse(data: bytes, filename: str, limits: ParseLimits, ocr: PageReader | None = None,
          on_page: Callable[[int, int], None] | None = None) -> ParsedDocument:
    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF-" not in data[:1024]:
        raise DocumentRejected(filename, "not a PDF file (no %PDF header)")
    pages, info, read = _extract(data, filename, limits, ocr, on_page)
    lines = [line for page in pages for line in page]
    if not any(line.text for line in lines):
        if ocr is None:
            raise DocumentRejected(filename, "PDF has no text layer (scanned or image-only?) and OCR is off or not "
                                             "installed here (kb.ocr; `inhouse models pull ppocr-v5`)")
        raise DocumentRejected(filename, "PDF has no text layer, and OCR found no text on its pages")
    pages, running = strip_running(pages)
    blocks = lines_to_blocks(pages)
    metadata = {k: v for k, v in (("author", meaningful(info.get("Author"))),
                                  ("subject", meaningful(info.get("Subject"))),
                                  ("date", _pdf_date(info.get("CreationDate") or info.get("ModDate")))) if v}
    if read and ocr is not None:
        metadata["ocr"] = f"{ocr.name}: {read} of {len(pages)} pages"
    all_text = "\n".join(line.text for line in lines)
    return ParsedDocument(
        title=pick_title([info.get("Title")], blocks.blocks, filename),
        blocks=tuple(blocks.blocks),
        language=guess_language(all_text),
        filename=filename,
        mime="application/pdf",
        metadata=metadata,
        page_count=len(pages),
        markings=running_markings(running),
    )


def _extract(data: bytes, filename: str, limits: ParseLimits, ocr: PageReader | None,
             on_page: Callable[[int, int], None] | None) -> tuple[list[list[Line]], dict[str, str], int]:
    """Each page's lines, the document info and how many pages OCR read. PDFium is called under the lock one step
    at a time (open, each page, close), so a long OCR never holds other threads' PDFs up."""
    import pypdfium2 as pdfium  # lazy: only PDFs need it

    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise DocumentRejected(
                    filename, "PDF is password-protected (encrypted); remove the password first"
                ) from None
            raise DocumentRejected(filename, f"unreadable PDF ({exc})") from None
    try:
        with _PDFIUM_LOCK:
            n_pages = len(doc)
            if n_pages > limits.max_pages:
                raise DocumentRejected(filename, f"PDF has {n_pages} pages, above the limit of {limits.max_pages}")
            info = {k: str(v) for k, v in doc.get_metadata_dict(skip_empty=True).items()}
        pages: list[list[Line]] = []
        read = 0
        for index in range(n_pages):
            with _PDFIUM_LOCK:
                lines, image = _page(doc, index, render=ocr is not None)
            if image is not None and ocr is not None:
                read += 1
                if read > limits.max_ocr_pages:
                    raise DocumentRejected(filename, f"PDF has more than {limits.max_ocr_pages} scanned pages to "
                                                     "read with OCR (kb.ocr_max_pages)")
                rows = read_scan(ocr, image, filename, f"page {index + 1} is scanned and needs")
                lines = ocr_lines(rows, index + 1)
                if on_page is not None:
                    on_page(index + 1, n_pages)
            pages.append(lines)
        return pages, info, read
    finally:
        with _PDFIUM_LOCK:
            doc.close()


def _page(doc: Any, index: int, *, render: bool) -> tuple[list[Line], Any]:
    """A page's text-layer lines, and its rendering when the text layer is (nearly) empty and ``render``."""
    import pypdfium2.raw as pdfium_c

    page = doc[index]
    textpage = page.get_textpage()
    try:
        raws = textpage.get_text_range().split("\r\n")
        lines: list[Line] = []
        starts: list[int] = []
        pos = 0
        x, y = ctypes.c_double(), ctypes.c_double()
        # get_text_range yields one character per PDFium char index, generated "\r\n" included.
        for raw in raws:
            first = pos + len(raw) - len(raw.lstrip())
            size = pdfium_c.FPDFText_GetFontSize(textpage.raw, first) if raw else 0
            line = Line(clean_inline(raw), float(size), index + 1)
            if line.text and pdfium_c.FPDFText_GetCharOrigin(textpage.raw, first, x, y):
                line.y = y.value
            lines.append(line)
            starts.append(pos)
            pos += len(raw) + 2
        placed = _placed(lines)
        # Only these may be running text, or the row a page break falls after or before: the rest need no runs.
        for i in {*placed[:_RUNNING_BAND + 1], *placed[-_RUNNING_BAND - 1:]}:
            lines[i].runs = _runs(textpage, raws[i], starts[i], lines[i].size)
        _mark_margins(lines)
        if not render or sum(len(line.text.replace(" ", "")) for line in lines) >= _OCR_BELOW:
            return lines, None
        width, height = page.get_size()
        scale = min(_OCR_MAX_SCALE, _OCR_LONG_SIDE_PX / max(width, height, 1.0))
        return [], page.render(scale=scale).to_pil().copy()  # (a copy: the bitmap's buffer goes with the page)
    finally:
        textpage.close()
        page.close()


def _runs(textpage: Any, raw: str, start: int, size: float) -> tuple[str, ...]:
    """The pieces of the line ``raw`` (its first character PDFium's ``start``) set apart by gaps of ``_GAP_EM`` font
    sizes or more: PDFium joins the texts of one baseline with a single space however far apart they stand.
    Empty when the line is one piece."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", raw)]
    if len(words) < 2 or size <= 0:
        return ()
    # A line spans about the width of its characters unless some stand apart: only then look at each gap.
    span = textpage.get_charbox(start + words[-1][1] - 1)[2] - textpage.get_charbox(start + words[0][0])[0]
    if span < len(raw.strip()) * size * 0.6 + _GAP_EM * size:
        return ()
    pieces, at = [], words[0][0]
    for (_, end), (begin, _) in pairwise(words):
        if textpage.get_charbox(start + begin)[0] - textpage.get_charbox(start + end - 1)[2] >= _GAP_EM * size:
            pieces.append(clean_inline(raw[at:end]))
            at = begin
    pieces.append(clean_inline(raw[at:]))
    return tuple(pieces) if len(pieces) > 1 else ()


def render_pages(data: bytes, dpi: int) -> list[tuple[Any, str]]:
    """Every page as a PIL image at ``dpi``, with its text layer: what a scanner would see, and what it would have
    to read (the OCR tests and ``benchmarks/ocr.py`` make scans of text PDFs with it)."""
    import pypdfium2 as pdfium

    out = []
    with _PDFIUM_LOCK:
        doc = pdfium.PdfDocument(data)
        try:
            for i in range(len(doc)):
                page = doc[i]
                textpage = page.get_textpage()
                out.append((page.render(scale=dpi / 72).to_pil().copy(), textpage.get_text_range()))
                textpage.close()
                page.close()
        finally:
            doc.close()
    return out


def read_scan(ocr: PageReader, image: Any, filename: str, needing: str) -> list[OcrRow]:
    """``ocr.read(image)``, with a missing or failing model made this file's rejection: "<needing> OCR: <why>"
    (e.g. "page 3 is scanned and needs"); PDF pages and image files alike."""
    try:
        return ocr.read(image)
    except DocumentRejected:
        raise
    except InhouseError as exc:
        raise DocumentRejected(filename, f"{needing} OCR: {exc.message}") from None


def ocr_lines(rows: list[OcrRow], page: int | None) -> list[Line]:
    """OCR rows as text lines with a stand-in font size, so the block builder makes headings of them as it would of
    a larger font: a row is a heading when it is wider per character (1.2×) than the page's body text and no lower
    in ink. Both, because each alone misleads: the ink of a heading without descenders ("Installation") is hardly
    taller than a body line's, and the width per character of a few digits or capitals ("15A", "Weight | 420g") is
    a heading's, but their ink is lower. Its size is the width ratio × the body size, in half steps."""
    if not rows:
        return []
    ink, em = _body(rows, lambda r: r.height), _body(rows, lambda r: r.em)
    out = []
    for n, r in enumerate(rows):
        wide = r.em / em
        heading = wide >= _OCR_HEADING_RATIO and r.height >= ink and "|" not in r.text  # (cells: a table row)
        # In half steps (1.5x, 2x, 2.5x the body): the width per character varies by a few percent with the letters,
        # which must not make two headings of one size two levels.
        size = _OCR_BODY_PT * max(1.5, round(wide * 2) / 2) if heading else _OCR_BODY_PT
        out.append(Line(clean_inline(r.text), float(size), page, y=-float(n)))  # rows come top to bottom
    return out


def _body(rows: list[OcrRow], value: Callable[[OcrRow], float]) -> float:
    """The body text's ``value``: the median over rows weighted by characters (a title is one short row, the body
    many long ones), as the body font size of a text page is."""
    total = sum(len(r.text) for r in rows)
    seen = 0
    for r in sorted(rows, key=value):
        seen += len(r.text)
        if seen * 2 >= total:
            return value(r) or 1.0
    return value(rows[-1]) or 1.0


def strip_running(pages: list[list[Line]]) -> tuple[list[list[Line]], list[tuple[Source, str]]]:
    """The pages without their running headers and footers (module doc), and those as ``(source, text)``: each
    recurring line once, as it reads where first seen, a line in pieces (``runs``) piece by piece."""
    level_of = _heading_levels(pages)
    bands = [_bands(page) for page in pages]
    on_pages: dict[tuple[Source, str, float], set[int]] = {}
    apart_on: dict[tuple[Source, str, float], set[int]] = {}
    for n, (page, band) in enumerate(zip(pages, bands, strict=True)):
        for source, i, apart in band:
            key = _running_key(source, page[i], level_of)
            on_pages.setdefault(key, set()).add(n)
            if apart:
                apart_on.setdefault(key, set()).add(n)
    needed = max(_RUNNING_PAGES, len(pages) // 2)
    # Set apart on half its pages at least: a header may come close to a page's first line now and then (a code
    # block's smaller font), but a table's column header row repeated on each page is flush with its rows on all.
    running = {key for key, seen in on_pages.items()
               if len(seen) >= needed and 2 * len(apart_on.get(key, ())) >= len(seen)}
    if not running:
        return pages, []
    found: dict[tuple[Source, str, float], Line] = {}
    out = []
    for page, band in zip(pages, bands, strict=True):
        drop = set()
        for source, i, _ in band:
            key = _running_key(source, page[i], level_of)
            if key in running:
                drop.add(i)
                found.setdefault(key, page[i])
        out.append([line for i, line in enumerate(page) if i not in drop])
    if not any(line.text for page in out for line in page):
        return pages, []  # nothing but the same lines on every page: they are the content
    return out, [(key[0], text) for key, line in found.items() for text in (line.runs or (line.text,))]


def _bands(lines: list[Line]) -> list[tuple[Source, int, bool]]:
    """The page's lines that may be running text, by index: its top lines ("header") and bottom lines ("footer") by
    height, ``_RUNNING_BAND`` each at most and no more than half the page's lines each (of a page of three lines,
    the middle one is content); each with whether it is set apart from the body, as a header or footer is: above
    the first gap of ``_BAND_GAP`` line spacings from the top (below the last one from the bottom)."""
    placed = _placed(lines)
    k = min(_RUNNING_BAND, len(placed) // 2)
    spacing = _line_spacing([lines[i] for i in placed])
    sides: tuple[tuple[Source, list[int]], ...] = (("header", placed), ("footer", placed[::-1]))
    out: list[tuple[Source, int, bool]] = []
    for source, edge in sides:  # each from the page's edge inwards
        gap = next((n for n in range(k)
                    if abs((lines[edge[n]].y or 0.0) - (lines[edge[n + 1]].y or 0.0)) >= _BAND_GAP * spacing), -1)
        band = [(source, i, n <= gap) for n, i in enumerate(edge[:k])]
        out += band if source == "header" else band[::-1]
    return out


def _line_spacing(placed: list[Line]) -> float:
    """The distance between the baselines of two lines of the page's body: the most common (to half a point; of two
    as common, the smaller), from 3 distances at least; else 1.2 font sizes of the page's first line."""
    gaps = Counter(round(2 * ((a.y or 0.0) - (b.y or 0.0))) / 2 for a, b in pairwise(placed))
    gaps = Counter({gap: n for gap, n in gaps.items() if gap >= 1.0})  # (not a superscript beside its line)
    if gaps.total() < 3:
        return 1.2 * (placed[0].size if placed else 0.0)
    return min(gaps, key=lambda gap: (-gaps[gap], gap))


def _placed(lines: list[Line]) -> list[int]:
    """The indices of the page's lines with text and a height, top to bottom (lines of one height in text order)."""
    return sorted((i for i, line in enumerate(lines) if line.text and line.y is not None),
                  key=lambda i: -(lines[i].y or 0.0))


def _mark_margins(lines: list[Line]) -> None:
    """Sets ``margin`` on a page's top line and its bottom line when a gap of ``_MARGIN_GAP`` times its font size
    sets it apart from the rest: a header or footer, recurring or not (a document of one page has one too), which
    must not be spliced into the paragraph it comes next to in the text layer. One line only: two lines apart are as
    often the end of a paragraph or a short one. (On a page of two lines, the header and the footer, both.)"""
    placed = _placed(lines)
    if len(placed) < 2:
        return
    sides: tuple[tuple[Source, int, int], ...] = (("header", placed[0], placed[1]), ("footer", placed[-1], placed[-2]))
    for source, outer, inner in sides:
        if abs((lines[outer].y or 0.0) - (lines[inner].y or 0.0)) >= _MARGIN_GAP * lines[outer].size:
            lines[outer].margin = source


def _running_key(source: Source, line: Line, level_of: dict[float, int]) -> tuple[Source, str, float]:
    """What a running line has alike on every page: its text and size; in a line standing in the margin (where page
    numbers are), its text with any number. Not elsewhere: "Section 1", "Section 2"... each opening a page are
    headings, and lines of a text or a table that differ in their numbers only are text, not one running line."""
    size = round(line.size, 1)
    return source, _DIGITS.sub("#", line.text) if line.margin and size not in level_of else line.text, size


def _heading_levels(pages: list[list[Line]]) -> dict[float, int]:
    """Font size → heading level: the sizes larger than the body text's (the most common, weighted by characters),
    largest first."""
    sizes: Counter[float] = Counter()
    for line in (line for page in pages for line in page):
        sizes[round(line.size, 1)] += len(line.text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    heading_sizes = sorted({s for s in sizes if body and s >= body * _HEADING_RATIO}, reverse=True)
    return {s: min(i + 1, 6) for i, s in enumerate(heading_sizes)}


def lines_to_blocks(pages: list[list[Line]]) -> BlockList:
    level_of = _heading_levels(pages)
    out = BlockList()
    para = ""
    para_page: int | None = None  # the page ``para`` starts on: its citation when it goes on over a page break
    margins: list[tuple[str, int | None]] = []  # margin lines met inside ``para``: they follow it

    def add_paragraph(text: str, page: int | None) -> None:
        here, out.page = out.page, page
        out.add("paragraph", text)
        out.page = here

    def end_paragraph() -> None:
        nonlocal para
        for text, page in [(para, para_page), *margins]:
            add_paragraph(text, page)
        para = ""
        margins.clear()

    for page in pages:
        out.page = page[0].page if page else None
        widest = max((len(line.text) for line in page), default=0)
        after_heading = False  # whether the previous line was (part of) a heading
        began = False  # whether a line of this page went into a paragraph yet
        for line in page:
            if not line.text:
                continue
            size = round(line.size, 1)
            if size in level_of and len(line.text) <= 120 and not line.text.endswith(tuple("。.，,;；")):
                # Either line's size may be off by a step: OCR measures a short word's width per character loosely.
                if after_heading and _wrapped(out.blocks[-1].text, line.text):
                    out.continue_heading(_join(out.blocks[-1].text, line.text))
                    continue
                end_paragraph()
                out.heading(line.text, level_of[size])
                after_heading = True
                continue
            after_heading = False
            if line.margin:  # a paragraph of its own, each piece one: the text around it may go on past it
                for piece in line.runs or (line.text,):
                    if para:
                        margins.append((piece, line.page))
                    else:
                        add_paragraph(piece, line.page)
                continue
            if para and not began and line.runs:
                end_paragraph()  # a table's row opening the page does not go on from the page before
            began = True
            if not para:
                para_page = line.page
            para = _join(para, line.text) if para else line.text
            if line.text.endswith(_SENTENCE_END):
                end_paragraph()
            elif len(line.text) < widest * _SHORT_LINE or line.runs:  # (runs: a table's row)
                para += "\n"
        if para.endswith("\n"):
            # A short last line ends its paragraph, and so does a table's row: rows of two pages are not one
            # paragraph. After a full line of text, it goes on on the next page.
            end_paragraph()
    end_paragraph()
    return out


def _wrapped(heading: str, line: str) -> bool:
    """Whether ``line``, set as a heading right after one, is that heading wrapped onto a second line (in a narrow
    column) rather than a heading of its own: it goes on in lower case, or the heading stops on a word that
    needs one after it. (A title directly above a first heading of the same size is the common case of two.)"""
    return line[:1].islower() or heading.endswith(_OPEN_END) or heading.rsplit(" ", 1)[-1].lower() in _OPEN_WORDS


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
