"""OLE2 compound files (the container of legacy Office and Outlook files), read with olefile.

A compound file is a small file system: storages (folders) and streams (files). Which program wrote it shows in
its top-level streams, so ``kind`` tells the formats apart without trusting the extension:

- ``WordDocument``: Word 97-2003 (.doc), read by ``doc.py``;
- ``Workbook`` (or Excel 5's ``Book``): Excel 97-2003 (.xls), read by ``xls.py``;
- ``__properties_version1.0`` and ``__substg1.0_*`` streams: an Outlook message (.msg), read by ``msg.py``;
- ``PowerPoint Document``: PowerPoint 97-2003 (.ppt), read by ``ppt.py``;
- ``EncryptionInfo`` + ``EncryptedPackage``: a password-protected .docx/.xlsx/.pptx, refused.

The stream sizes olefile reports are bounded by the file itself (a stream cannot be longer than its sector chain),
so nothing here can expand beyond the upload limit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import struct
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.parse.blocks import meaningful

_PID_CODEPAGE, _PID_TITLE, _PID_SUBJECT, _PID_AUTHOR, _PID_CREATED = 1, 2, 3, 4, 12
_VT_I2, _VT_BOOL, _VT_LPSTR, _VT_LPWSTR, _VT_FILETIME = 0x02, 0x0B, 0x1E, 0x1F, 0x40
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PASSWORD = "password-protected Office file; remove the password first"


def open_ole(data: bytes, filename: str) -> Any:
    """The olefile reader over ``data``, or DocumentRejected for a corrupt container."""
    import olefile  # lazy: only legacy Office and Outlook files need it

    try:
        return olefile.OleFileIO(io.BytesIO(data))
    except (OSError, ValueError, IndexError, EOFError) as exc:  # olefile raises OSError for a bad header or FAT
        raise DocumentRejected(filename, f"corrupt OLE2 (legacy Office) container ({exc})") from None


def kind(ole: Any, filename: str) -> str:
    """"doc", "xls", "ppt" or "msg"; DocumentRejected (with what to do) for the compound files we do not read."""
    top = {entry[0] for entry in ole.listdir(streams=True, storages=True) if entry}
    if "WordDocument" in top:
        return "doc"
    if "Workbook" in top or "Book" in top:
        return "xls"
    if "__properties_version1.0" in top or any(name.startswith("__substg1.0_") for name in top):
        return "msg"
    if "PowerPoint Document" in top:
        return "ppt"
    if "EncryptedPackage" in top or "EncryptionInfo" in top:
        raise DocumentRejected(filename, _PASSWORD)
    raise DocumentRejected(filename, "unsupported file type (an OLE2 compound file that is not a Word, Excel, "
                                     "PowerPoint or Outlook file)")


def password_protected(filename: str) -> DocumentRejected:
    return DocumentRejected(filename, _PASSWORD)


def read_stream(ole: Any, name: str | list[str], filename: str) -> bytes | None:
    """A stream's bytes, or None when it is missing; DocumentRejected when the container cannot give it."""
    try:
        if not ole.exists(name) or ole.get_type(name) != 2:  # 2: STGTY_STREAM
            return None
        return bytes(ole.openstream(name).read())
    except (OSError, ValueError, IndexError, EOFError) as exc:  # olefile reads the mini FAT and chains lazily
        raise DocumentRejected(filename, f"corrupt OLE2 (legacy Office) container ({exc})") from None


def summary_metadata(ole: Any, filename: str) -> tuple[str | None, dict[str, str]]:
    """Title, and author/subject/date, from the ``\\x05SummaryInformation`` property set every Office file has.

    Read here rather than with olefile's ``get_metadata``, which trusts a property's declared vector length and
    spins for minutes on a damaged one: we read five scalar properties and nothing else.
    """
    raw = read_stream(ole, "\x05SummaryInformation", filename) or b""
    props = _property_set(raw)
    codepage = props.get(_PID_CODEPAGE)
    text_codec = codec(codepage if isinstance(codepage, int) else None)

    def text(pid: int) -> str | None:
        value = props.get(pid)
        if isinstance(value, bytes):
            value = value.decode(text_codec, errors="replace")
        return meaningful(value.rstrip("\x00")) if isinstance(value, str) else None

    created = props.get(_PID_CREATED)
    date = None
    if isinstance(created, int) and created > 0:
        with contextlib.suppress(OverflowError):
            date = (_FILETIME_EPOCH + dt.timedelta(microseconds=created // 10)).isoformat()
    pairs = (("author", text(_PID_AUTHOR)), ("subject", text(_PID_SUBJECT)), ("date", date))
    return text(_PID_TITLE), {k: v for k, v in pairs if v}


def user_properties(ole: Any, filename: str) -> list[tuple[str, str]]:
    """The user-defined (custom) properties with a text value, from the second section of
    ``\x05DocumentSummaryInformation``: where Office keeps a Purview sensitivity label (``MSIP_Label_<id>_Name``...).

    The section's dictionary (property 0) names the properties; a boolean reads "true"/"false".
    """
    raw = read_stream(ole, "\x05DocumentSummaryInformation", filename) or b""
    section = _section(raw, 1)
    if section is None:
        return []
    start, offsets = section
    props = _property_set(raw, 1)
    codepage = props.get(_PID_CODEPAGE)
    names = _dictionary(raw, start + offsets[0], codepage if isinstance(codepage, int) else None) if 0 in offsets \
        else {}
    out: list[tuple[str, str]] = []
    text_codec = codec(codepage if isinstance(codepage, int) else None)
    for pid, name in names.items():
        value = props.get(pid)
        if isinstance(value, bytes):
            value = value.decode(text_codec, errors="replace")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, str):
            out.append((name, value.rstrip("\x00")))
    return out


def _section(raw: bytes, index: int) -> tuple[int, dict[int, int]] | None:
    """Where section ``index`` of a property set stream starts, and its properties' offsets ([MS-OLEPS] 2.20-2.21)."""
    if len(raw) < 28 or struct.unpack_from("<I", raw, 24)[0] <= index or len(raw) < 48 + 20 * index:
        return None
    start = struct.unpack_from("<I", raw, 44 + 20 * index)[0]
    if start + 8 > len(raw):
        return None
    count = min(struct.unpack_from("<I", raw, start + 4)[0], (len(raw) - start - 8) // 8)
    offsets: dict[int, int] = {}
    for k in range(count):
        pid, offset = struct.unpack_from("<II", raw, start + 8 + 8 * k)
        offsets[pid] = offset
    return start, offsets


def _property_set(raw: bytes, index: int = 0) -> dict[int, int | bytes | str | bool]:
    """The scalar properties (code page, strings, times, booleans) of a property set stream's section ``index``."""
    section = _section(raw, index)
    if section is None:
        return {}
    start, offsets = section
    found: dict[int, int | bytes | str | bool] = {}
    for pid, offset in offsets.items():
        at = start + offset
        if pid == 0 or at + 8 > len(raw):  # property 0 is the dictionary, not a value
            continue
        kind = struct.unpack_from("<H", raw, at)[0]
        if kind == _VT_I2:
            found[pid] = struct.unpack_from("<h", raw, at + 4)[0]
        elif kind == _VT_BOOL:
            found[pid] = struct.unpack_from("<h", raw, at + 4)[0] != 0
        elif kind == _VT_LPSTR:
            size = struct.unpack_from("<I", raw, at + 4)[0]
            found[pid] = raw[at + 8:at + 8 + size]
        elif kind == _VT_LPWSTR:
            size = struct.unpack_from("<I", raw, at + 4)[0]
            found[pid] = raw[at + 8:at + 8 + 2 * size].decode("utf-16-le", errors="replace")
        elif kind == _VT_FILETIME and at + 12 <= len(raw):
            found[pid] = struct.unpack_from("<Q", raw, at + 4)[0]
    return found


def _dictionary(raw: bytes, at: int, codepage: int | None) -> dict[int, str]:
    """A section's dictionary: property id → name. Names are UTF-16 (padded to 4 bytes) under code page 1200,
    else 8-bit in the section's code page ([MS-OLEPS] 2.16-2.17)."""
    if at + 4 > len(raw):
        return {}
    count = min(struct.unpack_from("<I", raw, at)[0], 10_000)
    wide = codepage is not None and codepage & 0xFFFF == 1200
    text_codec = codec(codepage)
    names: dict[int, str] = {}
    at += 4
    for _ in range(count):
        if at + 8 > len(raw):
            break
        pid, length = struct.unpack_from("<II", raw, at)
        at += 8
        size = length * 2 if wide else length
        if length > 0x10000 or at + size > len(raw):
            break
        name = raw[at:at + size].decode("utf-16-le" if wide else text_codec, errors="replace").rstrip("\x00")
        names[pid] = name
        at += size + (-size % 4 if wide else 0)
    return names


def codec(code_page: int | None) -> str:
    """The Python codec of a Windows code page (Office property sets, Outlook messages); cp1252 when unknown.
    Property sets store it as a signed 16-bit number (65001 reads -535), hence the mask."""
    page = (code_page or 1252) & 0xFFFF
    named = {65001: "utf-8", 1200: "utf-16-le", 10000: "mac-roman", 20127: "ascii", 28591: "latin-1"}
    name = named.get(page, f"cp{page}")
    try:
        "".encode(name)
    except LookupError:
        return "cp1252"
    return name
