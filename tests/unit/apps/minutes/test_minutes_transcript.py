from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from inhouse.apps.minutes.transcript import parse_transcript, split_attendees, transcript_from_segments
from inhouse.errors import InvalidRequest


def test_plain_text_with_header_timestamps_and_speakers() -> None:
    text = ("Meeting: Budget review\nDate: 2026-03-04 (Wednesday)\nAttendees: Ann Lee (chair, finance), Bo Chen\n\n"
            "[00:00:05] Ann Lee: Welcome. Decision: we freeze hiring.\n"
            "00:01:10 Bo Chen: I will send the numbers by Friday.\n"
            "That includes the travel budget.\n")
    tr = parse_transcript(text, filename="notes.txt")
    assert tr.title == "Budget review"
    assert tr.meeting_date == date(2026, 3, 4) and tr.date_source == "header"
    assert tr.attendees == ["Ann Lee", "Bo Chen"]
    assert [(ln.number, ln.timestamp, ln.speaker) for ln in tr.lines] == [
        (1, "00:00:05", "Ann Lee"), (2, "00:01:10", "Bo Chen"), (3, None, "Bo Chen")]
    assert tr.lines[0].text == "Welcome. Decision: we freeze hiring."
    assert tr.lines[0].source_line == 5
    assert tr.lines[1].render() == "L2 [00:01:10] Bo Chen: I will send the numbers by Friday."


def test_plain_text_without_speakers_or_timestamps() -> None:
    tr = parse_transcript("We discussed the roadmap.\nThe release moves to May.\n", filename="2026-05-01 sync.txt")
    assert [ln.speaker for ln in tr.lines] == [None, None]
    assert tr.meeting_date == date(2026, 5, 1) and tr.date_source == "filename"
    assert tr.attendees == []


def test_speaker_label_on_its_own_line_and_chinese_colons() -> None:
    tr = parse_transcript("张伟：我们下周五之前完成测试。\n李娜:好的。\n\nAlice:\nHello there.\n")
    assert [(ln.speaker, ln.text) for ln in tr.lines] == [
        ("张伟", "我们下周五之前完成测试。"), ("李娜", "好的。"), ("Alice", "Hello there.")]


def test_explicit_date_wins_and_extra_attendees_are_added() -> None:
    tr = parse_transcript("Date: 2026-01-01\nA: hi\n", meeting_date=date(2026, 2, 2), attendees=["Zed"])
    assert tr.meeting_date == date(2026, 2, 2) and tr.date_source == "parameter"
    assert tr.attendees == ["Zed", "A"]


def test_webvtt_with_voice_tags_and_note_header() -> None:
    vtt = ("WEBVTT\n\nNOTE Date: 2026-03-02\n\n1\n00:00:01.000 --> 00:00:04.000\n<v Alice>Hello <b>team</b>.</v>\n\n"
           "00:01:05.500 --> 00:01:09.000 align:start\nBob: I will send the report\nby Friday.\n")
    tr = parse_transcript(vtt, filename="call.vtt")
    assert tr.format == "webvtt" and tr.meeting_date == date(2026, 3, 2)
    assert [(ln.timestamp, ln.speaker, ln.text) for ln in tr.lines] == [
        ("00:00:01", "Alice", "Hello team."), ("00:01:05", "Bob", "I will send the report by Friday.")]


def test_srt() -> None:
    srt = ("1\n00:00:01,000 --> 00:00:04,000\n张伟：我们下周五之前完成测试。\n\n"
           "2\n00:00:05,000 --> 00:00:09,000\n李娜：好的。\n")
    tr = parse_transcript(srt, filename="2026-01-28-周会.srt")
    assert tr.format == "srt" and tr.meeting_date == date(2026, 1, 28)
    assert tr.attendees == ["张伟", "李娜"] and tr.lines[1].text == "好的。"


@pytest.mark.parametrize("text", ["", "   \n\n", "Meeting: x\nDate: 2026-01-01\nAttendees: A, B\n", "WEBVTT\n\n"])
def test_empty_transcripts_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        parse_transcript(text)


def test_split_attendees() -> None:
    assert split_attendees("Mei Lin (product manager, chair), Daniel Okafor and Wang Jun") == [
        "Mei Lin", "Daniel Okafor", "Wang Jun"]
    assert split_attendees("赵敏(运营总监,主持)、陈浩（客服主管）、李娜") == ["赵敏", "陈浩", "李娜"]


def test_segments_from_speech() -> None:
    tr = transcript_from_segments([(0.0, "Hello."), (3725.4, "Bob: done")], meeting_date=date(2026, 1, 1))
    assert [(ln.timestamp, ln.speaker) for ln in tr.lines] == [("00:00:00", None), ("01:02:05", "Bob")]
    with pytest.raises(InvalidRequest):
        transcript_from_segments([(0.0, "  ")])


def test_corpus_transcripts_parse(eval_corpus: Path) -> None:
    paths = sorted((eval_corpus / "meetings").glob("*.txt"))
    assert paths
    for path in paths:
        tr = parse_transcript(path.read_text(encoding="utf-8"), filename=path.name)
        assert tr.meeting_date is not None and tr.date_source == "header", path.name
        assert len(tr.attendees) >= 3 and all(ln.speaker in tr.attendees for ln in tr.lines), path.name
        assert all(ln.timestamp for ln in tr.lines), path.name
