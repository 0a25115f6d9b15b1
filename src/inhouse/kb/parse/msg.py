"""Outlook messages (.msg, [MS-OXMSG]): read as the e-mail they are, through the same code as ``eml.py``.

A .msg is an OLE2 compound file holding MAPI properties: small fixed-size ones in ``__properties_version1.0``,
strings and binaries each in a ``__substg1.0_<id><type>`` stream, recipients and attachments in their own
storages, and an attached message as a whole message inside its attachment's storage. We turn it into an
:class:`~email.message.EmailMessage` (subject, sender, recipients, sent date, plain and HTML bodies, attachments)
and hand that to :func:`inhouse.kb.parse.eml.parse_message`, so an Outlook export and the same mail saved as .eml
give the same blocks, metadata and attachment handling.

What is not read: a body stored only as compressed RTF (Outlook keeps a plain-text body beside it unless the
message was never opened for text), attachments by reference or OLE objects, and attachments Outlook marks hidden
(the images an HTML body shows inline, such as signature logos).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import struct
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse import eml
from inhouse.kb.parse.blocks import clean_inline
from inhouse.kb.parse.ole import codec, open_ole, read_stream
from inhouse.kb.parse.safety import ParseLimits, sanitize_filename
from inhouse.kb.parse.text import codec_declared_in_ascii

# MAPI property ids ([MS-OXPROPS]).
_SUBJECT, _BODY, _HTML = 0x0037, 0x1000, 0x1013
_SENDER_NAME, _SENDER_ADDRESS, _SENDER_SMTP = 0x0C1A, 0x0C1F, 0x5D01
_DISPLAY_TO, _DISPLAY_CC = 0x0E04, 0x0E03
_SUBMIT_TIME, _DELIVERY_TIME, _CREATION_TIME = 0x0039, 0x0E06, 0x3007
_INTERNET_CPID, _MESSAGE_CODEPAGE = 0x3FDE, 0x3FFD
_DISPLAY_NAME, _SMTP_ADDRESS, _EMAIL_ADDRESS, _RECIPIENT_TYPE = 0x3001, 0x39FE, 0x3003, 0x0C15
_ATTACH_DATA, _ATTACH_METHOD, _ATTACH_LONG_NAME, _ATTACH_NAME, _ATTACH_MIME = 0x3701, 0x3705, 0x3707, 0x3704, 0x370E
_ATTACHMENT_HIDDEN = 0x7FFE
_SENSITIVITY, _TRANSPORT_HEADERS, _RTF_COMPRESSED = 0x0036, 0x007D, 0x1009
_MAX_RTF_BODY = 20 * 1024 * 1024  # decompressed; a formatted mail body is far smaller
# PR_SENSITIVITY as the RFC 2156 header Outlook writes for it (0: normal, no header).
_SENSITIVITIES = {1: "Personal", 2: "Private", 3: "Company-Confidential"}
_MSIP_HEADER = re.compile(r"^msip_labels:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.I | re.M)
_BY_VALUE, _EMBEDDED = 1, 5
_PT_STRING, _PT_STRING8, _PT_BINARY, _PT_OBJECT = 0x001F, 0x001E, 0x0102, 0x000D
_PROPERTIES = "__properties_version1.0"
# The fixed part before the 16-byte property entries: a message file's own, an attached message's, anything else's.
_HEADER_TOP, _HEADER_EMBEDDED, _HEADER_OTHER = 32, 24, 8
_CHARSET = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-'!#$&*/=?^`{|}~]+@[A-Za-z0-9.\-]+")
_MIME = re.compile(r"(application|image|audio|video)/([a-z0-9][a-z0-9.+-]*)")
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)


def parse(data: bytes, filename: str, limits: ParseLimits, parse_nested: eml.NestedParser) -> ParsedDocument:
    ole = open_ole(data, filename)
    entries = sorted(tuple(e) for e in ole.listdir(streams=True, storages=True))  # children() keeps this order
    message = _Storage(ole, entries, (), _HEADER_TOP, filename).to_email(limits.max_depth)
    if not message.keys() and not message.is_multipart() and not message.get_payload():
        raise DocumentRejected(filename, "Outlook message has no subject, sender or body")
    return eml.parse_message(message, filename, limits, parse_nested, mime="application/vnd.ms-outlook")


class _Storage:
    """One storage of the message file (the message, an attachment, a recipient or an attached message)."""

    def __init__(self, ole: Any, entries: list[tuple[str, ...]], path: tuple[str, ...], header: int,
                 filename: str) -> None:
        self._ole, self._entries, self._path, self._filename = ole, entries, path, filename
        self._fixed = self._read_fixed(header)
        self._codec = codec(self._fixed.get(_INTERNET_CPID) or self._fixed.get(_MESSAGE_CODEPAGE))

    def _storage(self, path: tuple[str, ...], header: int) -> _Storage:
        return _Storage(self._ole, self._entries, path, header, self._filename)

    def children(self, prefix: str) -> Iterator[tuple[str, ...]]:
        depth = len(self._path)
        for entry in self._entries:
            if len(entry) == depth + 1 and entry[:depth] == self._path and entry[depth].startswith(prefix):
                yield entry

    def _stream(self, name: str) -> bytes | None:
        return read_stream(self._ole, [*self._path, name], self._filename)

    def _read_fixed(self, header: int) -> dict[int, int]:
        """Fixed-size properties by id: integers, booleans and times (as 64-bit FILETIMEs)."""
        raw = self._stream(_PROPERTIES) or b""
        values: dict[int, int] = {}
        for at in range(header, len(raw) - 15, 16):
            tag, _flags, value = struct.unpack_from("<IIQ", raw, at)
            kind = tag & 0xFFFF
            if kind in (0x0003, 0x000B):  # PT_LONG, PT_BOOLEAN: the low 4 bytes
                values[tag >> 16] = value & 0xFFFFFFFF
            elif kind == 0x0040:  # PT_SYSTIME
                values[tag >> 16] = value
        return values

    def string(self, prop: int) -> str | None:
        raw = self._stream(f"__substg1.0_{prop:04X}{_PT_STRING:04X}")
        if raw is not None:
            return raw.decode("utf-16-le", errors="replace").rstrip("\x00") or None
        raw = self._stream(f"__substg1.0_{prop:04X}{_PT_STRING8:04X}")
        if raw is not None:
            return raw.decode(self._codec, errors="replace").rstrip("\x00") or None
        return None

    def binary(self, prop: int) -> bytes | None:
        return self._stream(f"__substg1.0_{prop:04X}{_PT_BINARY:04X}")

    def integer(self, prop: int) -> int | None:
        return self._fixed.get(prop)

    def time(self, *props: int) -> dt.datetime | None:
        for prop in props:
            value = self._fixed.get(prop)
            if value:
                try:
                    return _FILETIME_EPOCH + dt.timedelta(microseconds=value // 10)
                except OverflowError:
                    continue
        return None

    def to_email(self, depth_left: int) -> EmailMessage:
        message = EmailMessage()
        headers = (("Subject", _one_line(self.string(_SUBJECT))), ("From", self._sender()),
                   ("To", self._recipients(1) or _one_line(self.string(_DISPLAY_TO))),
                   ("Cc", self._recipients(2) or _one_line(self.string(_DISPLAY_CC))))
        for name, value in headers:
            if value:
                message[name] = value
        sensitivity = _SENSITIVITIES.get(self.integer(_SENSITIVITY) or 0)
        if sensitivity:
            message["Sensitivity"] = sensitivity
        for labels in _MSIP_HEADER.findall(self.string(_TRANSPORT_HEADERS) or "")[:20]:
            if value := _one_line(labels):
                message["msip_labels"] = value  # a received message's Purview label
        sent = self.time(_SUBMIT_TIME, _DELIVERY_TIME, _CREATION_TIME)
        if sent is not None:
            message["Date"] = email.utils.format_datetime(sent)
        plain, html = self.string(_BODY), self._html()
        if not (plain and plain.strip()) and not html:  # only the formatted body Outlook keeps as compressed RTF
            plain, html = self._rtf_body()
        if plain and plain.strip():
            message.set_content(plain)
            if html:
                message.add_alternative(html, subtype="html")
        elif html:
            message.set_content(html, subtype="html")
        for storage in self.children("__attach_version1.0_#"):
            self._attach(message, self._storage(storage, _HEADER_OTHER), depth_left)
        return message

    def _sender(self) -> str | None:
        name = _one_line(self.string(_SENDER_NAME))
        address = _address(self.string(_SENDER_SMTP)) or _address(self.string(_SENDER_ADDRESS))
        return email.utils.formataddr((name or "", address)) if address else name

    def _recipients(self, kind: int) -> str | None:
        found: list[str] = []
        for path in self.children("__recip_version1.0_#"):
            recipient = self._storage(path, _HEADER_OTHER)
            if (recipient.integer(_RECIPIENT_TYPE) or 1) & 0x0F != kind:
                continue
            name = _one_line(recipient.string(_DISPLAY_NAME)) or ""
            address = _address(recipient.string(_SMTP_ADDRESS)) or _address(recipient.string(_EMAIL_ADDRESS))
            found.append(email.utils.formataddr((name, address)) if address else name)
        return ", ".join(f for f in found if f) or None

    def _rtf_body(self) -> tuple[str | None, str | None]:
        """(plain, html) from ``PR_RTF_COMPRESSED``: the HTML an HTML mail's RTF encapsulates, else the RTF's text."""
        from inhouse.kb.parse import lzfu, rtf

        raw = self.binary(_RTF_COMPRESSED)
        if not raw:
            return None, None
        try:
            body = lzfu.decompress(raw, _MAX_RTF_BODY)
            html = rtf.encapsulated_html(body)
            if html is not None:
                return None, html
            parsed = rtf.parse(body, self._filename, ParseLimits())
        except (lzfu.CompressedRtfError, DocumentRejected):
            return None, None  # an unreadable body: the message's other parts are still read
        return "\n\n".join(b.text for b in parsed.blocks), None

    def _html(self) -> str | None:
        raw = self.binary(_HTML)
        if raw is None:
            return self.string(_HTML)
        declared = _CHARSET.search(raw[:4096])
        stated = self._fixed.get(_INTERNET_CPID) or self._fixed.get(_MESSAGE_CODEPAGE)
        # The declared label read as eml and html read it ("gb2312" holding GBK text: GB18030).
        label = codec_declared_in_ascii(declared.group(1).decode("ascii")) if declared else None
        candidates = [label, codec(stated) if stated else None]
        for name in [c for c in candidates if c] + ["utf-8", "cp1252"]:
            try:
                return raw.decode(name)
            except (UnicodeDecodeError, LookupError):
                continue
        return raw.decode("utf-8", errors="replace")

    def _attach(self, message: EmailMessage, attachment: _Storage, depth_left: int) -> None:
        if attachment.integer(_ATTACHMENT_HIDDEN):
            return
        name = sanitize_filename(attachment.string(_ATTACH_LONG_NAME) or attachment.string(_ATTACH_NAME)
                                 or attachment.string(_DISPLAY_NAME) or "attachment")
        method = attachment.integer(_ATTACH_METHOD) or _BY_VALUE
        inner_path = (*attachment._path, f"__substg1.0_{_ATTACH_DATA:04X}{_PT_OBJECT:04X}")
        if method == _EMBEDDED and inner_path in self._entries and depth_left > 0:
            inner = self._storage(inner_path, _HEADER_EMBEDDED).to_email(depth_left - 1)
            message.add_attachment(inner, filename=name if "." in name else f"{name}.eml")
            return
        data = attachment.binary(_ATTACH_DATA)
        if method != _BY_VALUE or not data:
            return
        mime = _MIME.fullmatch((attachment.string(_ATTACH_MIME) or "").strip().lower())
        # Text parts would be re-encoded and multipart ones are no file: the dispatcher sniffs the bytes anyway.
        maintype, subtype = mime.groups() if mime else ("application", "octet-stream")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


def _address(value: str | None) -> str | None:
    """An SMTP address, or None (an Exchange X.500 path, or a damaged value, is no address for a header)."""
    value = (value or "").strip()
    return value if _ADDRESS.fullmatch(value) else None


def _one_line(value: str | None) -> str | None:
    """A header value: one line (a header with a line break in it would be refused, or worse, injected)."""
    return clean_inline(value) or None if value else None
