"""The one place that imports ``llama_cpp`` (llama-cpp-python 0.3.36, low-level ctypes API), and the
process-wide state that mirrors state inside the C library. Private to this package: the generation
backend, the embedding encoder and the quantizer all reach llama.cpp through ``load_library`` and
``init_process``.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from typing import Any

from inhouse.errors import EngineFailure

log = logging.getLogger("inhouse.engine.backends.llama_cpp")

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous message).
_GGML_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONT = 5


class LogRouter:
    """Routes llama.cpp's log to python logging (warnings and errors only; the rest is load-time spam) and
    remembers recent error lines so that failures (a grammar that does not parse) can say why."""

    def __init__(self, lib: Any) -> None:
        self._last_level = logging.DEBUG
        self.errors: collections.deque[str] = collections.deque(maxlen=16)
        self.n_errors = 0
        self.callback = lib.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        py_level = self._last_level if level == _GGML_CONT else _GGML_LEVELS.get(level, logging.DEBUG)
        self._last_level = py_level
        if py_level < logging.WARNING or not text:
            return
        message = text.decode("utf-8", errors="replace").rstrip()
        if not message:
            return
        if py_level >= logging.ERROR:
            self.errors.append(message)
            self.n_errors += 1
        log.log(py_level, "llama.cpp: %s", message)

    def errors_since(self, mark: int) -> list[str]:
        n = min(self.n_errors - mark, len(self.errors))
        return list(self.errors)[len(self.errors) - n :] if n > 0 else []


# The only module-level state in inhouse, because it mirrors process-wide state inside the C library:
# llama_backend_init must run once per process, and llama_log_set installs ONE C callback for the whole
# process that must outlive every model (if the callback object were owned by a backend instance and
# garbage-collected after close, the next log line from llama.cpp would call freed memory).
_process_lock = threading.Lock()
_process_log: LogRouter | None = None


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
