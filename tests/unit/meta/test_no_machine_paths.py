"""No file in src/, tests/ or benchmarks/ names an absolute path of a particular machine.

The rule. An absolute path starts with ``/`` at the start of a line or after a space, quote, backtick, ``=``,
``(``, ``[``, ``{``, ``,`` or ``:`` (so ``https://host/home/x`` and ``tok/s`` are not paths). It is
machine-specific when it lies where only one machine's users, checkouts or scratch files live:

* ``/work``, ``/root``, ``/scratch``, alone or with anything below them;
* a named entry below ``/home``, ``/Users``, ``/mnt``, ``/media``, ``/srv``, ``/opt``, ``/tmp``, ``/var/tmp``
  or ``/private`` (a user's directory below ``/home``, a run's directory below ``/tmp``); the bare directory
  (``/tmp``) is not a machine's path;
* a Windows profile (``C:\\Users\\name``).

Locations the operating system defines the same on every machine are allowed: ``/proc/cpuinfo``, ``/sys/…``,
``/dev/shm``, ``/usr/bin/chromium``, ``/etc/…``, ``/bin/sh``. So is ``~/…`` (a user's own home, wherever it is).
``ALLOWED`` names the few exceptions, each with its file and reason: made-up text that only looks like a path.
Code finds the repository from its own location and data in the data directory; tests use ``tmp_path``; the
evaluation corpus comes from ``inhouse.eval_corpus``; benchmark results record repository-relative paths
(``benchmarks/results.py``). Binary files (images, PDFs, models) are not read.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCANNED = ("src", "tests", "benchmarks")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
# path → why it is not a path of a machine, in any file
# (file, path) → why it is not a path of a machine
ALLOWED = {
    ("src/inhouse/governance/pii/company_corpus.py", "/srv/app"): "a made-up server path inside generated ticket "
    "text (a stack trace), the PII evaluation's test data",
}
_BOUNDARY = r"(?:^|(?<=[\s\"'`=(\[{,:]))"
MACHINE_PATH = re.compile(
    _BOUNDARY + r"(?:/(?:work|root|scratch)(?![\w.-])"
    r"|/(?:home|Users|mnt|media|srv|opt|tmp|var/tmp|private)/[\w.@~+-]+)"
    r"|\b[A-Za-z]:\\\\?Users\\\\?[\w.-]+",
    re.MULTILINE,
)


def machine_paths(text: str) -> list[str]:
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def _text_files() -> list[Path]:
    out: list[Path] = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            rel = path.relative_to(REPO)
            if not path.is_file() or SKIPPED_DIRS & set(rel.parts) or rel.parts[:3] == ("benchmarks", "results",
                                                                                        "logs"):
                continue
            data = path.read_bytes()
            try:
                if b"\0" not in data and data.decode("utf-8"):
                    out.append(path)
            except UnicodeDecodeError:
                continue
    return out


# Built from a bare "/": the examples must not read as machine paths to a scanner of this repository themselves.
R = "/"


@pytest.mark.parametrize(("text", "found"), [
    (f'CORPUS = Path("{R}work/shared/corpus")', [f"{R}work"]),
    (f"--data-dir {R}tmp/bench-dd --out-dir x", [f"{R}tmp/bench-dd"]),
    (f'"gguf": "{R}root/.local/share/inhouse/models/q.gguf"', [f"{R}root"]),
    (f"see {R}home/alice/notes and {R}Users/bob", [f"{R}home/alice", f"{R}Users/bob"]),
    (f"log: {R}var{R}tmp{R}run-7.log", [f"{R}var{R}tmp{R}run-7.log"]),
    (r"C:\Users\dev\repo", [r"C:\Users\dev"]),
    ("/proc/cpuinfo /sys/fs/cgroup /dev/shm /usr/bin/chromium /etc/hosts /bin/sh", []),
    (f"https://example.com{R}home/alice http://h{R}work/x 200/200 tok/s ~/.local/share/inhouse", []),
    ("tempfile in /tmp, or /tmp alone; /workspace is another word", []),
])
def test_the_rule(text: str, found: list[str]) -> None:
    assert machine_paths(text) == found


def test_no_file_names_a_machine_path() -> None:
    files = _text_files()
    assert len(files) > 100, "the scan found the source tree"
    bad = [f"{p.relative_to(REPO)}:{n}: {hit}" for p in files
           for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
           for hit in machine_paths(line)
           if p.resolve() != Path(__file__).resolve() and (p.relative_to(REPO).as_posix(), hit) not in ALLOWED]
    assert not bad, "absolute paths of a machine:\n" + "\n".join(bad)


def test_benchmark_results_are_written_with_repository_relative_paths(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("benchmark_results", REPO / "benchmarks" / "results.py")
    assert spec is not None and spec.loader is not None
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)  # standard library only: no need for benchmarks on sys.path
    data_dir = Path(tempfile.gettempdir()) / "bench-dd"  # outside the checkout even when pytest's --basetemp is in it
    raw = {"argv": [str(REPO / ".venv" / "bin" / "python"), "--data-dir", str(data_dir)],
           "log": REPO / "benchmarks" / "results" / "logs" / "x.log",
           "command": f"python -m benchmarks.run --data-dir {data_dir} --url http://127.0.0.1:8000/v1",
           "nested": [{"gguf": str(Path.home() / ".local" / "share" / "inhouse" / "models" / "m.gguf")}],
           "ratio": "200/200 tok/s", "n": 3}
    out = results.write_results(raw, tmp_path / "r.json")
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == {"argv": [".venv/bin/python", "--data-dir", ".../bench-dd"],
                       "log": "benchmarks/results/logs/x.log",
                       "command": "python -m benchmarks.run --data-dir .../bench-dd --url http://127.0.0.1:8000/v1",
                       "nested": [{"gguf": ".../m.gguf"}], "ratio": "200/200 tok/s", "n": 3}
    assert not machine_paths(out.read_text(encoding="utf-8"))


def test_only_one_module_locates_the_shared_corpus() -> None:
    """Code and tests take the corpus from ``inhouse.eval_corpus`` (tests: the ``eval_corpus`` fixture), so the
    rule (option, variable, ``../shared/corpus``) lives in one place; only it and its own tests spell the path."""
    allowed = {"src/inhouse/eval_corpus.py", "tests/unit/test_eval_corpus.py", "tests/e2e/test_eval_corpus_layout.py",
               "tests/unit/meta/test_no_machine_paths.py"}
    spelled = {p.relative_to(REPO).as_posix() for p in _text_files() if p.suffix == ".py"
               and re.search(r"[\"']shared[\"']\s*/|shared/corpus[\"']", p.read_text(encoding="utf-8"))}
    assert spelled <= allowed, sorted(spelled - allowed)
