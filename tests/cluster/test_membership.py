"""Specification of gossiped membership and the SYN/ACK/ACK2 exchange."""

from __future__ import annotations

import random
from functools import reduce

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.membership import (
    GossipAck,
    GossipAck2,
    InvalidGossipMessageError,
    Membership,
    NodeState,
    NodeStatus,
    advanced,
    choose_gossip_peer,
    decode_gossip,
    encode_gossip,
    gossip_candidates,
    handle_ack,
    handle_ack2,
    handle_syn,
    heartbeat,
    make_syn,
    merge,
    new_node_state,
    remove_member,
    restart,
    ring_of,
    set_status,
    set_weight,
)

NODES = ["a", "b", "c", "d", "e"]

rows = st.builds(
    NodeState,
    node_id=st.sampled_from(NODES),
    generation=st.integers(1, 3),
    version=st.integers(1, 5),
    status=st.sampled_from(list(NodeStatus)),
    dc=st.sampled_from(["dc1", "dc2"]),
    rack=st.sampled_from(["r1", "r2"]),
    weight=st.sampled_from([1.0, 2.0]),
    vnodes=st.integers(1, 8),
    address=st.sampled_from(["h1:1", "h2:2"]),
)
memberships = st.lists(rows, max_size=8).map(Membership)


def consistent_row(node: str, generation: int, version: int) -> NodeState:
    """A row whose content is a function of (node, generation, version), as when only the
    owner writes its row -- the precondition of digest-based gossip."""
    k = xxhash.xxh32_intdigest(f"{node}/{generation}/{version}".encode())
    return NodeState(
        node, generation, version, list(NodeStatus)[k % 4], f"dc{k % 2}", f"r{k % 3}",
        float(1 + k % 2), 1 + k % 8, f"h{k % 5}:1",
    )


consistent_memberships = st.lists(
    st.builds(consistent_row, st.sampled_from(NODES), st.integers(1, 3), st.integers(1, 5)),
    max_size=8,
).map(Membership)


@given(memberships, memberships)
def test_merge_commutative(a: Membership, b: Membership) -> None:
    assert merge(a, b) == merge(b, a)


@given(memberships, memberships, memberships)
def test_merge_associative(a, b, c) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(memberships)
def test_merge_idempotent(a: Membership) -> None:
    assert merge(a, a) == a and merge(a, Membership()) == a


@given(st.lists(memberships, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_merge_converges_in_any_order(views: list[Membership], rnd) -> None:
    expected = reduce(merge, views)
    shuffled = list(views)
    rnd.shuffle(shuffled)
    assert reduce(merge, shuffled) == expected
    # and the winner per node is the highest (generation, version)
    for node in expected:
        best = max(
            (v[node] for v in views if node in v), key=lambda r: (r.generation, r.version)
        )
        assert (expected[node].generation, expected[node].version) == (
            best.generation,
            best.version,
        )


@given(consistent_memberships, consistent_memberships)
def test_syn_ack_ack2_leaves_both_with_the_merge(a: Membership, b: Membership) -> None:
    ack = handle_syn(b, "b", make_syn(a, "a"))
    a2, ack2 = handle_ack(a, "a", ack)
    b2 = handle_ack2(b, ack2)
    assert a2 == b2 == merge(a, b)


@given(memberships, memberships)
def test_gossip_messages_round_trip(a: Membership, b: Membership) -> None:
    syn = make_syn(a, "a")
    ack = handle_syn(b, "b", syn)
    _, ack2 = handle_ack(a, "a", ack)
    for msg in (syn, ack, ack2):
        assert decode_gossip(encode_gossip(msg)) == msg


@given(memberships, st.data())
def test_gossip_decode_rejects_corruption(a: Membership, data) -> None:
    raw = bytearray(encode_gossip(GossipAck("x", tuple(a.rows()), ("a",))))
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidGossipMessageError):
        decode_gossip(bytes(raw))


def test_own_row_changes_bump_version() -> None:
    m = Membership([new_node_state("a", 100, "h:1")])
    assert m["a"].status is NodeStatus.JOINING and m["a"].version == 1
    m2 = set_status(heartbeat(m, "a"), "a", NodeStatus.NORMAL)
    assert m2["a"].version == 3 and m2["a"].status is NodeStatus.NORMAL
    assert advanced(m, m2) == ["a"] and advanced(m2, m) == []
    m3 = set_weight(m2, "a", 2, vnodes_per_weight=8)
    assert m3["a"].vnodes == 16 and merge(m2, m3) == m3
    with pytest.raises(KeyError):
        heartbeat(m, "zz")


def test_restart_needs_a_higher_generation() -> None:
    m = Membership([new_node_state("a", 100, "h:1")])
    for _ in range(10):
        m = heartbeat(m, "a")
    fresh = new_node_state("a", 101, "h:1")
    m2 = restart(m, fresh)
    assert m2["a"] == fresh  # a new generation beats any heartbeat of the old one
    assert merge(m, m2) == m2
    with pytest.raises(ValueError):
        restart(m2, new_node_state("a", 101, "h:1"))


def test_ring_of_membership() -> None:
    m = Membership(
        [
            new_node_state("a", 1, "h:1", status=NodeStatus.NORMAL, vnodes_per_weight=8),
            new_node_state("b", 1, "h:2", status=NodeStatus.LEAVING, weight=2, vnodes_per_weight=8),
            new_node_state("c", 1, "h:3", status=NodeStatus.JOINING, vnodes_per_weight=8),
            new_node_state("d", 1, "h:4", status=NodeStatus.LEFT, vnodes_per_weight=8),
        ]
    )
    ring = ring_of(m)
    assert set(ring.nodes) == {"a", "b"}
    assert len(ring.nodes["b"].tokens) == 16 and len(ring.tokens) == 24
    assert gossip_candidates(m, "a") == ["b", "c"]


def test_choose_gossip_peer_is_uniform_and_seeded() -> None:
    m = Membership([new_node_state(n, 1, "h") for n in NODES])
    picks = [choose_gossip_peer(m, "a", random.Random(s)) for s in range(400)]
    assert set(picks) == {"b", "c", "d", "e"}
    assert all(60 < picks.count(x) < 140 for x in "bcde")
    assert picks == [choose_gossip_peer(m, "a", random.Random(s)) for s in range(400)]
    assert choose_gossip_peer(Membership([new_node_state("a", 1, "h")]), "a", random.Random(1)) is None
    assert choose_gossip_peer(Membership(), "a", random.Random(1), extra=["seed"]) == "seed"


def test_ack2_for_unknown_request_is_empty() -> None:
    m = Membership([new_node_state("a", 1, "h")])
    _, ack2 = handle_ack(m, "a", GossipAck("b", (), ("zz",)))
    assert ack2 == GossipAck2("a", ())


def test_remove_member_writes_the_row_left_past_its_own_heartbeats() -> None:
    """removenode: another node writes the gone member's row LEFT; the row leaves the ring
    everywhere it is merged, and the member's own later heartbeats (same generation: a
    member only paused or cut off) do not win it back."""
    a = new_node_state("a", 10, "h:1", status=NodeStatus.NORMAL)
    b = new_node_state("b", 20, "h:2", status=NodeStatus.NORMAL)
    m = Membership([a, b])
    removed = remove_member(m, "b")
    assert removed["b"].status is NodeStatus.LEFT and removed["b"].generation == 20
    assert set(ring_of(removed).nodes) == {"a"}
    # b, still running somewhere, heartbeats many times under its generation
    b_view = m
    for _ in range(1000):
        b_view = heartbeat(b_view, "b")
    assert merge(removed, b_view)["b"].status is NodeStatus.LEFT
    assert merge(b_view, removed)["b"].status is NodeStatus.LEFT
    with pytest.raises(KeyError):
        remove_member(m, "zz")


def removed_b_and_its_restart() -> tuple[NodeState, NodeState, Membership, NodeState]:
    """a's row, b's row (generation 20), a's view after removing b, and b restarted (gen 30)."""
    a = new_node_state("a", 10, "h:1", status=NodeStatus.NORMAL)
    b_old = new_node_state("b", 20, "h:2", status=NodeStatus.NORMAL)
    view = remove_member(Membership([a, b_old]), "b")
    return a, b_old, view, new_node_state("b", 30, "h:2", status=NodeStatus.NORMAL)


def test_a_restarted_member_is_told_its_previous_incarnation_left() -> None:
    """handle_syn: when the initiator's own digest is newer than a LEFT row the receiver holds
    for it (it restarted after being removed), the ACK carries that LEFT row, so the initiator
    can stop (respkv/node/gossip.py); its merge keeps its own newer row."""
    a, b_old, receiver, b_new = removed_b_and_its_restart()
    initiator = Membership([b_new])
    ack = handle_syn(receiver, "a", make_syn(initiator, "b"))
    told = [r for r in ack.rows if r.node_id == "b"]
    assert len(told) == 1 and told[0].status is NodeStatus.LEFT and told[0].generation == 20
    assert "b" in ack.requests
    merged, _ = handle_ack(initiator, "b", ack)
    assert merged["b"] == b_new
    # a member that did not leave is not sent its older row
    plain = Membership([a, b_old])
    ack = handle_syn(plain, "a", make_syn(initiator, "b"))
    assert not [r for r in ack.rows if r.node_id == "b"]


def test_a_restarted_member_is_told_when_the_other_side_initiates_too() -> None:
    """handle_ack: the initiator holds a LEFT row for the receiver, whose ACK carries its newer
    row (it restarted): the ACK2 carries the LEFT row back to it."""
    _, _, initiator, b_new = removed_b_and_its_restart()
    receiver = Membership([b_new])
    ack = handle_syn(receiver, "b", make_syn(initiator, "a"))
    merged, ack2 = handle_ack(initiator, "a", ack)
    told = [r for r in ack2.rows if r.node_id == "b"]
    assert len(told) == 1 and told[0].status is NodeStatus.LEFT and told[0].generation == 20
    assert merged["b"] == b_new  # the merge itself is unchanged
    assert handle_ack2(receiver, ack2)["b"] == b_new
