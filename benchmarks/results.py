"""Where benchmark results go and how they are written, so that no result file names a path of this machine.

Every benchmark writes its JSON through ``write_results``. Before writing, every absolute path inside any string
(a model file, a server's argv, a log file, the command line) is rewritten:

* inside the repository: relative to its root (``.venv/bin/python``, ``benchmarks/results/logs/…``);
* anywhere else (a data directory, the model cache, a temporary directory): only its last component behind
  ``.../`` (``.../qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``), which is what a reader needs to recognise it.

A path is a ``/`` that starts a string or follows a space, quote, ``=``, ``(``, ``[`` or ``,``, followed by at
least one name; so URLs (``http://host/v1``), ratios (``200/200``) and units (``tok/s``) are left alone.
This module uses the standard library only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
_ABSOLUTE = re.compile(r"(?:^|(?<=[\s\"'=(\[,]))/[^\s\"'=()\[\],]+")


def portable_path(path: str, repo: Path = REPO) -> str:
    """One absolute path as a result file records it (see the module docstring)."""
    p = PurePosixPath(path)
    root = PurePosixPath(repo.as_posix())
    if p == root:
        return "."
    if p.is_relative_to(root):
        return p.relative_to(root).as_posix()
    return f".../{p.name}" if p.name else "..."


def portable(value: Any, repo: Path = REPO) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every absolute path in its strings rewritten."""
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: portable_path(m.group(0), repo), value)
    if isinstance(value, dict):
        return {k: portable(v, repo) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, repo) for v in value]
    return value


def write_results(result: dict[str, Any], path: Path, *, indent: int = 2) -> Path:
    """Write ``result`` as JSON to ``path`` with portable paths; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(result), indent=indent, default=str) + "\n", encoding="utf-8")
    return path


def write_run(module: str, name: str, argv: list[str] | None, result: dict[str, Any]) -> Path:
    """``result`` with when and by which command it was measured (``python -m benchmarks.<module> ARGS``), written
    to ``benchmarks/results/<name>-<timestamp>.json``; returns the path (a chart goes beside it)."""
    import sys
    import time

    args = " ".join(argv if argv is not None else sys.argv[1:])
    return write_results({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": f"python -m benchmarks.{module} {args}",
                          **result}, RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
