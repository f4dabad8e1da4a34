"""ioredis (Node.js) against respkv: compat/ioredis/check.js must exit 0 (every reply right).

The dependency is pinned in compat/ioredis/package.json and package-lock.json; node_modules is
installed here (``npm ci``) when missing, or by compat/setup.sh. Skipped, with the reason, when
node or npm is not installed. The same script runs against redis-server as a check of the
check itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from respkv.testing.procs import ServerProcess

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ioredis")


@pytest.fixture(scope="module")
def ioredis_dir() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm are not installed: ioredis cannot run (see compat/setup.sh)")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ioredis")):
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE,
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            pytest.fail(f"npm ci failed in {HERE}:\n{p.stdout}\n{p.stderr}")
    return HERE


def run_check(ioredis_dir: str, sp: ServerProcess) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "check.js", str(sp.port)], cwd=ioredis_dir, capture_output=True,
                          text=True, timeout=120)


def test_ioredis_against_respkv(ioredis_dir: str, respkv_mem: ServerProcess) -> None:
    p = run_check(ioredis_dir, respkv_mem)
    assert p.returncode == 0, f"check.js failed against respkv:\n{p.stdout}\n{p.stderr}"
    assert "all checks passed" in p.stdout


def test_ioredis_check_itself_passes_against_redis(ioredis_dir: str, redis_srv: ServerProcess) -> None:
    p = run_check(ioredis_dir, redis_srv)
    assert p.returncode == 0, f"check.js failed against redis-server:\n{p.stdout}\n{p.stderr}"
