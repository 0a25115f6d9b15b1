"""``MinutesAssistant``: ``run`` with the configured windows and speech recognition, built once by the composition
root (``bootstrap.py``) and called by the HTTP route and ``inhouse minutes`` alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inhouse.apps.minutes.audio import WhisperTranscriber, ensure_whisper
from inhouse.apps.minutes.pipeline import MinutesOptions, Transcriber, run

if TYPE_CHECKING:
    from inhouse.apps.context import AppContext
    from inhouse.apps.minutes.schema import Minutes, MinutesInput
    from inhouse.config import Settings


@dataclass(frozen=True)
class MinutesAssistant:
    options: MinutesOptions = field(default_factory=MinutesOptions)
    transcriber: Transcriber | None = None  # None: recordings are refused, transcripts work

    async def run(self, ctx: AppContext, inp: MinutesInput) -> Minutes:
        return await run(ctx, inp, options=self.options, transcriber=self.transcriber)


def build_minutes_assistant(settings: Settings) -> MinutesAssistant:
    """From ``Settings``: the window budget, and Whisper from the model cache (loaded on the first recording)."""
    apps = settings.apps
    transcriber = WhisperTranscriber(lambda: ensure_whisper(settings.model_cache_dir), threads=apps.whisper_threads,
                                     max_audio_s=apps.max_audio_s)
    return MinutesAssistant(MinutesOptions(window_tokens=apps.minutes_window_tokens,
                                           max_windows=apps.minutes_max_windows), transcriber)
