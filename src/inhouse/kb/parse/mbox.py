"""Mailboxes (.mbox: Google Takeout's and Apple Mail's exports, Thunderbird's folder files, Unix mail spools), read as
one document whose parts are its messages.

An mbox file is messages one after another, each after a separator line "From <sender> <date>" at the start of the
file or after an empty line. A body line that began with "From " was written as ">From " (mboxo, mboxrd); one ">" is
taken off such lines again. A "From " line without a time in it, or not after an empty line, is text of the message
it is in: a writer that forgot to quote a line of a body does not cut the message in two.

Each message is parsed as an e-mail (``eml.py``: subject, sender, date, body, attachments one level deeper) and its
blocks follow under a heading "Message: <date> <subject>", in the mailbox's order (the order the mail arrived in).
Messages that cannot be read are listed in ``metadata["skipped_messages"]``; they do not reject the mailbox. The
markings of every message are the mailbox's: one confidential message makes a confidential mailbox. Metadata: how
many messages were read, and the dates of the first and the last.

A mailbox grows at its end. When it is ingested again, the chunks of the messages already indexed are unchanged, so
they keep their vectors (``kb/ingest.py``) and only the new mail is embedded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse import eml
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, pick_title
from inhouse.kb.parse.safety import ParseLimits

NestedParser = Callable[[bytes, str], ParsedDocument]
_MAX_MESSAGES = 20_000  # read from one mailbox; the rest are listed as skipped (the file size bounds them first)
# "From sender Mon Jan  1 09:00:00 2024" (Thunderbird: "From - …"; Takeout: "From 1788…@xxx Mon Jan 01 … 2024"): a
# separator has a time of day in it.
_SEPARATOR = re.compile(rb"^From [^\r\n]*\d\d:\d\d[^\r\n]*(?:\r?\n|\Z)", re.M)  # with its line end
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.M)
_FIELD = re.compile(rb"[!-9;-~]+:[ \t]")  # a header field's name and colon


def is_mbox(head: bytes) -> bool:
    """Whether a file without a telling extension starts like a mailbox: a separator line, then a header field
    (a note that starts "From 9:00 to 10:00" is text)."""
    m = _SEPARATOR.match(head.removeprefix(b"\xef\xbb\xbf"))
    return m is not None and _FIELD.match(head.removeprefix(b"\xef\xbb\xbf"), m.end()) is not None


def parse(data: bytes, filename: str, limits: ParseLimits, parse_nested: NestedParser) -> ParsedDocument:
    out = BlockList()
    skipped: list[str] = []
    markings: list[Marking] = []
    dates: list[str] = []
    read = 0
    for n, raw in enumerate(split(data, filename), start=1):
        if read >= _MAX_MESSAGES:
            skipped.append(f"messages after the {_MAX_MESSAGES}th")
            break
        try:
            message = eml.parse(raw, f"message {n}", limits, parse_nested)
        except DocumentRejected as exc:
            skipped.append(f"message {n}: {exc.reason}")
            continue
        read += 1
        date = message.metadata.get("date", "")
        if date:
            dates.append(date)
        if message.metadata.get("skipped_attachments"):
            skipped.append(f"message {n} > {message.metadata['skipped_attachments']}")
        markings += message.markings
        heading = clean_inline(f"Message: {date[:10]} {message.title}") if date else f"Message: {message.title}"
        out.nest(heading[:300], message)
    if not read:
        reasons = "; ".join(skipped[:5]) or "no message in it"
        raise DocumentRejected(filename, f"mailbox has no readable message ({reasons})"[:500])
    metadata = {"messages": str(read)}
    if dates:
        metadata["first_date"], metadata["last_date"] = min(dates, key=_instant), max(dates, key=_instant)
    if skipped:
        metadata["skipped_messages"] = "; ".join(skipped)[:2000]
    return ParsedDocument(
        title=pick_title([], [], filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/mbox",
        metadata=metadata,
        markings=tuple(dict.fromkeys(markings)),
    )


def split(data: bytes, filename: str) -> Iterator[bytes]:
    """The messages of a mailbox as RFC 5322 bytes: separator lines dropped, quoted "From " lines unquoted."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    starts = [m for m in _SEPARATOR.finditer(data) if m.start() == 0 or _after_empty_line(data, m.start())]
    if not starts or starts[0].start() != 0:
        raise DocumentRejected(filename, "not an mbox file (it does not start with a \"From \" line)")
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(data)
        body = data[m.end():end].lstrip(b"\r\n")
        yield _QUOTED_FROM.sub(rb"\1", body)


def _instant(iso: str) -> datetime:
    """An ISO 8601 date as a comparable instant (one without an offset taken as UTC)."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _after_empty_line(data: bytes, at: int) -> bool:
    return data.endswith(b"\n\n", 0, at) or data.endswith(b"\n\r\n", 0, at)

