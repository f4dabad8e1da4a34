"""Specification of the ring, replica placement and rebalancing (respkv.cluster.ring)."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.cluster.hashing import (
    FULL_RING,
    MAX_TOKEN,
    TOKEN_SPACE,
    TokenRange,
    merge_adjacent,
    storage_key,
    token_from_storage_key,
    token_of,
    token_prefix,
    vnode_token,
)
from respkv.cluster.ring import (
    NodeInfo,
    Ring,
    add_node,
    natural_replicas,
    owned_ranges,
    preference_list,
    primary_ranges,
    remove_node,
    reweight,
    transfer_plan,
)

VPW = 4  # vnodes per weight unit in property tests: small rings keep the walk exhaustive but fast

node_specs = st.lists(
    st.tuples(
        st.integers(0, 40),  # id number
        st.sampled_from(["dc1", "dc2", "dc3"]),
        st.sampled_from(["r1", "r2", "r3"]),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda t: t[0],
)
rings = node_specs.map(
    lambda specs: Ring.from_specs(((f"n{i}", dc, r, w) for i, dc, r, w in specs), VPW)
)
tokens = st.integers(0, MAX_TOKEN)
per_dc = st.fixed_dictionaries(
    {"dc1": st.integers(0, 3), "dc2": st.integers(0, 3), "dc3": st.integers(0, 2)}
).filter(lambda d: sum(d.values()) > 0)


def brute_force_walk(ring: Ring, token: int) -> list[str]:
    """Distinct owners clockwise from token, computed from scratch."""
    pairs = sorted((t, n) for n, info in ring.nodes.items() for t in info.tokens)
    i = bisect.bisect_left([t for t, _ in pairs], token)
    out: list[str] = []
    for j in range(len(pairs)):
        owner = pairs[(i + j) % len(pairs)][1]
        if owner not in out:
            out.append(owner)
    return out


# -- hashing -------------------------------------------------------------------------------


def test_token_function_is_pinned() -> None:
    # Changing the token function silently would misplace every stored key.
    assert token_of(b"") == 0x2D06800538D394C2
    assert token_of(b"foo") == 0xAB6E5F64077E7D8A
    assert vnode_token("n1", 0) == token_of(b"n1/0")
    assert token_prefix(1) == b"\x00" * 7 + b"\x01"
    assert token_from_storage_key(storage_key(b"foo")) == token_of(b"foo")


ranges = st.tuples(tokens, tokens).map(lambda t: TokenRange(*t))


@given(ranges, tokens)
def test_scan_bounds_cover_exactly_the_range(rng: TokenRange, token: int) -> None:
    skey = token_prefix(token) + b"k"
    in_scan = any(lo <= skey and (hi is None or skey < hi) for lo, hi in rng.scan_bounds())
    assert in_scan == rng.contains(token)


@given(ranges)
def test_range_edges(rng: TokenRange) -> None:
    assert not rng.contains(rng.start) or rng.start == rng.end
    assert rng.contains(rng.end)
    assert 1 <= rng.width <= TOKEN_SPACE
    assert FULL_RING.contains(rng.start)


def test_scan_bounds_at_the_top_of_the_space() -> None:
    assert TokenRange(MAX_TOKEN, 5).scan_bounds() == [(b"", token_prefix(6))]
    assert TokenRange(3, MAX_TOKEN).scan_bounds() == [(token_prefix(4), None)]


def test_merge_adjacent() -> None:
    assert merge_adjacent([TokenRange(1, 2), TokenRange(2, 5), TokenRange(7, 9)]) == [
        TokenRange(1, 5),
        TokenRange(7, 9),
    ]
    assert merge_adjacent([TokenRange(1, 5), TokenRange(9, 1)]) == [TokenRange(9, 5)]
    assert merge_adjacent([TokenRange(1, 5), TokenRange(5, 1)]) == [TokenRange(1, 1)]


# -- ring values -----------------------------------------------------------------------------


def test_ring_is_deterministic_from_membership() -> None:
    specs = [("a", "dc1", "r1", 1), ("b", "dc1", "r2", 2), ("c", "dc2", "r1", 1)]
    r1 = Ring.from_specs(specs, 16)
    r2 = Ring.from_specs(reversed(specs), 16)
    assert r1 == r2 and r1.tokens == r2.tokens and r1.owners == r2.owners
    assert len(r1.nodes["b"].tokens) == 32


def test_reweight_keeps_existing_vnode_tokens() -> None:
    ring = Ring.from_specs([("a", "dc1", "r1", 1), ("b", "dc1", "r1", 1)], 8)
    heavier = reweight(ring, "a", 2)
    assert heavier.nodes["a"].tokens[:8] == ring.nodes["a"].tokens
    assert len(heavier.nodes["a"].tokens) == 16


def test_ring_rejects_bad_input() -> None:
    ring = Ring.from_specs([("a", "dc1", "r1", 1)], 4)
    with pytest.raises(ValueError):
        add_node(ring, NodeInfo.make("a"))
    with pytest.raises(ValueError):
        remove_node(ring, "zz")
    with pytest.raises(ValueError):
        NodeInfo.make("x", weight=0)
    with pytest.raises(ValueError):
        natural_replicas(ring, 5, 3, {"dc1": 2})


# -- placement -------------------------------------------------------------------------------


@given(rings, tokens, st.integers(1, 5))
def test_natural_replicas_are_first_n_distinct_clockwise(ring: Ring, token: int, n: int) -> None:
    walk = brute_force_walk(ring, token)
    assert list(natural_replicas(ring, token, n)) == walk[:n]


@given(rings, tokens, st.integers(1, 5), st.data())
def test_preference_list_simple(ring: Ring, token: int, n: int, data) -> None:
    up = data.draw(st.sets(st.sampled_from(sorted(ring.nodes))))
    pl = preference_list(ring, token, n, up)
    assert pl.n == min(n, len(ring)) == len(set(pl.natural))
    assert len(set(pl.targets)) == len(pl.targets)
    assert set(pl.targets) <= up
    fallbacks = [t for t in pl.targets if t not in pl.natural]
    assert set(fallbacks) == set(pl.hints)
    assert sorted(pl.hints.values()) == sorted(d for d in pl.down if d in pl.hints.values())
    assert len(set(pl.hints.values())) == len(pl.hints)  # one stand-in per down replica
    spare = [x for x in up if x not in pl.natural]
    assert len(fallbacks) == min(len(pl.down), len(spare))
    # fallbacks are the first spare up nodes clockwise
    walk = brute_force_walk(ring, token)
    assert sorted(fallbacks, key=walk.index) == [x for x in walk if x in spare][: len(fallbacks)]


@given(rings, tokens, per_dc, st.data())
def test_preference_list_per_dc(ring: Ring, token: int, counts: dict[str, int], data) -> None:
    up = data.draw(st.sets(st.sampled_from(sorted(ring.nodes))))
    n = sum(counts.values())
    pl = preference_list(ring, token, n, up, counts)
    walk = brute_force_walk(ring, token)
    for dc, want in counts.items():
        in_dc = [x for x in pl.natural if ring.dc_of(x) == dc]
        dc_nodes = [x for x in walk if ring.dc_of(x) == dc]
        assert len(in_dc) == min(want, len(dc_nodes)) == pl.replicas_per_dc[dc]
        racks_avail = {ring.nodes[x].rack for x in dc_nodes}
        assert len({ring.nodes[x].rack for x in in_dc}) == min(len(in_dc), len(racks_avail))
        # rack-aware but otherwise clockwise: the first replica is the first DC node clockwise
        if in_dc:
            assert dc_nodes[0] in in_dc
    for fb, down in pl.hints.items():
        assert ring.dc_of(fb) == ring.dc_of(down)
        assert fb in up and fb not in pl.natural and down in pl.down
    assert len(set(pl.natural)) == len(pl.natural)


def test_preference_list_caps_n_to_cluster_size() -> None:
    ring = Ring.from_specs([("a", "dc1", "r1", 1), ("b", "dc1", "r1", 1)], 4)
    pl = preference_list(ring, b"k", 3, {"a", "b"})
    assert pl.n == 2 and set(pl.natural) == {"a", "b"}
    pl = preference_list(ring, b"k", 3, {"a"})
    assert pl.targets == ("a",) and dict(pl.hints) == {}


def test_empty_ring_has_no_replicas() -> None:
    pl = preference_list(Ring.build([], 4), b"k", 3, set())
    assert pl.natural == () and pl.targets == ()


# -- ranges and transfers -------------------------------------------------------------------


@settings(max_examples=60)
@given(rings, st.integers(1, 4), st.data())
def test_owned_ranges_match_placement(ring: Ring, n: int, data) -> None:
    node = data.draw(st.sampled_from(sorted(ring.nodes)))
    owned = owned_ranges(ring, node, n)
    probes = data.draw(st.lists(tokens, max_size=20)) + list(ring.tokens)
    for t in probes:
        assert any(r.contains(t) for r in owned) == (node in natural_replicas(ring, t, n))
    prim = primary_ranges(ring, node)
    for t in probes:
        assert any(r.contains(t) for r in prim) == (ring.owners[ring.index_of(t)] == node)


changes = st.one_of(
    st.tuples(st.just("add"), st.integers(41, 60), st.sampled_from(["dc1", "dc2"]),
              st.sampled_from(["r1", "r2"]), st.integers(1, 3)),
    st.tuples(st.just("remove"), st.integers(0, 40)),
    st.tuples(st.just("reweight"), st.integers(0, 40), st.integers(1, 4)),
)


def apply_change(ring: Ring, change: tuple) -> Ring:
    if change[0] == "add":
        _, i, dc, rack, w = change
        if f"n{i}" in ring.nodes:
            return ring
        return add_node(ring, NodeInfo.make(f"n{i}", dc, rack, w, VPW))
    ids = sorted(ring.nodes)
    node = ids[change[1] % len(ids)]
    if change[0] == "remove":
        return remove_node(ring, node) if len(ids) > 1 else ring
    return reweight(ring, node, change[2])


def check_transfer_plan(old: Ring, new: Ring, n: int, counts, probes) -> None:
    plan = transfer_plan(old, new, n, counts)
    for t in probes:
        before = set(natural_replicas(old, t, n, counts))
        after = set(natural_replicas(new, t, n, counts))
        covering = [tr for tr in plan if tr.range.contains(t)]
        gained = after - before if before else set()  # no old replica: nothing to move
        assert {tr.to_node for tr in covering} == gained
        assert len(covering) == len(gained)  # each gaining node receives the range once
        for tr in covering:
            assert tr.from_node in before and set(tr.sources) == before


@settings(max_examples=80)
@given(rings, st.lists(changes, min_size=1, max_size=4), st.integers(1, 4), st.data())
def test_transfer_plans_move_exactly_the_changed_ranges(ring, steps, n, data) -> None:
    probes_extra = data.draw(st.lists(tokens, max_size=10))
    for change in steps:
        new = apply_change(ring, change)
        probes = sorted(set(ring.tokens) | set(new.tokens)) + probes_extra
        probes += [t + 1 for t in probes if t < MAX_TOKEN]
        check_transfer_plan(ring, new, n, None, probes)
        ring = new


@settings(max_examples=40)
@given(rings, st.lists(changes, min_size=1, max_size=3), per_dc)
def test_transfer_plans_per_dc(ring, steps, counts) -> None:
    n = sum(counts.values())
    for change in steps:
        new = apply_change(ring, change)
        probes = sorted(set(ring.tokens) | set(new.tokens))
        check_transfer_plan(ring, new, n, counts, probes)
        ring = new


def test_transfer_plan_on_join_moves_only_to_the_new_node() -> None:
    ring = Ring.from_specs([(f"n{i}", "dc1", "r1", 1) for i in range(5)], 16)
    new = add_node(ring, NodeInfo.make("n9", vnodes_per_weight=16))
    plan = transfer_plan(ring, new, 3)
    assert plan and {tr.to_node for tr in plan} == {"n9"}
    assert transfer_plan(ring, ring, 3) == []
