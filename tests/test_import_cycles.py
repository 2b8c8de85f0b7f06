"""The package's import graph is acyclic: every ``lumbar_monai`` import, module-level or inside a function, is an
edge of a directed graph, and that graph has no cycle (a cycle hides the flow and breaks at import time as soon as
one of its imports moves to module level)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lumbar_monai"


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The ``lumbar_monai`` modules that ``name`` imports anywhere in its file (``from pkg import mod`` counts
    as importing ``pkg.mod`` when that is a module, else ``pkg``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.add(sub if sub in mods else module)
    # an import of a.b.c also runs a and a.b, but those are package __init__ files: count only the module named
    return {m for m in found if m in mods and m != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = _modules(root)
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_detector_finds_cycles_through_function_level_imports(tmp_path):
    pkg = tmp_path / "lumbar_monai"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "loader.py").write_text("def f():\n    from .images import g\n    return g\n")
    (pkg / "io" / "images.py").write_text("from . import radiograph\nfrom .loader import f\n")
    (pkg / "io" / "radiograph.py").write_text("import numpy\nfrom ..anatomy import X\n")
    (pkg / "anatomy.py").write_text("X = 1\n")
    graph = import_graph(pkg)
    assert graph["lumbar_monai.io.loader"] == {"lumbar_monai.io.images"}
    assert graph["lumbar_monai.io.images"] == {"lumbar_monai.io.loader", "lumbar_monai.io.radiograph"}
    assert graph["lumbar_monai.io.radiograph"] == {"lumbar_monai.anatomy"}
    assert find_cycles(graph) == [["lumbar_monai.io.images", "lumbar_monai.io.loader"]]
    (pkg / "io" / "images.py").write_text("from . import radiograph\n")
    assert find_cycles(import_graph(pkg)) == []


def test_lumbar_monai_has_no_import_cycles():
    graph = import_graph()
    assert "lumbar_monai.predictor" in graph and "lumbar_monai.io.loader" in graph
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail("import cycles: " + "; ".join(" <-> ".join(c) for c in cycles))
