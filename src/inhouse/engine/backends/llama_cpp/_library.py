"""The one place that imports ``llama_cpp`` (llama-cpp-python 0.3.36, low-level ctypes API), and the
process-wide state that mirrors state inside the C library. Private to this package: the generation
backend, the embedding encoder, the quantizer and the self-test all reach llama.cpp through
``load_library``, ``init_process`` and ``load_model``.

**Weight buffers.** llama.cpp may place a model's weight matrices in "extra" CPU buffer types, each of which
re-lays the weights out at load time for a faster kernel: ``AMX`` (Intel AMX tiles; present only in a build
compiled for an AMX CPU, and only when the OS grants the process AMX tile state) and ``CPU_REPACK``
(interleaved Q4_0 / Q4_K / IQ4_NL / Q2_K for AVX2 / AVX-512). A weight goes to the first buffer type in the
list ``ggml_backend_dev_get_extra_bufts`` returns that supports it, else to plain CPU memory. llama.cpp's
only switch is all-or-nothing (``llama_model_params.use_extra_bufts``); ``load_model`` adds the finer
choice of dropping AMX while keeping the CPU repack, by hiding AMX from that list for the duration of one
load (the list is a static NULL-terminated array inside libggml-cpu; it is restored right after, and loads
are serialised so no other load sees it shortened). Kernels are chosen by the buffer a weight was loaded
into, so models loaded differently coexist in one process.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inhouse.errors import EngineFailure

log = logging.getLogger("inhouse.engine.backends.llama_cpp")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous message).
_GGML_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONT = 5
# Warnings llama.cpp prints while it repairs a model file itself, about nothing the user can act on: logged at INFO,
# so `inhouse ask` and `run` (which show warnings) stay quiet. Qwen2.5's GGUFs mark '</s>' as a normal token, and
# llama.cpp makes it a control token on every load ("… this is probably a bug in the model. its type will be
# overridden").
_BENIGN_WARNINGS = (b"control-looking token",)
_GGML_INFO = 2
_BUFFER_LINE = re.compile(r"(\S+) model buffer size =\s*([0-9.]+) MiB")

# Weight-buffer choices (``engine.weight_buffers`` once resolved; see the module doc and docs/hardware.md).
WEIGHT_BUFFERS = ("amx", "repack", "plain")
AMX_BUFFER = "AMX"
REPACK_BUFFER = "CPU_REPACK"
# The shared libraries that make up a llama-cpp-python build (libmtmd, the multimodal helper, is unused).
_LIBRARIES = ("libggml-base.so", "libggml-cpu.so", "libggml.so", "libllama.so")


class LogRouter:
    """Routes llama.cpp's log to python logging (warnings and errors only; the rest is load-time spam) and
    remembers recent error lines so that failures (a grammar that does not parse) can say why."""

    def __init__(self, lib: Any) -> None:
        self._last_level = logging.DEBUG
        self.errors: collections.deque[str] = collections.deque(maxlen=16)
        self.n_errors = 0
        # "<buffer type> model buffer size = N MiB" lines of the model being loaded (see load_model).
        self.weight_buffers: list[tuple[str, float]] = []
        self.callback = lib.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        py_level = self._last_level if level == _GGML_CONT else _GGML_LEVELS.get(level, logging.DEBUG)
        self._last_level = py_level
        if level == _GGML_INFO and text and b"model buffer size" in text:
            m = _BUFFER_LINE.search(text.decode("utf-8", errors="replace"))
            if m:
                self.weight_buffers.append((m.group(1), float(m.group(2))))
        if py_level < logging.WARNING or not text:
            return
        message = text.decode("utf-8", errors="replace").rstrip()
        if not message:
            return
        if py_level >= logging.ERROR:
            self.errors.append(message)
            self.n_errors += 1
        benign = py_level == logging.WARNING and any(w in text for w in _BENIGN_WARNINGS)
        log.log(logging.INFO if benign else py_level, "llama.cpp: %s", message)

    def errors_since(self, mark: int) -> list[str]:
        n = min(self.n_errors - mark, len(self.errors))
        return list(self.errors)[len(self.errors) - n :] if n > 0 else []


# The only module-level state in inhouse, because it mirrors process-wide state inside the C library:
# llama_backend_init must run once per process, and llama_log_set installs ONE C callback for the whole
# process that must outlive every model (if the callback object were owned by a backend instance and
# garbage-collected after close, the next log line from llama.cpp would call freed memory).
_process_lock = threading.Lock()
_process_log: LogRouter | None = None
_load_lock = threading.Lock()  # one model load at a time: load_model may shorten the extra-buffer list


def init_process(lib: Any) -> LogRouter:
    global _process_log
    with _process_lock:
        if _process_log is None:
            router = LogRouter(lib)
            lib.llama_log_set(router.callback, ctypes.c_void_p(0))
            lib.llama_backend_init()
            _process_log = router
        return _process_log


def address(pointer: Any) -> int:
    value = ctypes.cast(pointer, ctypes.c_void_p).value
    if not value:
        raise EngineFailure("llama.cpp returned a NULL buffer.")
    return value


def load_library() -> Any:
    import llama_cpp

    return llama_cpp


def json_object_gbnf() -> str:
    """llama-cpp-python's grammar for "any JSON object" (``response_format: json_object``)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def json_schema_gbnf(schema: str) -> str:
    """A GBNF grammar for a JSON schema (llama-cpp-python's converter; raises assorted errors on bad input)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return str(json_schema_to_gbnf(schema))


# -- model loading with a weight-buffer choice -------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # llama_model pointer (NULL when llama.cpp refused the file)
    weight_buffers: dict[str, float]  # buffer type → MiB of weights llama.cpp placed there


def _ggml(lib: Any) -> tuple[ctypes.CDLL, ctypes.CDLL, ctypes.CDLL]:
    """libggml-base, libggml and libggml-cpu as ctypes handles (already loaded by ``llama_cpp``)."""
    libdir = Path(lib.__file__).parent / "lib"
    base, ggml, cpu = (ctypes.CDLL(str(libdir / n)) for n in ("libggml-base.so", "libggml.so", "libggml-cpu.so"))
    base.ggml_backend_buft_name.restype = ctypes.c_char_p
    base.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    base.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    base.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    base.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    base.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    return base, ggml, cpu


def _extra_buffer_array(lib: Any) -> tuple[Any, list[tuple[int, str]]]:
    """The CPU device's NULL-terminated extra-buffer-type array and its (pointer, name) entries."""
    base, ggml, _ = _ggml(lib)
    dev = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    if not dev:
        return None, []
    reg = base.ggml_backend_dev_backend_reg(dev)
    fn_addr = base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not fn_addr:
        return None, []
    fn = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(fn_addr)
    array = fn(dev)
    entries: list[tuple[int, str]] = []
    i = 0
    while array and array[i]:
        ptr = int(array[i])
        entries.append((ptr, (base.ggml_backend_buft_name(ptr) or b"?").decode()))
        i += 1
    return array, entries


def extra_buffer_types(lib: Any) -> list[str]:
    """Names of the extra weight-buffer types this build offers in this process, in llama.cpp's order
    (e.g. ``["AMX", "CPU_REPACK"]``; ``AMX`` is absent when the build has no AMX code or the OS refused
    the tile state)."""
    init_process(lib)
    with _load_lock:
        return [name for _, name in _extra_buffer_array(lib)[1]]


@contextlib.contextmanager
def _extra_buffers_without(lib: Any, dropped: set[str]) -> Iterator[None]:
    array, entries = _extra_buffer_array(lib) if dropped else (None, [])
    kept = [ptr for ptr, name in entries if name not in dropped]
    if array is None or len(kept) == len(entries):
        yield
        return
    for i, ptr in enumerate([*kept, None]):
        array[i] = ptr
    try:
        yield
    finally:
        for i, (ptr, _) in enumerate(entries):
            array[i] = ptr
        array[len(entries)] = None


def load_model(lib: Any, path: Path, mparams: Any, weight_buffers: str = "amx") -> LoadedModel:
    """``llama_model_load_from_file`` with a weight-buffer choice: ``amx`` (every extra buffer type this
    build offers: AMX where present, then the CPU repack), ``repack`` (the same without AMX) or ``plain``
    (none: ``use_extra_bufts = False``). Returns where llama.cpp put the weights."""
    if weight_buffers not in WEIGHT_BUFFERS:
        raise ValueError(f"weight_buffers must be one of {WEIGHT_BUFFERS}, got {weight_buffers!r}")
    router = init_process(lib)
    mparams.use_extra_bufts = weight_buffers != "plain"
    dropped = {AMX_BUFFER} if weight_buffers == "repack" else set()
    with _load_lock, _extra_buffers_without(lib, dropped):
        router.weight_buffers = []
        model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        placed = dict(router.weight_buffers)
        router.weight_buffers = []
    return LoadedModel(model=model, weight_buffers=placed)


def system_info(lib: Any) -> str:
    """llama.cpp's compile-time feature line (``AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | …``)."""
    raw = lib.llama_print_system_info()
    return raw.decode("utf-8", errors="replace").strip() if raw else ""


# -- which build is installed (without loading it) ------------------------------------------------------


@dataclass(frozen=True)
class BuildIdentity:
    version: str  # llama-cpp-python's version, e.g. "0.3.36+inhouse.1a2b3c4d5e6f" for the patched build
    libraries_sha256: str  # over the shared libraries' names and bytes
    library_dir: str

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.version}|{self.libraries_sha256}".encode()).hexdigest()[:16]


def build_identity() -> BuildIdentity:
    """The installed llama-cpp-python build, found and hashed without importing it (~10 ms): a rebuilt or
    patched library has another identity, so answers cached per build (the hardware probe) are redone."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        raise EngineFailure("llama-cpp-python is not installed; run scripts/setup.sh.")
    libdir = Path(spec.origin).parent / "lib"
    digest = hashlib.sha256()
    for name in _LIBRARIES:
        path = libdir / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return BuildIdentity(version=version, libraries_sha256=digest.hexdigest(), library_dir=str(libdir))
