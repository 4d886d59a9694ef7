"""The worker's amphora provider is layered: deps <- tasks <- flows <- providers, with no cycle.

Every import counts, including ones inside functions and under ``TYPE_CHECKING`` (which is how the old
cycle between ``providers/amphora.py`` and ``flows/*`` hid), and no module imports another's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "services" / "worker" / "src"
PACKAGE = "octavia_mesh.worker"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "octavia_mesh" / "worker").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from octavia_mesh.worker... import`` and ``import octavia_mesh.worker...``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith(PACKAGE)]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(path):
            for target in [module, *(f"{module}.{n}" for n in names)]:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles in the worker:\n" + "\n".join(cycles)


def test_layers() -> None:
    graph = _graph()
    w = PACKAGE
    below = {
        f"{w}.deps": (f"{w}.tasks", f"{w}.flows", f"{w}.providers"),
        f"{w}.tasks": (f"{w}.flows.vrrp", f"{w}.flows.maintenance", f"{w}.providers"),
    }
    wrong = []
    for name, targets in graph.items():
        forbidden = list(below.get(name, ()))
        if name.startswith(f"{w}.flows"):
            forbidden.append(f"{w}.providers")
        wrong += [f"{name} imports {t}" for t in targets if t.startswith(tuple(forbidden))]
    assert not wrong, "\n".join(wrong)


def test_no_private_names_across_modules() -> None:
    private = [
        f"{name} imports {module}.{n}"
        for name, path in _modules().items()
        for module, names in _imports(path)
        for n in names
        if n.startswith("_") and module != name
    ]
    assert not private, "\n".join(private)
