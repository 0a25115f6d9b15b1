"""Excel (.xlsx) via openpyxl in read-only mode: each sheet a heading and a table, the first non-empty row the header.

Values are the cached results of formulas (``data_only``). Rows beyond ``max_table_rows`` per sheet are dropped
(the document says so in ``metadata["truncated"]``); empty rows and trailing empty columns are skipped. The sheet
index is the block's ``page``. The sheet's declared size (``<dimension>``) is not trusted: every row it holds is read.
Hidden and very hidden sheets are not read (a reader of the workbook does not see them); their page headers still
give markings (the file is downloaded whole).

A sheet's page header and footer (``headerFooter``: odd, even and first-page ones, each in a left, centre and right
section) are not content but where a finance sheet says "Confidential": their lines are kept as ``markings``, Excel's
codes for page numbers, dates and fonts dropped (``markings.sheet_header_markings``). openpyxl in read-only mode
parses the element and throws it away, so it is found in the sheet's XML here: a search of the decompressed part for
its start tag (it follows the cells), then at most 64 KB of it read with a pattern. Chart sheets are not read.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import Literal

from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, format_table, guess_language, meaningful, pick_title
from inhouse.kb.parse.markings import sheet_header_markings
from inhouse.kb.parse.safety import ParseLimits, open_zip_checked

# The element's start tag, with any namespace prefix. Text in a sheet's XML has its "<" escaped, so this is a tag.
_HEADER_FOOTER = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?headerFooter[\s/>]")
_HEADER_FOOTER_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?headerFooter\s*>")
_HEADER_FOOTER_TEXT = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?(odd|even|first)(Header|Footer)(?:\s[^>]*)?>([^<]*)</(?:[A-Za-z_][\w.-]*:)?\1\2\s*>")
_MAX_HEADER_FOOTER = 64 * 1024  # six strings of at most 255 characters each, escaped: a few KB in a real file
_CHUNK = 1 << 20
_HIDDEN = ("hidden", "veryHidden")  # sheet states Excel does not show (veryHidden: not even in Unhide)


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    open_zip_checked(data, filename, limits)
    from openpyxl import load_workbook  # lazy: only spreadsheets need it

    wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    out = BlockList()
    truncated: list[str] = []
    try:
        for number, sheet in enumerate(wb.worksheets, 1):
            if sheet.sheet_state in _HIDDEN:
                continue
            out.page = number
            out.reset_sections()
            out.heading(str(sheet.title), 1)
            rows: list[list[object]] = []
            # read-only mode stops at the last row the sheet's <dimension> declares, which some writers understate
            # ("A1"): read every row the sheet holds (max_table_rows still bounds what is kept)
            sheet.reset_dimensions()
            for row in sheet.iter_rows(values_only=True, max_col=limits.max_table_cols):
                if not any(v is not None and str(v).strip() for v in row):
                    continue
                if len(rows) >= limits.max_table_rows:
                    truncated.append(str(sheet.title))
                    break
                rows.append([_cell(v) for v in row])
            out.add("table", format_table(rows))
        props = wb.properties
        metadata = {k: v for k, v in (("author", meaningful(props.creator)),
                                      ("subject", meaningful(props.subject)),
                                      ("date", props.created.isoformat() if props.created else None)) if v}
        title = props.title
        sheets = len(wb.worksheets)
        # every sheet's part, hidden ones too: the file is downloadable whole, and a marking raises its label
        parts = [str(sheet._worksheet_path) for sheet in wb.worksheets]  # openpyxl's name of the sheet's part
    finally:
        wb.close()
    if truncated:
        metadata["truncated"] = f"rows after {limits.max_table_rows} dropped in: {', '.join(truncated)}"
    return ParsedDocument(
        title=pick_title([title], [], filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        metadata=metadata,
        page_count=sheets,
        markings=sheet_header_markings(_header_footer_codes(data, parts)),
    )


def _cell(value: object) -> object:
    if isinstance(value, dt.datetime) and not (value.hour or value.minute or value.second):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _header_footer_codes(data: bytes, parts: list[str]) -> Iterator[tuple[Literal["header", "footer"], str]]:
    """The header and footer code strings of the sheets stored in ``parts``, in order; a damaged one is skipped."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # its directory checked by open_zip_checked
        for part in parts:
            element = _header_footer_element(zf, part)
            for match in _HEADER_FOOTER_TEXT.finditer(element):
                kind: Literal["header", "footer"] = "header" if match.group(2) == b"Header" else "footer"
                yield kind, html.unescape(match.group(3).decode("utf-8", errors="replace"))


def _header_footer_element(zf: zipfile.ZipFile, part: str) -> bytes:
    """The sheet's ``headerFooter`` element (at most ``_MAX_HEADER_FOOTER`` bytes of it), or b"" where it has none."""
    try:
        with zf.open(part) as stream:
            tail = b""
            while chunk := stream.read(_CHUNK):
                window = tail + chunk
                start = _start_tag(window)
                if start >= 0:
                    element = window[start:start + _MAX_HEADER_FOOTER]
                    if len(element) < _MAX_HEADER_FOOTER:
                        element += stream.read(_MAX_HEADER_FOOTER - len(element))
                    end = _HEADER_FOOTER_END.search(element)
                    return element[:end.end()] if end else element
                tail = window[-64:]  # a start tag cut between two chunks
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error):
        pass  # a damaged part: its cells were read (or refused) by openpyxl; the header is skipped
    return b""


def _start_tag(window: bytes) -> int:
    """Where the ``headerFooter`` start tag begins in ``window``, or -1: the name found with ``bytes.find`` (a
    pattern tried at every "<" of a sheet's XML tripled the time of this search), then its tag checked."""
    at = window.find(b"headerFooter")
    while at >= 0:
        lt = window.rfind(b"<", max(0, at - 40), at)
        if lt >= 0 and _HEADER_FOOTER.match(window, lt):
            return lt
        at = window.find(b"headerFooter", at + 1)
    return -1
