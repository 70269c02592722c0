"""The import graph of a source tree, read with `ast` (nothing is imported), and checks over it.

Every `import` statement counts: at module level, inside functions, and under TYPE_CHECKING.
An edge goes to the most specific project module a statement names (`from a.b import c` is an
edge to `a.b.c` when that is a module, else to `a.b`); importing `a.b` does not add an edge to
the package `a` (every package `__init__` would otherwise sit in a cycle with its modules).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping


@dataclass(frozen=True)
class ImportGraph:
    """`edges[m]`: project modules that module `m` imports; `external[m]`: other top-level names."""

    edges: Mapping[str, frozenset[str]]
    external: Mapping[str, frozenset[str]] = field(default_factory=dict)


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` under `root`."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) `from ... import` statement names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, is_package: bool, node: ast.AST, known: set[str]) -> tuple[set[str], set[str]]:
    """(project modules, external top-level names) that one import statement names."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(module, is_package, node)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    project, external = set(), set()
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):  # the longest prefix that is a project module
            candidate = ".".join(parts[:end])
            if candidate in known:
                project.add(candidate)
                break
        else:
            external.add(parts[0])
    return project, external


def import_graph(root: Path, packages: Iterable[str],
                 declared: Mapping[str, Iterable[str]] | None = None) -> ImportGraph:
    """The graph of `packages` under `root`; `declared` adds edges no statement shows (a module
    loaded by name through importlib)."""
    files = module_names(root, packages)
    known = set(files)
    edges: dict[str, set[str]] = {m: set() for m in files}
    external: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                project, other = _targets(module, is_package, node, known)
                edges[module] |= project - {module}
                external[module] |= other
    for source, targets in (declared or {}).items():
        edges[source] |= set(targets)
    return ImportGraph({m: frozenset(t) for m, t in edges.items()}, {m: frozenset(t) for m, t in external.items()})


def cycles(graph: ImportGraph) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), modules sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph.edges):
        if node not in index:
            visit(node)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(graph: ImportGraph, forbidden: Mapping[str, Iterable[str]],
                     only_from: Mapping[str, str] | None = None) -> list[str]:
    """`forbidden[p]`: packages or external names no module of `p` may import;
    `only_from[name]`: the one package whose modules alone may import `name`.
    Returns one line per violation, e.g. `gsa_space.networks imports search.study`."""
    out = []
    for module in sorted(graph.edges):
        imported = set(graph.edges[module]) | set(graph.external.get(module, ()))
        for package, names in forbidden.items():
            if not _in(module, package):
                continue
            for name in sorted(names):
                for target in sorted(imported):
                    if _in(target, name):
                        out.append(f"{module} imports {target}")
        for name, allowed in (only_from or {}).items():
            if name in imported and not _in(module, allowed):
                out.append(f"{module} imports {name} (only {allowed} may)")
    return out
