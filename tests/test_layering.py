"""Package layering: modules/ and symbolic/ never import the core, and no import cycles.

Imports are read from the source (every ``import``, also those inside functions), so a cycle cannot
hide behind a function-level import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "composer": "metacompose",
    "modules": "metacompose.modules",
    "symbolic": "metacompose.symbolic",
}


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [FOLDERS[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for f in FOLDERS for p in sorted((ROOT / f).rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts ``a.b`` when a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known}


def import_graph() -> nx.DiGraph:
    mods = source_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(mods)
    for name, path in mods.items():
        for target in imports(path, name, set(mods)):
            if target != name and not name.startswith(target + "."):  # a package's own parent
                graph.add_edge(name, target)
    return graph


def test_modules_and_symbolic_never_import_the_core():
    graph = import_graph()
    for source, target in graph.edges:
        for layer in ("metacompose.modules", "metacompose.symbolic"):
            if source == layer or source.startswith(layer + "."):
                allowed = target.startswith(("metacompose.modules", "metacompose.symbolic"))
                assert allowed, f"{source} imports {target}"


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exporting its own submodules is not a cycle between ideas.
    graph.remove_edges_from(
        [(s, t) for s, t in graph.edges if t.startswith(s + ".") or s == "metacompose"]
    )
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"{len(cycles)} import cycles, e.g. {' -> '.join(cycles[0])}"


def package_of(module: str) -> str:
    """``metacompose.<subpackage>`` (or the top-level module ``metacompose.<name>``)."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_packages():
    # Modules collapsed to their subpackage: a package may use another only if that one never uses
    # it back. The top package's lazy public re-exports (metacompose/__init__.py) are excluded.
    packages = nx.DiGraph()
    for source, target in import_graph().edges:
        if source == "metacompose" or target == "metacompose":
            continue
        a, b = package_of(source), package_of(target)
        if a != b:
            packages.add_edge(a, b)
    cycles = list(nx.simple_cycles(packages))
    assert not cycles, f"{len(cycles)} package cycles, e.g. {' -> '.join(cycles[0])}"
