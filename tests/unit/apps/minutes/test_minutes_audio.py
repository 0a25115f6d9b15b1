"""Audio input: unreadable bytes and silence are refused before any model loads."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

import pytest

from inhouse.apps.minutes.audio import WhisperTranscriber, decode_windows, ensure_whisper, measure_audio
from inhouse.errors import DocumentRejected, InvalidRequest, Unavailable


def wav(samples: list[float], rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(s * 32767)) for s in samples))
    return buf.getvalue()


def no_model() -> Path:
    raise AssertionError("the model must not load for input that is refused first")


def test_silence_is_refused() -> None:
    t = WhisperTranscriber(no_model)
    with pytest.raises(InvalidRequest, match="silent") as exc:
        t.transcribe(wav([0.0] * 32000), "silence.wav")
    assert exc.value.code == "no_speech"


NOT_AUDIO = [b"hello, I am not audio" * 50, b"RIFF\x00\x00\x00\x00WAVEjunk", b"ID3" + b"\x00" * 64]


@pytest.mark.parametrize("data", NOT_AUDIO)
def test_not_audio_is_rejected(data: bytes) -> None:
    with pytest.raises(DocumentRejected, match="not an audio file"):
        WhisperTranscriber(no_model).transcribe(data, "meeting.mp3")


def test_too_long_is_refused() -> None:
    tone = [0.3 * math.sin(2 * math.pi * 440 * i / 16000) for i in range(16000 * 3)]
    with pytest.raises(InvalidRequest, match="minutes long"):
        WhisperTranscriber(no_model, max_audio_s=1.0).transcribe(wav(tone), "long.wav")


def test_decode_and_level() -> None:
    tone = [0.5 * math.sin(2 * math.pi * 440 * i / 8000) for i in range(8000)]
    ((start, samples),) = decode_windows(wav(tone, rate=8000), "tone.wav")  # resampled to 16 kHz mono
    assert start == 0 and abs(len(samples) - 16000) < 200
    level = measure_audio(wav(tone, rate=8000), "tone.wav")
    assert abs(level.seconds - 1) < 0.02 and 0.3 < level.rms < 0.4
    with pytest.raises(DocumentRejected):
        measure_audio(b"", "empty.wav")


def test_missing_model_packages_say_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inhouse.apps.minutes.audio.locate_package_dir", lambda name: None)
    with pytest.raises(Unavailable, match="inhouse models pull whisper-base"):
        ensure_whisper(tmp_path)
