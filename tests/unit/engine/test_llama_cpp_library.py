"""_library's log router records where llama.cpp put a model's weights (no llama.cpp needed)."""

from __future__ import annotations

from types import SimpleNamespace

from inhouse.engine.backends.llama_cpp._library import LogRouter


def test_weight_buffer_lines_are_recorded_by_buffer_type() -> None:
    router = LogRouter(SimpleNamespace(llama_log_callback=lambda fn: fn))
    router._on_log(2, b"load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n", None)
    router._on_log(2, b"load_tensors:          AMX model buffer size =    60.00 MiB\n", None)
    router._on_log(2, b"llama_context:        CPU compute buffer size =    12.00 MiB\n", None)  # not weights
    router._on_log(3, b"load_tensors: CPU_REPACK model buffer size = 1.00 MiB\n", None)  # only INFO lines
    assert router.weight_buffers == [("CPU_Mapped", 92.1), ("AMX", 60.0)]
