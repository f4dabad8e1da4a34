"""LocalReplica's fast paths (clock-only decoding of the stored set, storing superseding bytes as
they came, the decoded-set cache) against the plain definitions in respkv.cluster.versions:
after any sequence of writes and replications, every replica stores exactly
``encode_sibling_set`` of the set those definitions give. No processes, no sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.cluster import versions as V
from respkv.cluster.codec import frame, unframe
from respkv.node.replica import LocalReplica, cluster_storage_key
from respkv.storage.memory import MemoryEngine

NODES = ["n0", "n1", "n2"]
KEYS = [b"k", b"j"]

ops = st.lists(
    st.one_of(
        # (coordinate, at, key, context from (None: blind), seen from (None: none), tombstone,
        #  timestamp: not monotonic, as when a CW carries its sender's clock)
        st.tuples(st.just("coordinate"), st.integers(0, 2), st.sampled_from(KEYS),
                  st.one_of(st.none(), st.integers(0, 2)), st.one_of(st.none(), st.integers(0, 2)),
                  st.booleans(), st.integers(0, 20)),
        # (apply_raw, from, to, key): the bytes one replica stores, replicated to another
        st.tuples(st.just("apply_raw"), st.integers(0, 2), st.integers(0, 2),
                  st.sampled_from(KEYS)),
        st.tuples(st.just("apply"), st.integers(0, 2), st.integers(0, 2), st.sampled_from(KEYS)),
        st.tuples(st.just("read"), st.integers(0, 2), st.sampled_from(KEYS)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.sampled_from([0, 1, 64]))
def test_replicas_store_what_the_definitions_give(history, cache_entries: int) -> None:  # type: ignore[no-untyped-def]
    # Cache sizes: 0 takes every clock-only path, 1 a mix, 64 every cached path.
    clock = itertools.count(1_700_000_000_000)
    reps = [LocalReplica(MemoryEngine(), n, lambda: next(clock), cache_entries) for n in NODES]
    # (replica, key) -> the set it must store, None while it stores nothing
    model: dict[tuple[int, bytes], V.SiblingSet | None] = {(i, k): None for i in range(3)
                                                            for k in KEYS}

    def held(i: int, key: bytes) -> V.SiblingSet:
        return model[i, key] or V.EMPTY

    for op in history:
        if op[0] == "coordinate":
            _, i, key, ctx_from, seen_from, tomb, ts = op
            context = None if ctx_from is None else held(ctx_from, key).clock
            seen = None if seen_from is None else held(seen_from, key)
            value = None if tomb else b"v%d" % next(clock)
            new, data = reps[i].coordinate(0, key, value, 0, context, seen, timestamp_ms=ts)
            s = held(i, key)
            if seen is not None and seen.siblings:
                s = V.sync(s, seen)
            expected = (V.overwrite(s, NODES[i], value, timestamp_ms=ts) if context is None
                        else V.update(s, context, NODES[i], value, timestamp_ms=ts))
            assert new == expected and data == V.encode_sibling_set(expected)
            model[i, key] = expected
        elif op[0] == "apply_raw":
            _, src, dst, key = op
            raw = reps[src].read_raw(0, key)
            if raw:
                reps[dst].apply_raw(0, key, raw)
                model[dst, key] = V.sync(held(dst, key), held(src, key))
        elif op[0] == "apply":
            _, src, dst, key = op
            expected = V.sync(held(dst, key), held(src, key))
            assert reps[dst].apply(0, key, held(src, key)) == expected
            model[dst, key] = expected
        else:
            _, i, key = op
            assert reps[i].read(0, key) == held(i, key)
        for (i, key), must in model.items():
            assert reps[i].read_raw(0, key) == (b"" if must is None else V.encode_sibling_set(must))
            assert reps[i].read(0, key) == held(i, key)


def test_stats_count_writes_and_unchanged_writes() -> None:
    clock = itertools.count(1_700_000_000_000)
    a, b = (LocalReplica(MemoryEngine(), n, lambda: next(clock)) for n in NODES[:2])
    _, data = a.coordinate(0, b"k", b"v", 0, None)
    b.apply_raw(0, b"k", data)  # new key
    b.apply_raw(0, b"k", data)  # identical bytes
    _, newer = a.coordinate(0, b"k", b"w", 0, None)
    b.apply_raw(0, b"k", newer)  # supersedes
    b.apply_raw(0, b"k", data)  # older: merged, nothing changes
    assert b.stats == {"replica_reads": 0, "replica_writes": 4, "replica_writes_unchanged": 2,
                       "coordinated_writes": 0}
    assert b.read_raw(0, b"k") == newer


def reframe(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """``data`` with its body changed and a checksum that matches again."""
    return frame(V.SIBLING_SET_FORMAT_VERSION,
                 change(bytearray(unframe(data, V.SIBLING_SET_FORMAT_VERSION))))


def corruptions(good: bytes) -> list[bytes]:
    s = V.decode_sibling_set(good)
    (sib,) = s.siblings
    uncovered = V.SiblingSet(s.clock, (sib._replace(dot=V.Dot(sib.dot.node, 99)),))
    return [
        good[:-1] + bytes([good[-1] ^ 1]),  # bad checksum
        good[:-7],  # truncated
        reframe(good, lambda b: b + b"\x00"),  # trailing bytes behind a good checksum
        # A sibling whose dot the clock does not cover (the encoder does not check it).
        V.encode_sibling_set(uncovered),
        reframe(good, lambda b: b[: b.index(b"v1")] + b"v1"[:1]),  # value cut short
    ]


@pytest.mark.parametrize("which", range(5))
@pytest.mark.parametrize("cache_entries", [0, 64])
def test_corrupt_stored_bytes_raise_and_change_nothing(which: int, cache_entries: int) -> None:
    clock = itertools.count(1_700_000_000_000)
    a, b = (LocalReplica(MemoryEngine(), n, lambda: next(clock), cache_entries)
            for n in NODES[:2])
    _, good = a.coordinate(0, b"k", b"v1", 0, None)
    _, newer = a.coordinate(0, b"k", b"v2", 0, None)
    bad = corruptions(good)[which]
    skey = cluster_storage_key(0, b"k")
    b.engine.put(skey, bad)
    for attempt in (
        lambda: b.coordinate(0, b"k", b"x", 0, None),  # blind: reads our clock only
        lambda: b.coordinate(0, b"k", b"x", 0, V.EMPTY_CLOCK),
        lambda: b.apply_raw(0, b"k", newer),  # decided from our clock only
        lambda: b.apply(0, b"k", V.decode_sibling_set(newer)),
        lambda: b.read(0, b"k"),
    ):
        with pytest.raises(V.InvalidSiblingSetError):
            attempt()
        assert b.engine.get(skey).value == bad  # type: ignore[union-attr]


@pytest.mark.parametrize("which", range(5))
def test_corrupt_incoming_bytes_raise_and_change_nothing(which: int) -> None:
    clock = itertools.count(1_700_000_000_000)
    a, b = (LocalReplica(MemoryEngine(), n, lambda: next(clock)) for n in NODES[:2])
    _, good = a.coordinate(0, b"k", b"v1", 0, None)
    bad = corruptions(good)[which]
    with pytest.raises(V.InvalidSiblingSetError):
        b.apply_raw(0, b"k", bad)  # a new key
    assert b.read_raw(0, b"k") == b""
    _, older = b.coordinate(0, b"k", b"v0", 0, None)
    with pytest.raises(V.InvalidSiblingSetError):
        b.apply_raw(0, b"k", bad)  # a key we hold
    assert b.read_raw(0, b"k") == older


def sibling(node: str, counter: int, ts: int = 0) -> V.Sibling:
    return V.Sibling(V.Dot(node, counter), b"%s%d" % (node.encode(), counter), 0, ts)


def vv(**entries: tuple[int, int]) -> V.VersionVector:
    return V.VersionVector({n: V.ClockEntry(c, t) for n, (c, t) in entries.items()})


@pytest.mark.parametrize("stored, incoming", [
    # Higher counters but an older timestamp: the merge keeps ours, so incoming does not
    # supersede (cannot come from one history, where an entry's timestamp grows with it).
    (V.SiblingSet(vv(n0=(1, 100)), (sibling("n0", 1, 100),)),
     V.SiblingSet(vv(n0=(2, 50)), (sibling("n0", 2, 50),))),
    # Incoming still holds x:1, which we have seen and no longer hold: it stays dropped.
    (V.SiblingSet(vv(x=(1, 0), y=(1, 0)), (sibling("y", 1),)),
     V.SiblingSet(vv(x=(1, 0), y=(1, 0), z=(1, 0)), (sibling("x", 1), sibling("z", 1)))),
    # The usual case, and the same with a sibling both hold.
    (V.SiblingSet(vv(x=(1, 0)), (sibling("x", 1),)),
     V.SiblingSet(vv(x=(2, 0)), (sibling("x", 2),))),
    (V.SiblingSet(vv(x=(1, 0), y=(1, 0)), (sibling("x", 1), sibling("y", 1))),
     V.SiblingSet(vv(x=(1, 0), y=(1, 0), z=(1, 0)), (sibling("x", 1), sibling("z", 1)))),
])
@pytest.mark.parametrize("cache_entries", [0, 64])
def test_apply_raw_is_sync_on_crafted_sets(stored: V.SiblingSet, incoming: V.SiblingSet,
                                           cache_entries: int) -> None:
    rep = LocalReplica(MemoryEngine(), "n9", lambda: 0, cache_entries)
    rep.apply_raw(0, b"k", V.encode_sibling_set(stored))
    rep.apply_raw(0, b"k", V.encode_sibling_set(incoming))
    assert rep.read_raw(0, b"k") == V.encode_sibling_set(V.sync(stored, incoming))


@pytest.mark.parametrize("which", range(5))
def test_the_cache_never_hides_what_the_engine_holds(which: int) -> None:
    clock = itertools.count(1_700_000_000_000)
    a, b = (LocalReplica(MemoryEngine(), n, lambda: next(clock)) for n in NODES[:2])
    _, good = a.coordinate(0, b"k", b"v1", 0, None)
    b.apply_raw(0, b"k", good)  # b remembers the decoded set ...
    bad = corruptions(good)[which]
    b.engine.put(cluster_storage_key(0, b"k"), bad)  # ... then its disk holds other bytes
    with pytest.raises(V.InvalidSiblingSetError):
        b.coordinate(0, b"k", b"x", 0, None)
    with pytest.raises(V.InvalidSiblingSetError):
        b.read(0, b"k")
