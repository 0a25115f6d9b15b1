"""Archives (.zip, .tar and compressed tar): one document whose parts are the archive's files, each read by its own
parser."""

from __future__ import annotations

import contextlib
import io
import tarfile
import zipfile

import pytest
from docfactory import make_docx, make_watermarked_docx, make_zip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.governance.labels import Label
from inhouse.kb.markings import MarkingReader
from inhouse.kb.parse import ParseLimits, detect_format, parse_file


def archive(files: dict[str, bytes], *, encrypted: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    out = bytearray(buf.getvalue())
    for name in encrypted:  # the "encrypted" bit an archiver sets, in the local and the central header
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            name_at = 30 if signature == b"PK\x03\x04" else 46
            at = out.find(signature)
            while at != -1 and out[at + name_at:at + name_at + len(name)] != name.encode():
                at = out.find(signature, at + 4)
            out[at + flag_at] |= 0x1
    return bytes(out)


def with_legacy_name(data: bytes, placeholder: str, raw: bytes) -> bytes:
    """The archive with one file's name stored as raw bytes without the UTF-8 flag (what the archivers of a Chinese
    Windows write: GBK). ``placeholder`` is an ASCII name of the same length written in its place."""
    assert len(placeholder.encode()) == len(raw)
    return data.replace(placeholder.encode(), raw)


def test_each_file_is_a_part_under_its_path_and_the_rest_is_said() -> None:
    data = archive({"policies/travel.docx": make_docx(), "notes.md": b"# Notes\n\nKeep every receipt.",
                    "__MACOSX/policies/._travel.docx": b"\0\5\26\7", "policies/.DS_Store": b"\0\0\0\1Bud1",
                    "setup.exe": b"MZ\x90\x00", "empty/": b""})
    parsed = parse_file(data, "handbook.zip")
    headings = [(b.level, b.text) for b in parsed.blocks if b.kind == "heading"]
    assert headings[0] == (1, "File: policies/travel.docx") and (2, "Travel Rules") in headings
    assert (1, "File: notes.md") in headings and (2, "Notes") in headings
    keep = next(b for b in parsed.blocks if b.text == "Keep every receipt.")
    assert keep.section == ("File: notes.md", "Notes") and keep.page is None
    assert parsed.title == "handbook" and parsed.mime == "application/zip"
    assert parsed.metadata == {"files": "2", "skipped_files": "setup.exe: unsupported file type (.exe)"}


def test_a_confidential_file_makes_a_confidential_archive() -> None:
    parsed = parse_file(archive({"board/memo.docx": make_watermarked_docx(), "notes.md": b"# Notes\n\nLunch."}),
                        "board.zip")
    marked = MarkingReader().read(parsed)
    assert marked is not None and marked.label == Label.CONFIDENTIAL


def test_names_without_the_utf8_flag_read_as_their_author_wrote_them() -> None:
    gbk = "报告/预算.md".encode("gbk")
    utf8 = "纪要.md".encode()
    data = archive({"a" * len(gbk): b"# Budget\n\nTravel 1,200.", "b" * len(utf8): b"# Minutes\n\nAgreed."})
    data = with_legacy_name(with_legacy_name(data, "a" * len(gbk), gbk), "b" * len(utf8), utf8)
    headings = [b.text for b in parse_file(data, "docs.zip").blocks if b.level == 1]
    assert headings == ["File: 报告/预算.md", "File: 纪要.md"]


def test_limits_depth_passwords_and_nothing_readable() -> None:
    inner = archive({"deep.md": b"# Deep\n\ntext"})
    for _ in range(4):
        inner = archive({"inner.zip": inner})
    with pytest.raises(DocumentRejected, match="nested deeper than 3 levels"):
        parse_file(inner, "nested.zip")
    locked = archive({"secret.md": b"# S\n\nx", "open.md": b"# Open\n\ny"}, encrypted=("secret.md",))
    assert parse_file(locked, "mixed.zip").metadata["skipped_files"] == "secret.md: password-protected in the archive"
    many = archive({f"n{i:03}.md": f"# N{i}\n\ntext {i}".encode() for i in range(203)})
    parsed = parse_file(many, "many.zip")
    assert parsed.metadata["files"] == "200" and parsed.metadata["skipped_files"].count("more than 200 files") == 3
    big = archive({"big.md": b"# Big\n\n" + b"x " * 5000, "small.md": b"# Small\n\ny"})
    assert "larger than" in parse_file(big, "b.zip", limits=ParseLimits(max_file_bytes=5000)).metadata["skipped_files"]
    with pytest.raises(DocumentRejected, match=r"archive has no readable file \(tool.exe: unsupported file type"):
        parse_file(archive({"tool.exe": b"MZ\x90\x00", "folder/": b""}), "tools.zip")
    with pytest.raises(DocumentRejected, match="it is empty"):
        parse_file(archive({"folder/": b""}), "empty.zip")


def test_an_archive_is_a_zip_not_an_office_file_that_lost_its_parts() -> None:
    data = make_zip({"a.txt": b"hi"})
    assert detect_format(data, "a.zip") == detect_format(data, "download") == "zip"
    with pytest.raises(DocumentRejected, match=r"not \.docx/\.pptx/\.xlsx"):
        parse_file(data, "report.docx")
    bomb = make_zip({"a.txt": b"\0" * (4 * 1024 * 1024)})
    with pytest.raises(DocumentRejected, match="zip bomb"):
        parse_file(bomb, "a.zip")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=10),
       cut=st.none() | st.integers(10, 1 << 14))
def test_a_damaged_archive_never_raises_anything_but_document_rejected(
        edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(archive({"policies/travel.docx": make_docx(), "notes.md": b"# Notes\n\nKeep every receipt."}))
    for at, value in edits:
        data[at % len(data)] = value
    with contextlib.suppress(DocumentRejected):
        parse_file(bytes(data[:cut] if cut else data), "damaged.zip")


def tarball(files: dict[str, bytes], mode: str = "w:gz", *, links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_a_tar_archive_compressed_or_not_reads_as_the_zip(mode: str) -> None:
    files = {"policies/travel.docx": make_docx(), "notes.md": b"# Notes\n\nKeep every receipt."}
    data = tarball({"./" + name: content for name, content in files.items()}, mode, links=("policies/passwd",))
    assert detect_format(data, "handbook.tar.gz") == detect_format(data, "download") == "tar"
    parsed = parse_file(data, "handbook.tar.gz")
    assert parsed.blocks == parse_file(archive(files), "handbook.zip").blocks
    assert parsed.title == "handbook"  # the file name less its archive extensions, as for the .zip
    assert parsed.metadata == {"files": "2",
                               "skipped_files": "policies/passwd: not a regular file (a link or a device)"}


def test_tar_names_limits_and_what_is_not_a_tar() -> None:
    # A name in GBK bytes (tarfile keeps bytes that are not UTF-8 as surrogate escapes, both ways).
    gbk = tarball({"预算.md".encode("gbk").decode("utf-8", "surrogateescape"): b"# Budget\n\nTravel 1,200."}, "w")
    assert next(b.text for b in parse_file(gbk, "docs.tar").blocks) == "File: 预算.md"
    data = tarball({f"n{i}.md": b"# N\n\n" + b"x" * 400 for i in range(5)})
    with pytest.raises(DocumentRejected, match="expands to more than"):
        parse_file(data, "a.tgz", limits=ParseLimits(max_unzipped_bytes=1000))
    with pytest.raises(DocumentRejected, match="more than 3 entries"):
        parse_file(data, "a.tgz", limits=ParseLimits(max_zip_entries=3))
    import gzip

    with pytest.raises(DocumentRejected, match=r"unsupported file type \(gzip archive\)"):
        parse_file(gzip.compress(b"a single compressed file, not an archive"), "notes.txt.gz")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=10),
       cut=st.none() | st.integers(10, 1 << 14), mode=st.sampled_from(["w", "w:gz"]))
def test_a_damaged_tar_never_raises_anything_but_document_rejected(
        edits: list[tuple[int, int]], cut: int | None, mode: str) -> None:
    data = bytearray(tarball({"policies/travel.docx": make_docx(), "notes.md": b"# Notes\n\nKeep."}, mode))
    for at, value in edits:
        data[at % len(data)] = value
    with contextlib.suppress(DocumentRejected):
        parse_file(bytes(data[:cut] if cut else data), "damaged.tar.gz")


def _text_file(size: int) -> bytes:
    line = b"Quarterly figures are confidential and stay on the finance share.\n"
    return line * (size // len(line))


def test_nested_archives_share_one_unzipped_budget() -> None:
    limits = ParseLimits(max_unzipped_bytes=500_000)
    inner = archive({f"part{i}.txt": _text_file(60_000) for i in range(4)})  # 240 KB: under the limit alone
    assert parse_file(archive({"batch0.zip": inner}), "one.zip", limits=limits).metadata["files"] == "1"
    with pytest.raises(DocumentRejected, match=r"in all, counting the archives.*zip bomb") as err:
        parse_file(archive({f"batch{i}.zip": inner for i in range(10)}), "bundle.zip", limits=limits)
    assert err.value.filename == "bundle.zip"


def test_office_files_in_an_archive_or_a_mail_count_their_parts_in_the_budget() -> None:
    from email.message import EmailMessage

    limits = ParseLimits(max_unzipped_bytes=1_000_000)
    docx = make_docx()
    assert parse_file(docx, "rules.docx", limits=limits).title == "Travel Rules"  # 830 KB unpacked
    with pytest.raises(DocumentRejected, match="in all"):
        parse_file(archive({f"copy{i}.docx": docx for i in range(4)}), "copies.zip", limits=limits)
    mail = EmailMessage()
    mail["Subject"] = "Copies"
    mail.set_content("See attached.")
    mail.add_attachment(archive({f"copy{i}.docx": docx for i in range(4)}), maintype="application",
                        subtype="zip", filename="copies.zip")
    with pytest.raises(DocumentRejected, match="in all"):
        parse_file(mail.as_bytes(), "copies.eml", limits=limits)
