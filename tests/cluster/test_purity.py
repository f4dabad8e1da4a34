"""respkv.cluster is pure: no module imports I/O, clocks, randomness or concurrency."""

from __future__ import annotations

import ast
from pathlib import Path

import respkv.cluster

FORBIDDEN = {"trio", "socket", "os", "time", "random", "asyncio", "threading"}
PACKAGE = Path(respkv.cluster.__file__).parent


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            roots.add("__import__")
    return roots


def test_cluster_modules_import_nothing_impure() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 5
    offenders = {
        str(f.relative_to(PACKAGE)): sorted(imported_roots(ast.parse(f.read_text())) & (FORBIDDEN | {"__import__"}))
        for f in files
    }
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_checker_catches_forbidden_imports() -> None:
    src = "import os.path\nfrom time import monotonic\nimport xxhash\n"
    assert imported_roots(ast.parse(src)) & FORBIDDEN == {"os", "time"}
