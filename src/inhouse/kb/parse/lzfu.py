"""Compressed RTF ([MS-OXRTFCP]): how Outlook stores a message's formatted body (``PR_RTF_COMPRESSED``).

A 16-byte header (compressed size + 12, raw size, ``LZFu`` or ``MELA`` for stored uncompressed, CRC) and then an
LZ77 stream over a 4 KB ring dictionary that starts with a fixed 207-byte RTF prefix: each control byte's 8 bits,
lowest first, say whether the next item is a literal byte (0) or a 2-byte big-endian reference (1: a 12-bit
dictionary offset and a 4-bit length + 2). A reference to the current write position ends the stream.

The CRC is not checked: a damaged body decodes to text the RTF reader then reads or refuses, like any damaged file.
The output is bounded by the raw size the header states, and by ``limit``.
"""

from __future__ import annotations

import struct

_PREFIX = (b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript "
           b"\\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par "
           b"\\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx")
_COMPRESSED, _STORED = b"LZFu", b"MELA"
_SIZE = 4096


class CompressedRtfError(ValueError):
    """Not a compressed RTF stream (bad header or type)."""


def decompress(data: bytes, limit: int) -> bytes:
    """The RTF bytes of a ``PR_RTF_COMPRESSED`` value, at most ``limit`` bytes of them."""
    if len(data) < 16:
        raise CompressedRtfError("shorter than its header")
    _size, raw_size, kind = struct.unpack_from("<II4s", data, 0)
    wanted = min(raw_size, limit)
    if kind == _STORED:
        return data[16:16 + wanted]
    if kind != _COMPRESSED:
        raise CompressedRtfError(f"unknown compression type {kind!r}")
    ring = bytearray(_PREFIX.ljust(_SIZE, b" "))
    write = len(_PREFIX)
    out = bytearray()
    pos, end = 16, len(data)
    while pos < end and len(out) < wanted:
        control = data[pos]
        pos += 1
        for bit in range(8):
            if pos >= end or len(out) >= wanted:
                break
            if not control & (1 << bit):
                ring[write] = data[pos]
                out.append(data[pos])
                write = (write + 1) % _SIZE
                pos += 1
                continue
            if pos + 2 > end:
                return bytes(out)
            word = (data[pos] << 8) | data[pos + 1]
            pos += 2
            offset, length = word >> 4, (word & 0xF) + 2
            if offset == write:  # the end of the stream
                return bytes(out)
            for k in range(length):
                byte = ring[(offset + k) % _SIZE]
                ring[write] = byte
                out.append(byte)
                write = (write + 1) % _SIZE
    return bytes(out[:wanted])
