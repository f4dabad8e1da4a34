"""The sans-I/O packages import no I/O, clocks or randomness (STYLE.md): they are passed in."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "respkv"
FORBIDDEN = {"trio", "socket", "os", "time", "random", "asyncio", "threading", "subprocess"}


@pytest.mark.parametrize("package", ["protocol", "commands", "cluster"])
def test_pure_package_imports(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in respkv/{package}"
    bad = []
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {name}")
    assert not bad, "\n".join(bad)
