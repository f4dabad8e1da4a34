"""A compiled copy of the source tree, built as ``pip install .`` builds the hot path (mypyc,
respkv/compiled.py): for tests/test_compiled.py and the benchmarks, which must measure what
users install. The copy lives apart so that its extension modules never shadow the sources
being edited; a process started with the copy as its working directory (``python -m
respkv.cli``) imports the compiled modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BuildError(RuntimeError):
    pass


def build_compiled_tree(dest: str, with_tests: bool = False) -> str:
    """Copy respkv/ (and tests/ when asked) with setup.py and pyproject.toml into ``dest`` and
    build the compiled modules in place. Returns ``dest``. Raises BuildError with the build's
    output when mypyc or the compiler fails (setup.py would fall back to the sources)."""
    os.makedirs(dest, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".hypothesis")
    for name in ("respkv", "tests") if with_tests else ("respkv",):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dest, name), ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), os.path.join(dest, name))
    env = {**os.environ, "RESPKV_COMPILE": "1"}
    env.pop("RESPKV_PURE_PYTHON", None)
    env.pop("PYTHONPATH", None)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=dest, env=env, capture_output=True, text=True, timeout=900)
    out = build.stdout[-3000:] + build.stderr[-3000:]
    if build.returncode != 0 or "installing the pure-Python modules" in build.stderr:
        raise BuildError(out)
    return dest
