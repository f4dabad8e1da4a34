"""A 3-node local cluster: the coordinator's per-consistency-level figures reach /metrics."""

from __future__ import annotations

import urllib.request

import pytest

from respkv.testing.cluster import LocalCluster
from respkv.testing.procs import free_port

pytestmark = pytest.mark.slow


def test_metrics_per_consistency_level() -> None:
    mport = free_port()
    cluster = LocalCluster(3, engine="memory", per_node={0: ["--metrics-port", str(mport)]})
    try:
        r = cluster.client(0)
        for i in range(20):
            assert r.set(f"k{i}", "v")
            assert r.get(f"k{i}") == b"v"
        r.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        cluster.stop()
    lines = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
             for ln in text.splitlines() if ln.startswith("respkv_coordinator_")}
    assert lines['respkv_coordinator_requests_total{kind="write",level="quorum"}'] >= 20
    assert lines['respkv_coordinator_requests_total{kind="read",level="quorum"}'] >= 20
    assert lines['respkv_coordinator_failed_total{kind="write",level="quorum"}'] == 0
    assert lines['respkv_coordinator_time_seconds_total{kind="read",level="quorum"}'] > 0
    # per-level latency histograms: cumulative buckets ending at +Inf == the count
    count = lines['respkv_coordinator_duration_seconds_count{kind="write",level="quorum"}']
    assert count >= 20
    assert lines['respkv_coordinator_duration_seconds_bucket{kind="write",level="quorum",le="+Inf"}'] == count
