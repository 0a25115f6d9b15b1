"""Outlook .msg files for tests, and the OLE2 compound-file writer under them ([MS-CFB] version 3).

Nothing on these machines writes .msg (Outlook does), so tests build them here from the published formats:
[MS-CFB] for the container (512-byte sectors, a mini stream for streams under 4,096 bytes, every directory a
balanced tree) and [MS-OXMSG] for the message (property streams, recipient and attachment storages, an attached
message as a storage inside its attachment). olefile, the reader the product uses, checks the container; the
message layout was checked against an independent .msg reader while it was written (docs/knowledge.md, "Legacy
Office files and Outlook messages").
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SECTOR, _MINI, _CUTOFF = 512, 64, 4096
_FREE, _END, _FATSECT, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


@dataclass
class _Node:
    name: str
    data: bytes | None  # None: a storage
    children: list[_Node] = field(default_factory=list)
    sid: int = 0
    left: int = _NONE
    right: int = _NONE
    child: int = _NONE
    start: int = _END


def write_compound(streams: dict[str, bytes]) -> bytes:
    """A compound file holding ``streams``, keyed by path ("storage/substorage/stream"); storages are implied."""
    root = _Node("Root Entry", None)
    for path, data in streams.items():
        node = root
        *folders, leaf = path.split("/")
        for folder in folders:
            node = next((c for c in node.children if c.name == folder and c.data is None), None) or _add(
                node, _Node(folder, None))
        _add(node, _Node(leaf, data))
    nodes = _number(root)

    mini = bytearray()
    mini_fat: list[int] = []
    big: list[_Node] = []
    for node in nodes[1:]:
        if node.data is None or not node.data:
            continue
        if len(node.data) < _CUTOFF:
            node.start = len(mini_fat)
            count = -(-len(node.data) // _MINI)
            mini_fat += [node.start + k + 1 for k in range(count - 1)] + [_END]
            mini += node.data.ljust(count * _MINI, b"\0")
        else:
            big.append(node)
    dir_sectors = -(-len(nodes) * 128 // _SECTOR)
    minifat_sectors = -(-len(mini_fat) * 4 // _SECTOR)
    ministream_sectors = -(-len(mini) // _SECTOR)
    data_sectors = dir_sectors + minifat_sectors + ministream_sectors + sum(
        -(-len(n.data or b"") // _SECTOR) for n in big)
    fat_sectors = 1
    while fat_sectors * (_SECTOR // 4) < data_sectors + fat_sectors:
        fat_sectors += 1
    if fat_sectors > 109:
        raise ValueError("too large for a compound file without DIFAT sectors")

    fat = [_FATSECT] * fat_sectors
    body = bytearray()

    def place(data: bytes) -> int:
        if not data:
            return _END
        first = fat_sectors + len(body) // _SECTOR
        count = -(-len(data) // _SECTOR)
        fat.extend([first + k + 1 for k in range(count - 1)] + [_END])
        body.extend(data.ljust(count * _SECTOR, b"\0"))
        return first

    first_dir = fat_sectors  # placed first, but written last: its entries need everyone's start sector
    fat.extend([first_dir + k + 1 for k in range(dir_sectors - 1)] + [_END])
    body.extend(b"\0" * dir_sectors * _SECTOR)
    first_minifat = place(b"".join(struct.pack("<I", v) for v in mini_fat).ljust(
        minifat_sectors * _SECTOR, b"\xff"))
    root.start = place(bytes(mini))
    for node in big:
        node.start = place(node.data or b"")
    entries = b"".join(_entry(n, len(mini) if n is root else len(n.data or b"")) for n in nodes)
    body[0:dir_sectors * _SECTOR] = entries.ljust(dir_sectors * _SECTOR, b"\0")
    for k in range(len(nodes), dir_sectors * _SECTOR // 128):  # unused slots: no siblings, no child
        struct.pack_into("<III", body, k * 128 + 68, _NONE, _NONE, _NONE)
    fat += [_FREE] * (fat_sectors * _SECTOR // 4 - len(fat))

    header = bytearray(_MAGIC + b"\0" * 16)
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
    header += struct.pack("<IIIIIIIII", 0, fat_sectors, first_dir, 0, _CUTOFF,
                          first_minifat if mini_fat else _END, minifat_sectors, _END, 0)
    header += b"".join(struct.pack("<I", k) for k in range(fat_sectors)) + b"\xff" * 4 * (109 - fat_sectors)
    return bytes(header) + b"".join(struct.pack("<I", v) for v in fat) + bytes(body)


def _add(parent: _Node, child: _Node) -> _Node:
    parent.children.append(child)
    return child


def _number(root: _Node) -> list[_Node]:
    """Give every node its directory index, and each storage's children a balanced tree of sibling links."""
    nodes = [root]

    def visit(node: _Node) -> None:
        kids = sorted(node.children, key=lambda c: (len(c.name), c.name.upper()))
        for kid in kids:
            kid.sid = len(nodes)
            nodes.append(kid)
        node.child = _tree(kids, 0, len(kids))
        for kid in kids:
            visit(kid)

    visit(root)
    return nodes


def _tree(kids: list[_Node], lo: int, hi: int) -> int:
    if lo >= hi:
        return _NONE
    mid = (lo + hi) // 2
    kids[mid].left = _tree(kids, lo, mid)
    kids[mid].right = _tree(kids, mid + 1, hi)
    return kids[mid].sid


def _entry(node: _Node, size: int) -> bytes:
    name = node.name.encode("utf-16-le")[:62]
    kind = 5 if node.sid == 0 else (1 if node.data is None else 2)  # root, storage, stream
    start, size = (0, 0) if kind == 1 else (node.start, size)
    return (name.ljust(64, b"\0") + struct.pack("<HBB", len(name) + 2, kind, 1)
            + struct.pack("<III", node.left, node.right, node.child) + b"\0" * 36 + struct.pack("<IQ", start, size))


# --- Outlook messages ---------------------------------------------------------------------------------------------

Address = tuple[str, str]  # (display name, SMTP address)


@dataclass
class Attachment:
    name: str
    data: bytes = b""
    mime: str = "application/octet-stream"
    hidden: bool = False
    message: Message | None = None  # an attached e-mail (attach method 5)


@dataclass
class Message:
    subject: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    body: str | None = None
    html: bytes | None = None
    sent: dt.datetime | None = None
    attachments: list[Attachment] = field(default_factory=list)
    code_page: int | None = None  # set: strings are 8-bit in this code page (an "ANSI" .msg), else UTF-16
    sensitivity: int | None = None  # PR_SENSITIVITY: 1 personal, 2 private, 3 company confidential
    transport_headers: str | None = None  # the internet headers of a received message (PR_TRANSPORT_MESSAGE_HEADERS)
    rtf: bytes | None = None  # the formatted body, stored compressed (PR_RTF_COMPRESSED)


def outlook_message(message: Message) -> bytes:
    """The .msg file Outlook would save for ``message`` (the properties inhouse reads, and their layout)."""
    return write_compound(_message_streams(message, "", top=True))


def _message_streams(m: Message, at: str, *, top: bool) -> dict[str, bytes]:
    streams: dict[str, bytes] = {}
    fixed: list[tuple[int, int]] = []

    def text(prop: int, value: str | None, where: str = at) -> None:
        if value is None:
            return
        if m.code_page:
            streams[f"{where}__substg1.0_{prop:04X}001E"] = value.encode(f"cp{m.code_page}")
        else:
            streams[f"{where}__substg1.0_{prop:04X}001F"] = value.encode("utf-16-le")

    text(0x001A, "IPM.Note")  # the message class: every Outlook item has one, readers check it
    text(0x0037, m.subject)
    if m.sender:
        text(0x0C1A, m.sender[0])
        text(0x5D01, m.sender[1])
    text(0x0E04, "; ".join(name for name, _ in m.to) or None)
    text(0x1000, m.body)
    text(0x007D, m.transport_headers)
    if m.sensitivity is not None:
        fixed.append((0x00360003, m.sensitivity))
    if m.html is not None:
        streams[f"{at}__substg1.0_10130102"] = m.html
    if m.rtf is not None:
        streams[f"{at}__substg1.0_10090102"] = compressed_rtf(m.rtf)
    if m.sent is not None:
        fixed.append((0x00390040, int((m.sent - dt.datetime(1601, 1, 1, tzinfo=dt.UTC)).total_seconds() * 10**7)))
    if m.code_page:
        fixed.append((0x3FFD0003, m.code_page))
    for n, (kind, (name, address)) in enumerate([(1, r) for r in m.to] + [(2, r) for r in m.cc]):
        folder = f"{at}__recip_version1.0_#{n:08X}/"
        streams[folder + "__properties_version1.0"] = _properties([(0x0C150003, kind)], 8)
        text(0x3001, name, folder)
        text(0x39FE, address, folder)
    for n, att in enumerate(m.attachments):
        folder = f"{at}__attach_version1.0_#{n:08X}/"
        props = [(0x37050003, 5 if att.message else 1)] + ([(0x7FFE000B, 1)] if att.hidden else [])
        streams[folder + "__properties_version1.0"] = _properties(props, 8)
        text(0x3707, att.name, folder)
        text(0x370E, att.mime, folder)
        if att.message is not None:
            streams.update(_message_streams(att.message, folder + "__substg1.0_3701000D/", top=False))
        else:
            streams[folder + "__substg1.0_37010102"] = att.data
    counts = (len(m.to) + len(m.cc), len(m.attachments)) * 2  # next recipient/attachment id, then the counts
    header = struct.pack("<8xIIII8x" if top else "<8xIIII", *counts)
    streams[f"{at}__properties_version1.0"] = header + _properties(fixed, 0)
    if top:  # the named-property map every message file carries (empty: these messages use no named properties)
        streams.update({f"__nameid_version1.0/__substg1.0_000{k}0102": b"" for k in (2, 3, 4)})
    return streams


def _properties(values: list[tuple[int, int]], header: int) -> bytes:
    return b"\0" * header + b"".join(struct.pack("<IIQ", tag, 0x6, value) for tag, value in values)


def compressed_rtf(raw: bytes) -> bytes:
    """``raw`` RTF as Outlook stores it in ``PR_RTF_COMPRESSED`` ([MS-OXRTFCP]): greedy matches of 2-17 bytes
    against the 4 KB dictionary (prefilled with the format's RTF prefix), literals otherwise, then the end marker."""
    from inhouse.kb.parse.lzfu import _PREFIX, _SIZE

    ring = bytearray(_PREFIX.ljust(_SIZE, b" "))
    write, pos = len(_PREFIX), 0
    body = bytearray()
    while True:
        control_at = len(body)
        body.append(0)
        for bit in range(8):
            if pos >= len(raw):  # the end: a reference to the write position
                body[control_at] |= 1 << bit
                body += struct.pack(">H", write << 4)
                out = bytes(body)
                crc = _crc(out)
                return struct.pack("<II4sI", len(out) + 12, len(raw), b"LZFu", crc) + out
            best_at, best_len = 0, 0
            for start in range(_SIZE):
                n = 0
                while n < 17 and pos + n < len(raw) and (start + n) % _SIZE != write \
                        and ring[(start + n) % _SIZE] == raw[pos + n]:
                    n += 1
                if n > best_len:
                    best_at, best_len = start, n
            if best_len >= 2:
                body[control_at] |= 1 << bit
                body += struct.pack(">H", (best_at << 4) | (best_len - 2))
            else:
                best_len = 1
                body.append(raw[pos])
            for k in range(best_len):
                ring[write] = raw[pos + k]
                write = (write + 1) % _SIZE
            pos += best_len


def _crc(data: bytes) -> int:
    """[MS-OXRTFCP]'s CRC-32: the standard polynomial, started at 0 and not inverted at the end."""
    import zlib

    return zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
