"""E-mail (.eml, RFC 5322/MIME) via the stdlib ``email`` package, attachments parsed with the same dispatcher.

Subject is the title; From, To and Date (ISO 8601) are metadata. The body is the text/plain part, else the
text/html part (main content extracted like any HTML page); the HTML part too when the plain one is empty,
unreadable, or a stub ("view this message in a browser": under ``_STUB_CHARS`` characters, and the HTML part holds
more than twice as much text). Each attachment is parsed by ``parse_nested`` (the dispatcher, one level deeper,
bounded by ``ParseLimits.max_depth``) and its blocks follow the body under a heading "Attachment: <name>" (page
numbers of attachments are dropped: they would not be pages of the e-mail). Attachments are found inside nested
multiparts too (a signed mail wraps its multipart/mixed in multipart/signed), down to ``_MAX_MULTIPART_DEPTH``; its
signature (``smime.p7s``, an OpenPGP signature) is not content and is passed over in silence. Attachments that are
rejected, and a body that cannot be decoded, are listed in ``metadata["skipped_attachments"]``; they do not reject
the e-mail.

Bodies and encoded-word headers are decoded by their declared charset through ``text.decode_declared`` (GB2312 and
GBK labels read as GB18030; an unknown label falls back to the plain-text detection). A header sent as raw 8-bit
bytes that are not UTF-8 is decoded in the charset of the message's text, else by the plain-text detection.
"""

from __future__ import annotations

import base64
import email
import email.errors
import email.header
import email.policy
import email.utils
import re
from collections.abc import Callable, Iterator
from email.message import EmailMessage, MIMEPart
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Block, Marking, ParsedDocument
from inhouse.kb.parse import markings as labels
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, meaningful
from inhouse.kb.parse.safety import ParseLimits, sanitize_filename
from inhouse.kb.parse.text import decode_declared

NestedParser = Callable[[bytes, str], ParsedDocument]
_MAX_ATTACHMENTS = 50
_MAX_MULTIPART_DEPTH = 8  # signed > mixed > mixed > related is 4; a hostile mail may nest hundreds
_ENCODED_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="  # RFC 2047
# Adjacent encoded words (only white space between them) are one text: a mail client may cut a GBK or UTF-8
# character between two, so their bytes are joined before decoding (RFC 2047 section 6.2 drops the space).
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD}(?:\s+{_ENCODED_WORD})*")
# Signatures of a signed mail (S/MIME, OpenPGP): not content, and not worth reporting as skipped.
_SIGNATURES = frozenset(("application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"))
_ESCAPED = re.compile("[\udc80-\udcff]")  # a raw 8-bit header byte, as the stdlib's parser keeps it
# A plain body shorter than this may be a stub ("This is an HTML message"): the HTML body is read when it says more.
_STUB_CHARS = 300


def parse(data: bytes, filename: str, limits: ParseLimits, parse_nested: NestedParser) -> ParsedDocument:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(msg, EmailMessage) or not (msg.keys() or msg.get_payload()):
        raise DocumentRejected(filename, "not an e-mail message (no headers)")
    return parse_message(msg, filename, limits, parse_nested, mime="message/rfc822")


def parse_message(msg: EmailMessage, filename: str, limits: ParseLimits, parse_nested: NestedParser, *,
                  mime: str) -> ParsedDocument:
    """A message already read (from MIME here, from an Outlook .msg in ``msg.py``) as a document."""
    subject = meaningful(_header(msg, "subject"))
    metadata = {k: v for k, v in (("from", meaningful(_header(msg, "from"))),
                                  ("to", meaningful(_header(msg, "to"))),
                                  ("date", _date(_header(msg, "date"))),
                                  ("subject", subject)) if v}
    markings = _header_markings(msg)
    out = BlockList()
    skipped: list[str] = []
    body, blocks, reason = _read_body(msg, filename, limits)
    out.blocks += blocks
    if reason:  # the attachments may still be readable
        skipped.append(f"body: {reason}")

    for n, part in enumerate(_attachment_parts(msg, body)):
        name = sanitize_filename(part.get_filename() or f"attachment-{n + 1}")
        if n >= _MAX_ATTACHMENTS:
            skipped.append(f"{name}: more than {_MAX_ATTACHMENTS} attachments")
            continue
        try:
            if part.get_content_maintype() == "multipart":
                raise DocumentRejected(name, f"MIME parts nested deeper than {_MAX_MULTIPART_DEPTH} levels")
            payload = _payload_bytes(part)
            if not payload:
                raise DocumentRejected(name, "empty attachment")
            nested_name = name if "." in name or part.get_content_type() != "message/rfc822" else f"{name}.eml"
            doc = parse_nested(payload, nested_name)
        except DocumentRejected as exc:
            skipped.append(f"{name}: {exc.reason}")
            continue
        if doc.metadata.get("skipped_attachments"):
            skipped.append(f"{name} > {doc.metadata['skipped_attachments']}")
        markings += doc.markings  # a confidential attachment makes a confidential message
        out.nest(f"Attachment: {name}", doc)
    if skipped:
        metadata["skipped_attachments"] = "; ".join(skipped)
    if not out.blocks:
        # What was skipped says why (a body refused as nested too deep reads as that, not as "no body").
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise DocumentRejected(filename, f"e-mail has no readable text body or attachment{why}"[:500])
    return ParsedDocument(
        title=subject or filename,
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime=mime,
        metadata=metadata,
        markings=tuple(dict.fromkeys(markings)),
    )


def _attachment_parts(part: MIMEPart, body: MIMEPart | None, depth: int = 0) -> Iterator[MIMEPart]:
    """The leaf parts under ``part`` that are not the body, nested multiparts walked (``iter_attachments`` yields one
    as a single attachment with an empty payload). A multipart too deep is yielded itself, to be reported."""
    if body is not None and any(p is body for p in part.walk()):
        subs = part.iter_attachments()  # leaves out the body, its other versions and its inline images
    elif part.get_content_type() == "multipart/alternative":  # versions of one text: the best one is enough
        subs = iter([best] if (best := part.get_body(preferencelist=("plain", "html"))) is not None else [])
    else:
        subs = part.iter_parts()
    for sub in subs:
        if sub.get_content_type() in _SIGNATURES:
            continue
        if sub.get_content_maintype() != "multipart" or depth >= _MAX_MULTIPART_DEPTH:
            yield sub
        else:
            yield from _attachment_parts(sub, body, depth + 1)


def _header_markings(msg: EmailMessage) -> list[Marking]:
    """Outlook's ``msip_labels`` header (Purview labels) and the RFC 2156 ``Sensitivity`` header."""
    found: list[Marking] = []
    for value in _all_headers(msg, "msip_labels"):
        found += labels.header_labels(value)
    found += [Marking("property", f"Sensitivity: {clean_inline(v)}") for v in _all_headers(msg, "sensitivity")]
    return found


def _all_headers(msg: EmailMessage, name: str) -> list[str]:
    values = []
    for key, raw in msg.raw_items():
        if key.lower() != name:
            continue
        if isinstance(raw, str) and _ESCAPED.search(raw):
            raw = _raw_8bit(raw, msg)
        if isinstance(raw, str) and "=?" in raw:
            raw = _ENCODED_RUN.sub(_as_utf8_word, raw)
        try:
            values.append(str(msg.policy.header_fetch_parse(key, raw)))
        except (ValueError, TypeError, IndexError):  # malformed headers raise from the policy's parser
            continue
        if len(values) == 20:
            break
    return values


def _header(msg: EmailMessage, name: str) -> str | None:
    values = _all_headers(msg, name)
    return clean_inline(values[0]) if values else None


def _raw_8bit(raw: str, msg: EmailMessage) -> str:
    """A header holding raw 8-bit bytes (no RFC 2047 encoding: what many Chinese mail tools send) decoded like the
    message's text. The stdlib reads such bytes as UTF-8 only; GBK became replacement characters."""
    data = raw.encode("utf-8", "surrogateescape")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return raw  # UTF-8: the stdlib reads it
    try:
        return decode_declared(data, _text_charset(msg), "header")[0]
    except DocumentRejected:
        return raw  # left to the stdlib's replacement characters


def _text_charset(msg: EmailMessage) -> str | None:
    """The charset the message's first text part declares: its headers' raw bytes are most likely in it."""
    for part in msg.walk():
        if part.get_content_maintype() == "text" and (charset := part.get_content_charset()):
            return str(charset)
    return None


def _as_utf8_word(match: re.Match[str]) -> str:
    """A run of encoded words decoded by our charset policy (the words of one charset joined: ``decode_header``
    does that), re-encoded as one UTF-8 word for the stdlib's header parser (which reads a "gb2312" word holding GBK
    characters, or an unknown charset, as replacement characters, and each word on its own)."""
    try:
        parts = email.header.decode_header(match.group(0))
        text = "".join(decode_declared(data, charset, "header")[0] if isinstance(data, bytes) else data
                       for data, charset in parts)
        utf8 = text.encode()
    except (ValueError, email.errors.HeaderParseError, DocumentRejected):
        return match.group(0)  # left to the stdlib, which records the defect
    return f"=?utf-8?b?{base64.b64encode(utf8).decode('ascii')}?="


def _date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError, IndexError):
        return None


def _read_body(msg: EmailMessage, filename: str, limits: ParseLimits) -> tuple[MIMEPart | None, list[Block], str]:
    """The body part, its blocks, and why it could not be read ("" when it was).

    The text/plain part is the body unless it is empty, unreadable, or a stub much shorter than the HTML part
    ("View this message in a browser"): notification and ticketing systems send an empty plain part beside the
    real message in HTML, and the message was rejected as having no body.
    """
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return None, [], ""
    try:
        blocks, reason = _body_blocks(body, filename, limits), ""
    except DocumentRejected as exc:
        blocks, reason = [], exc.reason
    if body.get_content_type() != "text/plain" or _length(blocks) >= _STUB_CHARS:
        return body, blocks, reason
    html = msg.get_body(preferencelist=("html",))
    if html is None:
        return body, blocks, reason
    try:
        html_blocks = _body_blocks(html, filename, limits)
    except DocumentRejected:
        return body, blocks, reason
    if _length(html_blocks) > 2 * _length(blocks):
        return html, html_blocks, ""
    return body, blocks, reason


def _length(blocks: list[Block]) -> int:
    return sum(len(b.text) for b in blocks)


def _body_blocks(part: Any, filename: str, limits: ParseLimits) -> list[Block]:
    from inhouse.kb.parse import html, text

    # Not get_content(): it decodes a "gb2312" label holding GBK text with replacement characters.
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return []
    content, _ = decode_declared(raw, part.get_content_charset(), filename)
    if part.get_content_type() == "text/html":
        return list(html.parse_str(content, filename, limits, metadata={}).blocks)
    return list(text.parse_str(content, filename, mime="text/plain", metadata={}).blocks)


def _payload_bytes(part: MIMEPart) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        return inner.as_bytes() if hasattr(inner, "as_bytes") else b""
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) else b""
