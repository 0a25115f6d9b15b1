"""Archives (.zip; .tar, also gzip-, bzip2- or xz-compressed): a folder kept or sent as one file, read as one
document whose parts are its files.

Each file is parsed by the dispatcher one level deeper (bounded by ``ParseLimits.max_depth``, as an e-mail's
attachments are), in the archive's order, and its blocks follow under a heading "File: <path in the archive>".
Files that are rejected (an unsupported type, a password, damage) are listed in ``metadata["skipped_files"]``; they
do not reject the archive. Folders, macOS resource forks (``__MACOSX/``) and desktop files (``.DS_Store``,
``Thumbs.db``, ``desktop.ini``) are not files anyone wrote, and are passed over in silence.

A name stored without ZIP's UTF-8 flag is decoded as UTF-8 when it is valid UTF-8, else as GB18030 (what the
archivers of a Chinese Windows write), never as the DOS code page 437 ``zipfile`` assumes. The markings of every file
are the archive's: a confidential file makes a confidential archive.

A ZIP container was checked before this runs (``safety.open_zip_checked``: entry count, total size, compression
ratio). A tar archive declares each file's size in its header, and is read as a stream: it is refused once its
entries pass ``max_zip_entries`` or their sizes ``max_unzipped_bytes``, before those bytes are decompressed. The
records ``tarfile`` reads into memory to make one entry (pax and GNU long-name headers, sparse maps) are refused past
1 MB before they are read (``_MeteredReads``; a 1.4 MB .tar.gz declaring a 1.5 GB pax header took 1.5 GB). Only
regular files are read (links and devices are listed as skipped; nothing is ever written to disk). Each file is then
held to the same limits as an uploaded one, and counted in the upload's ``max_unzipped_bytes`` (nested archives
too: ``safety.UnpackBudget``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, pick_title
from inhouse.kb.parse.safety import MB, ParseLimits, sanitize_filename

NestedParser = Callable[[bytes, str], ParsedDocument]
_MAX_FILES = 200  # files read from one archive; the rest are listed as skipped
_NOT_WRITTEN = frozenset((".ds_store", "thumbs.db", "desktop.ini"))
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
# The headers of one tar entry (pax records, a GNU long name, a sparse map): a real one holds a path and a few
# attributes, a few KB at most; tarfile reads each into memory whole.
_MAX_TAR_HEADER_BYTES = 1 * MB
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


# A file of the archive: its path, and how to read its bytes (DocumentRejected when they cannot be).
Member = tuple[str, Callable[[], bytes]]


def parse(data: bytes, filename: str, limits: ParseLimits, parse_nested: NestedParser) -> ParsedDocument:
    """A .zip archive (its directory already checked by ``safety.open_zip_checked``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return _document(_zip_members(zf, limits), filename, parse_nested, mime="application/zip")


def parse_tar(data: bytes, filename: str, limits: ParseLimits, parse_nested: NestedParser) -> ParsedDocument:
    """A tar archive, compressed or not."""
    try:
        tf = _open_tar(data)
    except _HeaderTooLarge:
        raise DocumentRejected(filename, _HEADER_TOO_LARGE) from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # includes zlib, bz2 and lzma errors
        raise DocumentRejected(filename, _damaged(exc)) from None
    with tf:
        return _document(_tar_members(tf, filename, limits), filename, parse_nested, mime="application/x-tar")


def is_tar(data: bytes) -> bool:
    """Whether ``data`` is a tar archive, or a gzip, bzip2 or xz stream holding one (its first header read), even a
    damaged one (``parse_tar`` then says it is damaged, not of an unsupported type)."""
    if data[257:262] == b"ustar":
        return True
    if not data.startswith(_COMPRESSED_MAGIC):
        return False
    try:
        with _open_tar(data) as tf:
            return tf.next() is not None
    except _HeaderTooLarge:  # a tar, with a hostile header: parse_tar refuses it
        return True
    except MemoryError:
        raise
    except Exception:  # any failure of the codecs or tarfile
        return _starts_with_tar_header(data)


def _open_tar(data: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*", tarinfo=_CheckedTarInfo)


class _HeaderTooLarge(Exception):
    """One tar entry's headers hold more than ``_MAX_TAR_HEADER_BYTES``."""


_HEADER_TOO_LARGE = (f"a tar entry's header records (pax, GNU long name or sparse map) hold more than "
                     f"{_MAX_TAR_HEADER_BYTES // MB} MB (possible tar bomb)")


class _MeteredReads:
    """The archive's stream while tarfile reads one entry's headers: a read past ``_MAX_TAR_HEADER_BYTES`` in all
    raises ``_HeaderTooLarge`` before it is made (tarfile asks for a pax record's declared size in one read)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.used = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or self.used + size > _MAX_TAR_HEADER_BYTES:
            raise _HeaderTooLarge
        self.used += size
        data: bytes = self.stream.read(size)
        return data

    def tell(self) -> int:
        position: int = self.stream.tell()
        return position

    def seek(self, offset: int, whence: int = 0) -> int:
        position: int = self.stream.seek(offset, whence)
        return position


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile's entry, its headers read through ``_MeteredReads``.

    ``fromtarfile`` (public API) reads one entry: its header block and every record before the next (a pax header
    reads the entry after it through ``fromtarfile`` again: metered by the outer call, so a chain of records counts
    in one budget). Metering here, rather than walking the headers ahead of tarfile, follows tarfile's own reading
    (base-256 sizes, global pax sizes, sparse maps) and decompresses the archive once.
    """

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> _CheckedTarInfo:
        stream = tf.fileobj
        if isinstance(stream, _MeteredReads):
            return super().fromtarfile(tf)
        tf.fileobj = _MeteredReads(stream)  # type: ignore[assignment]
        try:
            return super().fromtarfile(tf)
        finally:
            tf.fileobj = stream


def _damaged(exc: BaseException) -> str:
    if isinstance(exc, tarfile.ReadError) and "\n" in str(exc):  # mode "r:*" lists every method it tried
        detail = "not a tar, nor a gzip, bzip2 or xz stream holding one"
    else:
        detail = str(exc) or type(exc).__name__
    return f"damaged archive, cut short or corrupted ({detail})"[:300]


def _starts_with_tar_header(data: bytes) -> bool:
    """Whether a compressed stream tarfile could not read starts with a tar header all the same: damaged after it."""
    decompressor: Any = (zlib.decompressobj(wbits=31) if data.startswith(b"\x1f\x8b")
                         else bz2.BZ2Decompressor() if data.startswith(b"BZh") else lzma.LZMADecompressor())
    try:
        head = decompressor.decompress(data, tarfile.BLOCKSIZE)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")  # an old tar without the magic: its checksum
    except tarfile.HeaderError:
        return False
    return True


def _document(members: Iterator[Member], filename: str, parse_nested: NestedParser, *, mime: str) -> ParsedDocument:
    out = BlockList()
    skipped: list[str] = []
    markings: list[Marking] = []
    read = 0
    for path, content in members:
        if read >= _MAX_FILES:
            skipped.append(f"{path}: more than {_MAX_FILES} files")
            continue
        try:
            document = parse_nested(content(), sanitize_filename(posixpath.basename(path)))
        except DocumentRejected as exc:
            skipped.append(f"{path}: {exc.reason}")
            continue
        read += 1
        if document.metadata.get("skipped_files"):
            skipped.append(f"{path} > {document.metadata['skipped_files']}")
        markings += document.markings
        out.nest(f"File: {path}", document)
    if not out.blocks:
        reasons = "; ".join(skipped[:5]) or "it is empty"
        raise DocumentRejected(filename, f"archive has no readable file ({reasons})"[:500])
    metadata = {"files": str(read)}
    if skipped:
        metadata["skipped_files"] = "; ".join(skipped)[:2000]
    return ParsedDocument(
        title=pick_title([], [], filename.removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime=mime,
        metadata=metadata,
        markings=tuple(dict.fromkeys(markings)),
    )


def _zip_members(zf: zipfile.ZipFile, limits: ParseLimits) -> Iterator[Member]:
    for info in zf.infolist():
        path = member_name(info)
        if not (info.is_dir() or _not_written(path)):
            yield path, lambda info=info, path=path: _read(zf, info, path, limits)  # type: ignore[misc]


def _tar_members(tf: tarfile.TarFile, filename: str, limits: ParseLimits) -> Iterator[Member]:
    entries = declared = 0
    while True:
        try:
            info = tf.next()
        except _HeaderTooLarge:
            raise DocumentRejected(filename, _HEADER_TOO_LARGE) from None
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # includes zlib, bz2 and lzma errors
            raise DocumentRejected(filename, _damaged(exc)) from None
        if info is None:
            return
        entries += 1
        declared += max(info.size, 0)
        if entries > limits.max_zip_entries:
            raise DocumentRejected(filename, f"archive has more than {limits.max_zip_entries} entries")
        if declared > limits.max_unzipped_bytes:
            raise DocumentRejected(filename, f"archive expands to more than {limits.max_unzipped_bytes // MB} MB "
                                             "(possible bomb)")
        path = _clean_path(_redecode(info.name))
        if info.isdir() or _not_written(path):
            continue
        if not info.isfile():
            yield path, _refuse(path, "not a regular file (a link or a device)")
            continue
        yield path, lambda info=info, path=path: _read_tar(tf, info, path, limits)  # type: ignore[misc]


def _refuse(path: str, reason: str) -> Callable[[], bytes]:
    def content() -> bytes:
        raise DocumentRejected(path, reason)
    return content


def _read_tar(tf: tarfile.TarFile, info: tarfile.TarInfo, path: str, limits: ParseLimits) -> bytes:
    if info.size > limits.max_file_bytes:
        raise DocumentRejected(path, f"larger than the {limits.max_file_bytes // MB} MB limit")
    try:
        stream = tf.extractfile(info)
        return stream.read() if stream is not None else b""
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DocumentRejected(path, f"cannot be read from the archive ({type(exc).__name__}: {exc})"[:300]) from None


def _redecode(name: str) -> str:
    """A tar name tarfile decoded as UTF-8 with escapes for invalid bytes: those bytes were GB18030, most likely."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("gb18030", errors="replace")
    return name


def member_name(info: zipfile.ZipInfo) -> str:
    """The file's path in the archive, as its author wrote it (see the module docstring on encodings)."""
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG:
        try:
            raw = name.encode("cp437")  # zipfile's own decoding, undone
        except UnicodeEncodeError:
            pass
        else:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                name = raw.decode("gb18030", errors="replace")
    return _clean_path(name)


def _clean_path(name: str) -> str:
    return clean_inline(name.replace("\\", "/")).strip("/").removeprefix("./") or "unnamed"


def _not_written(path: str) -> bool:
    return path.startswith("__MACOSX/") or posixpath.basename(path).lower() in _NOT_WRITTEN


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, limits: ParseLimits) -> bytes:
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise DocumentRejected(path, "password-protected in the archive")
    if info.file_size > limits.max_file_bytes:
        raise DocumentRejected(path, f"larger than the {limits.max_file_bytes // MB} MB limit")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DocumentRejected(path, f"cannot be read from the archive ({type(exc).__name__}: {exc})"[:300]) from None
