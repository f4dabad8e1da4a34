"""Purging dead keys, the pure rules (respkv/cluster/versions.py: ``dead_since_ms``,
``purgeable``, the dot ``floor``; docs/cluster.md, "Purging dead keys")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster import versions as V
from respkv.cluster.versions import EMPTY, SiblingSet

DAY = 86_400_000


def write(s: SiblingSet, node: str, value: bytes | None, t: int, expire: int = 0,
          floor: int = 0) -> SiblingSet:
    return V.overwrite(s, node, value, timestamp_ms=t, expire_at_ms=expire, floor=floor)


def test_a_live_value_is_never_dead() -> None:
    s = write(EMPTY, "a", b"v", 1000)
    assert V.dead_since_ms(s, 10 * DAY) is None
    assert not V.purgeable(s, 10 * DAY, 0)


def test_a_tombstone_dies_when_written_and_is_purgeable_after_the_grace() -> None:
    s = write(write(EMPTY, "a", b"v", 1000), "a", None, 5000)
    assert V.dead_since_ms(s, 5000) == 5000
    assert not V.purgeable(s, 5000 + DAY - 1, DAY)
    assert V.purgeable(s, 5000 + DAY, DAY)


def test_an_expired_value_dies_when_it_expires() -> None:
    s = write(EMPTY, "a", b"v", 1000, expire=9000)
    assert V.dead_since_ms(s, 8999) is None  # still live
    assert V.dead_since_ms(s, 9000) == 9000
    assert V.purgeable(s, 9000 + DAY, DAY)
    assert not V.purgeable(s, 9000 + DAY - 1, DAY)


def test_a_live_concurrent_sibling_keeps_the_key() -> None:
    base = write(EMPTY, "a", b"v0", 1000)
    deleted = write(base, "a", None, 2000)
    concurrent = write(base, "b", b"v1", 1500)  # never saw the delete
    s = V.sync(deleted, concurrent)
    assert len(s.siblings) == 2
    assert V.dead_since_ms(s, 10 * DAY) is None
    both_dead = V.sync(deleted, write(base, "b", None, 3000))
    assert V.dead_since_ms(both_dead, 10 * DAY) == 3000  # the latest death counts


def test_the_clocks_latest_write_counts_even_without_a_sibling_from_it() -> None:
    s = write(write(EMPTY, "a", None, 1000), "b", None, 7000)
    assert V.dead_since_ms(s, 10 * DAY) == 7000


@given(st.integers(0, 10**12), st.integers(0, 1000), st.integers(0, 5))
def test_the_new_dot_is_above_the_floor_and_above_the_clock(floor: int, prior: int,
                                                            writes: int) -> None:
    s = EMPTY
    for i in range(prior % 7):
        s = write(s, "a", b"x", i)
    mine = s.clock["a"]
    for _ in range(writes + 1):
        s = write(s, "a", b"y", 10, floor=floor)
        new = s.siblings[0].dot
        assert new.counter > floor and new.counter > mine
        assert s.clock["a"] == new.counter
        mine = new.counter
    ctx = V.update(s, s.clock, "a", b"z", timestamp_ms=11, floor=floor + 5)
    assert ctx.siblings[-1].dot.counter == max(mine, floor + 5) + 1


def test_without_the_floor_a_purged_key_written_again_is_lost_on_a_replica_that_kept_it() -> None:
    """Riak's kv679, at the level of the sets: a (coordinator) and b (replica) both hold the
    key's history; a purges it and writes the key again. With counters restarting at 1 the new
    write's dot is one b's clock already covers, and b's merge drops the new value; with the
    floor (raised to a's counter on the key when it was purged) b keeps it."""
    s = write(write(write(EMPTY, "a", b"v1", 1), "a", b"v2", 2), "a", None, 3)
    replica_b = s  # b got every write
    purged_counter = s.clock["a"]
    # a purged the key: its next write starts from nothing
    lost = write(EMPTY, "a", b"again", 4 * DAY)
    assert V.live_value(V.sync(replica_b, lost), 4 * DAY) is None  # the hazard, shown
    kept = write(EMPTY, "a", b"again", 4 * DAY, floor=purged_counter)
    merged = V.sync(replica_b, kept)
    assert V.live_value(merged, 4 * DAY) == b"again"
    assert V.live_value(V.sync(kept, replica_b), 4 * DAY) == b"again"
