"""Scans read in windows (respkv/storage/api.py, ``Engine.scan``): the same records as a model
whatever the window sizes, a key written ahead of the iteration seen and one behind not, and an
early stop copying one small window of the memtable (SCAN COUNT 10 on 200k keys had copied the
whole memtable tail: 84 ms a call)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import open_engine

from respkv.storage import lsm as lsm_module
from respkv.storage import memory as memory_module
from respkv.storage.faultfs import FaultFileSystem
from respkv.storage.memory import MemoryEngine
from respkv.storage.memtable import Memtable

KEYS = [b"k%03d" % i for i in range(300)]


def small_windows(monkeypatch: pytest.MonkeyPatch, first: int, most: int) -> None:
    for mod in (lsm_module, memory_module):
        monkeypatch.setattr(mod, "SCAN_WINDOW_FIRST", first)
        monkeypatch.setattr(mod, "SCAN_WINDOW_MAX", most)


SPACE = 40  # keys of the model test: few, so that a short script fills its range densely
ops = st.lists(st.tuples(st.sampled_from(["put", "put", "delete", "delete_range"]),
                         st.integers(0, SPACE - 1), st.integers(0, SPACE - 1)),
               min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(ops, st.integers(1, 5), st.integers(1, 40), st.integers(0, SPACE - 1),
       st.integers(0, SPACE), st.sampled_from([4 << 10, 64 << 10]))
def test_windowed_scans_equal_the_model(script: list[tuple[str, int, int]], first: int,
                                        most: int, lo: int, hi: int, memtable: int) -> None:
    """Random puts, deletes and range deletes; a 4 KB memtable spreads the data over the active
    memtable, frozen ones and tables, a 64 KB one keeps it mostly in the active memtable (the
    part read in windows). Every window size from 1 up returns the model's range."""
    mp = pytest.MonkeyPatch()
    try:
        small_windows(mp, first, max(first, most))
        e = open_engine(FaultFileSystem(random.Random(7)), memtable_bytes=memtable)
        mem = MemoryEngine()
        model: dict[bytes, bytes] = {}
        for i, (op, a, b) in enumerate(script):
            if op == "put":
                v = b"v%d" % i * 5
                e.put(KEYS[a], v)
                mem.put(KEYS[a], v)
                model[KEYS[a]] = v
            elif op == "delete":
                e.delete(KEYS[a])
                mem.delete(KEYS[a])
                model.pop(KEYS[a], None)
            else:
                s, t = KEYS[min(a, b)], KEYS[max(a, b)]
                e.delete_range(s, t)
                mem.delete_range(s, t)
                for k in [k for k in model if s <= k < t]:
                    del model[k]
        lo, hi = min(lo, hi), max(lo, hi)
        start = KEYS[lo] if lo else b""
        end = None if hi == SPACE else KEYS[hi]
        want = sorted((k, v) for k, v in model.items() if k >= start and (end is None or k < end))
        assert [(k, r.value) for k, r in e.scan(start, end)] == want
        assert [(k, r.value) for k, r in mem.scan(start, end)] == want
        e.close()
    finally:
        mp.undo()


@pytest.mark.parametrize("engine", ["lsm", "memory"])
def test_a_write_ahead_of_the_iteration_is_seen_and_one_behind_it_is_not(
        engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    small_windows(monkeypatch, 4, 4)
    e = (open_engine(FaultFileSystem(random.Random(1)), memtable_bytes=1 << 20)
         if engine == "lsm" else MemoryEngine())
    for k in KEYS[:100]:
        e.put(k, b"old")
    it = e.scan()
    seen = [next(it) for _ in range(10)]  # windows [0,4), [4,8), [8,12) taken
    assert [k for k, _ in seen] == KEYS[:10]
    e.put(KEYS[5], b"new behind")  # behind the iteration: not seen again
    e.put(KEYS[50], b"new ahead")  # ahead of it: seen with its new value
    e.delete(KEYS[60])  # ahead: gone
    e.put(b"k0505", b"inserted ahead")
    rest = dict(it)
    assert rest[KEYS[50]].value == b"new ahead"
    assert KEYS[60] not in rest and KEYS[5] not in rest
    assert rest[b"k0505"].value == b"inserted ahead"
    assert len(rest) == 100 - 10 - 1 + 1


def test_an_early_stop_copies_one_small_window_of_the_memtable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    e = open_engine(FaultFileSystem(random.Random(2)), memtable_bytes=64 << 20)
    for i in range(20_000):
        e.put(b"key:%06d" % i, b"v")
    copied: list[int] = []
    real = Memtable.snapshot_entries

    def counting(self: Memtable, start: bytes, end: bytes | None,
                 limit: int | None = None) -> tuple[list, bytes | None]:
        entries, cut = real(self, start, end, limit)
        copied.append(len(entries))
        return entries, cut

    monkeypatch.setattr(Memtable, "snapshot_entries", counting)
    it = e.scan(b"key:001000")
    assert [k for k, _ in (next(it) for _ in range(10))][0] == b"key:001000"
    assert copied == [lsm_module.SCAN_WINDOW_FIRST]
    copied.clear()
    assert sum(1 for _ in e.scan()) == 20_000
    assert max(copied) == lsm_module.SCAN_WINDOW_MAX  # windows grow to the cap, then stay
    assert copied[:3] == [64, 128, 256] and sum(copied) == 20_000
