"""Crash-point tests: crash the fault file system at every mutating file operation of a flush,
a compaction, a recovering open and a write/sync/rotate workload; reopen; check that every synced
write is there and that each key holds a value it was actually given.

For every operation the test first runs it to completion counting the file operations it makes
(n), then for k = 1..n rebuilds the same state from scratch, arms ``crash_after(k)``, runs it,
loses power (with a torn tail on odd k) and verifies two reopens in a row.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from storage_helpers import Clock, open_engine

from respkv.storage.api import Record
from respkv.storage.faultfs import FaultFileSystem, SimulatedCrash
from respkv.storage.lsm import LSMEngine

GRACE = 1000
CRASH_POINTS: dict[str, int] = {}


class Tracker:
    """What each key may hold after a crash: its value at the last sync, or any value given
    since (None = deleted)."""

    def __init__(self) -> None:
        self.model: dict[bytes, Record | None] = {}
        self.synced: dict[bytes, Record | None] = {}
        self.since: dict[bytes, list[Record | None]] = {}

    def set(self, key: bytes, rec: Record | None) -> None:
        self.model[key] = rec
        self.since.setdefault(key, []).append(rec)

    def sync(self) -> None:
        self.synced = dict(self.model)
        self.since = {}

    def check(self, e: LSMEngine) -> None:
        got = dict(e.scan())
        for k in set(self.model) | set(got):
            allowed = [self.synced.get(k)] + self.since.get(k, [])
            assert got.get(k) in allowed, (k, got.get(k), allowed)
            assert e.get(k) == got.get(k)


Setup = Callable[[FaultFileSystem, Clock, Tracker], LSMEngine]
Op = Callable[[LSMEngine, FaultFileSystem, Clock, Tracker], object]


def _fill(e: LSMEngine, t: Tracker, rng: random.Random, n: int, prefix: bytes = b"k") -> None:
    for _ in range(n):
        k = prefix + b"%03d" % rng.randrange(120)
        r = rng.random()
        if r < 0.1:
            e.delete(k)
            t.set(k, None)
        else:
            v = Record(b"%x" % rng.getrandbits(64) * rng.randrange(1, 20))
            e.put(k, v.value)
            t.set(k, v)


def setup_flush(fs: FaultFileSystem, clock: Clock, t: Tracker) -> LSMEngine:
    rng = random.Random(7)
    e = open_engine(fs, clock, inline_background=False, memtable_bytes=1 << 20)
    _fill(e, t, rng, 150)
    e.flush()
    _fill(e, t, rng, 150)
    e.sync()
    t.sync()
    _fill(e, t, rng, 40)  # not synced: may or may not survive
    return e


def op_flush(e: LSMEngine, fs: FaultFileSystem, clock: Clock, t: Tracker) -> None:
    e.flush()


def setup_compaction(fs: FaultFileSystem, clock: Clock, t: Tracker) -> LSMEngine:
    rng = random.Random(8)
    e = open_engine(fs, clock, inline_background=False, memtable_bytes=1 << 20,
                    tombstone_grace_ms=GRACE)
    for i in range(4):
        _fill(e, t, rng, 120)
        if i == 2:
            e.delete_range(b"k050", b"k070")
            for k in list(t.model):
                if b"k050" <= k < b"k070":
                    t.set(k, None)
        e.flush()
    e.sync()
    t.sync()
    clock.t += 10 * GRACE  # tombstones may now be purged at the bottom
    return e


def op_compaction(e: LSMEngine, fs: FaultFileSystem, clock: Clock, t: Tracker) -> None:
    assert len(e._state.tables) >= 4
    e.compact(full=True)


def setup_recovery(fs: FaultFileSystem, clock: Clock, t: Tracker) -> LSMEngine:
    rng = random.Random(9)
    e = open_engine(fs, clock, inline_background=False, memtable_bytes=6000, max_frozen=100)
    _fill(e, t, rng, 200)  # several rotated logs, nothing flushed
    e.delete_range(b"k100", None)
    for k in list(t.model):
        if k >= b"k100":
            t.set(k, None)
    e.sync()
    t.sync()
    fs.crash()
    return e


def op_recovery(e: LSMEngine, fs: FaultFileSystem, clock: Clock, t: Tracker) -> None:
    open_engine(fs, clock, inline_background=False, memtable_bytes=6000)


def setup_workload(fs: FaultFileSystem, clock: Clock, t: Tracker) -> LSMEngine:
    e = open_engine(fs, clock, inline_background=False, memtable_bytes=3000, max_frozen=100)
    e.sync()
    t.sync()
    return e


def op_workload(e: LSMEngine, fs: FaultFileSystem, clock: Clock, t: Tracker) -> None:
    rng = random.Random(10)
    for i in range(12):
        _fill(e, t, rng, 8)
        if i % 3 == 2:
            e.write_batch([(b"b%d" % j, Record(b"%d" % i)) for j in range(3)])
            for j in range(3):
                t.set(b"b%d" % j, Record(b"%d" % i))
        e.sync()
        t.sync()
        if i % 4 == 3:
            e.do_background_work()


def setup_inline(fs: FaultFileSystem, clock: Clock, t: Tracker) -> LSMEngine:
    e = open_engine(fs, clock, inline_background=True, memtable_bytes=2500,
                    tombstone_grace_ms=GRACE)
    e.sync()
    t.sync()
    return e


def op_inline(e: LSMEngine, fs: FaultFileSystem, clock: Clock, t: Tracker) -> None:
    """Writes whose puts run flushes and compactions inline (several of each)."""
    rng = random.Random(11)
    for i in range(20):
        _fill(e, t, rng, 10)
        if i % 2:
            e.sync()
            t.sync()
        if i == 10:
            clock.t += 10 * GRACE
    assert e.stats()["compactions"] >= 1


SCENARIOS: dict[str, tuple[Setup, Op]] = {
    "inline flush+compaction": (setup_inline, op_inline),
    "flush": (setup_flush, op_flush),
    "compaction": (setup_compaction, op_compaction),
    "recovery": (setup_recovery, op_recovery),
    "workload": (setup_workload, op_workload),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_crash_at_every_file_operation(name: str) -> None:
    setup, op = SCENARIOS[name]
    # Count the operation's file operations on an undisturbed run.
    fs = FaultFileSystem(random.Random(0))
    clock = Clock()
    t = Tracker()
    e = setup(fs, clock, t)
    before = fs.ops
    op(e, fs, clock, t)
    n = fs.ops - before
    assert n > 3
    tested = 0
    for k in range(1, n + 1):
        fs = FaultFileSystem(random.Random(k))
        clock = Clock()
        t = Tracker()
        e = setup(fs, clock, t)
        fs.crash_after(k)
        with pytest.raises(SimulatedCrash):
            op(e, fs, clock, t)
        fs.crash(tear=bool(k % 2), partial_dir_ops=bool(k % 3))
        e2 = open_engine(fs, clock, tombstone_grace_ms=GRACE)
        t.check(e2)
        e2.close()
        e3 = open_engine(fs, clock, tombstone_grace_ms=GRACE)  # recovery is repeatable
        t.check(e3)
        e3.close()
        tested += 1
    CRASH_POINTS[name] = tested
    print(f"\ncrash points tested for {name}: {tested}")
    assert tested == n
