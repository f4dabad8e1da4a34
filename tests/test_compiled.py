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

import pytest

from respkv.compiled import MODULES
from respkv.testing.build import build_compiled_tree

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
