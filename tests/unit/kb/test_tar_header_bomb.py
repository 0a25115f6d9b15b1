"""A tar entry's header records (pax, GNU long name, sparse map), which tarfile reads into memory whole, are refused
past 1 MB before they are read; a damaged .tar.gz is called damaged, not "unsupported file type (gzip archive)"."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib

import pytest

from inhouse.errors import DocumentRejected
from inhouse.kb.parse import archive, parse_file

GB = 1 << 30


def header(name: str, size: int, kind: bytes, **fields: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    for at, value in fields.items():  # raw bytes set after the checksum was computed: recomputed below
        block[int(at.removeprefix("at"))] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    return bytes(block[:512])


def regular(name: str, content: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + content + b"\0" * (-len(content) % 512)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_a_header_record_declaring_gigabytes_is_refused_before_it_is_read(kind: bytes) -> None:
    # The reviewer's pax.tar.gz declared 1.5 GB of zeros (1.4 MB compressed; 1.55 GB in the parser worker). Here the
    # stream stops after the header: the refusal cannot have come from reading the record.
    data = gzip.compress(header("././@PaxHeader", int(1.5 * GB), kind))
    with pytest.raises(DocumentRejected, match=r"header records .* hold more than 1 MB \(possible tar bomb\)") as err:
        parse_file(data, "pax.tar.gz")
    assert err.value.filename == "pax.tar.gz"
    with pytest.raises(DocumentRejected, match="possible tar bomb"):
        parse_file(header("././@LongLink", 2 * GB, kind), "plain.tar")  # uncompressed too


def test_a_chain_of_sparse_map_blocks_is_refused() -> None:
    # An old GNU sparse entry: its map continues in 512-byte blocks for as long as each says "more follows".
    more = bytearray(512)
    more[504] = 1
    data = gzip.compress(header("disk.img", 1, tarfile.GNUTYPE_SPARSE, at482=1) + bytes(more) * 3000)
    with pytest.raises(DocumentRejected, match="possible tar bomb"):
        parse_file(data, "sparse.tar.gz")


def test_long_names_in_pax_and_gnu_archives_still_read() -> None:
    name = "reports/" + "quarterly-" * 30 + "报告.md"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tf:
            info = tarfile.TarInfo(name)
            content = b"# Q3\n\nRevenue grew."
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        parsed = parse_file(buf.getvalue(), "reports.tar.gz")
        assert parsed.blocks[0].text == f"File: {name}"


def first_bytes_compressed(data: bytes, length: int) -> bytes:
    """A gzip stream of ``data`` cut where ``length`` bytes of it can be decompressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data[:length]) + compressor.flush(zlib.Z_SYNC_FLUSH)


def test_a_cut_or_damaged_tar_gz_is_called_damaged() -> None:
    tar = regular("minutes.md", b"# Minutes\n\nApproved.") + b"\0" * 1024
    with pytest.raises(DocumentRejected, match=r"damaged archive, cut short or corrupted"):
        parse_file(first_bytes_compressed(tar, 300), "minutes.tar.gz")  # cut inside the first header
    bad_checksum = bytearray(tar)
    bad_checksum[0] ^= 0x20
    with pytest.raises(DocumentRejected, match=r"damaged archive, cut short or corrupted"):
        parse_file(gzip.compress(bytes(bad_checksum)), "minutes.tar.gz")
    with pytest.raises(DocumentRejected, match=r"unsupported file type \(gzip archive\)"):  # not a tar at all
        parse_file(gzip.compress(b"one compressed text file\n" * 40), "notes.txt.gz")


def test_is_tar_lets_memory_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    data = gzip.compress(regular("a.md", b"# A\n\nText."))
    monkeypatch.setattr(archive.tarfile, "open", out_of_memory)
    with pytest.raises(MemoryError):  # the worker reports the memory limit, not "unsupported file type"
        archive.is_tar(data)
