"""PowerPoint 97-2003 (.ppt), read from the binary format ([MS-PPT]): one slide a page, its title a heading.

The ``PowerPoint Document`` stream is a tree of records. Which records are live is said by the persist
directory: ``Current User`` points at the last ``UserEditAtom``, each edit at its ``PersistDirectoryAtom``
(object id → offset) and at the edit before it, newer entries winning (PowerPoint appends edits when it saves
fast, so older copies of a slide stay in the file). From the live document:

- the slide list (``SlideListWithText``, instance 0) gives the slides in order, and after each slide's entry
  the text of its placeholders (title, body), as PowerPoint writes them;
- each slide's drawing holds its text boxes (``ClientTextbox``): a placeholder's box points into the slide list
  (``OutlineTextRefAtom``), any other box carries its own text (LibreOffice puts all text there).

Each text has a type (``TextHeaderAtom``): a title becomes the slide's heading, a text of several paragraphs a
list, one paragraph a paragraph; the speaker notes (the notes page the slide's ``SlideAtom`` names, found in the
notes list) follow as "Notes: ...", as in ``pptx.py``. Tables in .ppt are drawings of separate boxes, so their
cells come out as paragraphs. Date, slide-number, footer and header placeholders (``OEPlaceholderAtom``) are not
content; the footer text of the document and of each slide (``HeadersFooters``) is kept as a marking, as for
``.pptx``. An encrypted presentation is refused as password-protected.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, pick_title
from inhouse.kb.parse.markings import running_markings
from inhouse.kb.parse.ole import open_ole, password_protected, read_stream, summary_metadata
from inhouse.kb.parse.safety import ParseLimits

_DOCUMENT, _SLIDE, _SLIDE_LIST, _SLIDE_PERSIST = 0x03E8, 0x03EE, 0x0FF0, 0x03F3
_TEXT_HEADER, _TEXT_CHARS, _TEXT_BYTES, _OUTLINE_REF = 0x0F9F, 0x0FA0, 0x0FA8, 0x0F9E
_USER_EDIT, _PERSIST_DIRECTORY, _SLIDE_ATOM = 0x0FF5, 0x1772, 0x03EF
_SHAPE, _PLACEHOLDER = 0xF004, 0x0BC3
_HEADERS_FOOTERS, _CSTRING, _FOOTER_INSTANCE = 0x0FD9, 0x0FBA, 2
_RUNNING = (7, 8, 9, 10)  # placeholder types: date, slide number, footer, header (the same on every slide)
_ENCRYPTED_TOKEN = 0xF3D1C4DF
_TITLES = (0, 6)  # Tx_TYPE_TITLE, Tx_TYPE_CENTERTITLE
_TX_NOTES = 2
_MAX_EDITS = 10_000


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    ole = open_ole(data, filename)
    stream = read_stream(ole, "PowerPoint Document", filename) or b""
    user = read_stream(ole, "Current User", filename) or b""
    if len(user) >= 16 and struct.unpack_from("<I", user, 12)[0] == _ENCRYPTED_TOKEN:
        raise password_protected(filename)
    slides, footers = _slides(stream, user)
    if len(slides) > limits.max_pages:
        raise DocumentRejected(filename, f"{len(slides)} slides, above the limit of {limits.max_pages}")
    out = BlockList()
    for number, texts in enumerate(slides, 1):
        out.page = number
        out.reset_sections()
        title = next((t for kind, t in texts if kind in _TITLES and clean_inline(t)), "")
        out.heading(clean_inline(title) or f"Slide {number}", 1)
        for kind, text in texts:
            if kind in _TITLES and text == title:
                continue
            lines = [clean_inline(line) for line in text.replace("\x0b", " ").split("\r")]
            lines = [line for line in lines if line and line != "*"]  # "*": a slide-number or date field
            if len(lines) > 1:
                out.add("list", "\n".join(f"- {line}" for line in lines))
            elif lines:
                out.add("paragraph", lines[0])
    title_prop, metadata = summary_metadata(ole, filename)
    if not slides:
        raise DocumentRejected(filename, "PowerPoint file has no slides")
    return ParsedDocument(
        title=pick_title([title_prop], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/vnd.ms-powerpoint",
        metadata=metadata,
        page_count=len(slides),
        markings=running_markings(("footer", text) for text in footers),
    )


def _header(stream: bytes, at: int) -> tuple[int, int, int, int] | None:
    """(version, instance, type, length) of the record at ``at``, or None past the end or for a length that
    runs past it."""
    if at < 0 or at + 8 > len(stream):
        return None
    version_instance, kind, length = struct.unpack_from("<HHI", stream, at)
    if at + 8 + length > len(stream):
        return None
    return version_instance & 0xF, version_instance >> 4, kind, length


def _children(stream: bytes, at: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, instance, type, length) of each direct child of the container at ``at``."""
    head = _header(stream, at)
    if head is None or head[0] != 0xF:
        return
    pos, end = at + 8, at + 8 + head[3]
    while pos < end:
        child = _header(stream, pos)
        if child is None or pos + 8 + child[3] > end:
            return
        yield pos, child[1], child[2], child[3]
        pos += 8 + child[3]


def _persist_directory(stream: bytes, user: bytes) -> tuple[dict[int, int], int | None]:
    """Object id → record offset across every edit, newest first; and the live document's id."""
    if len(user) < 20:
        return {}, None
    at = struct.unpack_from("<I", user, 16)[0]
    offsets: dict[int, int] = {}
    document: int | None = None
    seen: set[int] = set()
    while at not in seen and len(seen) < _MAX_EDITS:
        seen.add(at)
        head = _header(stream, at)
        if head is None or head[2] != _USER_EDIT or head[3] < 20:
            break
        last_edit, directory, doc_ref = struct.unpack_from("<III", stream, at + 16)
        document = doc_ref if document is None else document
        directory_head = _header(stream, directory)
        if directory_head is not None and directory_head[2] == _PERSIST_DIRECTORY:
            pos, end = directory + 8, directory + 8 + directory_head[3]
            while pos + 4 <= end:
                entry = struct.unpack_from("<I", stream, pos)[0]
                first, count = entry & 0xFFFFF, entry >> 20
                pos += 4
                for k in range(count):
                    if pos + 4 > end:
                        break
                    offsets.setdefault(first + k, struct.unpack_from("<I", stream, pos)[0])
                    pos += 4
        if last_edit == 0:
            break
        at = last_edit
    return offsets, document


def _slides(stream: bytes, user: bytes) -> tuple[list[list[tuple[int, str]]], list[str]]:
    """Each slide's texts in order, as (text type, text); and the footer texts of the document and its slides."""
    offsets, document = _persist_directory(stream, user)
    doc_at = offsets.get(document) if document is not None else None
    if doc_at is None or (_header(stream, doc_at) or (0, 0, 0, 0))[2] != _DOCUMENT:
        # No usable persist directory: every slide container in the stream, in file order.
        found = [at for at, _, kind, _ in _top_level(stream) if kind == _SLIDE]
        return [_slide_texts(stream, at, []) for at in found], [f for at in found for f in _footers(stream, at)]
    footers = _footers(stream, doc_at)
    lists = {instance: _slide_list(stream, at) for at, instance, kind, _ in _children(stream, doc_at)
             if kind == _SLIDE_LIST and instance in (0, 2)}
    notes = {entry.slide_id: entry for entry in lists.get(2, []) if entry.slide_id}
    slides: list[list[tuple[int, str]]] = []
    for entry in lists.get(0, []):
        slide_at = offsets.get(entry.persist_id)
        if slide_at is None or (_header(stream, slide_at) or (0, 0, 0, 0))[2] != _SLIDE:
            slides.append(entry.texts)
            continue
        footers += _footers(stream, slide_at)
        texts = _slide_texts(stream, slide_at, entry.texts)
        note = notes.get(_notes_id(stream, slide_at))
        notes_at = offsets.get(note.persist_id) if note is not None else None
        if note is not None and notes_at is not None:
            said = " ".join(t for kind, t in _slide_texts(stream, notes_at, note.texts) if kind == _TX_NOTES)
            if clean_inline(said.replace("\r", " ")):
                texts.append((_TX_NOTES, "Notes: " + said.replace("\r", " ")))
        slides.append(texts)
    return slides, footers


def _footers(stream: bytes, container: int) -> list[str]:
    """The footer texts (``CString``, instance 2) of a document's or slide's ``HeadersFooters`` containers."""
    return [clean_inline(_text(stream, at, _TEXT_CHARS, length))
            for hf, _, kind, _ in _children(stream, container) if kind == _HEADERS_FOOTERS
            for at, instance, sub, length in _children(stream, hf) if sub == _CSTRING and instance == _FOOTER_INSTANCE]


@dataclass
class _Entry:
    """A slide list's entry: the slide's (or notes page's) object id, its id, and its placeholder texts."""

    persist_id: int
    slide_id: int
    texts: list[tuple[int, str]] = field(default_factory=list)


def _slide_list(stream: bytes, at: int) -> list[_Entry]:
    entries: list[_Entry] = []
    text_type = 4  # Tx_TYPE_OTHER until a header says otherwise
    for child, _, kind, length in _children(stream, at):
        if kind == _SLIDE_PERSIST and length >= 16:
            persist_id, _flags, _texts, slide_id = struct.unpack_from("<IIiI", stream, child + 8)
            entries.append(_Entry(persist_id, slide_id))
        elif kind == _TEXT_HEADER and length >= 4:
            text_type = struct.unpack_from("<I", stream, child + 8)[0]
        elif kind in (_TEXT_CHARS, _TEXT_BYTES) and entries:
            entries[-1].texts.append((text_type, _text(stream, child, kind, length)))
    return entries


def _notes_id(stream: bytes, slide_at: int) -> int:
    """The ``notesIdRef`` of a slide's ``SlideAtom``: the id of its notes page in the notes list (0: none)."""
    for at, _, kind, length in _children(stream, slide_at):
        if kind == _SLIDE_ATOM and length >= 20:
            return int(struct.unpack_from("<I", stream, at + 8 + 16)[0])
    return 0


def _top_level(stream: bytes) -> Iterator[tuple[int, int, int, int]]:
    pos = 0
    while (head := _header(stream, pos)) is not None:
        yield pos, head[1], head[2], head[3]
        pos += 8 + head[3]


def _slide_texts(stream: bytes, slide_at: int, placeholders: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The texts of a slide's drawing in record order, a placeholder's reference replaced by its text; the
    placeholders no box refers to (files from before references) first."""
    texts: list[tuple[int, str]] = []
    used: set[int] = set()
    text_type = 4
    stack = [(slide_at, -1)]  # (container, the shape it is in)
    order: list[tuple[int, int, int, int]] = []  # (offset, type, length, shape) of every text record
    running: set[int] = set()  # shapes that are date, slide-number, footer or header placeholders
    while stack:
        at, shape = stack.pop()
        children = list(_children(stream, at))
        for child, _, kind, length in reversed(children):
            if stream[child] & 0x0F == 0x0F:  # a container (version 0xF; _children checked the header's bounds)
                stack.append((child, child if kind == _SHAPE else shape))
            elif kind in (_TEXT_HEADER, _TEXT_CHARS, _TEXT_BYTES, _OUTLINE_REF):
                order.append((child, kind, length, shape))
            elif kind == _PLACEHOLDER and length >= 8 and stream[child + 8 + 4] in _RUNNING:
                running.add(shape)
    order.sort()
    for at, kind, length, shape in order:
        if shape in running:
            continue
        if kind == _TEXT_HEADER and length >= 4:
            text_type = struct.unpack_from("<I", stream, at + 8)[0]
        elif kind in (_TEXT_CHARS, _TEXT_BYTES):
            texts.append((text_type, _text(stream, at, kind, length)))
        elif kind == _OUTLINE_REF and length >= 4:
            index = struct.unpack_from("<I", stream, at + 8)[0]
            if index < len(placeholders) and index not in used:
                used.add(index)
                texts.append(placeholders[index])
    unused = [p for k, p in enumerate(placeholders) if k not in used]
    return unused + texts


def _text(stream: bytes, at: int, kind: int, length: int) -> str:
    raw = stream[at + 8:at + 8 + length]
    return raw.decode("utf-16-le", errors="replace") if kind == _TEXT_CHARS else raw.decode("cp1252", errors="replace")
