"""_library's log router: where llama.cpp put a model's weights, and which of its lines reach the user (no llama.cpp
needed)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from inhouse.engine.backends.llama_cpp._library import LogRouter


def test_weight_buffer_lines_are_recorded_by_buffer_type() -> None:
    router = LogRouter(SimpleNamespace(llama_log_callback=lambda fn: fn))
    router._on_log(2, b"load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n", None)
    router._on_log(2, b"load_tensors:          AMX model buffer size =    60.00 MiB\n", None)
    router._on_log(2, b"llama_context:        CPU compute buffer size =    12.00 MiB\n", None)  # not weights
    router._on_log(3, b"load_tensors: CPU_REPACK model buffer size = 1.00 MiB\n", None)  # only INFO lines
    assert router.weight_buffers == [("CPU_Mapped", 92.1), ("AMX", 60.0)]


def test_a_warning_about_a_repair_llama_cpp_makes_itself_is_not_shown_as_one(caplog: pytest.LogCaptureFixture) -> None:
    router = LogRouter(SimpleNamespace(llama_log_callback=lambda fn: fn))
    with caplog.at_level(logging.INFO, logger="inhouse.engine.backends.llama_cpp"):
        router._on_log(3, b"load: control-looking token: 128247 '</s>' was not control-type; this is probably a bug "
                          b"in the model. its type will be overridden\n", None)
        router._on_log(3, b"llama_context: n_ctx_per_seq (4096) < n_ctx_train (32768)\n", None)
    assert [(r.levelno, r.getMessage()[:31]) for r in caplog.records] == [
        (logging.INFO, "llama.cpp: load: control-lookin"), (logging.WARNING, "llama.cpp: llama_context: n_ctx")]
