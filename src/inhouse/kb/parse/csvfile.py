"""CSV/TSV via the stdlib ``csv`` module: one table block, the first row the header, at most ``max_table_rows``.

The delimiter is sniffed from the first lines (comma, semicolon, tab, pipe); ``.tsv`` means tab. Decoding follows
the plain-text policy (UTF-8 with or without BOM, GB18030 for Chinese Excel exports).
"""

from __future__ import annotations

import csv
import io

from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, format_table, guess_language, pick_title
from inhouse.kb.parse.safety import ParseLimits
from inhouse.kb.parse.text import decode_text


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    text, encoding = decode_text(data, filename)
    delimiter = "\t" if filename.lower().endswith(".tsv") else _sniff(text[:8192])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[list[str]] = []
    metadata = {"encoding": encoding}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(rows) >= limits.max_table_rows:
            metadata["truncated"] = f"rows after {limits.max_table_rows} dropped"
            break
        rows.append(row[: limits.max_table_cols])
    out = BlockList()
    out.add("table", format_table(rows))
    return ParsedDocument(
        title=pick_title([], [], filename),
        blocks=tuple(out.blocks),
        language=guess_language(text[:100_000]),
        filename=filename,
        mime="text/csv",
        metadata=metadata,
    )


def _sniff(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","
