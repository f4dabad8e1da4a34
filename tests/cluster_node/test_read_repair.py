"""Read repair on real processes: blocking (before the reply), none, and read_repair_chance."""

from __future__ import annotations

import pytest

from respkv.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.slow


def stale_replica(c: LocalCluster, key: str) -> None:
    """n2 misses a write of ``key`` (killed meanwhile; no hints, no anti-entropy)."""
    a = c.client(0)
    assert a.execute_command("SET", key, "old", "W", "ALL")  # every replica has it
    c.kill(2)
    c.wait_converged([0, 1])
    assert a.set(key, "new")  # W=2: n0 and n1
    c.restart(2)
    c.wait_converged()
    assert c.client(2).execute_command("GET", key, "R", "1") == b"old"  # its own copy


OFF = ("--hinted-handoff", "no", "--anti-entropy-interval-ms", "0")


def test_blocking_read_repair_fixes_the_stale_replica_before_the_reply(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, *OFF, "--read-repair", "blocking")
    stale_replica(c, "rr")
    assert c.client(0).execute_command("GET", "rr", "R", "ALL") == b"new"
    # blocking: n2 was repaired before that reply left, so its own copy is new right away
    assert c.client(2).execute_command("GET", "rr", "R", "1") == b"new"
    assert c.info(0)["read_repairs"] >= 1


def test_no_read_repair_leaves_the_replica_stale(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, *OFF, "--read-repair", "none")
    stale_replica(c, "rn")
    assert c.client(0).execute_command("GET", "rn", "R", "ALL") == b"new"
    assert c.client(2).execute_command("GET", "rn", "R", "1") == b"old"
    assert c.info(0)["read_repairs"] == 0


def test_read_repair_chance_repairs_replicas_a_read_did_not_need(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(3, *OFF, "--read-repair", "background",
                                   "--read-repair-chance", "1.0")
    stale_replica(c, "rc")
    # R=1 on n0 answers from its own copy, but the chance makes it ask n1 and n2 too
    assert c.client(0).execute_command("GET", "rc", "R", "1") == b"new"
    wait_until(lambda: c.client(2).execute_command("GET", "rc", "R", "1") == b"new", 10,
               "n2 repaired in the background")
    assert c.info(0)["read_repair_chance_reads"] >= 1
