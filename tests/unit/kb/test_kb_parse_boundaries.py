"""Each parser library lives in its one kb/parse module and is imported lazily (``inhouse --help`` stays instant)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "inhouse"
OWNERS = {
    "pypdfium2": "kb/parse/pdf.py",
    "docx": "kb/parse/docx.py",
    "pptx": "kb/parse/pptx.py",
    "openpyxl": "kb/parse/xlsx.py",
    "selectolax": "kb/parse/html.py",
    "markdown_it": "kb/parse/markdown.py",
    "lxml": "kb/parse/safety.py",  # safe_xml; python-docx and python-pptx use it too, inside their own code
}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_parser_libraries_stay_in_their_module() -> None:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for lib in _imported(path) & OWNERS.keys():
            assert rel == OWNERS[lib], f"{rel} imports {lib}; only {OWNERS[lib]} may"


def test_parser_libraries_are_imported_lazily() -> None:
    code = (
        "import sys, inhouse.kb.parse, inhouse.kb.chunk, inhouse.kb.document\n"
        f"loaded = [m for m in {sorted(OWNERS)!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
