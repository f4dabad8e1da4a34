"""`respkv admin status` against real nodes: a single node (plain, with a password) and a cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from respkv.admin import parse_info
from respkv.testing.cluster import LocalCluster
from respkv.testing.procs import free_port, start_respkv


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respkv.cli", "admin", "status", *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_parse_info() -> None:
    text = ("# Server\r\nredis_version:7.0.15\r\nos:Linux 6.1 x86_64\r\nuptime_in_seconds:12\r\n\r\n"
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=900\r\n"
            "# Latencystats\r\nlatency_percentiles_usec_get:p50=1.000,p99=2.000,p99.9=3.000\r\n")
    info = parse_info(text)
    assert info["server"] == {"redis_version": "7.0.15", "os": "Linux 6.1 x86_64",
                              "uptime_in_seconds": 12}
    assert info["keyspace"]["db0"] == {"keys": 3, "expires": 1, "avg_ttl": 900}
    assert info["latencystats"]["latency_percentiles_usec_get"] == {
        "p50": 1.0, "p99": 2.0, "p99.9": 3.0}


def test_status_of_a_single_node() -> None:
    sp = start_respkv("--requirepass", "pw", engine="memory")
    try:
        r = admin("--port", str(sp.port))
        assert r.returncode == 1
        assert r.stderr.startswith(f"respkv admin: 127.0.0.1:{sp.port}: NOAUTH ")
        r = admin("--port", str(sp.port), "--password", "nope")
        assert r.returncode == 1 and "WRONGPASS" in r.stderr
        r = admin("--port", str(sp.port), "--password", "pw")
        assert r.returncode == 0, r.stderr
        rows = dict(line.split(None, 1) for line in r.stdout.splitlines() if line)
        assert rows["node"] == f"127.0.0.1:{sp.port}"
        assert rows["cluster"] == "no (a single node)"
        assert rows["storage"].startswith("memory, appendfsync everysec")
        j = admin("--port", str(sp.port), "--password", "pw", "--json")
        assert j.returncode == 0
        data = json.loads(j.stdout)
        assert data["summary"]["port"] == sp.port
        assert data["summary"]["cluster"] is False
        assert data["info"]["server"]["process_id"] == sp.pid
    finally:
        sp.stop()


def test_unreachable_node() -> None:
    r = admin("--port", str(free_port()), "--timeout", "2")
    assert r.returncode == 1
    assert "cannot connect" in r.stderr


@pytest.mark.slow
def test_status_of_a_cluster_node_lists_its_peers() -> None:
    cluster = LocalCluster(3, engine="memory")
    try:
        r = admin("--port", str(cluster.ports[1]))
        j = json.loads(admin("--port", str(cluster.ports[1]), "--json").stdout)
    finally:
        cluster.stop()
    assert r.returncode == 0, r.stderr
    assert "cluster   node n1 in dc1: 3 of 3 nodes up" in r.stdout
    peer_lines = [ln.split() for ln in r.stdout.splitlines() if ln.startswith(("n0 ", "n2 "))]
    assert [p[0] for p in peer_lines] == ["n0", "n2"] and all(p[2] == "up" for p in peer_lines)
    assert j["summary"]["node_id"] == "n1" and set(j["summary"]["peers"]) == {"n0", "n2"}
