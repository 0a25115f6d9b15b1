"""Limits every parser runs under, checked before any third-party library sees the bytes.

Office files are ZIP containers, and a ZIP can declare gigabytes of content in a few kilobytes. We read the
central directory ourselves (stdlib ``zipfile``, no decompression) and refuse archives whose declared total size,
entry count or per-entry compression ratio is out of bounds. Declared sizes are binding: Python's ``zipfile``
(used by python-docx, python-pptx and openpyxl) stops at an entry's declared size and fails its CRC check if the
stream holds more, so a lying header cannot smuggle extra bytes past this check.

Archives in archives and attachments of attachments each pass these checks alone, so ``max_unzipped_bytes`` also
bounds their sum: an ``UnpackBudget`` follows one upload through every nested parse.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import Any

from inhouse.errors import DocumentRejected

MB = 1024 * 1024


@dataclass(frozen=True)
class ParseLimits:
    """Bounds for one file. ``max_file_bytes`` mirrors the setting ``kb.max_file_mb``."""

    max_file_bytes: int = 50 * MB
    max_unzipped_bytes: int = 200 * MB  # per ZIP, and in all over the archives and attachments nested in a file
    max_zip_entries: int = 10_000
    max_zip_ratio: float = 100.0  # uncompressed / compressed, for entries above ``zip_ratio_min_bytes``
    zip_ratio_min_bytes: int = 1 * MB
    max_table_rows: int = 5_000  # per sheet / CSV file / HTML or DOCX table; the rest is dropped and noted
    max_table_cols: int = 64
    max_pages: int = 5_000
    max_ocr_pages: int = 500  # scanned pages read by OCR per file (~1-3 s each on 2 cores); mirrors kb.ocr_max_pages
    max_image_pixels: int = 60_000_000  # an image file (or TIFF page) larger than this is refused before decoding
    max_depth: int = 3  # e-mail attachments inside e-mail attachments...
    # HTML elements inside elements: a browser shows 512 levels, Word's HTML nests a few dozen; Lexbor's time grows
    # with the square of the depth (200,000 nested <div>s: minutes)
    max_html_depth: int = 512

    @classmethod
    def from_mb(cls, max_file_mb: float, *, max_ocr_pages: int = 500) -> ParseLimits:
        return cls(max_file_bytes=int(max_file_mb * MB), max_ocr_pages=max_ocr_pages)


class UnpackBudget:
    """The bytes unpacked from one uploaded file, counted over every level of archives and attachments in it.

    ``open_zip_checked`` bounds one ZIP; an archive of archives (or a mail of zipped mails) would otherwise expand
    to copies x ``max_unzipped_bytes``. Once the total passes the limit every later ``spend`` raises, and
    ``parse_file`` refuses the whole upload (a container only skips the file it could not read).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def spend(self, size: int, filename: str) -> None:
        self.used += size
        if self.exceeded:
            raise DocumentRejected(filename, self.reason())

    def reason(self) -> str:
        return (f"expands to more than {self.limit / MB:.0f} MB in all, counting the archives and attachments inside "
                "it (possible zip bomb)")


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (NUL too), DEL and C1: U+0085 (NEL) breaks lines for some readers


def sanitize_filename(name: object) -> str:
    """A display-only base name: no directories, no control characters, at most 200 characters.

    The result is metadata. Nothing in parsing ever opens or writes a path built from it.
    """
    text = unicodedata.normalize("NFC", str(name or ""))
    text = _UNSAFE.sub("", text).replace("\\", "/")
    base = text.rstrip("/").rsplit("/", 1)[-1].strip()
    base = base.lstrip(".") if set(base) <= {"."} else base  # "." and ".." name nothing
    if len(base) > 200:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else base[:200]
    return base or "unnamed"


def check_size(data: bytes, filename: str, limits: ParseLimits) -> None:
    if not data:
        raise DocumentRejected(filename, "empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise DocumentRejected(
            filename, f"file is {len(data) / MB:.1f} MB, above the {limits.max_file_bytes / MB:.0f} MB limit"
        )


def open_zip_checked(data: bytes, filename: str, limits: ParseLimits) -> list[str]:
    """Validate a ZIP container's directory and return its entry names; raise DocumentRejected on a bomb."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        # NotImplementedError: a directory entry claiming a ZIP version or feature zipfile does not have
        raise DocumentRejected(filename, f"corrupt ZIP container ({exc})") from None
    if len(infos) > limits.max_zip_entries:
        raise DocumentRejected(filename, f"ZIP has {len(infos)} entries, above the limit of {limits.max_zip_entries}")
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.max_unzipped_bytes:
            raise DocumentRejected(
                filename,
                f"ZIP expands to more than {limits.max_unzipped_bytes / MB:.0f} MB (possible zip bomb)",
            )
        if info.file_size >= limits.zip_ratio_min_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_zip_ratio:
                raise DocumentRejected(
                    filename,
                    f"ZIP entry {sanitize_filename(info.filename)!r} has compression ratio {ratio:.0f}:1, "
                    f"above {limits.max_zip_ratio:.0f}:1 (possible zip bomb)",
                )
    return [info.filename for info in infos]


def zip_declared_bytes(data: bytes) -> int:
    """The total size the entries of a ZIP already checked by ``open_zip_checked`` declare."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return sum(info.file_size for info in zf.infolist())


def safe_xml(data: bytes) -> Any | None:
    """The root element of an XML document from a file, or None if it is not well-formed. No entities are resolved,
    no DTD or network is read, and trees deeper than libxml2's default limit are refused."""
    from lxml import etree  # python-docx's dependency

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None


def iter_xml(source: Any, events: tuple[str, ...] = ("start", "end")) -> Any:
    """Events over an XML stream (``lxml.etree.iterparse``) with ``safe_xml``'s rules, for documents too large to
    hold as a tree; ``XMLSyntaxError`` (a ``SyntaxError``) where it is not well-formed."""
    from lxml import etree

    return etree.iterparse(source, events=events, resolve_entities=False, no_network=True, huge_tree=False,
                           load_dtd=False)
