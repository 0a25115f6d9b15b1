"""Memory of a recording stays bounded by a window, not by the recording's length, and one recording is transcribed
at a time: a 2.6 MB FLAC of 3.8 h of silence made the server grow by 2.7 GB (int16 pieces, a float32 copy, then a
float64 square for the level) before it was refused as silent, and each parallel upload added as much again."""

from __future__ import annotations

import io
import threading
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest

from inhouse.apps.minutes.audio import SAMPLE_RATE, WhisperTranscriber, decode_windows, measure_audio
from inhouse.errors import InvalidRequest, Overloaded

RATE = 8000


def flac(samples: np.ndarray, rate: int = RATE) -> bytes:
    """Mono int16 samples as FLAC, a minute per frame; silence takes a few bytes per block."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream: Any = out.add_stream("flac", rate=rate)
        stream.layout, stream.format = "mono", "s16"
        for at in range(0, len(samples), rate * 60):
            piece = np.ascontiguousarray(samples[None, at:at + rate * 60])
            frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, at
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def no_model() -> Path:
    raise AssertionError("the model must not load for a recording that is refused")


def test_a_long_silent_recording_is_refused_without_holding_its_samples() -> None:
    minutes = 20
    data = flac(np.zeros(RATE * 60 * minutes, dtype=np.int16))
    int16_bytes = minutes * 60 * SAMPLE_RATE * 2  # 38 MB once decoded to 16 kHz; the old path peaked near 7x that
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="silent") as exc:
            WhisperTranscriber(no_model).transcribe(data, "meeting.flac")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.code == "no_speech"
    # One piece of at most ten seconds (and its int64 square) at a time, whatever the length.
    assert peak < int16_bytes / 10, f"decoding held {peak / 1e6:.1f} MB for {minutes} minutes of silence"


def test_a_low_rate_recording_is_resampled_a_few_seconds_at_a_time() -> None:
    """At 100 Hz, 500,000 input samples are 83 minutes: resampled to 16 kHz in one call they were 160 MB before the
    length limit was checked. The file's stated length is removed, so only decoding can find it too long."""
    data = bytearray(flac(np.zeros(100 * 3600, dtype=np.int16), rate=100))  # an hour at 100 Hz: a few KB
    fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of total samples
    data[18:26] = (fields >> 36 << 36).to_bytes(8, "big")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="minutes long; at most 1 minutes"):
            measure_audio(bytes(data), "low.flac", max_s=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"decoding held {peak / 1e6:.1f} MB"


def test_windows_cover_the_recording_and_end_in_a_pause() -> None:
    """Tone with a pause near each window's end: the cut falls in the pause, and the windows add up to the whole."""
    t = np.arange(RATE * 10) / RATE
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    tone[int(RATE * 3.6):int(RATE * 3.9)] = 0  # a pause 0.1-0.4 s before the first 4-second window ends
    windows = list(decode_windows(flac(tone), "tone.flac", window_s=4))
    starts = [start for start, _ in windows]
    assert sum(len(w) for _, w in windows) == 10 * SAMPLE_RATE
    assert all(w.dtype == np.float32 and len(w) <= 4 * SAMPLE_RATE for _, w in windows)
    assert 3.6 < starts[1] < 3.9, starts
    assert starts == [0.0, *np.cumsum([len(w) / SAMPLE_RATE for _, w in windows[:-1]])]
    level = measure_audio(flac(tone), "tone.flac")
    assert level.seconds == 10 and 0.1 < level.rms < 0.2  # 8000/32768 peak, sine RMS ≈ 0.17


class FakeModel:
    """faster-whisper's ``WhisperModel.transcribe`` shape: one segment 0.5 s into each window, language "xx"."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def transcribe(self, audio: Any, *, language: str | None, **kwargs: Any) -> tuple[Any, Any]:
        self.calls.append((len(audio), language))
        self.entered.set()
        assert self.release.wait(10)
        return iter([SimpleNamespace(start=0.5, text=f" part {len(self.calls)}")]), SimpleNamespace(language="xx")


def transcriber_with(model: FakeModel, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> WhisperTranscriber:
    t = WhisperTranscriber(no_model, **kwargs)
    monkeypatch.setattr(t, "_load", lambda: model)
    return t


def tone(seconds: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return flac((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))


def test_each_window_is_transcribed_at_its_own_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    model = FakeModel()
    segments = transcriber_with(model, monkeypatch, window_s=4).transcribe(tone(10), "tone.flac")
    assert len(model.calls) == 3 and all(n <= 4 * SAMPLE_RATE for n, _ in model.calls)
    # The language found in the first window is kept for the others, as for the whole recording before.
    assert [lang for _, lang in model.calls] == [None, "xx", "xx"]
    assert [text for _, text in segments] == ["part 1", "part 2", "part 3"]
    assert segments[0][0] == 0.5 and 4.0 < segments[1][0] <= 4.5 and 8.0 < segments[2][0] <= 8.5


def test_one_recording_is_transcribed_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second recording while one is transcribed is refused at once (429 over HTTP), after its own checks;
    the slot is free again once the first is done."""
    model = FakeModel()
    model.release.clear()
    t = transcriber_with(model, monkeypatch)
    first: list[Any] = []
    worker = threading.Thread(target=lambda: first.append(t.transcribe(tone(2), "first.flac")))
    worker.start()
    try:
        assert model.entered.wait(10)
        with pytest.raises(Overloaded) as exc:
            t.transcribe(tone(2), "second.flac")
        assert exc.value.code == "transcription_busy" and exc.value.retry_after_s > 0
        with pytest.raises(InvalidRequest, match="silent"):  # refused for what it is, busy or not
            t.transcribe(flac(np.zeros(RATE * 2, dtype=np.int16)), "quiet.flac")
    finally:
        model.release.set()
        worker.join(10)
    assert first and first[0][0][1] == "part 1"
    assert t.transcribe(tone(2), "third.flac")[0][1] == "part 2"


def test_the_slot_is_freed_when_the_model_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing(FakeModel):
        def transcribe(self, audio: Any, **kwargs: Any) -> tuple[Any, Any]:
            raise RuntimeError("model failed")

    t = transcriber_with(Failing(), monkeypatch)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="model failed"):
            t.transcribe(tone(2), "tone.flac")
