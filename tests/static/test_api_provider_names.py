"""The API knows no provider by name: what it must know of one comes from the registry its workers write
(``octavia_mesh.common.capabilities``), so that a provider changes in its own code only (issue 11).

This fails on a string constant naming an in-tree provider in the API's source, outside the places where the
name is configuration or Octavia's contract: the settings' defaults (the enabled providers and the default
one) and Octavia's deprecated ``octavia`` alias of ``amphora``. The amphora *resource* (``/amphorae``) is not
a provider: its module is left out. Docstrings are prose and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "services" / "api" / "src" / "octavia_mesh" / "api"
NAMES = {"amphora", "noop"}
#: Where the names are configuration or Octavia's wire contract, not provider knowledge.
ALLOWED = {
    API / "settings.py": NAMES,  # enabled providers and the default provider
    API / "resources" / "providers.py": {"amphora"},  # ALIASES = {"octavia": "amphora"}, Octavia's alias
    API / "resources" / "amphorae.py": {"amphora"},  # the amphora resource's wrapper and fault label
}


def _names_in(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in docstrings
    ]


def test_the_api_names_no_provider() -> None:
    found = []
    for path in sorted(API.rglob("*.py")):
        allowed = ALLOWED.get(path, set())
        found += [f"{path.relative_to(API)}:{line}: {name!r}" for line, name in _names_in(path) if name not in allowed]
    assert not found, "provider facts belong in the registry (common/capabilities.py), not in the API:\n" + "\n".join(
        found
    )


def test_the_check_sees_a_provider_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""A docstring naming amphora."""\nLOCAL = ("amphora",)\nif provider == "noop":\n    pass\n')
    assert _names_in(sample) == [(2, "amphora"), (3, "noop")]
