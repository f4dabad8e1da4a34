"""Anti-entropy on real processes: with hinted handoff off, a replica that was down misses
writes; `respkv admin repair` (the CLI, with its progress bar) brings it back in line, streaming
only the divergent keys."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from respkv.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow


def admin(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respkv.cli", "admin", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=120)


def test_admin_repair_converges_a_replica_that_missed_writes(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, "--hinted-handoff", "no", "--anti-entropy-interval-ms", "0",
                                   "--read-repair", "none")
    a = c.client(0)
    pipe = a.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"k{i}", f"v{i}")
    pipe.execute()
    c.kill(2)
    c.wait_converged([0, 1])
    for i in range(0, 2000, 100):  # 1% of the keys change while n2 is down (W=2 of n0, n1)
        assert a.set(f"k{i}", f"new{i}")
    c.restart(2)
    c.wait_converged()
    stale = sum(c.client(2).execute_command("GET", f"k{i}", "R", "1") != f"new{i}".encode()
                for i in range(0, 2000, 100))
    assert stale == 20  # n2's own copies are old: nothing repaired them yet
    out = admin(c.ports[2], "repair", "start")
    assert out.returncode == 0, out.stderr
    assert "%" in out.stderr  # the progress bar
    status = json.loads(admin(c.ports[2], "--json", "repair", "status").stdout)
    assert status["state"] == "done", status
    result = status["result"]
    assert result["keys_received"] >= 20
    data_bytes = result.get("data_bytes", 0)
    print(f"repair: {result}")
    for i in range(0, 2000, 100):
        assert c.client(2).execute_command("GET", f"k{i}", "R", "1") == f"new{i}".encode()
    # only the divergent ranges were streamed: far less than the data itself
    sent = result["bytes_sent"] + result["bytes_received"]
    if data_bytes:
        assert sent < data_bytes, (sent, data_bytes)
