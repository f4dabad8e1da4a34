"""Sloppy quorum and hinted handoff on real processes (issue 7)."""

from __future__ import annotations

import pytest
import redis

from respkv.cluster.ring import NodeInfo, Ring, natural_replicas
from respkv.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.slow


def natural(key: str, nodes: int, n: int = 3) -> tuple[str, ...]:
    ring = Ring.build(NodeInfo.make(f"n{i}", "dc1") for i in range(nodes))
    return natural_replicas(ring, key.encode(), n)


def key_on(node: str, nodes: int, not_on: str, prefix: str = "h") -> str:
    for i in range(10_000):
        k = f"{prefix}{i}"
        reps = natural(k, nodes)
        if node in reps and not_on not in reps:
            return k
    raise AssertionError("no such key")


def test_a_down_replica_gets_its_writes_by_hinted_handoff(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(4)
    # A key replicated on n3 (which we kill) and not on n0 (the coordinator).
    key = key_on("n3", 4, not_on="n0")
    fallback = next(f"n{i}" for i in range(4) if f"n{i}" not in natural(key, 4))
    assert fallback == "n0"
    a = c.client(0)
    c.kill(3)
    c.wait_converged([0, 1, 2])
    # W=ALL (3) with one natural replica down: the fallback's hint counts (sloppy quorum).
    assert a.execute_command("SET", key, "hinted", "W", "ALL")
    assert c.info(0)["hints_pending"] == 1
    assert c.client(0).info("hints")["hints_for_n3"] == 1
    c.restart(3)
    c.wait_converged()
    wait_until(lambda: c.info(0)["hints_pending"] == 0, 20, "the hint replayed")
    assert c.info(0)["hints_replayed"] >= 1
    # n3's own copy has it: R=1 on a replica answers from its own copy first.
    assert c.client(3).execute_command("GET", key, "R", "1") == b"hinted"


def test_hints_survive_a_restart_of_the_fallback(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(4)
    key = key_on("n3", 4, not_on="n0", prefix="s")
    c.kill(3)
    c.wait_converged([0, 1, 2])
    assert c.client(0).execute_command("SET", key, "kept", "W", "ALL")
    assert c.info(0)["hints_pending"] == 1
    c.kill(0)  # SIGKILL: the acknowledged hint must be on disk
    c.restart(0)
    c.wait_converged([0, 1, 2])
    assert c.info(0)["hints_pending"] == 1
    c.restart(3)
    c.wait_converged()
    wait_until(lambda: c.info(0)["hints_pending"] == 0, 20, "the hint replayed")
    assert c.client(3).execute_command("GET", key, "R", "1") == b"kept"


def test_with_hinted_handoff_off_the_write_needs_natural_replicas(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(4, "--hinted-handoff", "no", engine="memory")
    key = key_on("n3", 4, not_on="n0", prefix="o")
    c.kill(3)
    c.wait_converged([0, 1, 2])
    with pytest.raises(redis.ResponseError, match="NOREPLICAS Not enough replicas up: needed 3, up 2"):
        c.client(0).execute_command("SET", key, "x", "W", "ALL")
    assert c.client(0).execute_command("SET", key, "x", "W", "QUORUM")
    assert c.client(0).info("hints")["hinted_handoff"] == 0


def test_hints_expire_after_the_window(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(4, "--max-hint-window-ms", "1500", engine="memory")
    key = key_on("n3", 4, not_on="n0", prefix="e")
    c.kill(3)
    c.wait_converged([0, 1, 2])
    assert c.client(0).execute_command("SET", key, "late", "W", "ALL")
    assert c.info(0)["hints_pending"] == 1
    wait_until(lambda: c.info(0)["hints_pending"] == 0, 15, "the hint expired")
    assert c.info(0)["hints_expired"] == 1 and c.info(0)["hints_replayed"] == 0
