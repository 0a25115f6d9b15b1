"""Mailboxes (kb/parse/mbox.py): a file written by the stdlib's own mbox writer (as mail tools write them) reads as
one document, a part per message; quoted "From " lines, CRLF files, Thunderbird's extensionless folder files and
damaged messages are handled; a mailbox that grew embeds only its new mail; bad input is a DocumentRejected."""

from __future__ import annotations

import mailbox
import tempfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.kb.access import Acl
from inhouse.kb.index.protocol import SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import Ingestor
from inhouse.kb.parse import detect_format, parse_file
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.testing.index_contract import ADMIN


def message(subject: str, body: str, *, sender: str = "li.na@example.com",
            date: str = "Mon, 05 Jan 2026 09:30:00 +0800", headers: dict[str, str] | None = None,
            attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Date"] = sender, "team@example.com", subject, date
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    if attachment is not None:
        m.add_attachment(attachment[1], maintype="text", subtype="plain", filename=attachment[0])
    return m


def write_mbox(path: Path, messages: list[EmailMessage]) -> bytes:
    box = mailbox.mbox(path)
    try:
        for m in messages:
            box.add(m)
        box.flush()
    finally:
        box.close()
    return path.read_bytes()


MESSAGES = [
    message("Q3 supplier review", "The supplier review moves to 12 October.\n\nFrom now on, invoices go to finance.",
            date="Mon, 05 Jan 2026 09:30:00 +0800"),
    message("差旅报销新规", "上海住宿每晚不超过1200元。", sender="王芳 <wang.fang@example.com>",
            date="Tue, 06 Jan 2026 10:00:00 +0800", attachment=("limits.txt", b"Beijing: 1100 CNY per night")),
    message("Launch plan", "Project Falcon launches in March.", date="Wed, 07 Jan 2026 08:00:00 +0000",
            headers={"Sensitivity": "Company-Confidential"}),
]


def test_a_mailbox_is_one_document_with_a_part_per_message(tmp_path: Path) -> None:
    data = write_mbox(tmp_path / "team.mbox", MESSAGES)
    assert data.startswith(b"From ") and b"\n>From now on" in data  # the writer quoted the body's "From " line
    doc = parse_file(data, "team.mbox")
    assert detect_format(data, "team.mbox") == "mbox" and doc.mime == "application/mbox" and doc.title == "team"
    headings = [b.text for b in doc.blocks if b.kind == "heading" and b.level == 1]
    assert headings == ["Message: 2026-01-05 Q3 supplier review", "Message: 2026-01-06 差旅报销新规",
                        "Message: 2026-01-07 Launch plan"]
    text = "\n".join(b.text for b in doc.blocks)
    assert "From now on, invoices go to finance." in text and ">From" not in text  # unquoted again
    assert "上海住宿每晚不超过1200元" in text and "Beijing: 1100 CNY per night" in text  # body and attachment
    assert doc.metadata["messages"] == "3"
    assert (doc.metadata["first_date"], doc.metadata["last_date"]) == ("2026-01-05T09:30:00+08:00",
                                                                       "2026-01-07T08:00:00+00:00")
    assert any("Company-Confidential" in m.text for m in doc.markings)  # one message's marking is the mailbox's
    sections = {b.section[0] for b in doc.blocks if "Falcon" in b.text}
    assert sections == {"Message: 2026-01-07 Launch plan"}


def test_crlf_files_and_thunderbird_folders_without_an_extension(tmp_path: Path) -> None:
    data = write_mbox(tmp_path / "x.mbox", MESSAGES[:2]).replace(b"\n", b"\r\n")
    assert detect_format(data, "Inbox") == "mbox"  # Thunderbird's folder file
    doc = parse_file(data, "Inbox")
    assert doc.metadata["messages"] == "2" and "1200" in "\n".join(b.text for b in doc.blocks)
    # A note that starts like a separator line is text, not a mailbox.
    assert detect_format(b"From 9:00 to 10:00 we review the budget.\nThen lunch.\n", "notes") == "text"


def test_an_unquoted_from_line_in_a_body_does_not_cut_the_message(tmp_path: Path) -> None:
    data = (b"From alice@example.com Mon Jan  5 09:30:00 2026\nFrom: alice@example.com\nSubject: Minutes\n\n"
            b"Decisions taken.\nFrom here on the budget is frozen.\n\n"
            b"From bob@example.com Tue Jan  6 10:00:00 2026\nFrom: bob@example.com\nSubject: Re: Minutes\n\nAgreed.\n")
    doc = parse_file(data, "minutes.mbox")
    assert doc.metadata["messages"] == "2"
    assert "From here on the budget is frozen." in "\n".join(b.text for b in doc.blocks)


def test_damaged_messages_are_skipped_and_an_empty_mailbox_is_rejected(tmp_path: Path) -> None:
    good = write_mbox(tmp_path / "a.mbox", MESSAGES[:1])
    damaged = b"From MAILER-DAEMON Mon Jan  5 09:30:00 2026\n\n\n" + good
    doc = parse_file(damaged, "a.mbox")
    assert doc.metadata["messages"] == "1" and "message 1" in doc.metadata["skipped_messages"]
    for bad in (b"", b"hello, not a mailbox", b"From MAILER-DAEMON Mon Jan  5 09:30:00 2026\n\n"):
        with pytest.raises(DocumentRejected):
            parse_file(bad, "bad.mbox")


_LINE = st.text(st.sampled_from("abc XYZ 12:34 年假 >"), min_size=1, max_size=30).map(str.strip).filter(bool)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(_LINE, _LINE.map(lambda t: "From " + t)), min_size=1, max_size=6),
                min_size=1, max_size=5))
def test_what_a_mail_tool_writes_reads_back_message_for_message(bodies: list[list[str]]) -> None:
    """Round trip through the stdlib's mbox writer: bodies of any lines, "From " lines among them, come back as
    many messages as were written, each with its own lines, quoted lines unquoted."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write_mbox(Path(tmp) / "r.mbox", [message(f"Subject {i}", "\n".join(lines) + "\n")
                                                  for i, lines in enumerate(bodies)])
    doc = parse_file(data, "r.mbox")
    assert doc.metadata["messages"] == str(len(bodies))
    parts: dict[str, list[str]] = {}
    for block in doc.blocks:
        if block.kind != "heading":
            parts.setdefault(block.section[0], []).append(block.text)
    for i, lines in enumerate(bodies):
        text = " ".join(parts[f"Message: 2026-01-05 Subject {i}"])
        assert all(" ".join(line.split()) in " ".join(text.split()) for line in lines), (lines, text)


def test_a_mailbox_that_grew_embeds_only_its_new_mail(tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        col = store.create_collection("mail", acl=Acl())
        emb = FakeEmbedder()
        ingestor = Ingestor(store, emb, max_tokens=80)
        history = [message(f"Weekly report {i}", f"Week {i}: " + "shipped orders and open tickets. " * 12,
                           date=f"Mon, {i + 1:02d} Jun 2026 09:00:00 +0800") for i in range(12)]
        path = tmp_path / "reports.mbox"
        write_mbox(path, history)
        first = ingestor.ingest_paths(col.id, [path])
        assert first.count("added") == 1 and emb.passages_embedded == first.chunks
        before = emb.passages_embedded
        write_mbox(path, [message("Weekly report 12", "Week 12: the warehouse moved to Suzhou.",
                                  date="Mon, 13 Jul 2026 09:00:00 +0800")])  # mailbox.mbox appends
        second = ingestor.ingest_paths(col.id, [path])
        assert second.count("replaced") == 1
        assert emb.passages_embedded - before <= 2 and second.reused_chunks >= first.chunks - 1, second.to_dict()
        hits = store.keyword_search(ADMIN, "Suzhou", SearchFilters(), 5)
        assert len(hits) == 1 and store.check().ok
    finally:
        store.close()

