"""LEFT rows leave the gossiped membership (respkv/node/gossip.py, ``left_row_ttl_s``): a node
drops a row it has seen LEFT for the TTL and refuses that incarnation's row for as long again,
so peers that still hold it cannot gossip it back; a new incarnation (a wiped node rejoining
under the same id) is let in."""

from __future__ import annotations

import random

from respkv.cluster import membership as M
from respkv.cluster.membership import Membership, NodeStatus, new_node_state
from respkv.node.gossip import Gossiper

TTL_MS = 1000.0


def gossiper(clock: list[float], changes: list[tuple[Membership, Membership]]) -> Gossiper:
    own = new_node_state("a", 10, "h:1", status=NodeStatus.NORMAL)
    g = Gossiper(own, 100, 8.0, lambda: clock[0], random.Random(1), None,  # type: ignore[arg-type]
                 lambda _n: True, lambda: [], lambda old, new: changes.append((old, new)))
    g.left_ttl_ms = TTL_MS
    return g


def test_a_left_row_is_dropped_after_the_ttl_and_not_gossiped_back() -> None:
    clock = [0.0]
    changes: list[tuple[Membership, Membership]] = []
    g = gossiper(clock, changes)
    b = new_node_state("b", 20, "h:2", status=NodeStatus.NORMAL)
    c = new_node_state("c", 30, "h:3", status=NodeStatus.NORMAL)
    g._adopt(M.merge(g.membership, Membership([b, c])))
    left_b = M.remove_member(g.membership, "b")["b"]
    peer_view = Membership([left_b, c])  # a peer that keeps the LEFT row
    g._adopt(M.merge(g.membership, peer_view))
    assert g.membership["b"].status is NodeStatus.LEFT

    clock[0] = TTL_MS - 1
    assert g.drop_old_left_rows() == []  # not yet
    clock[0] = TTL_MS + 1
    assert g.drop_old_left_rows() == ["b"]
    assert "b" not in g.membership and g.left_rows_dropped == 1
    assert changes[-1][1] is g.membership  # the cluster is told (rings, INFO)

    # the peer gossips the LEFT row back: refused, through a whole exchange too
    g._adopt(M.merge(g.membership, peer_view))
    assert "b" not in g.membership
    merged, _ = M.handle_ack(g.membership, "a", M.handle_syn(peer_view, "c",
                                                             M.make_syn(g.membership, "a")))
    g._adopt(merged)
    assert "b" not in g.membership
    # ... but b's new incarnation (wiped, rejoining) is a new row: let in
    b_again = new_node_state("b", 40, "h:2")
    g._adopt(M.merge(g.membership, Membership([b_again])))
    assert g.membership["b"] == b_again
    assert g.drop_old_left_rows() == []  # not LEFT


def test_the_refusal_ends_after_the_quarantine_and_zero_keeps_rows() -> None:
    clock = [0.0]
    g = gossiper(clock, [])
    b = new_node_state("b", 20, "h:2", status=NodeStatus.NORMAL)
    g._adopt(M.merge(g.membership, Membership([b])))
    g._adopt(M.remove_member(g.membership, "b"))
    clock[0] = TTL_MS
    assert g.drop_old_left_rows() == ["b"]
    clock[0] = 2 * TTL_MS + 1  # the quarantine is over: a peer still holding it wins again
    g._adopt(M.merge(g.membership, M.remove_member(Membership([b]), "b")))
    assert g.membership["b"].status is NodeStatus.LEFT

    forever = gossiper([0.0], [])
    forever.left_ttl_ms = 0
    forever._adopt(M.merge(forever.membership, Membership([b])))
    forever._adopt(M.remove_member(forever.membership, "b"))
    forever.clock_ms = lambda: 10**12  # type: ignore[method-assign]
    assert forever.drop_old_left_rows() == [] and "b" in forever.membership
