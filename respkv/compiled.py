"""The compiled hot path: which modules ``pip install .`` compiles with mypyc, and which of them
this process is running compiled.

The modules below are plain, fully typed Python; setup.py hands them to mypyc when it builds a
wheel (``pip install .``), and each is then imported from its extension module instead of its
source. Nothing else changes: the same source runs uncompiled in an editable install
(``pip install -e .``, the development and CI form, where an edit must take effect at once), with
``RESPKV_PURE_PYTHON=1`` set at install time, or when the build finds no C compiler (setup.py
then warns and installs the sources alone). INFO server's ``compiled_modules`` says which form
a node runs; bench/bench_cluster.py prints it.

Contract for a module on the list: nothing may rely on its functions being Python functions
(a compiled function is not a descriptor, so it cannot become a method by assignment:
respkv/cluster/messages.py exists for that reason), and classes defined in it may not be
subclassed outside it. tests/test_compiled.py builds the list and runs the tests of these
modules, and a cluster, against the compiled form.

Measured (docs/cluster.md, "Figures"): the three servers' CPU per replicated write falls by
about a tenth.
"""

from __future__ import annotations

import importlib

MODULES: tuple[str, ...] = (
    "respkv.cluster.codec",
    "respkv.cluster.hashing",
    "respkv.cluster.quorum",
    "respkv.cluster.ring",
    "respkv.cluster.versions",
    "respkv.cluster.wire",
    "respkv.node.replica",
)


def is_compiled(module: str) -> bool:
    """True when ``module`` was imported from an extension module (not from its source)."""
    path = getattr(importlib.import_module(module), "__file__", "") or ""
    return not path.endswith((".py", ".pyc"))


def compiled_modules() -> list[str]:
    """The modules of ``MODULES`` this process runs compiled."""
    return [m for m in MODULES if is_compiled(m)]
