"""Parse targets that misbehave the way native parsers can, for the tests of ``kb/parse/isolated.py``.

Each runs in the parse worker (so it must be a module-level function: it is pickled by name). The file name says
what to do; any other name is parsed for real.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from inhouse.kb.document import Block, ParsedDocument
from inhouse.kb.parse.safety import ParseLimits


def hostile_parse(data: bytes, filename: str, *, limits: ParseLimits, ocr: Any, on_page: Any) -> ParsedDocument:
    stem = filename.rsplit(".", 1)[0]
    if stem == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if stem == "abort":
        os.abort()
    if stem == "oomkilled":  # the kernel's OOM killer (or an operator) kills every worker that takes it
        os.kill(os.getpid(), signal.SIGKILL)
    if stem == "killedonce":  # killed from outside the first time (``data`` names a marker file), parsed the next
        marker = data.decode()
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    if stem == "hang":
        time.sleep(3600)
    if stem == "balloon":  # grows until the address-space limit stops it
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024 * 1024))
    if stem == "pages":  # a long scan: slow pages, each reported
        pages = int(data.decode())
        for page in range(1, pages + 1):
            time.sleep(0.3)
            on_page(page, pages)
    if stem in ("pid", "pages", "killedonce"):
        return ParsedDocument(title=stem, blocks=(Block("paragraph", str(os.getpid())),), language="en",
                              filename=filename, mime="text/plain")
    from inhouse.kb.parse import parse_file

    return parse_file(data, filename, limits=limits, ocr=ocr, on_page=on_page)
