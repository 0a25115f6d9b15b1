"""A transcript too long for ``apps.minutes_max_windows`` is refused while it is being parsed, after about as much
work as the limit allows (not after the whole upload is Python objects); the window estimate never refuses a
transcript that ``build_windows`` fits; parsing and windowing run off the event loop."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.apps.context import AppContext
from inhouse.apps.minutes import pipeline, transcript
from inhouse.apps.minutes.extract import WindowBudget, build_windows
from inhouse.apps.minutes.pipeline import MinutesOptions, read_transcript, run, run_transcript
from inhouse.apps.minutes.schema import MinutesInput
from inhouse.apps.minutes.transcript import Transcript, TranscriptLine, parse_transcript
from inhouse.errors import InvalidRequest

MakeCtx = Callable[..., AppContext]


def test_a_huge_transcript_is_refused_after_reading_only_what_the_limit_allows(
        make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch) -> None:
    made = 0

    class CountedLine(TranscriptLine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            nonlocal made
            made += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(transcript, "TranscriptLine", CountedLine)
    monkeypatch.setattr(pipeline, "build_windows", lambda *a, **k: pytest.fail("windows of a refused transcript"))
    data = b"A: x\n" * 1_000_000  # the reviewer's 50 MB upload, scaled down
    options = MinutesOptions(window_tokens=1500, max_windows=64)
    with pytest.raises(InvalidRequest, match="more than 64 windows"):
        asyncio.run(run(make_ctx(lambda prompt: "{}"), MinutesInput(data=data, filename="m.txt"), options=options))
    # Every line counts at least 2 tokens against 64 × 1500: the parse stopped there, not at line 1,000,000.
    assert made <= 64 * 1500 // 2 + 1


def test_a_huge_webvtt_and_srt_are_refused_early_too() -> None:
    cue = "00:00:01.000 --> 00:00:02.000\nA: x\n\n"
    budget = WindowBudget(1500, 2)
    with pytest.raises(InvalidRequest, match="more than 2 windows"):
        parse_transcript("WEBVTT\n\n" + cue * 200_000, on_line=budget.count)
    srt = "".join(f"{i}\n00:00:01,000 --> 00:00:02,000\nA: x\n\n" for i in range(1, 200_000))
    with pytest.raises(InvalidRequest, match="more than 2 windows"):
        parse_transcript(srt, on_line=WindowBudget(1500, 2).count)


WORDS = ["x", "ok", "budget", "launch", "会议", "下周五之前完成", "Friday", "https://example.com/a/b"]


@st.composite
def transcripts(draw: st.DrawFn) -> str:
    """Plain transcripts with speakers (some one-off labels), stamps, CJK, continuation lines, blank lines, a
    header and lines longer than MAX_LINE_CHARS."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    lines = ["Meeting: t", "Attendees: Alice, Bo"] if rnd.random() < 0.5 else []
    for i in range(rnd.randint(1, 150)):
        words = rnd.choices(WORDS, k=rnd.choice([1, 3, 20, 200, 1500]))
        stamp = f"[00:{i % 60:02d}] " if rnd.random() < 0.3 else ""
        who = rnd.choice(["Alice: ", "Bo: ", "Scope: ", "Speaker 1: ", "张伟：", "", ""])
        lines.append(f"{stamp}{who}{' '.join(words)}")
        if rnd.random() < 0.1:
            lines.append("")
    return "\n".join(lines)


@settings(max_examples=40, deadline=None)
@given(text=transcripts(), window_tokens=st.sampled_from([40, 300, 1500]))
def test_the_estimate_never_refuses_a_transcript_that_fits(text: str, window_tokens: int) -> None:
    needed = len(build_windows(parse_transcript(text).lines, window_tokens))
    budget = WindowBudget(window_tokens, needed)  # exactly enough windows: must pass
    assert len(parse_transcript(text, on_line=budget.count).lines) == len(parse_transcript(text).lines)


def test_parsing_and_windowing_run_off_the_event_loop(make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fake step blocks until the event loop has run another task: on the loop itself it never would."""
    ticked = threading.Event()
    real_parse, real_windows = pipeline.parse_transcript, pipeline.build_windows

    def wait_for_the_loop() -> None:
        assert ticked.wait(10), "the event loop did not run while the transcript was parsed"
        ticked.clear()

    def slow_parse(*args: Any, **kwargs: Any) -> Transcript:
        wait_for_the_loop()
        return real_parse(*args, **kwargs)

    def slow_windows(*args: Any, **kwargs: Any) -> Any:
        wait_for_the_loop()
        return real_windows(*args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_transcript", slow_parse)
    monkeypatch.setattr(pipeline, "build_windows", slow_windows)
    ctx = make_ctx(lambda prompt: "{}")

    async def ticker() -> None:
        while True:
            ticked.set()
            await asyncio.sleep(0.01)

    async def main() -> None:
        tick = asyncio.create_task(ticker())
        try:
            tr = await read_transcript(ctx, MinutesInput(data=b"Alice: hello\nBo: hi\n", filename="m.txt"), None)
            with pytest.raises(InvalidRequest, match="needs 2 windows"):
                await run_transcript(ctx, tr, MinutesOptions(window_tokens=1, max_windows=1))
        finally:
            tick.cancel()

    asyncio.run(main())


def test_recordings_are_transcribed_off_the_event_loop(make_ctx: MakeCtx) -> None:
    ticked = threading.Event()

    class WaitingTranscriber:
        def transcribe(self, data: bytes, filename: str, language: str | None = None) -> list[tuple[float, str]]:
            assert ticked.wait(10), "the event loop did not run while the recording was decoded"
            return [(0.0, "Alice: hello")]

    async def main() -> Transcript:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, ticked.set)
        return await read_transcript(make_ctx(lambda prompt: "{}"), MinutesInput(data=b"RIFF....", filename="a.wav"),
                                     WaitingTranscriber())

    assert [ln.text for ln in asyncio.run(main()).lines] == ["hello"]
