"""Specification of consistency levels, replica plans and the quorum tracker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.quorum import (
    ConsistencyLevel as CL,
)
from respkv.cluster.quorum import (
    InvalidLevelError,
    OpKind,
    Outcome,
    QuorumTracker,
    format_level,
    parse_level,
    plan_read,
    plan_write,
    with_pending,
)
from respkv.cluster.ring import Ring, natural_replicas, preference_list
from respkv.cluster.versions import EMPTY, EMPTY_CLOCK, join, sync, update


def ring_of(*specs: tuple[str, str, str]) -> Ring:
    return Ring.from_specs([(n, dc, rack, 1) for n, dc, rack in specs], 8)


FIVE = ring_of(*[(f"n{i}", "dc1", "r1") for i in range(5)])
TWO_DC = ring_of(
    *[(f"a{i}", "east", f"r{i % 2}") for i in range(4)],
    *[(f"b{i}", "west", f"r{i % 2}") for i in range(4)],
)


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,level",
    [
        (b"one", CL.ONE),
        ("Quorum", CL.QUORUM),
        (b"LOCAL_QUORUM", CL.LOCAL_QUORUM),
        (b"each_quorum", CL.EACH_QUORUM),
        (b"all", CL.ALL),
        (b"2", 2),
        (3, 3),
    ],
)
def test_parse_level(raw, level) -> None:
    assert parse_level(raw) == level


@pytest.mark.parametrize("raw", [b"", b"QUORUMS", b"0", b"-1", b"1.5", b"\xff", "٣", 0])
def test_parse_level_rejects(raw) -> None:
    with pytest.raises(InvalidLevelError, match="invalid consistency level"):
        parse_level(raw)


@given(st.sampled_from(list(CL)) | st.integers(1, 100))
def test_level_format_round_trip(level) -> None:
    assert parse_level(format_level(level).lower()) == level


# -- plans ------------------------------------------------------------------------------------


def test_quorum_plan_all_up() -> None:
    pl = preference_list(FIVE, b"k", 3, set(FIVE.nodes))
    p = plan_write(pl, CL.QUORUM, pl.natural[1], "dc1")
    assert p.is_available and p.required == 2 and p.n == 3
    assert p.contacts[0] == pl.natural[1] == p.local_replica
    assert set(p.contacts) == set(pl.natural) and not p.hints


def test_coordinator_not_a_replica() -> None:
    pl = preference_list(FIVE, b"k", 3, set(FIVE.nodes))
    outsider = next(n for n in FIVE.nodes if n not in pl.natural)
    p = plan_read(pl, CL.ONE, outsider, "dc1")
    assert p.local_replica is None and p.contacts == pl.natural


def test_sloppy_write_uses_fallbacks_and_reads_do_not() -> None:
    natural = preference_list(FIVE, b"k", 3, set(FIVE.nodes)).natural
    up = set(FIVE.nodes) - {natural[0], natural[1]}
    pl = preference_list(FIVE, b"k", 3, up)
    w = plan_write(pl, CL.QUORUM, natural[2], "dc1")
    assert w.is_available and len(w.contacts) == 3
    assert sorted(w.hints.values()) == sorted(natural[:2])
    r = plan_read(pl, CL.QUORUM, natural[2], "dc1")
    assert not r.is_available
    assert r.unavailable.message() == "unavailable: needed 2, have 1"
    assert plan_read(pl, CL.ONE, natural[2], "dc1").contacts == (natural[2],)


def test_levels_scale_when_cluster_is_smaller_than_n() -> None:
    one = ring_of(("solo", "dc1", "r1"))
    pl = preference_list(one, b"k", 3, {"solo"})
    for level in (CL.ONE, CL.TWO, CL.THREE, CL.QUORUM, CL.ALL, 1):
        p = plan_write(pl, level, "solo", "dc1")
        assert p.is_available and p.required == 1 and p.n == 1
    with pytest.raises(InvalidLevelError, match="exceeds the replication factor 1"):
        plan_write(pl, 2, "solo", "dc1")
    two = ring_of(("x", "dc1", "r1"), ("y", "dc1", "r1"))
    assert plan_write(preference_list(two, b"k", 3, {"x", "y"}), CL.QUORUM, "x", "dc1").required == 2


def test_nobody_up_is_unavailable() -> None:
    pl = preference_list(FIVE, b"k", 3, set())
    p = plan_write(pl, CL.ONE, "n0", "dc1")
    assert p.unavailable is not None and p.unavailable.needed == 1 and p.unavailable.have == 0
    empty = preference_list(Ring.build([], 8), b"k", 3, set())
    assert not plan_write(empty, CL.ONE, "n0", "dc1").is_available


def test_multi_dc_levels() -> None:
    counts = {"east": 3, "west": 3}
    up = set(TWO_DC.nodes)
    pl = preference_list(TWO_DC, b"k", 6, up, counts)
    p = plan_write(pl, CL.LOCAL_QUORUM, "a0", "east")
    assert p.required == 0 and dict(p.required_per_dc) == {"east": 2}
    p = plan_write(pl, CL.EACH_QUORUM, "a0", "east")
    assert dict(p.required_per_dc) == {"east": 2, "west": 2}
    assert plan_write(pl, CL.QUORUM, "a0", "east").required == 4
    assert dict(plan_read(pl, CL.LOCAL_ONE, "b1", "west").required_per_dc) == {"west": 1}
    # west loses all but one node: EACH_QUORUM unavailable, LOCAL_QUORUM in east fine
    west = [n for n in pl.natural if pl.dcs[n] == "west"]
    only_one_west = {n for n in up if TWO_DC.dc_of(n) == "east"} | {west[2]}
    pl2 = preference_list(TWO_DC, b"k", 6, only_one_west, counts)
    each = plan_read(pl2, CL.EACH_QUORUM, "a0", "east")
    assert each.unavailable is not None and each.unavailable.dc == "west"
    assert each.unavailable.message() == "unavailable: needed 2, have 1 in west"
    assert plan_read(pl2, CL.LOCAL_QUORUM, "a0", "east").is_available
    # a coordinator in a DC with no replicas cannot serve LOCAL levels
    pl3 = preference_list(TWO_DC, b"k", 3, up, {"east": 3, "west": 0})
    assert not plan_read(pl3, CL.LOCAL_ONE, "b0", "west").is_available


# -- tracker ------------------------------------------------------------------------------------


def quorum_plan(kind=OpKind.WRITE):
    pl = preference_list(FIVE, b"k", 3, set(FIVE.nodes))
    f = plan_write if kind is OpKind.WRITE else plan_read
    return f(pl, CL.QUORUM, pl.natural[0], "dc1")


def test_tracker_succeeds_at_quorum() -> None:
    p = quorum_plan()
    t = QuorumTracker(p)
    a, b, c = p.contacts
    assert t.outcome() is Outcome.PENDING
    t.ok(a)
    t.ok(a)  # duplicate ignored
    assert t.outcome() is Outcome.PENDING
    t.error(b)
    assert t.outcome() is Outcome.PENDING
    t.ok(c)
    assert t.outcome() is Outcome.SUCCEEDED and t.done


def test_tracker_fails_when_unreachable() -> None:
    p = quorum_plan()
    t = QuorumTracker(p)
    a, b, c = p.contacts
    t.ok(a)
    t.error(b, "overloaded")
    t.timeout()
    assert t.outcome() is Outcome.FAILED
    f = t.failure()
    assert (f.needed, f.got) == (2, 1) and f.message() == "quorum failed: needed 2, got 1"
    t.ok(c)  # a reply after the timeout is ignored
    assert t.outcome() is Outcome.FAILED


def test_tracker_fails_early_when_impossible() -> None:
    t = QuorumTracker(quorum_plan())
    a, b, _ = t.plan.contacts
    t.error(a)
    t.error(b)
    assert t.outcome() is Outcome.FAILED and t.pending_nodes()


def test_tracker_ignores_strangers() -> None:
    t = QuorumTracker(quorum_plan())
    t.ok("stranger")
    t.error("stranger")
    assert t.acked() == ()


def test_tracker_per_dc() -> None:
    counts = {"east": 3, "west": 3}
    pl = preference_list(TWO_DC, b"k", 6, set(TWO_DC.nodes), counts)
    t = QuorumTracker(plan_write(pl, CL.EACH_QUORUM, "a0", "east"))
    east = [n for n in t.plan.contacts if t.plan.dcs[n] == "east"]
    west = [n for n in t.plan.contacts if t.plan.dcs[n] == "west"]
    for n in east:
        t.ok(n)
    assert t.outcome() is Outcome.PENDING  # 3 acks, but none from west
    t.ok(west[0])
    t.error(west[1])
    assert t.outcome() is Outcome.PENDING
    t.error(west[2])
    assert t.outcome() is Outcome.FAILED and t.failure().dc == "west"


def test_read_repair_names_stale_replicas() -> None:
    p = quorum_plan(OpKind.READ)
    a, b, c = p.contacts
    old = update(EMPTY, EMPTY_CLOCK, a, b"old", timestamp_ms=1)
    new = update(old, join(old), b, b"new", timestamp_ms=2)
    concurrent = update(EMPTY, EMPTY_CLOCK, c, b"other", timestamp_ms=3)
    t = QuorumTracker(p)
    t.ok(a, old)
    t.ok(b, new)
    assert t.outcome() is Outcome.SUCCEEDED
    rr = t.read_repair()
    assert rr is not None and rr.stale == (a,) and rr.merged == new
    t.ok(c, concurrent)
    rr = t.read_repair()
    assert rr.merged == sync(new, concurrent) and set(rr.stale) == {a, b, c}
    t2 = QuorumTracker(p)
    t2.ok(a, new)
    t2.ok(b, new)
    assert t2.read_repair() is None and t2.merged() == new


def test_not_found_is_an_empty_set() -> None:
    p = quorum_plan(OpKind.READ)
    a, b, _ = p.contacts
    v = update(EMPTY, EMPTY_CLOCK, a, b"v", timestamp_ms=1)
    t = QuorumTracker(p)
    t.ok(a, v)
    t.ok(b, None)
    assert t.merged() == v and t.read_repair().stale == (b,)


def test_cannot_track_unavailable_plan() -> None:
    pl = preference_list(FIVE, b"k", 3, set())
    with pytest.raises(ValueError):
        QuorumTracker(plan_write(pl, CL.ONE, "n0", "dc1"))


@given(
    st.sampled_from([CL.ONE, CL.TWO, CL.QUORUM, CL.ALL, 1, 2, 3]),
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=6),
)
def test_tracker_outcome_matches_counting(level, events) -> None:
    pl = preference_list(FIVE, b"k", 3, set(FIVE.nodes))
    p = plan_write(pl, level, "n0", "dc1")
    t = QuorumTracker(p)
    oks: set[str] = set()
    errs: set[str] = set()
    for idx, good in events:
        node = p.contacts[idx]
        (t.ok if good else t.error)(node)
        if node not in oks | errs:
            (oks if good else errs).add(node)
    if len(oks) >= p.required:
        assert t.outcome() is Outcome.SUCCEEDED
    elif 3 - len(errs) < p.required:
        assert t.outcome() is Outcome.FAILED
    else:
        assert t.outcome() is Outcome.PENDING


_writes = st.lists(st.tuples(st.sampled_from("xyz"), st.sampled_from("xyz"), st.booleans()),
                   max_size=12)


def _replica_states(ops: list[tuple[str, str, bool]]) -> dict[str, object]:
    """Three replicas' sets after writes (coordinated at one, maybe synced to another)."""
    states = dict.fromkeys("xyz", EMPTY)
    for i, (coord, other, sync_after) in enumerate(ops):
        states[coord] = update(states[coord], join(states[coord]), coord, b"v%d" % i,
                               timestamp_ms=i)
        if sync_after:
            states[coord] = states[other] = sync(states[coord], states[other])
    return states


@given(_writes.map(_replica_states), st.permutations("xyz"), st.lists(st.booleans(),
       min_size=3, max_size=3))
def test_tracker_merge_and_read_repair_match_sync(states, order, copies) -> None:  # type: ignore[no-untyped-def]
    """The tracker's shortcuts (the first reply taken as the merge; identity before
    equality) give exactly sync's merge and the replicas whose reply differs from it."""
    from respkv.cluster.versions import decode_sibling_set, encode_sibling_set, sync_all

    pl = preference_list(FIVE, b"k", 3, set(FIVE.nodes))
    p = plan_read(pl, CL.ALL, "n0", "dc1")
    t = QuorumTracker(p)
    replies = {}
    for node, name, copy in zip(p.contacts, order, copies, strict=True):
        s = states[name]
        if copy:
            s = decode_sibling_set(encode_sibling_set(s))  # equal, not identical
        replies[node] = s
        t.ok(node, s)
    merged = sync_all(replies.values())
    assert t.merged() == merged
    rr = t.read_repair()
    assert (rr.stale if rr else ()) == tuple(n for n, s in replies.items() if s != merged)


# -- writes while a range moves (with_pending) --------------------------------------------------

FOUR = ring_of(*[(f"n{i}", "dc1", "r1") for i in range(4)])  # FIVE without n4: n4 joins


def _moving_plan(key: bytes, level: CL | int, old: Ring, new: Ring, up: set[str]):
    pl = preference_list(old, key, 3, up & set(old.nodes))
    p = plan_write(pl, level, pl.natural[0], "dc1", sloppy=False)
    future = natural_replicas(new, key, 3)
    pending = tuple(n for n in future if n not in p.contacts)
    return p, pending, with_pending(p, pending, {n: "dc1" for n in pending}, up)


def _moving_key(old: Ring, new: Ring) -> bytes:
    return next(k for k in (b"k%d" % i for i in range(1000))
                if set(natural_replicas(old, k, 3)) != set(natural_replicas(new, k, 3)))


def test_a_pending_replica_is_a_contact_and_raises_the_requirement() -> None:
    key = _moving_key(FOUR, FIVE)
    p, pending, moved = _moving_plan(key, CL.QUORUM, FOUR, FIVE, set(FIVE.nodes))
    assert pending == ("n4",)
    assert moved.contacts == (*p.contacts, "n4") and moved.required == p.required + 1 == 3
    assert moved.is_available
    # no pending replica: the plan itself
    assert with_pending(p, (), {}, set(FIVE.nodes)) is p


def test_a_down_pending_replica_needs_one_more_old_replica_instead() -> None:
    key = _moving_key(FOUR, FIVE)
    _, _, moved = _moving_plan(key, CL.QUORUM, FOUR, FIVE, set(FOUR.nodes))
    assert "n4" not in moved.contacts and moved.required == 3 and moved.is_available
    _, _, moved = _moving_plan(key, CL.ALL, FOUR, FIVE, set(FOUR.nodes))
    assert moved.unavailable is not None and moved.unavailable.message() == \
        "unavailable: needed 4, have 3"


def test_per_datacenter_levels_raise_the_pending_replicas_datacenter() -> None:
    key = _moving_key(FOUR, FIVE)
    pl = preference_list(FOUR, key, 3, set(FOUR.nodes))
    p = plan_write(pl, CL.LOCAL_QUORUM, pl.natural[0], "dc1")
    moved = with_pending(p, ("n4",), {"n4": "dc1"}, set(FIVE.nodes))
    assert moved.required == 0 and moved.required_per_dc == {"dc1": 3}
    assert moved.dcs["n4"] == "dc1"


@given(st.integers(0, 10_000), st.sampled_from([1, 2, 3]), st.booleans(), st.data())
def test_acks_meeting_a_moving_plan_are_on_w_replicas_of_the_new_ring(
        i: int, w: int, leave: bool, data: st.DataObject) -> None:
    """The property with_pending exists for: whichever contacts acknowledge, once the acks meet
    the plan, at least W of the key's replicas in the ring after the move hold the write (a
    join of n4, or n4 leaving)."""
    old, new = (FIVE, FOUR) if leave else (FOUR, FIVE)
    key = b"key%d" % i
    if leave:  # a leaving node is still a natural replica; the gainer is pending
        pl = preference_list(old, key, 3, set(old.nodes))
        p = plan_write(pl, w, pl.natural[0], "dc1", sloppy=False)
    else:
        p = _moving_plan(key, w, old, new, set(FIVE.nodes))[0]
    future = natural_replicas(new, key, 3)
    pending = tuple(n for n in future if n not in p.contacts)
    moved = with_pending(p, pending, {n: "dc1" for n in pending}, set(FIVE.nodes))
    assume_ok = moved.is_available
    if not assume_ok:
        return
    t = QuorumTracker(moved)
    order = data.draw(st.permutations(moved.contacts))
    for node in order:
        if t.outcome() is Outcome.SUCCEEDED:
            break
        t.ok(node)
    assert t.outcome() is Outcome.SUCCEEDED
    assert len(set(t.acked()) & set(future)) >= w
