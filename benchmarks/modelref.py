"""Which GGUF file a benchmark uses, and under which name `inhouse serve` knows it.

A catalog name is resolved by inhouse's own registry (in a subprocess, so the harness never loads the
package's heavy parts) and pulled when absent; a path to a ``.gguf`` is registered with
``inhouse models add`` under ``bench-<stem>``. Both servers and the in-process baseline then read the
very same file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers import inhouse_env

_RESOLVE_SNIPPET = """
import json, sys
from pathlib import Path
from inhouse.cli.common import open_services, settings_from
services = open_services(settings_from(Path(sys.argv[2])))
try:
    spec = services.registry.resolve(sys.argv[1])
    path = getattr(spec, "path", None)
    print(json.dumps({"path": str(path) if path else None,
                      "present": bool(path) and Path(path).is_file()}))
finally:
    services.close()
"""


class ModelResolveError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelRef:
    serve_name: str  # the --model of `inhouse serve` and the `model` of requests
    path: Path  # the GGUF file
    label: str  # used in result file names

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def _env() -> dict[str, str]:
    return {**os.environ, **inhouse_env()}


def _inhouse(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inhouse.cli.main", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        env=_env(),
    )


def _registry_lookup(name: str, data_dir: Path) -> tuple[Path | None, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", _RESOLVE_SNIPPET, name, str(data_dir)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        env=_env(),
    )
    if proc.returncode != 0:
        raise ModelResolveError(f"inhouse could not resolve {name!r}: {proc.stderr.strip()[-800:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return (Path(found["path"]) if found["path"] else None), bool(found["present"])


def resolve_model(arg: str, data_dir: Path, say: Callable[[str], None] = print) -> ModelRef:
    candidate = Path(arg).expanduser()
    if arg.endswith(".gguf") or candidate.is_file():
        if not candidate.is_file():
            raise ModelResolveError(f"no such file: {candidate}")
        stem = re.sub(r"[^a-z0-9.-]+", "-", candidate.stem.lower()).strip("-")
        name = f"bench-{stem}"
        proc = _inhouse(["models", "add", str(candidate.resolve()), "--name", name], data_dir)
        if proc.returncode != 0 and "exist" not in (proc.stdout + proc.stderr).lower():
            raise ModelResolveError(f"`inhouse models add` failed: {(proc.stdout + proc.stderr).strip()[-800:]}")
        return ModelRef(serve_name=name, path=candidate.resolve(), label=stem)
    path, present = _registry_lookup(arg, data_dir)
    if not present:
        say(f"[model] {arg} is not present in {data_dir}; running `inhouse models pull {arg}` …")
        proc = _inhouse(["models", "pull", arg], data_dir)
        if proc.returncode != 0:
            raise ModelResolveError(f"`inhouse models pull {arg}` failed: {(proc.stdout + proc.stderr)[-800:]}")
        path, present = _registry_lookup(arg, data_dir)
    if path is None or not present:
        raise ModelResolveError(f"{arg} has no model file after pulling")
    return ModelRef(serve_name=arg, path=path, label=arg)
