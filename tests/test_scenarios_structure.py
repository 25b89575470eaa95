"""Shape of the scenarios package: short functions, no import of the service, no import circle
(issue 15). Lazy imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scenarios"
MAX_FUNCTION_LINES = 80


def _trees() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def _imports(tree: ast.Module) -> set[str]:
    """Every module a file imports (``from a import b`` gives ``a`` and ``a.b``)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_every_function_is_under_80_lines():
    long = [f"{name}.py:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for name, tree in _trees().items() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 >= MAX_FUNCTION_LINES]
    assert long == []


def test_no_import_of_the_service_and_no_circle():
    trees = _trees()
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        found = _imports(tree)
        assert not [m for m in found if m.split(".")[0] == "service"], name
        graph[name] = {"__init__" if m == "scenarios" else m.split(".")[1] for m in found
                       if m == "scenarios" or (m.startswith("scenarios.")
                                               and m.split(".")[1] in trees)} - {name}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph[start] - seen:
            if dep == target or reaches(dep, target, seen | {dep}):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []
