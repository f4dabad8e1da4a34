"""Multi-datacenter placement on real processes: replicas per datacenter (dc1:3, dc2:2),
LOCAL_QUORUM and EACH_QUORUM, and a datacenter surviving the loss of the other."""

from __future__ import annotations

import pytest
import redis

from respkv.node.coordinator import RTT_SAMPLE_MASK
from respkv.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow


def test_replicas_per_dc_and_local_quorum_survives_a_lost_datacenter(make_cluster) -> None:  # type: ignore[no-untyped-def]
    dcs = ["dc1", "dc1", "dc1", "dc2", "dc2"]
    c: LocalCluster = make_cluster(5, "--replicas-per-dc", "dc1:3,dc2:2", engine="memory",
                                   per_node={i: ["--dc", dc] for i, dc in enumerate(dcs)})
    east, west = c.client(0), c.client(3)
    assert c.info(0)["n_effective"] == 5
    before = [c.info(i)["replica_writes"] + c.info(i)["coordinated_writes"] for i in range(5)]
    for i in range(30):
        assert east.execute_command("SET", f"k{i}", f"v{i}", "W", "EACH_QUORUM")
    # W ALL needs every one of the 5 replicas: 3 in dc1 and 2 in dc2 -- each key on all nodes.
    assert east.execute_command("SET", "all", "x", "W", "ALL")
    wrote = [c.info(i)["replica_writes"] + c.info(i)["coordinated_writes"] - before[i]
             for i in range(5)]
    assert all(w >= 31 for w in wrote), wrote  # every node holds every key (5 = 3 + 2)
    assert west.execute_command("GET", "k7", "R", "LOCAL_QUORUM") == b"v7"
    for i in (0, 1, 2):
        c.kill(i)
    c.wait_converged([3, 4])
    # dc1 is gone: dc2 serves its local quorum (2 of its 2 replicas) for reads and writes.
    for i in range(30):
        assert west.execute_command("GET", f"k{i}", "R", "LOCAL_QUORUM") == f"v{i}".encode()
    assert west.execute_command("SET", "k1", "new", "W", "LOCAL_QUORUM")
    assert c.client(4).execute_command("GET", "k1", "R", "LOCAL_QUORUM") == b"new"
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        west.execute_command("GET", "k1", "R", "EACH_QUORUM")
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        west.execute_command("SET", "k1", "x", "W", "EACH_QUORUM")


def test_info_shows_membership_hints_repair_and_storage_sections(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, engine="memory")
    r = c.client(0)
    info = r.info("everything")
    assert info["member_n1"]["status"] == "normal" and info["member_n1"]["state"] == "up"
    assert info["node_status"] == "normal" and info["gossip_members"] == 3
    for field in ("hints_pending", "hinted_handoff", "repair_state", "read_repairs", "engine"):
        assert field in info, field
    plain = redis.Redis(port=c.ports[0]).info("hints")
    assert set(plain) >= {"hinted_handoff", "hints_pending"}


def test_staleness_estimates_in_info(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, engine="memory")
    r = c.client(0)
    for i in range(300):
        r.set(f"pbs{i}", "v")
        r.execute_command("GET", f"pbs{i}", "R", "2")
    st = r.info("staleness")
    # R+W>N is strict (exactly 1.0); ONE/ONE is a Monte Carlo estimate from measured latencies.
    assert st["staleness_quorum"]["p_0ms"] == 1.0 and st["staleness_quorum"]["trials"] == 0
    one = st["staleness_one"]
    assert one["trials"] > 0, one  # estimated from the latencies this node measured
    assert 0.0 <= one["p_0ms"] <= one["p_1ms"] <= one["p_100ms"] <= 1.0
    # 600 write and 300 read round trips; one reply in RTT_SAMPLE_MASK + 1 feeds the windows
    samples = st["staleness_samples"]
    assert samples["w"] > 0 and samples["r"] > 0
    assert samples["w"] + samples["r"] >= (600 + 300) // (RTT_SAMPLE_MASK + 1) - 1
    assert st["staleness_observed_2"]["reads"] >= 300
