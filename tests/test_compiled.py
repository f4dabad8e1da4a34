"""The compiled hot path (respkv/compiled.py): built with mypyc as ``pip install .`` builds it,
the tests of the compiled modules, and of the cluster code that calls them, pass against it.

The rest of the suite runs the modules uncompiled (CI installs editable), so this is where a
difference between the two forms shows: mypyc checks argument types at run time, and a compiled
function does not bind as a method. The build and the run happen in a copy of the tree, so the
compiled modules never shadow the sources being edited."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from respkv.compiled import MODULES
from respkv.testing.build import ROOT, build_compiled_tree

# The tests that exercise the compiled modules: their own unit tests, the coordinator and
# peer code around them, whole clusters in one process (the simulation) and in three.
TEST_PATHS = ["tests/cluster", "tests/cluster_node", "tests/node", "tests/sim",
              "tests/test_compiled_smoke.py"]


@pytest.mark.slow
def test_the_suite_of_the_compiled_modules_passes_against_them(tmp_path) -> None:
    pytest.importorskip("mypyc.build")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    tree = build_compiled_tree(str(tmp_path / "tree"), with_tests=True)
    env = {**os.environ, "RESPKV_COMPILE": "1"}
    env.pop("RESPKV_PURE_PYTHON", None)
    env.pop("PYTHONPATH", None)
    check = subprocess.run(
        [sys.executable, "-c", "from respkv.compiled import compiled_modules as c; print(c())"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == repr(list(MODULES)), check.stdout + check.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         *TEST_PATHS],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    tail = run.stdout[-6000:] + run.stderr[-3000:]
    assert run.returncode == 0, tail
    # "-ra" lists skipped tests: the smoke test must have run, not been skipped
    assert " passed" in run.stdout and "test_compiled_smoke" not in run.stdout, tail


@pytest.mark.slow
def test_pip_builds_a_compiled_wheel(tmp_path) -> None:
    """What ``pip install .`` does on a fresh machine: an isolated build (only the build
    requirements of pyproject.toml installed, from the package index) whose wheel holds every
    compiled module. Found by hand: without hiredis and xxhash among the build requirements
    mypyc refused the modules and setup.py fell back to the sources."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "*.so", ".hypothesis", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".benchmarks", "node_modules", "data"))
    env = {k: v for k, v in os.environ.items() if k not in ("RESPKV_PURE_PYTHON", "PYTHONPATH")}
    # a bare venv, as on a fresh machine: mypyc finds nothing this test process has installed
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True,
                   timeout=300)
    python = str(tmp_path / "venv" / "bin" / "python")
    run = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "-v", "-w",
                          str(tmp_path / "dist"), str(src)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "installing the pure-Python modules" not in run.stdout + run.stderr, \
        run.stdout[-5000:]
    (wheel,) = (tmp_path / "dist").glob("respkv-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    for module in MODULES:
        stem = module.replace(".", "/") + "."
        assert any(n.startswith(stem) and n.endswith(".so") for n in names), (module, names)
