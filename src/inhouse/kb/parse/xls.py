"""Excel 97-2003 (.xls) via xlrd: the same blocks as ``xlsx.py``, each sheet a heading and a table.

xlrd reads the BIFF8 ``Workbook`` stream (and Excel 5's BIFF5). Values are what Excel last calculated; dates are
numbers with a date format in the file, turned into ISO dates here. Title, author and date come from the
compound file's summary information (xlrd reads only the last author). An encrypted workbook is refused as
password-protected.
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Block, ParsedDocument
from inhouse.kb.parse.blocks import BlockList, format_table, guess_language, pick_title
from inhouse.kb.parse.ole import open_ole, password_protected, read_stream, summary_metadata
from inhouse.kb.parse.safety import ParseLimits


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
    )


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
