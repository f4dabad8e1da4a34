"""Fixtures for the compatibility suite: real server processes, flushed between tests.

Session servers (bound to 127.0.0.1 on free ports, stopped by PID at the end):

* ``respkv_mem``  -- respkv with the memory engine: protocol and command semantics.
* ``respkv_lsm``  -- respkv with the default (LSM) engine, when ``respkv.storage.lsm`` imports.
* ``redis_srv``   -- a real redis-server; tests that need it are skipped, with the reason, only
  when no redis-server binary exists (``compat/setup.sh`` installs it).

Every test that uses a server starts from empty databases on it (FLUSHALL before the test), and
fails if the server process died during the test.

Hypothesis: profiles ``compat-dev`` (default, sized for ~3 minutes on 2 cores) and ``ci`` (more
examples) are registered here; select with ``--hypothesis-profile ci``. The differential tests
scale their example counts from the loaded profile's ``max_examples`` (``rawresp.examples``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from rawresp import COMPARED, flushall

from respkv.testing.procs import ServerProcess, redis_server_path, start_redis, start_respkv

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# A long hunt for mismatches, run by hand: pytest compat --hypothesis-profile deep
settings.register_profile("deep", parent=settings.get_profile("ci"), max_examples=3000)

SERVER_FIXTURES = ("respkv_mem", "respkv_lsm", "redis_srv")


def _stop(sp: ServerProcess) -> None:
    sp.stop()
    if sp.dir and os.path.isdir(sp.dir):
        shutil.rmtree(sp.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def respkv_mem() -> Iterator[ServerProcess]:
    sp = start_respkv(engine="memory")
    yield sp
    _stop(sp)


@pytest.fixture(scope="session")
def respkv_lsm() -> Iterator[ServerProcess]:
    try:
        import respkv.storage.lsm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"respkv.storage.lsm does not import ({e}); no default-engine server")
    sp = start_respkv()
    yield sp
    _stop(sp)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[ServerProcess]:
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed: run `bash compat/setup.sh` (apt-get installs it)")
    sp = start_redis()
    yield sp
    _stop(sp)


@pytest.fixture(autouse=True)
def _flush_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    """FLUSHALL every server this test uses before it runs; after it, check they are alive."""
    used = [request.getfixturevalue(n) for n in SERVER_FIXTURES if n in request.fixturenames]
    for sp in used:
        _check_alive(sp)
        flushall(sp.port)
    yield
    for sp in used:
        _check_alive(sp)


def _check_alive(sp: ServerProcess) -> None:
    if sp.proc.poll() is not None:
        pytest.fail(f"server on port {sp.port} exited with {sp.proc.returncode}; log:\n{sp.log()[-4000:]}")


@pytest.fixture
def both(respkv_mem: ServerProcess, redis_srv: ServerProcess) -> tuple[ServerProcess, ServerProcess]:
    """(respkv, redis-server), both flushed."""
    return respkv_mem, redis_srv


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if COMPARED:
        total = sum(COMPARED.values())
        terminalreporter.write_sep("-", "compat differential summary")
        terminalreporter.write_line(
            f"compat: compared {total} replies over {len(COMPARED)} commands"
        )
        top = ", ".join(f"{k}={v}" for k, v in sorted(COMPARED.items()))
        terminalreporter.write_line(f"compat: per command: {top}")
