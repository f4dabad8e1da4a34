"""Static checks, part of the suite so that they fail CI like a test: ``mypy respkv`` finds no
type error and ``ruff check`` no lint finding (the settings of both are in pyproject.toml; the
versions are pinned in the test extras, as a newer release can add findings)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_finds_no_errors_in_the_package() -> None:
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(["--cache-dir", os.path.join(ROOT, ".mypy_cache"),
                                os.path.join(ROOT, "respkv")])
    assert status == 0, out + err


def test_ruff_finds_nothing() -> None:
    pytest.importorskip("ruff")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "respkv", "tests",
                          "bench", "compat"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
