"""``Engine.sample_key`` (RANDOMKEY's source, respkv/storage/api.py): a stored key inside the
range asked, drawn about uniformly over the entries wherever they are (active memtable, frozen
memtables, tables), with no work that grows with the data (a few block reads at most)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from storage_helpers import open_engine

from respkv.storage.faultfs import FaultFileSystem
from respkv.storage.lsm import SAMPLE_BLOCK_TRIES, LSMEngine
from respkv.storage.memory import MemoryEngine

KEYS = [b"k%04d" % i for i in range(4000)]


def spread_engine(fs: FaultFileSystem) -> LSMEngine:
    """4,000 keys over three tables of 1,500, 1,000 and 1,000 keys (written in random order,
    flushed in three batches) and the active memtable: the last 500 are written after the last
    flush."""
    e = open_engine(fs, memtable_bytes=4 << 20)
    order = KEYS[:]
    random.Random(3).shuffle(order)
    for lo, hi in ((0, 1500), (1500, 2500), (2500, 3500)):
        for k in order[lo:hi]:
            e.put(k, b"v" * 50)
        e.flush()
    for k in order[3500:]:
        e.put(k, b"v" * 50)
    return e


def draws(engine: LSMEngine | MemoryEngine, start: bytes, end: bytes | None,
          n: int) -> Counter[bytes]:
    rng = random.Random(11)
    out: Counter[bytes] = Counter()
    for _ in range(n):
        k = engine.sample_key(start, end, rng)
        assert k is not None
        out[k] += 1
    return out


def test_draws_cover_every_source_about_uniformly(fs: FaultFileSystem) -> None:
    e = spread_engine(fs)
    assert e.stats()["tables"] == 3
    n = 100_000
    got = draws(e, b"", None, n)
    assert set(got) == set(KEYS)  # every key, on disk or in memory, comes
    # Uniform up to the tables' estimate (entries per block): each run of 40 consecutive keys
    # (about 30 of them on disk, from every table's blocks) gets its share. A pick by source
    # alone (or by block alone, blocks being of unequal size) fails this.
    for g in range(0, len(KEYS), 40):
        share = sum(got[k] for k in KEYS[g:g + 40]) / n
        assert 0.7 < share * len(KEYS) / 40 < 1.3, (g, share)
    in_memory = sum(c for k, c in got.items() if e._mem.data.get(k) is not None)
    assert 0.11 < in_memory / n < 0.14  # the memtable holds 500 of the 4,000


@pytest.mark.parametrize("lo,hi", [(0, 5), (37, 38), (1200, 3000), (3990, 4000)])
def test_draws_stay_inside_the_range(fs: FaultFileSystem, lo: int, hi: int) -> None:
    e = spread_engine(fs)
    m = MemoryEngine()
    for k in KEYS:
        m.put(k, b"v")
    end = KEYS[hi] if hi < len(KEYS) else None
    for engine in (e, m):
        got = draws(engine, KEYS[lo], end, 2_000)
        # An edge block with no key in range answers the range's start (the caller looks on
        # from it); every other answer is a stored key in range.
        assert set(got) - {KEYS[lo]} <= set(KEYS[lo:hi])
        if hi - lo > 1:
            assert len(got) > 1


def test_an_empty_range_or_engine_gives_none(fs: FaultFileSystem) -> None:
    rng = random.Random(1)
    assert MemoryEngine().sample_key(b"", None, rng) is None
    e = open_engine(fs)
    assert e.sample_key(b"", None, rng) is None
    e.put(b"m", b"v")
    e.delete(b"m")
    assert e.sample_key(b"", None, rng) == b"m"  # a tombstone's key: the caller looks on
    e.close()
    e = spread_engine(FaultFileSystem(random.Random(2)))
    assert e.sample_key(b"z", None, rng) is None
    assert e.sample_key(b"a", b"b", rng) is None


def test_a_few_block_reads_at_most(fs: FaultFileSystem) -> None:
    """No scan of the data: a draw from a table reads SAMPLE_BLOCK_TRIES blocks at most."""
    e = spread_engine(fs)
    e.put(b"x", b"y")  # the memtable non-empty, the tables the most of the weight
    reads: list[int] = []
    for t in e._state.tables:
        orig = t.read_raw

        def counted(off: int, ln: int, orig=orig) -> bytes:  # type: ignore[no-untyped-def]
            reads.append(ln)
            return orig(off, ln)

        t.read_raw = counted  # type: ignore[method-assign]
    rng = random.Random(5)
    for _ in range(200):
        before = len(reads)
        e.sample_key(b"", None, rng)
        assert len(reads) - before <= SAMPLE_BLOCK_TRIES
