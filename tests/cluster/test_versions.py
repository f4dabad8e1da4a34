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


# -- the fast paths equal the straightforward definitions ----------------------------------------
#
# versions.py is written for speed (inlined varints, trusted constructors, one-sibling fast
# paths). Below, the plain definitions it replaced, written with public constructors only and
# an independent varint reader, and properties that the two agree on every input, valid or not.

from respkv.cluster import versions as V  # noqa: E402
from respkv.cluster.codec import DecodeError, frame, unframe  # noqa: E402


class RefReader:
    """The field reader the decoders used before: one call per field, a loop per varint."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uvarint(self) -> int:
        result = 0
        for i in range(10):
            if self.pos >= len(self.data):
                raise DecodeError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return result
        raise DecodeError("varint too long")

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("truncated field")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def str_(self) -> str:
        try:
            return self.raw(self.uvarint()).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8") from exc


def ref_put_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def ref_read_clock(r: RefReader) -> VersionVector:
    entries: dict[str, ClockEntry] = {}
    prev: str | None = None
    for _ in range(r.uvarint()):
        node, counter, ts = r.str_(), r.uvarint(), r.uvarint()
        if counter < 1 or (prev is not None and node <= prev):
            raise DecodeError("non-canonical clock")
        prev = node
        entries[node] = ClockEntry(counter, ts)
    return VersionVector(entries)


def ref_decode_sibling_set(data: bytes) -> SiblingSet:
    try:
        r = RefReader(unframe(bytes(data), V.SIBLING_SET_FORMAT_VERSION))
        clock = ref_read_clock(r)
        nodes = [n for n, _ in clock.items()]
        sibs: list[Sibling] = []
        for _ in range(r.uvarint()):
            idx = r.uvarint()
            if idx >= len(nodes):
                raise DecodeError("dot node out of range")
            dot = Dot(nodes[idx], r.uvarint())
            flags = r.raw(1)[0]
            if flags & ~1:
                raise DecodeError("unknown sibling flags")
            expire, ts = r.uvarint(), r.uvarint()
            value = None if flags & 1 else r.raw(r.uvarint())
            if dot.counter < 1 or not clock.covers(dot) or (sibs and dot <= sibs[-1].dot):
                raise DecodeError("non-canonical siblings")
            sibs.append(Sibling(dot, value, expire, ts))
        if r.pos != len(r.data):
            raise DecodeError("trailing bytes")
        return SiblingSet(clock, tuple(sibs))
    except DecodeError as exc:
        raise InvalidSiblingSetError(str(exc)) from exc


def ref_decode_context(text: str) -> VersionVector:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    r = RefReader(unframe(raw, V.CONTEXT_FORMAT_VERSION))
    clock = ref_read_clock(r)
    assert r.pos == len(r.data)
    return clock


def raw_body(entries: list[tuple[str, int, int]], sibs: list[tuple[int, int, int, int, int, bytes]],
             trailing: bytes = b"") -> bytes:
    """A sibling-set body written field by field with no checks at all: clock entries
    (node, counter, ts), then siblings (node index, counter, flags, expire, ts, value)."""
    out = bytearray()
    ref_put_uvarint(out, len(entries))
    for node, counter, ts in entries:
        raw = node.encode()
        ref_put_uvarint(out, len(raw))
        out += raw
        ref_put_uvarint(out, counter)
        ref_put_uvarint(out, ts)
    ref_put_uvarint(out, len(sibs))
    for idx, counter, flags, expire, ts, value in sibs:
        ref_put_uvarint(out, idx)
        ref_put_uvarint(out, counter)
        out.append(flags)
        ref_put_uvarint(out, expire)
        ref_put_uvarint(out, ts)
        if not flags & 1:
            ref_put_uvarint(out, len(value))
            out += value
    return bytes(out) + trailing


def ref_encode_sibling_set(s: SiblingSet) -> bytes:
    nodes = [n for n, _ in s.clock.items()]
    return frame(V.SIBLING_SET_FORMAT_VERSION, raw_body(
        [(n, e.counter, e.timestamp_ms) for n, e in s.clock.items()],
        [(nodes.index(x.dot.node), x.dot.counter, 1 if x.value is None else 0, x.expire_at_ms,
          x.timestamp_ms, x.value or b"") for x in s.siblings],
    ))


def decode_outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return fn(data)
    except InvalidSiblingSetError:
        return InvalidSiblingSetError


def assert_decoders_agree(data: bytes) -> None:
    """decode_sibling_set and decode_sibling_set_clock accept exactly what the reference does,
    and return what it returns."""
    expected = decode_outcome(ref_decode_sibling_set, data)
    got = decode_outcome(decode_sibling_set, data)
    assert got == expected
    clock = decode_outcome(V.decode_sibling_set_clock, data)
    assert clock == (expected if expected is InvalidSiblingSetError else expected.clock)
    if isinstance(got, SiblingSet):
        assert_canonical(got.clock)


def assert_canonical(v: VersionVector) -> None:
    """What VersionVector's constructor would make of the same entries (order included)."""
    items = list(v.items())
    assert items == list(VersionVector(dict(items)).items())
    assert all(isinstance(e, ClockEntry) and e.counter >= 1 for _, e in items)


DEFECTS = ["none", "clock order", "clock duplicate", "clock counter 0", "node index",
           "dot counter 0", "dot not covered", "dot order", "flags", "trailing"]


@st.composite
def raw_sets(draw: st.DrawFn) -> tuple[str, bytes]:
    """A framed body that is valid but for (at most) one defect of the kind drawn, so that every
    check of the decoder is reached; returns (defect, framed bytes)."""
    defect = draw(st.sampled_from(DEFECTS))
    names = sorted(draw(st.sets(st.sampled_from(["a", "b", "c", "é", "n10", "n9"]), min_size=1,
                                max_size=4)))
    timestamps = st.sampled_from([0, 5, 1_700_000_000_000])
    entries = [(n, draw(st.integers(1, 200)), draw(timestamps)) for n in names]
    picks = draw(st.lists(st.integers(0, len(names) - 1), max_size=3))
    dots = sorted({(i, draw(st.integers(1, entries[i][1]))) for i in picks})
    sibs = [(i, c, draw(st.sampled_from([0, 1])), draw(st.sampled_from([0, 1_700_000_000_000])),
             draw(st.sampled_from([entries[i][2], 7])), draw(st.binary(max_size=3))) for i, c in dots]
    trailing = b""
    if defect == "clock order" and len(entries) > 1:
        entries[0], entries[1] = entries[1], entries[0]
    elif defect == "clock duplicate":
        entries.insert(0, entries[0])
    elif defect == "clock counter 0":
        j = draw(st.integers(0, len(entries) - 1))
        entries[j] = (entries[j][0], 0, entries[j][2])
    elif sibs and defect in ("node index", "dot counter 0", "dot not covered", "flags"):
        j = draw(st.integers(0, len(sibs) - 1))
        idx, counter, flags, expire, ts, value = sibs[j]
        if defect == "node index":
            idx = len(entries) + draw(st.integers(0, 200))
        elif defect == "dot counter 0":
            counter = 0
        elif defect == "dot not covered":
            counter = entries[idx][1] + draw(st.integers(1, 200))
        else:
            flags = draw(st.integers(2, 255))
        sibs[j] = (idx, counter, flags, expire, ts, value)
    elif defect == "dot order" and sibs:
        sibs.insert(0, sibs[-1])  # a duplicate, or out of order
    elif defect == "trailing":
        trailing = draw(st.binary(min_size=1, max_size=2))
    return defect, frame(V.SIBLING_SET_FORMAT_VERSION, raw_body(entries, sibs, trailing))


@settings(max_examples=400)
@given(raw_sets())
def test_decoders_agree_on_each_kind_of_defect(case: tuple[str, bytes]) -> None:
    _, data = case
    assert_decoders_agree(data)


@st.composite
def wide_sets(draw: st.DrawFn) -> SiblingSet:
    """Valid sets with any field values the format allows (multi-byte varints everywhere)."""
    big = st.one_of(st.integers(0, 300), st.integers(0, 2**64))
    clock = draw(clocks)
    sibs = []
    for node, entry in clock.items():
        for counter in sorted(draw(st.sets(st.integers(1, entry.counter), max_size=2))):
            ts = draw(st.one_of(st.just(entry.timestamp_ms), big))
            value = draw(st.one_of(st.none(), st.binary(max_size=3),
                                   st.binary(min_size=120, max_size=200)))
            sibs.append(Sibling(Dot(node, counter), value, draw(big), ts))
    return SiblingSet(clock, tuple(sibs))


@given(st.one_of(sibling_sets, wide_sets()))
def test_fast_codec_equals_reference_on_valid_sets(s: SiblingSet) -> None:
    data = encode_sibling_set(s)
    assert data == ref_encode_sibling_set(s)
    assert decode_sibling_set(data) == ref_decode_sibling_set(data) == s
    assert V.decode_sibling_set_clock(data) == s.clock


@given(sibling_sets, st.data())
def test_decoders_agree_on_damage_behind_a_good_checksum(s: SiblingSet, data) -> None:  # type: ignore[no-untyped-def]
    body = bytearray(unframe(encode_sibling_set(s), V.SIBLING_SET_FORMAT_VERSION))
    how = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    pos = data.draw(st.integers(0, len(body)))
    if how == "flip" and pos < len(body):
        body[pos] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        body[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    elif how == "delete":
        del body[pos : pos + data.draw(st.integers(1, 3))]
    else:
        del body[pos:]
    assert_decoders_agree(frame(V.SIBLING_SET_FORMAT_VERSION, bytes(body)))


@given(st.binary(max_size=30))
def test_decoders_agree_on_random_bodies(body: bytes) -> None:
    assert_decoders_agree(frame(V.SIBLING_SET_FORMAT_VERSION, body))


def test_decoders_accept_non_minimal_varints_as_before() -> None:
    # The format never writes them, but the decoder has always read 0x80 0x00 as 0; so do both.
    s = update(EMPTY, EMPTY_CLOCK, "a", b"v", timestamp_ms=1_700_000_000_000)
    body = unframe(encode_sibling_set(s), V.SIBLING_SET_FORMAT_VERSION)
    sib_expire = body.index(b"\x01\x00\x01\x00\x00") + 4  # count, idx, counter, flags, expire
    padded = body[:sib_expire] + b"\x80\x00" + body[sib_expire + 1 :]
    data = frame(V.SIBLING_SET_FORMAT_VERSION, padded)
    assert decode_sibling_set(data) == ref_decode_sibling_set(data) == s
    assert V.decode_sibling_set_clock(data) == s.clock


@given(clocks)
def test_context_codec_equals_reference(clock: VersionVector) -> None:
    text = encode_context(clock)
    assert decode_context(text) == ref_decode_context(text) == clock
    assert_canonical(decode_context(text))


def ref_merge(a: VersionVector, b: VersionVector) -> VersionVector:
    nodes = set(a.counters()) | set(b.counters())
    return VersionVector({
        n: ClockEntry(max(a[n], b[n]), max((e.timestamp_ms for e in (a.entry(n), b.entry(n)) if e),
                                           default=0))
        for n in nodes
    })


def ref_with_event(v: VersionVector, node: str, counter: int, ts: int) -> VersionVector:
    entries = dict(v.items())
    old = entries.get(node)
    entries[node] = ClockEntry(max(counter, old.counter if old else 0),
                               max(ts, old.timestamp_ms) if old else ts)
    return VersionVector(entries)


@given(clocks, clocks, st.sampled_from(["a", "b", "zz", ""]), st.integers(-1, 2**41),
       st.integers(0, 2**41))
def test_vector_operations_equal_reference(a: VersionVector, b: VersionVector, node: str,
                                           counter: int, ts: int) -> None:
    for got, expected in [
        (a.merge(b), ref_merge(a, b)),
        (a.merge(a), a),
        (a.with_event(node, counter, ts), ref_with_event(a, node, counter, ts)),
    ]:
        assert got == expected
        assert_canonical(got)
    for x, y in [(a, b), (b, a), (a, a), (a.merge(b), a), (a, a.merge(b))]:
        assert x.includes(y) == (ref_merge(x, y) == x)


def ref_update(s: SiblingSet, context: VersionVector, node_id: str, value: bytes | None,
               timestamp_ms: int, expire_at_ms: int, max_entries: int) -> SiblingSet:
    counter = max(s.clock[node_id], context[node_id]) + 1
    # a write is no older than anything it supersedes (the context's timestamps)
    timestamp_ms = max([timestamp_ms, *(e.timestamp_ms for e in context._entries.values())])
    kept = [x for x in s.siblings if not context.covers(x.dot)]
    kept.append(Sibling(Dot(node_id, counter), value, expire_at_ms, timestamp_ms))
    clock = ref_with_event(ref_merge(s.clock, context), node_id, counter, timestamp_ms)
    clock = prune(clock, [x.dot.node for x in kept], max_entries)
    return SiblingSet(clock, tuple(sorted(kept, key=lambda x: x.dot)))


@given(histories, st.sampled_from(REPLICAS + ["e"]), st.sampled_from(REPLICAS), st.data())
def test_update_and_overwrite_equal_reference(states, coord, r, data) -> None:  # type: ignore[no-untyped-def]
    s = states[r]
    context = data.draw(st.one_of(
        st.sampled_from([EMPTY_CLOCK, s.clock] + [x.clock for x in states.values()]), clocks))
    value = data.draw(st.sampled_from([None, b"v"]))
    ts = data.draw(st.integers(0, 60))
    expire = data.draw(st.sampled_from([0, 7, 1_700_000_000_000]))
    max_entries = data.draw(st.sampled_from([1, 2, 3, MAX_CLOCK]))
    got = update(s, context, coord, value, timestamp_ms=ts, expire_at_ms=expire,
                 max_entries=max_entries)
    assert got == ref_update(s, context, coord, value, ts, expire, max_entries)
    assert_canonical(got.clock)
    assert list(got.siblings) == sorted(got.siblings, key=lambda x: x.dot)
    got = overwrite(s, coord, value, timestamp_ms=ts, expire_at_ms=expire,
                    max_entries=max_entries)
    assert got == ref_update(s, s.clock, coord, value, ts, expire, max_entries)
    assert_canonical(got.clock)
    # A blind overwrite of a valid set depends on its clock alone (what LocalReplica relies on).
    assert got == overwrite(SiblingSet(s.clock, ()), coord, value, timestamp_ms=ts,
                            expire_at_ms=expire, max_entries=max_entries)


MAX_CLOCK = V.MAX_CLOCK_ENTRIES


def ref_sync(a: SiblingSet, b: SiblingSet) -> SiblingSet:
    kept = [x for x in a.siblings if x.dot in b.dots or not b.clock.covers(x.dot)]
    kept += [x for x in b.siblings if x.dot not in a.dots and not a.clock.covers(x.dot)]
    clock = prune(ref_merge(a.clock, b.clock), [x.dot.node for x in kept])
    return SiblingSet(clock, tuple(sorted(kept, key=lambda x: x.dot)))


@given(set_pairs)
def test_sync_equals_reference(pair: tuple[SiblingSet, SiblingSet]) -> None:
    a, b = pair
    got = sync(a, b)
    assert got == ref_sync(a, b)
    assert_canonical(got.clock)
    assert V.is_superseded_by(a, b) == (ref_sync(b, a) == b)


def test_a_late_write_is_no_older_than_what_it_supersedes() -> None:
    """Simulation seed 200839: n4 writes c3 during a partition (t=8072) while n2 writes c2 and
    then c0b (t=10034) on the other side; a write forwarded earlier (its coordinator received
    it at t=8028) is held by the network and coordinated at n3 only after n3 has c0b: it
    supersedes c0b. Stamped 8028 it would lose the winner rule to c3 -- which c0b, that it
    replaced, had beaten -- and a read would return c3, older than acknowledged writes. Its
    time is raised to its context's latest (10034), so it wins."""
    base = overwrite(EMPTY, "n1", b"c0", timestamp_ms=7000)
    c3 = overwrite(base, "n4", b"c3", timestamp_ms=8072)
    c0b = overwrite(overwrite(base, "n2", b"c2", timestamp_ms=8428), "n2", b"c0b",
                    timestamp_ms=10034)
    assert live_value(sync(c3, c0b), 0) == b"c0b"
    late = overwrite(c0b, "n3", b"late", timestamp_ms=8028)  # n3 had c0b, not c3
    assert late.siblings[0].timestamp_ms == 10034
    merged = sync(c3, late)
    assert {x.value for x in merged.siblings} == {b"c3", b"late"}
    assert live_value(merged, 0) == b"late"
