"""Parse one file into a :class:`~inhouse.kb.document.ParsedDocument`; reject anything unsafe or unreadable.

``parse_file`` is the only entry point. It never raises anything but :class:`~inhouse.errors.DocumentRejected`
(library exceptions are wrapped), so an ingestion batch can report the file and carry on.

Format detection: magic bytes decide for binary formats (``%PDF``; ZIP containers told apart by their entries:
Office Open XML, OpenDocument, else a .zip archive of files; tar archives, compressed or not; OLE2 compound files by
their streams: Word, Excel and PowerPoint 97-2003 and Outlook .msg read, others refused; images read by OCR); for
text formats the extension decides (.md, .html, .csv/.tsv, .eml, .mbox, .txt, flat OpenDocument .fodt/.fods/.fodp),
and a text file without a known extension is sniffed (HTML, a mailbox, e-mail headers) or read as plain text.
Anything else is rejected as "unsupported file type".

The filename is only metadata: it is sanitised to a base name and never used to open or write anything.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse import archive, markings, mbox, odf, ole
from inhouse.kb.parse.safety import (
    MB,
    ParseLimits,
    UnpackBudget,
    check_size,
    open_zip_checked,
    sanitize_filename,
    zip_declared_bytes,
)

if TYPE_CHECKING:
    from inhouse.kb.parse.ocr import PageReader

__all__ = ["SUPPORTED_EXTENSIONS", "ParseLimits", "detect_format", "parse_file", "sanitize_filename"]

Format = str  # one of FORMATS
FORMATS = ("pdf", "docx", "pptx", "xlsx", "csv", "html", "markdown", "text", "eml", "image", "doc", "xls", "ppt", "msg",
           "rtf", "odf", "zip", "tar", "mbox")
_EXTENSIONS: dict[str, Format] = {
    ".pdf": "pdf", ".docx": "docx", ".docm": "docx", ".pptx": "pptx", ".pptm": "pptx", ".xlsx": "xlsx",
    ".xlsm": "xlsx", ".csv": "csv", ".tsv": "csv", ".html": "html", ".htm": "html", ".xhtml": "html",
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".txt": "text", ".text": "text",
    ".log": "text", ".rst": "text", ".eml": "eml", ".png": "image", ".jpg": "image", ".jpeg": "image",
    ".tif": "image", ".tiff": "image", ".webp": "image", ".bmp": "image", ".gif": "image",
    ".doc": "doc", ".dot": "doc", ".xls": "xls", ".xlt": "xls", ".ppt": "ppt", ".pot": "ppt", ".pps": "ppt",
    ".msg": "msg", ".rtf": "rtf", ".mbox": "mbox", ".mbx": "mbox",
    # OpenDocument: packages (and their templates), then the single-XML "flat" files
    ".odt": "odf", ".ods": "odf", ".odp": "odf", ".odg": "odf", ".ott": "odf", ".ots": "odf", ".otp": "odf",
    ".otg": "odf", ".fodt": "odf", ".fods": "odf", ".fodp": "odf", ".fodg": "odf",
    ".zip": "zip", ".tar": "tar", ".tgz": "tar",  # their files read as one document's parts (kb/parse/archive.py)
    # WPS Office's own formats: read where WPS wrote them in the Word, Excel or PowerPoint 97 binary form (the bytes
    # decide, as for .doc); anything else in them is refused by what it is
    ".wps": "doc", ".wpt": "doc", ".et": "xls", ".ett": "xls", ".dps": "ppt", ".dpt": "ppt",
}
SUPPORTED_EXTENSIONS = frozenset(_EXTENSIONS)
_BINARY_EXTENSIONS = frozenset((".pdf", ".docx", ".docm", ".pptx", ".pptm", ".xlsx", ".xlsm", ".doc", ".dot", ".xls",
                                ".xlt", ".ppt", ".pot", ".pps", ".msg", ".odt", ".ods", ".odp", ".odg", ".ott",
                                ".ots", ".otp", ".otg", ".zip", ".wps", ".wpt", ".et", ".ett", ".dps", ".dpt", ".tar",
                                ".tgz"))
# Extensions of text formats: a "%PDF-" that does not open such a file is text about PDF, not a PDF.
_TEXT_EXTENSIONS = frozenset(e for e, f in _EXTENSIONS.items() if e not in _BINARY_EXTENSIONS and f != "image")
_ZIP_MARKERS = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_BINARY_MAGIC = (
    (b"\x1f\x8b", "gzip archive"), (b"7z\xbc\xaf", "7z archive"), (b"Rar!", "RAR archive"),
    (b"\x7fELF", "executable"),
)
# Images are read by OCR (kb/parse/image.py). BMP's "BM" is too weak a mark alone: it also needs the extension.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
# ZIP containers whose parts the format's library unpacks (an archive's files are counted as they are handed on).
_ZIP_FORMATS = frozenset(("docx", "pptx", "xlsx", "odf"))
_EMAIL_HEADERS = (b"from:", b"received:", b"return-path:", b"mime-version:", b"message-id:", b"delivered-to:")


def parse_file(
    source: bytes | str | os.PathLike[str],
    filename: str | None = None,
    *,
    limits: ParseLimits | None = None,
    ocr: PageReader | None = None,
    on_page: Callable[[int, int], None] | None = None,
    _depth: int = 0,
    _budget: UnpackBudget | None = None,
) -> ParsedDocument:
    """Parse bytes, or the file at a path, into a document.

    ``filename`` names the file in messages and metadata (and picks the parser for text formats); it defaults to
    the path's base name. ``limits`` bounds size, archives and tables (see :class:`ParseLimits`). ``ocr`` reads
    images and scanned PDF pages; without it they are refused with the reason. ``on_page(read, pages)`` is
    called after each page OCR reads (the progress of a long scan).
    """
    limits = limits or ParseLimits()
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = sanitize_filename(filename)
    else:
        path = Path(source)
        name = sanitize_filename(filename if filename is not None else path.name)
        data = _read_bounded(path, name, limits)
    check_size(data, name, limits)
    if _depth > limits.max_depth:
        raise DocumentRejected(name, f"nested deeper than {limits.max_depth} levels (attachments in attachments)")
    budget = _budget or UnpackBudget(limits.max_unzipped_bytes)
    if _depth:  # these bytes were unpacked from the file that holds them
        budget.spend(len(data), name)
    fmt = detect_format(data, name, limits)
    try:
        if fmt in _ZIP_FORMATS and data.startswith(b"PK\x03\x04"):  # not a flat OpenDocument XML file
            budget.spend(zip_declared_bytes(data), name)
        document = _PARSERS[fmt](data, name, _Context(limits, _depth, ocr, on_page, budget))
        if budget.exceeded:  # somewhere inside; the container holding it only skipped that file
            raise DocumentRejected(name, budget.reason())
        labels = _LABELS[fmt](data, name) if fmt in _LABELS else ()
        return replace(document, markings=document.markings + labels) if labels else document
    except DocumentRejected as exc:
        if budget.exceeded and exc.reason != budget.reason():
            raise DocumentRejected(name, budget.reason()) from None
        raise
    except RecursionError:
        raise DocumentRejected(name, f"{fmt} structure nested too deeply to parse") from None
    except MemoryError:
        raise DocumentRejected(name, f"{fmt} file needs too much memory to parse") from None
    except Exception as exc:  # any library failure is this file's problem, never the batch's
        raise DocumentRejected(name, f"could not parse {fmt} file ({type(exc).__name__}: {exc})"[:500]) from None


def detect_format(data: bytes, filename: str, limits: ParseLimits | None = None) -> Format:
    """The parser for these bytes, or DocumentRejected("unsupported file type ...")."""
    ext = os.path.splitext(filename.lower())[1]
    head = data[:1024]
    # Readers accept junk before the header (up to 1 KB), so a PDF may not start at offset 0
    if head.startswith(b"%PDF") or (b"%PDF-" in head and ext not in _TEXT_EXTENSIONS):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        names = set(open_zip_checked(data, filename, limits or ParseLimits()))
        for marker, fmt in _ZIP_MARKERS:
            if marker in names:
                return fmt
        if odf.is_package(names, _small_entry(data, "mimetype")) or (
                "content.xml" in names and ext in _BINARY_EXTENSIONS and _EXTENSIONS[ext] == "odf"):
            return "odf"
        if "EncryptedPackage" in names:
            raise DocumentRejected(filename, "password-protected Office file; remove the password first")
        if ext in ("", ".zip"):  # an archive of files, not an Office document that lost its parts
            return "zip"
        raise DocumentRejected(filename, "unsupported file type (a ZIP archive that is not .docx/.pptx/.xlsx/.odt/.ods/"
                                         ".odp)")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):  # whatever the extension (Word saves .doc as RTF)
        return "rtf"
    if head.startswith(ole.MAGIC):  # legacy Office, Outlook, or a password-protected Office file
        return ole.kind(ole.open_ole(data, filename), filename)
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or (
            head.startswith(b"BM") and ext == ".bmp"):
        return "image"
    if archive.is_tar(data):  # a tar archive, or a compressed one (the magic below names what else it may be)
        return "tar"
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise DocumentRejected(filename, f"unsupported file type ({what})")
    sniff = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if ext == ".msg" and sniff.startswith(_EMAIL_HEADERS):  # some mail tools save MIME text under .msg
        return "eml"
    if ext in _BINARY_EXTENSIONS or _EXTENSIONS.get(ext) == "image":
        raise DocumentRejected(filename, f"not a valid {ext} file (its content does not match the extension)")
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext:
        raise DocumentRejected(filename, f"unsupported file type ({ext})")
    if sniff.startswith((b"<!doctype html", b"<html")):
        return "html"
    if mbox.is_mbox(head):  # Thunderbird keeps each mail folder as a file without an extension ("Inbox")
        return "mbox"
    if sniff.startswith(_EMAIL_HEADERS):
        return "eml"
    return "text"


def _small_entry(data: bytes, name: str, limit: int = 256) -> bytes | None:
    """A short entry of a ZIP already checked by ``open_zip_checked`` (an ODF package's ``mimetype``), or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = zf.getinfo(name)
            return zf.read(info) if info.file_size <= limit else None
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None


def _read_bounded(path: Path, name: str, limits: ParseLimits) -> bytes:
    """Read at most max_file_bytes + 1 bytes, so an oversized file is refused without loading it."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise DocumentRejected(name, f"cannot read file ({exc.strerror or exc})") from None
    if len(data) > limits.max_file_bytes:
        raise DocumentRejected(name, f"file is larger than the {limits.max_file_bytes / MB:.0f} MB limit")
    return data


@dataclass(frozen=True)
class _Context:
    """What a format's parser may need beyond the bytes: limits, attachment depth, OCR and its page progress."""

    limits: ParseLimits
    depth: int
    ocr: PageReader | None
    on_page: Callable[[int, int], None] | None
    budget: UnpackBudget  # shared by every file nested in the upload


def _pdf(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import pdf

    return pdf.parse(data, name, ctx.limits, ctx.ocr, ctx.on_page)


def _docx(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import docx

    return docx.parse(data, name, ctx.limits)


def _pptx(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import pptx

    return pptx.parse(data, name, ctx.limits)


def _xlsx(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import xlsx

    return xlsx.parse(data, name, ctx.limits)


def _csv(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import csvfile

    return csvfile.parse(data, name, ctx.limits)


def _html(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import html

    return html.parse(data, name, ctx.limits)


def _markdown(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import markdown

    return markdown.parse(data, name, ctx.limits)


def _text(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import text

    return text.parse(data, name)


def _image(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import image

    return image.parse(data, name, ctx.limits, ctx.ocr, attachment=ctx.depth > 0, on_page=ctx.on_page)


def _doc(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import doc

    return doc.parse(data, name, ctx.limits)


def _xls(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import xls

    return xls.parse(data, name, ctx.limits)


def _ppt(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import ppt

    return ppt.parse(data, name, ctx.limits)


def _ooxml_labels(data: bytes, name: str) -> tuple[Marking, ...]:
    return markings.ooxml_labels(data)


def _pdf_labels(data: bytes, name: str) -> tuple[Marking, ...]:
    return markings.pdf_labels(data)


def _ole_labels(data: bytes, name: str) -> tuple[Marking, ...]:
    return tuple(markings.msip_labels(ole.user_properties(ole.open_ole(data, name), name)))


def _rtf(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import rtf

    return rtf.parse(data, name, ctx.limits)


def _odf(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    return odf.parse(data, name, ctx.limits)


def _zip(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    return archive.parse(data, name, ctx.limits, _nested(ctx))


def _tar(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    return archive.parse_tar(data, name, ctx.limits, _nested(ctx))


def _nested(ctx: _Context) -> Callable[[bytes, str], ParsedDocument]:
    """The parser of an e-mail's attachments: this dispatcher, one level deeper."""

    def nested(payload: bytes, filename: str) -> ParsedDocument:
        return parse_file(payload, filename, limits=ctx.limits, ocr=ctx.ocr, _depth=ctx.depth + 1,
                          _budget=ctx.budget)

    return nested


def _eml(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import eml

    return eml.parse(data, name, ctx.limits, _nested(ctx))


def _mbox(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    return mbox.parse(data, name, ctx.limits, _nested(ctx))


def _msg(data: bytes, name: str, ctx: _Context) -> ParsedDocument:
    from inhouse.kb.parse import msg

    return msg.parse(data, name, ctx.limits, _nested(ctx))


_PARSERS: dict[Format, Callable[[bytes, str, _Context], ParsedDocument]] = {
    "pdf": _pdf, "docx": _docx, "pptx": _pptx, "xlsx": _xlsx, "csv": _csv, "html": _html,
    "markdown": _markdown, "text": _text, "eml": _eml, "image": _image, "doc": _doc, "xls": _xls, "ppt": _ppt,
    "msg": _msg, "rtf": _rtf, "odf": _odf, "zip": _zip, "tar": _tar, "mbox": _mbox,
}
# Sensitivity labels recorded in the file's metadata, read beside its text (``kb/parse/markings.py``); e-mail
# headers, front matter and <meta> classifications are read by their format's parser.
_LABELS: dict[Format, Callable[[bytes, str], tuple[Marking, ...]]] = {
    "docx": _ooxml_labels, "pptx": _ooxml_labels, "xlsx": _ooxml_labels, "pdf": _pdf_labels,
    "doc": _ole_labels, "xls": _ole_labels, "ppt": _ole_labels,
}
