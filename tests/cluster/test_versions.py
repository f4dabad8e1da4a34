"""Specification of dotted-version-vector sibling sets (respkv.cluster.versions).

The model: every write has an id; each replica *knows* a set of write ids (those it has seen,
live or superseded). A client reads a replica and writes through a coordinator with that
replica's knowledge as context; the write supersedes exactly the writes in that context.
A replica's live siblings must always be exactly the writes it knows that no write it knows
supersedes -- so no concurrent write is ever lost and every superseded write is dropped.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from respkv.cluster.versions import (
    EMPTY,
    EMPTY_CLOCK,
    ClockEntry,
    Dot,
    InvalidContextError,
    InvalidSiblingSetError,
    Sibling,
    SiblingSet,
    VersionVector,
    concurrent,
    decode_context,
    decode_sibling_set,
    descends,
    encode_context,
    encode_context_bytes,
    encode_sibling_set,
    is_deleted,
    join,
    live_value,
    overwrite,
    prune,
    sync,
    sync_all,
    update,
    version_digest,
    winner,
)

REPLICAS = ["a", "b", "c", "d"]


def _value_of(write_id: int) -> bytes:
    return b"w%d" % write_id


# -- a random-history generator shared by the algebraic properties ------------------------------

op_strategy = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(REPLICAS),  # coordinator
        st.one_of(st.none(), st.sampled_from(REPLICAS)),  # replica the client read (None: blind)
        st.booleans(),  # tombstone
        st.integers(0, 50),  # timestamp
    ),
    st.tuples(st.just("sync"), st.sampled_from(REPLICAS), st.sampled_from(REPLICAS)),
)


def run_history(ops: list[tuple]) -> dict[str, SiblingSet]:
    states = {r: EMPTY for r in REPLICAS}
    for i, op in enumerate(ops):
        if op[0] == "write":
            _, coord, read_from, tomb, ts = op
            ctx = join(states[read_from]) if read_from else EMPTY_CLOCK
            value = None if tomb else _value_of(i)
            states[coord] = update(states[coord], ctx, coord, value, timestamp_ms=ts)
        else:
            _, x, y = op
            merged = sync(states[x], states[y])
            states[x] = states[y] = merged
    return states


# Sets that may be merged must come from one history: a dot names one write only within it.
histories = st.lists(op_strategy, max_size=25).map(run_history)
sibling_sets = st.builds(lambda states, r: states[r], histories, st.sampled_from(REPLICAS))
set_pairs = st.builds(
    lambda states, x, y: (states[x], states[y]),
    histories,
    st.sampled_from(REPLICAS),
    st.sampled_from(REPLICAS),
)


@given(set_pairs)
def test_sync_commutative(pair: tuple[SiblingSet, SiblingSet]) -> None:
    a, b = pair
    assert sync(a, b) == sync(b, a)


@given(histories)
def test_sync_associative(states: dict[str, SiblingSet]) -> None:
    a, b, c = states["a"], states["b"], states["c"]
    assert sync(sync(a, b), c) == sync(a, sync(b, c))


@given(sibling_sets)
def test_sync_idempotent(a: SiblingSet) -> None:
    assert sync(a, a) == a
    assert sync(a, EMPTY) == a


@given(set_pairs)
def test_sync_result_descends_both(pair: tuple[SiblingSet, SiblingSet]) -> None:
    a, b = pair
    m = sync(a, b)
    assert descends(m.clock, a.clock) and descends(m.clock, b.clock)
    assert all(m.clock.covers(s.dot) for s in m.siblings)


@given(set_pairs, st.randoms(use_true_random=False))
def test_winner_deterministic(pair: tuple[SiblingSet, SiblingSet], rnd) -> None:
    a, b = pair
    m = sync(a, b)
    shuffled = list(m.siblings)
    rnd.shuffle(shuffled)
    assert winner(SiblingSet.make(m.clock, shuffled)) == winner(m) == winner(sync(b, a))


class ReplicatedRegister(RuleBasedStateMachine):
    """Random writes (with and without contexts) on random replicas and random syncs, checked
    against the knowledge model after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.states = {r: EMPTY for r in REPLICAS}
        self.knows: dict[str, set[int]] = {r: set() for r in REPLICAS}
        self.superseded_by: dict[int, set[int]] = {}  # write -> writes whose context held it
        self.values: dict[bytes | None, int] = {}
        self.dot_of: dict[int, Dot] = {}
        self.next_id = 0

    @rule(
        coord=st.sampled_from(REPLICAS),
        read_from=st.one_of(st.none(), st.sampled_from(REPLICAS)),
        tombstone=st.booleans(),
        ts=st.integers(0, 1000),
    )
    def write(self, coord: str, read_from: str | None, tombstone: bool, ts: int) -> None:
        wid = self.next_id
        self.next_id += 1
        ctx = join(self.states[read_from]) if read_from else EMPTY_CLOCK
        seen = set(self.knows[read_from]) if read_from else set()
        value = None if tombstone else _value_of(wid)
        new = update(self.states[coord], ctx, coord, value, timestamp_ms=ts)
        (new_dot,) = new.dots - self.states[coord].dots
        self.dot_of[wid] = new_dot
        self.states[coord] = new
        for w in seen:
            self.superseded_by.setdefault(w, set()).add(wid)
        self.knows[coord] |= seen | {wid}

    @rule(x=st.sampled_from(REPLICAS), y=st.sampled_from(REPLICAS))
    def sync_pair(self, x: str, y: str) -> None:
        merged = sync(self.states[x], self.states[y])
        self.states[x] = self.states[y] = merged
        both = self.knows[x] | self.knows[y]
        self.knows[x] = set(both)
        self.knows[y] = set(both)

    @rule(x=st.sampled_from(REPLICAS))
    def read_modify_write_never_grows(self, x: str) -> None:
        # A client that reads and writes back with the context it got, on the same replica,
        # leaves exactly one sibling.
        s = self.states[x]
        after = update(s, join(s), x, b"rmw", timestamp_ms=0)
        assert len(after.siblings) == 1

    @precondition(lambda self: self.next_id > 0)
    @rule()
    def full_sync(self) -> None:
        merged = sync_all(self.states.values())
        all_known = set().union(*self.knows.values())
        for r in REPLICAS:
            self.states[r] = merged
            self.knows[r] = set(all_known)
        # every write not superseded survives; every superseded one is gone
        expect = {self.dot_of[w] for w in all_known if not self.superseded_by.get(w)}
        assert merged.dots == expect

    @invariant()
    def live_siblings_match_model(self) -> None:
        for r in REPLICAS:
            known = self.knows[r]
            expect = {
                self.dot_of[w] for w in known if not (self.superseded_by.get(w, set()) & known)
            }
            assert self.states[r].dots == expect, r

    @invariant()
    def serialization_round_trips(self) -> None:
        for s in self.states.values():
            assert decode_sibling_set(encode_sibling_set(s)) == s


TestReplicatedRegister = ReplicatedRegister.TestCase
TestReplicatedRegister.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_sequential_read_modify_write_keeps_one_sibling() -> None:
    s = EMPTY
    for i in range(100):
        s = update(s, join(s), "a" if i % 2 else "b", b"%d" % i, timestamp_ms=i)
        assert len(s.siblings) == 1
    assert winner(s) is not None and winner(s).value == b"99"


def test_overwrite_supersedes_local_but_keeps_unseen() -> None:
    a = update(EMPTY, EMPTY_CLOCK, "a", b"1", timestamp_ms=1)
    b = update(EMPTY, EMPTY_CLOCK, "b", b"2", timestamp_ms=2)  # concurrent, not yet at a
    a = overwrite(a, "a", b"3", timestamp_ms=3)
    assert [x.value for x in a.siblings] == [b"3"]
    merged = sync(a, b)
    assert {x.value for x in merged.siblings} == {b"2", b"3"}
    merged = overwrite(merged, "a", None, timestamp_ms=4)  # a plain DEL after the sync
    assert len(merged.siblings) == 1 and winner(merged).is_tombstone


def test_blind_writes_are_concurrent_siblings() -> None:
    s = update(EMPTY, EMPTY_CLOCK, "a", b"1", timestamp_ms=5)
    s = update(s, EMPTY_CLOCK, "a", b"2", timestamp_ms=4)
    assert [x.value for x in s.siblings] == [b"1", b"2"]
    # the winner is the highest timestamp, not the last write
    assert winner(s).value == b"1"
    s = update(s, join(s), "b", None, timestamp_ms=6)
    assert len(s.siblings) == 1 and winner(s).is_tombstone
    assert live_value(s, 0) is None and is_deleted(s, 0)


def test_superseded_write_arriving_late_is_dropped() -> None:
    a = update(EMPTY, EMPTY_CLOCK, "a", b"old", timestamp_ms=1)
    b = sync(EMPTY, a)  # b read a's value ...
    b = update(b, join(b), "b", b"new", timestamp_ms=2)  # ... and overwrote it
    c = update(EMPTY, join(a), "c", b"newer-elsewhere", timestamp_ms=3)  # c never saw a's data
    assert sync(a, b).dots == {Dot("b", 1)}
    assert sync(a, c).dots == {Dot("c", 1)}  # c's context covered a:1 although c never held it
    assert sync_all([a, b, c]).dots == {Dot("b", 1), Dot("c", 1)}


def test_winner_rule_tie_breaks() -> None:
    clock = VersionVector.from_counters({"a": 1, "b": 1})
    s1 = Sibling(Dot("a", 1), b"x", 0, 10)
    s2 = Sibling(Dot("b", 1), b"y", 0, 10)
    assert winner(SiblingSet.make(clock, [s1, s2])) == s2  # same time: higher node id wins
    s3 = Sibling(Dot("a", 1), b"x", 0, 11)
    assert winner(SiblingSet.make(clock, [s3, s2])) == s3


def test_expiry_applies_to_winner() -> None:
    s = update(EMPTY, EMPTY_CLOCK, "a", b"v", timestamp_ms=1, expire_at_ms=100)
    assert live_value(s, 99) == b"v"
    assert live_value(s, 100) is None


def test_descends_and_concurrent() -> None:
    a = VersionVector.from_counters({"x": 2, "y": 1})
    b = VersionVector.from_counters({"x": 1})
    c = VersionVector.from_counters({"y": 2})
    assert descends(a, b) and not descends(b, a)
    assert descends(a, a) and descends(a, EMPTY_CLOCK)
    assert concurrent(a, c) and not concurrent(a, b)


# -- pruning -----------------------------------------------------------------------------------


def test_prune_drops_oldest_but_keeps_sibling_nodes() -> None:
    clock = VersionVector({f"n{i:03}": ClockEntry(1, i) for i in range(100)})
    pruned = prune(clock, keep={"n000"}, max_entries=64)
    assert len(pruned) == 64
    assert pruned["n000"] == 1  # oldest but a live sibling's node
    assert pruned["n001"] == 0 and pruned["n036"] == 0 and pruned["n037"] == 1


def test_update_bounds_the_clock() -> None:
    s = EMPTY
    for i in range(100):
        s = update(s, join(s), f"n{i:03}", b"v", timestamp_ms=i, max_entries=8)
    assert len(s.clock) == 8
    assert s.clock["n099"] == 1 and s.clock["n091"] == 0


# -- encodings -----------------------------------------------------------------------------------

clocks = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.tuples(st.integers(1, 2**40), st.integers(0, 2**45)),
    max_size=10,
).map(lambda d: VersionVector({n: ClockEntry(c, t) for n, (c, t) in d.items()}))


@given(clocks)
def test_context_round_trip(clock: VersionVector) -> None:
    text = encode_context(clock)
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_context(text) == clock
    assert decode_context(text.encode()) == clock


@given(clocks, st.data())
def test_context_rejects_any_text_corruption(clock: VersionVector, data) -> None:
    text = encode_context(clock)
    pos = data.draw(st.integers(0, len(text) - 1))
    repl = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != text[pos]))
    bad = text[:pos] + repl + text[pos + 1 :]
    with pytest.raises(InvalidContextError, match="^invalid causal context$"):
        decode_context(bad)


@given(clocks, st.data())
def test_context_rejects_byte_flips(clock: VersionVector, data) -> None:
    raw = bytearray(encode_context_bytes(clock))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidContextError):
        decode_context(bad)


@pytest.mark.parametrize(
    "text", ["", "A", "!!!!", "not a context", encode_context(EMPTY_CLOCK) + "AA", "é"]
)
def test_context_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidContextError) as info:
        decode_context(text)
    assert isinstance(info.value, ValueError) and str(info.value) == "invalid causal context"


def test_context_rejects_foreign_version() -> None:
    from respkv.cluster.codec import frame

    raw = frame(2, b"\x00")
    with pytest.raises(InvalidContextError):
        decode_context(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())


@given(sibling_sets, st.data())
def test_sibling_set_rejects_byte_flips(s: SiblingSet, data) -> None:
    raw = bytearray(encode_sibling_set(s))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidSiblingSetError):
        decode_sibling_set(bytes(raw))


@given(sibling_sets)
def test_sibling_set_round_trip_and_digest(s: SiblingSet) -> None:
    raw = encode_sibling_set(s)
    assert decode_sibling_set(raw) == s
    assert version_digest(decode_sibling_set(raw)) == version_digest(s)


@given(set_pairs)
def test_digest_distinguishes_sets(pair: tuple[SiblingSet, SiblingSet]) -> None:
    a, b = pair
    assume(a != b)
    assert version_digest(a) != version_digest(b)
