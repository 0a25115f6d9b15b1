"""E-mail (.eml, RFC 5322/MIME) via the stdlib ``email`` package, attachments parsed with the same dispatcher.

Subject is the title; From, To and Date (ISO 8601) are metadata. The body is the text/plain part, else the
text/html part (main content extracted like any HTML page). Each attachment is parsed by ``parse_nested`` (the
dispatcher, one level deeper, bounded by ``ParseLimits.max_depth``) and its blocks follow the body under a heading
"Attachment: <name>" (page numbers of attachments are dropped: they would not be pages of the e-mail). Attachments
that are rejected are listed in ``metadata["skipped_attachments"]``; they do not reject the e-mail.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Block, Marking, ParsedDocument
from inhouse.kb.parse import markings as labels
from inhouse.kb.parse.blocks import BlockList, clean_inline, guess_language, meaningful
from inhouse.kb.parse.safety import ParseLimits, sanitize_filename

NestedParser = Callable[[bytes, str], ParsedDocument]
_MAX_ATTACHMENTS = 50


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
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        for block in _body_blocks(body, filename, limits):
            out.blocks.append(block)

    skipped: list[str] = []
    for n, part in enumerate(msg.iter_attachments()):
        name = sanitize_filename(part.get_filename() or f"attachment-{n + 1}")
        if n >= _MAX_ATTACHMENTS:
            skipped.append(f"{name}: more than {_MAX_ATTACHMENTS} attachments")
            continue
        try:
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
        raise DocumentRejected(filename, "e-mail has no readable text body or attachment")
    return ParsedDocument(
        title=subject or filename,
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime=mime,
        metadata=metadata,
        markings=tuple(dict.fromkeys(markings)),
    )


def _header_markings(msg: EmailMessage) -> list[Marking]:
    """Outlook's ``msip_labels`` header (Purview labels) and the RFC 2156 ``Sensitivity`` header."""
    found: list[Marking] = []
    for value in _all_headers(msg, "msip_labels"):
        found += labels.header_labels(value)
    found += [Marking("property", f"Sensitivity: {clean_inline(v)}") for v in _all_headers(msg, "sensitivity")]
    return found


def _all_headers(msg: EmailMessage, name: str) -> list[str]:
    try:
        return [str(v) for v in msg.get_all(name, [])][:20]
    except (ValueError, TypeError, IndexError):
        return []


def _header(msg: EmailMessage, name: str) -> str | None:
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError):  # malformed headers raise from the policy's parser
        return None
    return clean_inline(str(value)) if value is not None else None


def _date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError, IndexError):
        return None


def _body_blocks(part: Any, filename: str, limits: ParseLimits) -> list[Block]:
    from inhouse.kb.parse import html, text

    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError, AttributeError):  # unknown charset, broken encoding, no payload
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
    if not isinstance(content, str):
        return []
    if part.get_content_type() == "text/html":
        return list(html.parse_str(content, filename, limits, metadata={}).blocks)
    return list(text.parse_str(content, filename, mime="text/plain", metadata={}).blocks)


def _payload_bytes(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        return inner.as_bytes() if hasattr(inner, "as_bytes") else b""
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) else b""
