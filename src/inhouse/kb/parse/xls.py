"""Excel 97-2003 (.xls) via xlrd: the same blocks as ``xlsx.py``, each sheet a heading and a table.

xlrd reads the BIFF8 ``Workbook`` stream (and Excel 5's BIFF5). Values are what Excel last calculated; dates are
numbers with a date format in the file, turned into ISO dates here. Title, author and date come from the
compound file's summary information (xlrd reads only the last author). An encrypted workbook is refused as
password-protected.

A sheet's page header and footer are kept as ``markings``, as in ``xlsx.py`` (the same code strings:
``markings.sheet_header_markings``). xlrd skips them, so they are read here from the stream ([MS-XLS]): the globals
substream's ``BoundSheet8`` records give where each worksheet's substream starts, and its page settings, before the
cells, hold ``HEADER`` (0x0014) and ``FOOTER`` (0x0015) and, from Excel 2007 on, ``HeaderFooter`` (0x089C) with
the even-page and first-page ones. Every length is checked against its record; a damaged record is skipped, never
raised. Excel 5 (BIFF5) headers and chart sheets are not read.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from typing import Any, Literal

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Block, ParsedDocument
from inhouse.kb.parse.blocks import BlockList, format_table, guess_language, pick_title
from inhouse.kb.parse.markings import sheet_header_markings
from inhouse.kb.parse.ole import open_ole, password_protected, read_stream, summary_metadata
from inhouse.kb.parse.safety import ParseLimits

_BOF, _EOF, _BOUNDSHEET, _HEADER, _FOOTER, _HEADER_FOOTER = 0x0809, 0x000A, 0x0085, 0x0014, 0x0015, 0x089C
_BIFF8, _GLOBALS, _WORKSHEET = 0x0600, 0x0005, 0x0010  # BOF: version, substream types
# The cell table, after the page settings: a record of it ends the search of a sheet's substream.
_CELL_TABLE = frozenset({0x0208, 0x0006, 0x00FD, 0x0203, 0x027E, 0x00BD, 0x0201, 0x00BE, 0x0204, 0x0205, 0x00D7})
_MAX_RECORDS = 1 << 20  # records walked in one substream


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    import xlrd  # lazy: only legacy spreadsheets need it

    ole = open_ole(data, filename)
    # xlrd gets the Workbook stream, not the file: olefile follows the container's sector chains with bounds and
    # loop checks, where xlrd's own reader loops for minutes on a damaged chain.
    stream = read_stream(ole, "Workbook", filename) or read_stream(ole, "Book", filename)
    if not stream:
        raise DocumentRejected(filename, "corrupt Excel workbook (no Workbook stream)")
    try:
        book = xlrd.open_workbook(file_contents=stream, on_demand=True, logfile=_Discard())
        try:
            blocks, truncated, sheets = _sheets(book, limits)
        finally:
            book.release_resources()
    except xlrd.XLRDError as exc:
        if "encrypted" in str(exc).lower():
            raise password_protected(filename) from None
        raise DocumentRejected(filename, f"corrupt Excel workbook ({exc})") from None
    except (struct.error, IndexError, KeyError, ValueError, AssertionError) as exc:  # xlrd on a damaged record
        raise DocumentRejected(filename, f"corrupt Excel workbook ({type(exc).__name__}: {exc})"[:300]) from None
    title, metadata = summary_metadata(ole, filename)
    if truncated:
        metadata["truncated"] = f"rows after {limits.max_table_rows} dropped in: {', '.join(truncated)}"
    return ParsedDocument(
        title=pick_title([title], [], filename),
        blocks=blocks,
        language=guess_language("\n".join(b.text for b in blocks)),
        filename=filename,
        mime="application/vnd.ms-excel",
        metadata=metadata,
        page_count=sheets,
        markings=sheet_header_markings(_header_footer_codes(stream)),
    )


def _header_footer_codes(stream: bytes) -> Iterator[tuple[Literal["header", "footer"], str]]:
    """The header and footer code strings of the worksheets of a BIFF8 ``Workbook`` stream, in sheet order."""
    records = _records(stream, 0)
    first = next(records, None)
    if first is None or len(first[1]) < 4 or (first[0], *struct.unpack_from("<HH", first[1])) != (
            _BOF, _BIFF8, _GLOBALS):
        return
    starts = [struct.unpack_from("<I", body)[0] for kind, body in records
              if kind == _BOUNDSHEET and len(body) >= 6 and body[5] == 0]  # dt 0: a worksheet (or dialog sheet)
    walked: set[int] = set()  # record offsets read: damaged offsets that lead into one chain read it once
    for start in dict.fromkeys(starts):
        sheet = _records(stream, start, walked)
        bof = next(sheet, None)
        if bof is None or bof[0] != _BOF or len(bof[1]) < 4 or struct.unpack_from("<H", bof[1], 2)[0] != _WORKSHEET:
            continue
        for kind, body in sheet:
            if kind in _CELL_TABLE or kind == _BOF:  # past the page settings, or an embedded chart's substream
                break
            if kind in (_HEADER, _FOOTER) and len(body) >= 2:  # an empty record: no header
                text = _characters(body, 2, struct.unpack_from("<H", body)[0])
                if text is not None:
                    yield ("header" if kind == _HEADER else "footer"), text[0]
            elif kind == _HEADER_FOOTER:
                yield from _even_and_first(body)


def _records(stream: bytes, at: int, walked: set[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """The records of the substream starting at ``at``, up to its ``EOF``, as ``(type, body)``. It stops at a record
    that runs past the stream's end and, given ``walked``, at one read before (the first excepted: a substream's
    ``BOF`` where another walk stopped)."""
    for n in range(_MAX_RECORDS):
        if at < 0 or at + 4 > len(stream):
            return
        if walked is not None and n:
            if at in walked:
                return
            walked.add(at)
        kind, size = struct.unpack_from("<HH", stream, at)
        if at + 4 + size > len(stream):
            return
        yield kind, stream[at + 4:at + 4 + size]
        if kind == _EOF:
            return
        at += 4 + size


def _even_and_first(body: bytes) -> Iterator[tuple[Literal["header", "footer"], str]]:
    """The even-page and first-page header and footer of a ``HeaderFooter`` record ([MS-XLS] 2.4.136): after a
    12-byte future-record header, a 16-byte view id and 2 bytes of flags, four character counts, then the strings
    (``XLUnicodeStringNoCch``, present where the count is not 0)."""
    if len(body) < 38:
        return
    kinds: tuple[Literal["header", "footer"], ...] = ("header", "footer", "header", "footer")
    at = 38
    for kind, count in zip(kinds, struct.unpack_from("<4H", body, 30), strict=True):
        if count:
            text = _characters(body, at, count)
            if text is None:
                return
            yield kind, text[0]
            at = text[1]


def _characters(body: bytes, at: int, count: int) -> tuple[str, int] | None:
    """``count`` characters at ``at`` and where they end: a flag byte whose low bit says two bytes a character
    (UTF-16) rather than one (Latin-1), then the characters. None where the record is too short for them."""
    if at >= len(body):
        return None
    wide = body[at] & 1
    end = at + 1 + count * (2 if wide else 1)
    if end > len(body):
        return None
    raw = body[at + 1:end]
    return (raw.decode("utf-16-le", errors="replace") if wide else raw.decode("latin-1")), end


def _sheets(book: Any, limits: ParseLimits) -> tuple[tuple[Block, ...], list[str], int]:
    """Each sheet a heading and a table; the names of sheets cut at ``max_table_rows``; the sheet count."""
    out = BlockList()
    truncated: list[str] = []
    for number in range(book.nsheets):
        sheet = book.sheet_by_index(number)
        out.page = number + 1
        out.reset_sections()
        out.heading(str(sheet.name), 1)
        rows: list[list[object]] = []
        for r in range(sheet.nrows):
            row = [_cell(sheet.cell(r, c), book.datemode) for c in range(min(sheet.ncols, limits.max_table_cols))]
            if not any(v is not None and str(v).strip() for v in row):
                continue
            if len(rows) >= limits.max_table_rows:
                truncated.append(str(sheet.name))
                break
            rows.append(row)
        out.add("table", format_table(rows))
        book.unload_sheet(number)
    return tuple(out.blocks), truncated, book.nsheets


def _cell(cell: Any, datemode: int) -> object:
    import xlrd

    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return None
    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            value = xlrd.xldate.xldate_as_datetime(cell.value, datemode)
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return cell.value
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(cell.value)
    if isinstance(cell.value, float) and cell.value.is_integer():
        return int(cell.value)
    return cell.value


class _Discard:
    """xlrd writes warnings about odd records to a log file; a parse reports through its result instead."""

    def write(self, _text: str) -> int:
        return 0
