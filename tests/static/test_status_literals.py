"""Status words are spelled in one place: ``octavia_mesh.common.lifecycle``.

A raw ``"PENDING_UPDATE"`` in a service is how the lifecycle's copies drifted apart (issue 11); this test
fails on any string constant in the services' and the shared library's source that is a load-balancer,
operating or amphora status word (or the ``PENDING_`` prefix). Docstrings are prose and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

from octavia_mesh.common.lifecycle import AmphoraStatus, Operating, Provisioning

ROOT = Path(__file__).resolve().parents[2]
# The amphora agent is not scanned: it depends on the protos only, and speaks HAProxy's and keepalived's words.
SOURCES = [
    ROOT / "common" / "src",
    ROOT / "sdk" / "src",
    ROOT / "cli" / "src",
    *sorted((ROOT / "services").glob("*/src")),
]
HOME = ROOT / "common" / "src" / "octavia_mesh" / "common" / "lifecycle"
WORDS = {str(s) for enum in (Provisioning, Operating, AmphoraStatus) for s in enum} | {"PENDING_"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and id(node) not in skip and node.value in WORDS
    ]


def test_no_status_literal_outside_the_lifecycle() -> None:
    files = [p for src in SOURCES for p in src.rglob("*.py") if HOME not in p.parents and "_pb2" not in p.name]
    assert len(files) > 50  # the walk found the code
    found = [hit for path in files for hit in literals(path)]
    assert not found, "status words outside octavia_mesh.common.lifecycle:\n" + "\n".join(found)


def test_the_check_finds_a_literal(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""ACTIVE in prose is fine."""\nx = "PENDING_UPDATE"\ny = s.startswith("PENDING_")\n')
    hits = [h.split(": ", 1)[1] for h in literals_at(sample, tmp_path)]
    assert hits == ["'PENDING_UPDATE'", "'PENDING_'"]


def literals_at(path: Path, root: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return literals(path)
    finally:
        ROOT = saved
