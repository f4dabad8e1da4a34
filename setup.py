"""Build hook: compiles the hot path (respkv/compiled.py's MODULES) with mypyc when a wheel is
built (``pip install .``). Everything else about the package is in pyproject.toml.

Not compiled: an editable install (``pip install -e .``: edits must take effect without a
rebuild), an sdist, or any build with ``RESPKV_PURE_PYTHON=1`` in the environment.
``RESPKV_COMPILE=1`` compiles for any command (respkv/testing/build.py: ``setup.py build_ext
--inplace`` in a copy of the tree). If mypyc is missing or refuses the modules, or the C
compiler fails, the build warns and installs the sources alone, which run the same (only
slower)."""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _modules() -> tuple[str, ...]:
    namespace: dict[str, object] = {}
    with open(os.path.join(HERE, "respkv", "compiled.py"), encoding="utf-8") as f:
        exec(compile(f.read(), "respkv/compiled.py", "exec"), namespace)
    return namespace["MODULES"]  # type: ignore[return-value]


def _warn(message: str) -> None:
    print(f"respkv setup.py: {message}; installing the pure-Python modules", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the sources when compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 (any compiler or toolchain failure)
            # All or none: mypyc's per-module stubs need its shared library.
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            _warn(f"compiling with mypyc failed ({e})")


def _ext_modules() -> list[object]:
    if os.environ.get("RESPKV_PURE_PYTHON"):
        return []
    if "bdist_wheel" not in sys.argv and not os.environ.get("RESPKV_COMPILE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return []
    paths = [m.replace(".", "/") + ".py" for m in _modules()]
    try:
        return list(mypycify(paths, opt_level="3", debug_level="0", group_name="respkv"))
    except BaseException as e:  # noqa: BLE001 (mypyc exits on a type error)
        _warn(f"mypyc refused the modules ({e!r})")
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
