"""Sensitivity labels a file records in its metadata, read without trusting it to be well formed.

What each format keeps, and where (``kb/markings.py`` decides what the labels mean for the document's label):

- **Office Open XML** (.docx, .xlsx, .pptx): a Microsoft Purview (MIP) sensitivity label is a group of custom
  document properties, ``MSIP_Label_<id>_Enabled``, ``_Name``, ``_SiteId``... (``docProps/custom.xml``), or, where
  the tenant opted in, a ``label`` element of the ``docMetadata/LabelInfo.xml`` part, which holds the id only
  ([MS-OFFCRYPTO] 2.6). A label the part marks removed or not enabled is not one.
- **PDF**: the same properties, which Office and the MIP SDK write into the document information dictionary and the
  XMP packet. They are found in the file's bytes, so a PDF whose information dictionary sits in a compressed object
  stream and that has no XMP packet shows none (XMP packets are stored uncompressed so that other tools can read them).
- **Word, Excel and PowerPoint 97-2003**: the same properties in the user-defined section of the
  ``DocumentSummaryInformation`` property set (``ole.user_properties``).
- **OpenDocument** (.odt, .ods, .odp): the same properties as ``meta:user-defined`` elements, where LibreOffice keeps
  an Office file's label when it saves it as OpenDocument (read in ``odf.py``).
- **E-mail** (.eml, .msg): the ``msip_labels`` header Outlook writes (``MSIP_Label_<id>_Name=...;``) and the
  ``Sensitivity`` header of RFC 2156 (``Company-Confidential``), read in ``eml.py``.

Running headers and footers are read by the format's parser: ``docx.py``, ``doc.py``, ``rtf.py``, ``odf.py``,
``html.py``, slide footers in ``pptx.py`` and ``ppt.py``, and a spreadsheet's page headers and footers in ``xlsx.py``
(the ``headerFooter`` element of each sheet) and ``xls.py`` (the ``HEADER`` and ``FOOTER`` records), whose
formatting codes ``sheet_header_markings`` below strips. Front matter and ``<meta>`` classifications are read by
``markdown.py`` and ``html.py``.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from typing import Literal

from inhouse.kb.document import Marking
from inhouse.kb.parse.blocks import clean_inline
from inhouse.kb.parse.safety import safe_xml

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_PROPERTY = re.compile(rf"^MSIP_Label_({_GUID})_(\w+)$")
_PDF_KEY = re.compile(rb"MSIP_Label_(" + _GUID.encode() + rb")_(Enabled|Name)\b")
# The value after a key: a PDF literal or hex string (information dictionary), an XMP attribute or element.
_PDF_LITERAL = re.compile(rb"\s*\(((?:[^()\\]|\\.){0,400})\)", re.S)
_PDF_HEX = re.compile(rb"\s*<([0-9A-Fa-f\s]{0,800})>")
_XMP_ATTRIBUTE = re.compile(rb"\s*=\s*[\"']([^\"'<]{0,400})[\"']")
_XMP_ELEMENT = re.compile(rb">([^<]{0,400})</")
_PDF_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_MAX_PART = 1 << 20  # a properties part larger than this is not a real one
_MAX_KEYS = 200  # keys read from one PDF
_CUSTOM_PROPERTIES = "docprops/custom.xml"
_LABEL_INFO = "docmetadata/labelinfo.xml"
_LABEL_INFO_NS = "http://schemas.microsoft.com/office/2020/mipLabelMetadata"
# Excel's page header and footer codes: "&&" a literal ampersand; &L &C &R the left, centre and right sections; fields
# (&P page, &N pages, &D date, &T time, &F file, &A sheet, &Z path, &G picture; &P+1 a page offset); the font
# (&"Arial,Bold"), its size (&12), colour (&KFF0000, or a theme colour &K01+000) and style toggles (&B &I &U &E &S
# &X &Y &O &H). Any other character after "&" is text.
_SHEET_CODE = re.compile(r'&(&|[LCR]|[PN](?:[+-]\d+)?|[DTFAZGBIUESXYOH]|"[^"]*"?|\d{1,3}'
                         r"|K(?:[0-9A-Fa-f]{6}|\d\d[+-]\d{3})?)")
_MAX_RUNNING = 100  # distinct header and footer lines kept from one file


def msip_labels(properties: Iterable[tuple[str, str]]) -> list[Marking]:
    """The Purview labels among ``(name, value)`` properties, one per label id; ``_Enabled=false`` ones left out."""
    found: dict[str, dict[str, str]] = {}
    for name, value in properties:
        match = _PROPERTY.match(name.strip())
        if match:
            found.setdefault(match.group(1).lower(), {})[match.group(2).lower()] = value.strip()
    return [Marking("label", attributes.get("name", ""), label_id=label_id) for label_id, attributes in found.items()
            if attributes.get("enabled", "true").lower() not in ("false", "0")]


def header_labels(value: str) -> list[Marking]:
    """The labels of an ``msip_labels`` e-mail header: ``MSIP_Label_<id>_Enabled=True; MSIP_Label_<id>_Name=…;``."""
    pairs = (part.split("=", 1) for part in value.split(";") if "=" in part)
    return msip_labels((name, content) for name, content in pairs)


def ooxml_labels(data: bytes) -> tuple[Marking, ...]:
    """The labels of a .docx/.xlsx/.pptx (its ZIP directory already checked by ``open_zip_checked``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        parts = {info.filename.lower(): info for info in zf.infolist()}
        custom = _part(zf, parts.get(_CUSTOM_PROPERTIES))
        label_info = _part(zf, parts.get(_LABEL_INFO))
    labels = {m.label_id: m for m in msip_labels(_custom_properties(custom))} if custom else {}
    if label_info:
        # The LabelInfo part wins for the labels it lists ([MS-OFFCRYPTO] 2.6.3); it names none, so keep a name the
        # custom properties give for the same id.
        for label_id, enabled in _label_info(label_info):
            if not enabled:
                labels.pop(label_id, None)
            elif label_id not in labels:
                labels[label_id] = Marking("label", "", label_id=label_id)
    return tuple(labels.values())


def pdf_labels(data: bytes) -> tuple[Marking, ...]:
    """The labels a PDF's information dictionary or XMP packet records (when stored uncompressed)."""
    if b"MSIP_Label_" not in data:
        return ()
    properties: list[tuple[str, str]] = []
    for n, match in enumerate(_PDF_KEY.finditer(data)):
        if n >= _MAX_KEYS:
            break
        tag = data.rfind(b"<", max(0, match.start() - 64), match.start())
        if tag >= 0 and data[tag + 1:tag + 2] == b"/":
            continue  # an XMP element's closing tag
        value = _pdf_value(data, match.end())
        if value is not None:
            properties.append((f"MSIP_Label_{match.group(1).decode()}_{match.group(2).decode()}", value))
    return tuple(msip_labels(properties))


def running_markings(lines: Iterable[tuple[Literal["header", "footer"], str]]) -> tuple[Marking, ...]:
    """Header and footer lines, as ``(source, text)``, as markings: cleaned, empty and repeated ones dropped (the
    same line heads every page), at most ``_MAX_RUNNING`` kept. Every format's reader of running text ends here."""
    seen: dict[tuple[Literal["header", "footer"], str], None] = {}
    for source, line in lines:
        if len(seen) >= _MAX_RUNNING:
            break
        if text := clean_inline(line):
            seen[(source, text)] = None
    return tuple(Marking(source, text) for source, text in seen)


def sheet_header_markings(codes: Iterable[tuple[Literal["header", "footer"], str]]) -> tuple[Marking, ...]:
    """The distinct lines a spreadsheet's page headers and footers show, from their code strings (``&CConfidential``)
    as .xlsx and .xls store them, as ``(source, code)``: each section and each line in it a marking, codes dropped."""
    return running_markings((source, line) for source, code in codes for line in sheet_header_lines(code))


def sheet_header_lines(code: str) -> list[str]:
    """The text of one header or footer code string, a line for each of its sections (left, centre, right, in the
    order written) and for each line break within one: ``&L&A&CConfidential&RPage &P of &N`` is "Confidential" and
    "Page of"."""
    sections: list[str] = []
    current: list[str] = []
    at = 0
    for match in _SHEET_CODE.finditer(code):
        current.append(code[at:match.start()])
        at = match.end()
        token = match.group(1)
        if token == "&":
            current.append("&")
        elif token in ("L", "C", "R"):
            sections.append("".join(current))
            current = []
    current.append(code[at:])
    sections.append("".join(current))
    return [line for section in sections for raw in section.splitlines() if (line := clean_inline(raw))]


def _part(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None) -> bytes | None:
    if info is None or info.file_size > _MAX_PART:
        return None
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None  # a damaged properties part: the document's text may still be read


def _custom_properties(data: bytes) -> list[tuple[str, str]]:
    root = safe_xml(data)
    if root is None:
        return []
    out: list[tuple[str, str]] = []
    for prop in root.iter("{*}property"):
        name = prop.get("name")
        if name and name.startswith("MSIP_Label_"):
            out.append((name, "".join(prop.itertext())))
    return out


def _label_info(data: bytes) -> list[tuple[str, bool]]:
    root = safe_xml(data)
    if root is None:
        return []
    out: list[tuple[str, bool]] = []
    for label in root.iter(f"{{{_LABEL_INFO_NS}}}label"):
        label_id = (label.get("id") or "").strip("{} ").lower()
        if re.fullmatch(_GUID, label_id):
            out.append((label_id, label.get("enabled", "1") != "0" and label.get("removed", "0") != "1"))
    return out


def _pdf_value(data: bytes, at: int) -> str | None:
    rest = data[at:at + 1024]
    if match := _PDF_LITERAL.match(rest):
        return _pdf_text(_unescape_literal(match.group(1)))
    if match := _PDF_HEX.match(rest):
        digits = re.sub(rb"\s", b"", match.group(1))
        return _pdf_text(bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode()))
    for pattern in (_XMP_ATTRIBUTE, _XMP_ELEMENT):
        if match := pattern.match(rest):
            import html

            return html.unescape(match.group(1).decode("utf-8", errors="replace"))
    return None


def _unescape_literal(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i:i + 1]
        if byte != b"\\" or i + 1 >= len(raw):
            out += byte
            i += 1
            continue
        nxt = raw[i + 1:i + 2]
        octal = re.match(rb"[0-7]{1,3}", raw[i + 1:i + 4])
        if octal:
            out.append(int(octal.group(0), 8) & 0xFF)
            i += 1 + len(octal.group(0))
        else:
            out += _PDF_ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def _pdf_text(raw: bytes) -> str:
    """A PDF text string: UTF-16BE after its byte-order mark, UTF-8 after its (PDF 2.0), else PDFDocEncoding
    (Latin-1 is the same for the names a label has)."""
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", errors="replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    return raw.decode("latin-1")
