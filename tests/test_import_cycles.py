"""No import cycles between sparsenet modules, not even ones hidden in function bodies.

A function-local ``from ..x import y`` that only exists to break a cycle hides a module in
the wrong place. The graph below has an edge for every import of a sparsenet module,
top-level or inside a function (relative imports resolved; importing a package's
submodule does not count as importing the package's ``__init__``); a strongly connected
component of more than one module is a cycle. Function-local imports of heavy third-party
libraries (matplotlib, onnx) and of modules that do not import back are fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparsenet

ROOT = Path(sparsenet.__file__).resolve().parent.parent
# The three cycles issue 19 removed: they must not come back, in either direction.
REMOVED = [
    ("sparsenet.coding.container", "sparsenet.inference"),
    ("sparsenet.pipeline.runner", "sparsenet.report"),
    ("sparsenet.distributed", "sparsenet.training"),
]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str) -> dict[str, dict[str, list[int]]]:
    """``{module: {imported module: [line numbers]}}`` over the ``.py`` files of ``package``
    under ``root``; only imports of the package's own modules are kept."""
    files = {_module_name(root, p): p for p in (root / package).rglob("*.py")}
    graph: dict[str, dict[str, list[int]]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: dict[str, list[int]] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base_parts = base_parts[: len(base_parts) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for t in targets:
                if t in files and t != mod:
                    edges.setdefault(t, []).append(node.lineno)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n    return x\n")
    (pkg / "c.py").write_text("def g():\n    import pkg.a\n")  # one way only: no cycle
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.a": [2]} and graph["pkg.a"] == {"pkg.sub.b": [1]}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycles_in_sparsenet():
    graph = import_graph(ROOT, "sparsenet")
    assert len(graph) > 100  # the whole package was read
    found = cycles(graph)
    assert found == [], f"import cycles: {found}"


@pytest.mark.parametrize("low, high", REMOVED)
def test_removed_cycles_stay_removed(low, high):
    graph = import_graph(ROOT, "sparsenet")

    def imports(a: str, b: str) -> dict[str, list[int]]:
        """Imports of ``b`` or its submodules by ``a`` or its submodules."""
        return {
            f"{m} -> {t}": lines
            for m, edges in graph.items()
            if m == a or m.startswith(a + ".")
            for t, lines in edges.items()
            if t == b or t.startswith(b + ".")
        }

    both = imports(low, high), imports(high, low)
    assert not (both[0] and both[1]), f"{low} and {high} import each other: {both}"
