"""How inhouse opens an ONNX Runtime session, for every graph it runs (the e5 encoder, the OCR detector and
recognizer): CPU only, every graph optimization, errors-only logging, and a damaged or foreign file reported as
``InvalidModelFile``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inhouse.errors import InvalidModelFile


def open_session(path: Path, threads: int) -> Any:
    """An ``InferenceSession`` of ``path`` with ``threads`` intra-op threads (1 for the parallel single-threaded runs
    of ``embed.py`` and of OCR recognition)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: the optimizer's notices are not the user's business
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types for a damaged or foreign file
        raise InvalidModelFile(f"ONNX Runtime could not load {path.name}: {exc}", param="model") from exc


def shrinking_run_options() -> Any:
    """Run options that hand the arena's memory back when a run ends (``memory.enable_memory_arena_shrinkage``):
    for graphs whose peak is large and rare, like the OCR detector's (see ``ocr.py``)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options
