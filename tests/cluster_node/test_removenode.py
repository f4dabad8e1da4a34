"""Removing a member that is gone for good (``respkv admin removenode``; Cassandra's ``nodetool
removenode``): its row is written LEFT by another node, the nodes that gain its ranges refill
them from the other replicas, hints kept for it are dropped, and if it comes back with its old
data it is told it was removed and stops."""

from __future__ import annotations

import time

import pytest
import redis

from respkv.cluster.ring import NodeInfo, Ring, natural_replicas
from respkv.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.slow

KEYS = 600


def ring_of(ids: list[str]) -> Ring:
    return Ring.build(NodeInfo.make(i, "dc1") for i in ids)


def hints_for(c: LocalCluster, target: str, nodes: list[int]) -> int:
    return sum(int(c.client(i).info("hints").get(f"hints_for_{target}", 0)) for i in nodes)


def test_removenode_refills_the_gone_members_ranges_and_it_cannot_come_back(
        make_cluster) -> None:  # type: ignore[no-untyped-def]
    c: LocalCluster = make_cluster(4)  # N=3: each key on 3 of the 4
    a = c.client(0)
    expected: dict[str, bytes] = {}
    pipe = a.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.execute_command("SET", f"k{i}", f"v{i}", "W", "ALL")
        expected[f"k{i}"] = f"v{i}".encode()
    pipe.execute()

    c.kill(3)
    c.wait_converged([0, 1, 2])
    for i in range(0, KEYS, 3):  # W=2 while n3 is down: hints for it on the fallbacks
        a.set(f"k{i}", f"w{i}")
        expected[f"k{i}"] = f"w{i}".encode()
    wait_until(lambda: hints_for(c, "n3", [0, 1, 2]) > 0, 10, "hints for n3")

    r0 = c.client(0, protocol=3)
    for target, why in (("n0", "cannot remove itself"), ("n1", "is up"),
                        ("nope", "no member")):
        with pytest.raises(redis.ResponseError, match=why):
            r0.execute_command("RESPKV", "REMOVENODE", "START", target)
    with pytest.raises(redis.ResponseError, match="syntax"):
        r0.execute_command("RESPKV", "REMOVENODE", "GO", "n3")

    r0.execute_command("RESPKV", "REMOVENODE", "START", "n3")
    wait_until(lambda: r0.execute_command("RESPKV", "REMOVENODE", "STATUS")[b"state"]
               in (b"done", b"failed"), 60, "removenode to finish")
    st = r0.execute_command("RESPKV", "REMOVENODE", "STATUS")
    assert st[b"state"] == b"done", st
    wait_until(lambda: all(c.info(i)["ring_nodes"] == 3 for i in (0, 1, 2)), 30, "n3 gone")

    # Each key n3 held now has a new replica, which must hold it: checked through that node
    # at R=1 (its own copy answers), before anything else reads the key.
    four, three = ring_of(["n0", "n1", "n2", "n3"]), ring_of(["n0", "n1", "n2"])
    clients = [c.client(i) for i in range(3)]
    wait_until(lambda: all(int(c.client(i).info("repair").get("refills", 0)) >= 1
                           for i in range(3)), 30, "every survivor's refill")
    gained = 0
    for k, v in expected.items():
        for node in set(natural_replicas(three, k.encode(), 3)) - set(
                natural_replicas(four, k.encode(), 3)):
            gained += 1
            assert clients[int(node[1:])].execute_command("GET", k, "R", "1") == v, (k, node)
    assert gained > KEYS // 2  # 3 of 4 held each key, so about 3/4 of the keys gain a replica
    refilled = sum(int(c.client(i).info("repair")["refill_keys"]) for i in range(3))
    # the gained ranges (not everything), pulled from both other old replicas of each
    assert 2 * gained <= refilled <= 2 * gained * 1.2 + 40
    assert hints_for(c, "n3", [0, 1, 2]) == 0  # dropped: never deliverable
    assert sum(int(c.client(i).info("hints")["hints_dropped_removed"]) for i in range(3)) > 0
    assert a.execute_command("SET", "after", "1", "W", "ALL") is True  # all replicas up again
    ring = {r[b"node"]: r for r in r0.execute_command("RESPKV", "RING")}
    assert ring[b"n3"][b"status"] == b"left"
    # nobody dials the removed node any more
    wait_until(lambda: not any("peer_n3" in c.info(i) for i in range(3)), 10, "links retired")

    # n3 comes back with its old data: a peer tells it it was removed; it announces LEFT under
    # its new generation and stops, and the survivors' ring stays without it.
    try:
        c.start(3)
    except RuntimeError:
        pass  # it may stop before the start helper saw its port
    node3 = c.nodes[3]
    assert node3 is not None
    deadline = time.monotonic() + 30
    while node3.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node3.proc.poll() is not None, "the removed node kept running:\n" + "\n".join(
        x for x in node3.log().splitlines()[-30:] if "DEBUG" not in x)
    c.nodes[3] = None
    assert "event=removed_from_cluster" in node3.log()
    time.sleep(1)
    assert all(c.info(i)["ring_nodes"] == 3 for i in (0, 1, 2))
    ring = {r[b"node"]: r for r in r0.execute_command("RESPKV", "RING")}
    assert ring[b"n3"][b"status"] == b"left"
    for i in range(0, KEYS, 50):
        assert clients[i % 3].get(f"k{i}") == expected[f"k{i}"]
