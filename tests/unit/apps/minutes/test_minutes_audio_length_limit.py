"""A recording longer than ``max_audio_s`` is refused from the length its container states, before decoding, and
otherwise decoding stops as soon as the limit is passed: a few MB of compressed silence can hold days of samples."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from inhouse.apps.minutes.audio import WhisperTranscriber, decode_windows
from inhouse.errors import InvalidRequest

RATE = 8000


def flac(seconds: float, *, tone: bool = False) -> bytes:
    """A mono FLAC; silence takes a few bytes per block, so minutes of it stay small."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream: Any = out.add_stream("flac", rate=RATE)
        stream.layout, stream.format = "mono", "s16"
        minute = np.zeros((1, RATE * 60), dtype=np.int16)
        if tone:
            minute[0] = (8000 * np.sin(2 * math.pi * 440 * np.arange(RATE * 60) / RATE)).astype(np.int16)
        done = 0
        while done < seconds * RATE:
            n = min(RATE * 60, int(seconds * RATE) - done)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(minute[:, :n]), format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, done
            for packet in stream.encode(frame):
                out.mux(packet)
            done += n
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def state_length(data: bytes, samples: int) -> bytes:
    """The FLAC with its STREAMINFO total sample count set to ``samples`` (0: unknown)."""
    raw = bytearray(data)
    assert raw[:4] == b"fLaC"
    fields = int.from_bytes(raw[18:26], "big")  # rate (20 bits), channels (3), bits (5), total samples (36)
    raw[18:26] = ((fields >> 36 << 36) | samples).to_bytes(8, "big")
    return bytes(raw)


def no_model() -> Path:
    raise AssertionError("the model must not load for a recording that is refused")


def test_a_stated_length_over_the_limit_is_refused_before_decoding() -> None:
    """Ten seconds of tone that claim two hours: only the stated length can say 120 minutes."""
    data = state_length(flac(10, tone=True), 2 * 3600 * RATE)
    with pytest.raises(InvalidRequest, match="is 120 minutes long; at most 1 minutes"):
        WhisperTranscriber(no_model, max_audio_s=60).transcribe(data, "claims.flac")


class CountingResampler:
    """PyAV's resampler, counting the 16 kHz samples it hands out: how far decoding went."""

    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._inner = REAL_RESAMPLER(*args, **kwargs)

    def resample(self, frame: Any) -> Any:
        out = self._inner.resample(frame)
        CountingResampler.made += sum(f.samples for f in out)
        return out


REAL_RESAMPLER = av.AudioResampler


def test_decoding_stops_at_the_limit_when_no_length_is_stated(monkeypatch: pytest.MonkeyPatch) -> None:
    data = state_length(flac(20 * 60), 0)  # twenty minutes of silence, length unknown
    monkeypatch.setattr(av, "AudioResampler", CountingResampler)
    monkeypatch.setattr(av.audio.resampler, "AudioResampler", CountingResampler)
    CountingResampler.made = 0
    with pytest.raises(InvalidRequest, match="minutes long; at most 1 minutes"):
        WhisperTranscriber(no_model, max_audio_s=60).transcribe(data, "silence.flac")
    # One minute and at most one group of samples (500,000 input samples, about a minute at 8 kHz) past it.
    assert 60 * 16000 < CountingResampler.made < 3 * 60 * 16000


def test_a_recording_within_the_limit_decodes_whole() -> None:
    data = flac(90, tone=True)
    ((start, samples),) = decode_windows(data, "tone.flac", window_s=120, max_s=90)
    assert start == 0 and len(samples) == 90 * 16000 and samples.dtype == np.float32
    assert 0.1 < float(np.sqrt(np.mean(np.square(samples)))) < 0.2  # 8000/32768 peak, sine RMS ≈ 0.17
    assert sum(len(w) for _, w in decode_windows(state_length(data, 0), "tone.flac", max_s=90)) == 90 * 16000
