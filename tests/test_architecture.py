"""The package's shape: no import cycle, no module importing from a layer above its own, a short
top level. Every import counts, also those inside functions (a deferred import is still a
dependency); the graph is read from the source with ``ast``, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import deepemocluster

PACKAGE = Path(deepemocluster.__file__).resolve().parent
# Lowest first. A module may import from its own layer and those below it, never above. Names
# are top-level modules or packages, or a module inside one (the longest name that fits wins):
# the statistics ridge extends the network, and the model builder knows every variant.
LAYERS = (
    ("errors", "runtime", "config", "metrics", "losses"),
    ("data", "clustering"),
    ("model", "tracking"),
    ("statistics_ridge", "model.build"),
    ("checkpoint",),
    ("serving",),
    ("analysis",),
    ("training",),
    ("transfer", "study"),
    # the entry points and the Python API
    ("__init__", "__main__", "train", "evaluate", "predict", "export", "analyze"),
)
TOP_LEVEL_MODULES = 12


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (``from a import b``: a.b where b is a
    module, else a)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def layer_of(module: str) -> int:
    name = module.removeprefix("deepemocluster").removeprefix(".") or "__init__"
    fits = [
        (len(entry), i)
        for i, names in enumerate(LAYERS)
        for entry in names
        if name == entry or name.startswith(entry + ".")
    ]
    if not fits:
        raise AssertionError(f"{module} is in no layer of LAYERS")
    return max(fits)[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_a_module_takes_the_layer_of_its_longest_entry():
    assert layer_of("deepemocluster.model.network") < layer_of("deepemocluster.statistics_ridge")
    assert layer_of("deepemocluster.model.build") == layer_of("deepemocluster.statistics_ridge")
    assert layer_of("deepemocluster") == len(LAYERS) - 1


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_in_a_circle():
    assert cycles(graph()) == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in graph().items()
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_the_top_level_is_short():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MODULES, top
