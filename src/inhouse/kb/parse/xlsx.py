"""Excel (.xlsx) via openpyxl in read-only mode: each sheet a heading and a table, the first non-empty row the header.

Values are the cached results of formulas (``data_only``). Rows beyond ``max_table_rows`` per sheet are dropped
(the document says so in ``metadata["truncated"]``); empty rows and trailing empty columns are skipped. The sheet
index is the block's ``page``.
"""

from __future__ import annotations

import datetime as dt
import io

from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, format_table, guess_language, meaningful, pick_title
from inhouse.kb.parse.safety import ParseLimits, open_zip_checked


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    open_zip_checked(data, filename, limits)
    from openpyxl import load_workbook  # lazy: only spreadsheets need it

    wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    out = BlockList()
    truncated: list[str] = []
    try:
        for number, sheet in enumerate(wb.worksheets, 1):
            out.page = number
            out.reset_sections()
            out.heading(str(sheet.title), 1)
            rows: list[list[object]] = []
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
    )


def _cell(value: object) -> object:
    if isinstance(value, dt.datetime) and not (value.hour or value.minute or value.second):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
