"""The package type-checks: ``mypy respkv`` finds nothing (the settings in pyproject.toml).

Part of the suite so that an annotation that no longer matches the code fails CI like a test
would; it also keeps the door open to compiling the sans-I/O cores (docs/cluster.md, "Figures")."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_finds_no_errors_in_the_package() -> None:
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(["--cache-dir", os.path.join(ROOT, ".mypy_cache"),
                                os.path.join(ROOT, "respkv")])
    assert status == 0, out + err
