"""The runtime's layout stays clean: no import circle among its modules.

Every import counts, at module level or inside a function (a lazy import still ties the two
modules together), and importing `runtime.a.b` also runs `runtime/a/__init__.py`, so a module
outside package `runtime.a` depends on that package's `__init__` too. A circle is reported by its
files, in order."""

from __future__ import annotations

import ast
from pathlib import Path

import runtime

ROOT = Path(runtime.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(name: str, tree: ast.AST) -> set[str]:
    """The runtime modules `name` imports, as module names (a `from package import module` names
    the module; a `from module import function`, the module)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target not in MODULES:
                continue
            out.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):  # the packages on the way, unless `name` lives inside them
                parent = ".".join(parts[:i])
                if not (name == parent or name.startswith(parent + ".")):
                    out.add(parent)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imported(name, ast.parse(path.read_text(encoding="utf-8"))) for name, path in MODULES.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as one
    concrete circle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_cycle(sorted(component), edges))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v] & members):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component


def files(cycle: list[str]) -> str:
    return " -> ".join(str(MODULES[m].relative_to(ROOT.parent)) for m in cycle)


def test_no_import_circle_inside_runtime():
    found = circles(graph())
    assert not found, "import circles in runtime/:\n" + "\n".join(files(c) for c in found)


def test_the_circle_finder_names_a_circle_by_its_files():
    edges = {"runtime.model.forward": {"runtime.model.sources"}, "runtime.model.sources": {"runtime.zoo"}, "runtime.zoo": {"runtime.model.forward"}, "runtime.store.cache": set()}
    assert circles(edges) == [["runtime.model.forward", "runtime.model.sources", "runtime.zoo", "runtime.model.forward"]]
    assert files(circles(edges)[0]) == "runtime/model/forward.py -> runtime/model/sources.py -> runtime/zoo/__init__.py -> runtime/model/forward.py"


def test_lazy_imports_and_parent_packages_count():
    tree = ast.parse("def f():\n    from runtime.zoo.corpus import build_corpus\n")
    assert imported("runtime.model.sources", tree) == {"runtime.zoo.corpus", "runtime.zoo"}
    assert imported("runtime.zoo.saes", tree) == {"runtime.zoo.corpus"}  # inside the package: its __init__ is already running
    assert imported("runtime.passes.score", ast.parse("from runtime.model import forward")) == {"runtime.model.forward", "runtime.model"}
