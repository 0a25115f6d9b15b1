"""ZIP archives (.zip): a folder kept or sent as one file, read as one document whose parts are its files.

Each file is parsed by the dispatcher one level deeper (bounded by ``ParseLimits.max_depth``, as an e-mail's
attachments are), in the archive's order, and its blocks follow under a heading "File: <path in the archive>".
Files that are rejected (an unsupported type, a password, damage) are listed in ``metadata["skipped_files"]``; they
do not reject the archive. Folders, macOS resource forks (``__MACOSX/``) and desktop files (``.DS_Store``,
``Thumbs.db``, ``desktop.ini``) are not files anyone wrote, and are passed over in silence.

A name stored without ZIP's UTF-8 flag is decoded as UTF-8 when it is valid UTF-8, else as GB18030 (what the
archivers of a Chinese Windows write), never as the DOS code page 437 ``zipfile`` assumes. The markings of every file
are the archive's: a confidential file makes a confidential archive.

The container was checked before this runs (``safety.open_zip_checked``: entry count, total size, compression
ratio); each file is then held to the same limits as an uploaded one.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from collections.abc import Callable

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language
from inhouse.kb.parse.safety import ParseLimits, sanitize_filename

NestedParser = Callable[[bytes, str], ParsedDocument]
_MAX_FILES = 200  # files read from one archive; the rest are listed as skipped
_NOT_WRITTEN = frozenset((".ds_store", "thumbs.db", "desktop.ini"))
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1


def parse(data: bytes, filename: str, limits: ParseLimits, parse_nested: NestedParser) -> ParsedDocument:
    out = BlockList()
    skipped: list[str] = []
    markings: list[Marking] = []
    read = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            path = member_name(info)
            if info.is_dir() or _not_written(path):
                continue
            if read >= _MAX_FILES:
                skipped.append(f"{path}: more than {_MAX_FILES} files")
                continue
            try:
                document = parse_nested(_read(zf, info, path, limits), sanitize_filename(posixpath.basename(path)))
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
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    return ParsedDocument(
        title=stem or filename,
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/zip",
        metadata=metadata,
        markings=tuple(dict.fromkeys(markings)),
    )


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
    return clean_inline(name.replace("\\", "/")).strip("/") or "unnamed"


def _not_written(path: str) -> bool:
    return path.startswith("__MACOSX/") or posixpath.basename(path).lower() in _NOT_WRITTEN


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, limits: ParseLimits) -> bytes:
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise DocumentRejected(path, "password-protected in the archive")
    if info.file_size > limits.max_file_bytes:
        raise DocumentRejected(path, f"larger than the {limits.max_file_bytes // (1024 * 1024)} MB limit")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DocumentRejected(path, f"cannot be read from the archive ({type(exc).__name__}: {exc})"[:300]) from None
