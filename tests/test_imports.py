"""Imports in ``fedkd/`` run one way: no cycles, and no package imports one above it.

The graph is read from the source (``ast``), so function-level imports count as much
as module-level ones: an import moved into a function to dodge a cycle is still seen.
"""

import ast
from pathlib import Path

FEDKD = Path(__file__).resolve().parents[1] / "fedkd"

# Bottom to top: a module may import from its own package and from those before it.
LAYERS = ["config", "protocol", "data", "learning", "faults", "knowledge", "privacy", "training", "results",
          "strategies", "rules", "client", "server", "audit", "runtime", "cli"]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(FEDKD.rglob("*.py")):
        parts = list(path.relative_to(FEDKD.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the fedkd modules it imports anywhere in its source."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return LAYERS.index(top) if top in LAYERS else -1


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_package_has_a_layer():
    assert all(layer(m) >= 0 for m in modules() if m != "fedkd"), [m for m in modules() if layer(m) < 0]


def test_no_package_imports_one_above_it():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if m != "fedkd" and layer(t) > layer(m))
    assert upward == []


def test_the_client_app_leaves_the_servers_heavy_libraries_unimported():
    """Every Ray actor and SuperNode imports the ClientApp before its first round:
    pandas (results tables), scipy.stats and dp-accounting (privacy accounting) cost
    it about two seconds and belong to the server."""
    import subprocess
    import sys

    heavy = ("pandas", "scipy.stats", "dp_accounting")
    code = f"import sys, fedkd.client.app; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
