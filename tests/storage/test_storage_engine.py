"""Directed engine tests: expiry and tombstones through compaction, range deletes, batches,
durability across log rotation, corruption and I/O errors, threads, the real file system."""

from __future__ import annotations

import threading

import pytest
from storage_helpers import DB, Clock, open_engine

from respkv.storage.api import Record
from respkv.storage.errors import (
    EngineClosedError,
    LogCorruptionError,
    TableCorruptionError,
)
from respkv.storage.faultfs import FaultFileSystem
from respkv.storage.format import RECORD_HEADER_SIZE
from respkv.storage.lsm import LSMEngine


def _tables(fs: FaultFileSystem) -> list[str]:
    return [n for n in fs.listdir(DB) if n.endswith(".sst")]


def _logs(fs: FaultFileSystem) -> list[str]:
    return [n for n in fs.listdir(DB) if n.endswith(".log")]


def test_expired_record_keeps_shadowing_older_versions_in_a_partial_compaction(
        fs: FaultFileSystem, clock: Clock) -> None:
    e = open_engine(fs, clock)
    e.put(b"k", b"old")
    e.flush()
    e.put(b"other", b"x")
    e.flush()
    e.put(b"k", b"new", expire_at_ms=clock.t - 1)  # already expired
    e.flush()
    e.compact(newest=2)  # not the bottom: the expired record must become a tombstone
    assert e.get(b"k") in (None, Record(b"new", clock.t - 1))
    assert e.stats()["tables"] == 2
    e.compact(full=True)
    assert e.get(b"k") is None and e.get(b"other") == Record(b"x")


def test_tombstones_dropped_only_at_the_bottom_after_grace(fs: FaultFileSystem, clock: Clock) -> None:
    e = open_engine(fs, clock, tombstone_grace_ms=1000)
    e.put(b"a", b"1")
    e.put(b"b", b"1")
    e.flush()
    e.put(b"z", b"1")
    e.flush()
    e.delete(b"a")
    e.flush()
    clock.t += 5000
    e.compact(newest=2)  # not bottom: the tombstone must survive, grace or not
    assert e.get(b"a") is None
    e.compact(full=True)
    assert e.get(b"a") is None and e.get(b"b") == Record(b"1")
    assert e.stats()["tables"] == 1
    # bottom and past grace: gone from the table, nothing older to resurrect
    (t,) = e._state.tables
    assert t.props.tombstones == 0 and t.props.entries == 2


def test_tombstone_within_grace_survives_full_compaction(fs: FaultFileSystem, clock: Clock) -> None:
    e = open_engine(fs, clock, tombstone_grace_ms=10_000)
    e.put(b"a", b"1")
    e.flush()
    e.delete(b"a")
    e.compact(full=True)
    e.flush()
    e.compact(full=True)
    (t,) = e._state.tables
    assert t.props.tombstones == 1 and e.get(b"a") is None


def test_delete_range_across_memtable_tables_reopen_and_compaction(fs: FaultFileSystem) -> None:
    e = open_engine(fs)
    for i in range(200):
        e.put(b"db1:%03d" % i, b"v")
        e.put(b"db2:%03d" % i, b"w")
        if i % 50 == 0:
            e.flush()
    aof_before = e.stats()["aof_size"]
    e.delete_range(b"db1:", b"db1;")
    assert e.stats()["aof_size"] - aof_before < 100  # one record, not one per key
    e.put(b"db1:007", b"after")
    assert e.get(b"db1:005") is None and e.get(b"db1:007") == Record(b"after")
    assert [k for k, _ in e.scan(b"db1:", b"db1;")] == [b"db1:007"]
    assert len(list(e.scan(b"db2:", b"db2;"))) == 200
    e.close()
    e = open_engine(fs)
    assert [k for k, _ in e.scan(b"db1:", b"db1;")] == [b"db1:007"]
    e.compact(full=True)
    assert [k for k, _ in e.scan(b"db1:", b"db1;")] == [b"db1:007"]
    assert len(list(e.scan())) == 201
    e.delete_range(b"", None)
    assert list(e.scan()) == [] and e.get(b"db2:000") is None


def test_write_batch_is_atomic_across_a_torn_crash(fs: FaultFileSystem) -> None:
    for seed in range(30):
        fs = FaultFileSystem(__import__("random").Random(seed))
        e = open_engine(fs, memtable_bytes=1 << 20)
        e.put(b"before", b"1")
        e.sync()
        e.write_batch([(b"b%02d" % i, Record(b"x" * 50)) for i in range(20)] + [(b"before", None)])
        e.write_pending()
        fs.crash(tear=True)
        e = open_engine(fs, memtable_bytes=1 << 20)
        got = dict(e.scan())
        assert got in ({b"before": Record(b"1")},
                       {b"b%02d" % i: Record(b"x" * 50) for i in range(20)})


def test_synced_writes_survive_crash_across_log_rotation_without_flush(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=4000, inline_background=False, max_frozen=100)
    for i in range(60):
        e.put(b"k%02d" % i, b"v" * 300)
        if i % 7 == 0:
            e.sync()
    assert e.stats()["frozen_memtables"] >= 3 and not e.write_stalled()
    seq = e.sync()
    assert seq == e.last_seq
    fs.crash(tear=True)
    e = open_engine(fs)
    assert len(list(e.scan())) == 60


def test_background_work_in_a_thread_while_writing(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=4000, inline_background=False, max_frozen=1000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                e.sync()
                e.do_background_work()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    try:
        for i in range(3000):
            e.put(b"k%05d" % (i % 700), b"%d" % i * 20)
            if i % 100 == 0:
                assert e.get(b"k%05d" % (i % 700)) == Record(b"%d" % i * 20)
    finally:
        stop.set()
        t.join()
    assert not errors
    while e.do_background_work():
        pass
    final = {b"k%05d" % (i % 700): Record(b"%d" % i * 20) for i in range(3000)}
    assert dict(e.scan()) == final
    e.sync()
    fs.crash()
    assert dict(open_engine(fs).scan()) == final


# -- corruption ---------------------------------------------------------------------------------


def _one_log(fs: FaultFileSystem) -> str:
    (name,) = _logs(fs)
    return f"{DB}/{name}"


def test_torn_log_tail_is_truncated_and_recovered(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=1 << 20)
    for i in range(10):
        e.put(b"k%d" % i, b"v")
    e.sync()
    fs.kill_process()
    path = _one_log(fs)
    fs.chop(path, fs.size(path) - 5)  # the last record loses its tail
    e = open_engine(fs, memtable_bytes=1 << 20)
    assert sorted(k for k, _ in e.scan()) == sorted(b"k%d" % i for i in range(9))
    assert e.stats()["recovered_torn_bytes"] > 0


def test_bad_record_mid_log_names_file_and_offset_or_is_skipped(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=1 << 20)
    for i in range(10):
        e.put(b"k%d" % i, b"value")
    e.sync()
    fs.kill_process()
    path = _one_log(fs)
    rec_len = fs.size(path) // 10
    fs.corrupt(path, 3 * rec_len + RECORD_HEADER_SIZE + 2)  # inside the 4th record
    with pytest.raises(LogCorruptionError) as ei:
        open_engine(fs)
    assert ei.value.path == path and ei.value.offset == 3 * rec_len
    assert path in str(ei.value) and f"offset {3 * rec_len}" in str(ei.value)
    e = open_engine(fs, skip_corrupt=True)
    assert sorted(k for k, _ in e.scan()) == [b"k%d" % i for i in range(10) if i != 3]
    assert e.stats()["recovered_skipped_records"] == 1


def test_flipped_bit_in_table_block_raises_never_wrong_data(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=1 << 20, block_cache_bytes=0)
    for i in range(2000):
        e.put(b"k%05d" % i, b"v%d" % i)
    e.flush()
    e.close()
    (name,) = _tables(fs)
    path = f"{DB}/{name}"
    for off in (100, 5000, 20000):
        fs.corrupt(path, off)
    e = open_engine(fs, block_cache_bytes=0)
    bad = ok = 0
    for i in range(2000):
        try:
            r = e.get(b"k%05d" % i)
        except TableCorruptionError as err:
            assert err.path == path
            bad += 1
        else:
            assert r == Record(b"v%d" % i)
            ok += 1
    assert bad > 0 and ok > 0
    with pytest.raises(TableCorruptionError):
        list(e.scan())


def test_truncated_table_fails_open_clearly(fs: FaultFileSystem) -> None:
    e = open_engine(fs)
    for i in range(500):
        e.put(b"k%05d" % i, b"v")
    e.flush()
    e.close()
    name = _tables(fs)[0]
    fs.chop(f"{DB}/{name}", fs.size(f"{DB}/{name}") // 2)
    with pytest.raises(TableCorruptionError) as ei:
        open_engine(fs)
    assert name in str(ei.value)


def test_enospc_on_sync_stops_writes_and_eio_on_read_raises(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=1 << 20, block_cache_bytes=0)
    e.put(b"a", b"1")
    e.sync()
    fs.space_left = 10
    e.put(b"b", b"2" * 100)
    with pytest.raises(OSError) as ei:
        e.sync()
    assert ei.value.errno == 28
    with pytest.raises(EngineClosedError):
        e.put(b"c", b"3")
    with pytest.raises(EngineClosedError):
        e.sync()
    fs.space_left = None
    fs.crash()
    e = open_engine(fs, block_cache_bytes=0)
    assert e.get(b"a") == Record(b"1")
    e.flush()
    (name,) = _tables(fs)
    fs.eio_paths.add(f"{DB}/{name}")
    with pytest.raises(OSError):
        e.get(b"a")


def test_stats_fields(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=5000)
    for i in range(500):
        e.put(b"k%05d" % i, b"v" * 50)
    for i in range(500):
        e.get(b"k%05d" % i)
        e.get(b"absent%05d" % i)
    s = e.stats()
    for f in ("aof_size", "memtable_bytes", "frozen_memtables", "level0_tables",
              "pending_compactions", "bloom_false_positive_rate", "write_amplification",
              "block_cache_hits", "block_cache_misses"):
        assert f in s
    assert s["write_amplification"] > 0.5 and s["bloom_checks"] > 0
    assert 0 <= s["bloom_false_positive_rate"] < 0.05


def test_a_directory_is_opened_by_one_engine_at_a_time(fs: FaultFileSystem, tmp_path: object) -> None:
    e = open_engine(fs)
    with pytest.raises(BlockingIOError):
        open_engine(fs)
    e.close()
    open_engine(fs).close()
    path = str(tmp_path)
    e = LSMEngine.open(path)
    with pytest.raises(BlockingIOError):
        LSMEngine.open(path)
    e.close()
    LSMEngine.open(path).close()


def test_real_file_system(tmp_path: object) -> None:
    path = str(tmp_path)
    e = LSMEngine.open(path, memtable_bytes=20000, inline_background=True)
    for i in range(3000):
        e.put(b"k%05d" % i, b"v%d" % i)
    e.delete(b"k00010")
    assert e.sync() == e.last_seq
    e.close()
    e = LSMEngine.open(path)
    assert e.get(b"k00010") is None and e.get(b"k02999") == Record(b"v2999")
    assert len(list(e.scan())) == 2999
    e.close()


def test_enospc_during_flush_leaves_no_partial_table_and_can_retry(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=4000, inline_background=False, max_frozen=100)
    for i in range(40):
        e.put(b"k%02d" % i, b"v" * 300)
    assert e.stats()["frozen_memtables"] >= 2
    e.sync()
    fs.space_left = 500
    with pytest.raises(OSError):
        e.do_flush()
    assert _tables(fs) == []
    fs.space_left = None
    while e.do_flush():
        pass
    assert len(list(e.scan())) == 40 and _tables(fs)
    e.close()
    assert len(list(open_engine(fs).scan())) == 40


@pytest.mark.parametrize("with_range_delete", [False, True])
def test_cached_block_forms_answer_gets_and_scans_like_a_dict(
        fs: FaultFileSystem, clock: Clock, with_range_delete: bool) -> None:
    """Gets and scans through blocks cached raw (first touch), then in records form (second
    touch: answers decoded, bytes dropped), over overlapping tables with tombstones, expiry
    and meta; then after a compaction drops the old tables' blocks from the cache."""
    import random

    rng = random.Random(3)
    e = open_engine(fs, clock, memtable_bytes=64 << 10)
    model: dict[bytes, Record] = {}
    keys = [b"k%05d" % i for i in range(3000)]
    for rnd in range(4):
        for k in rng.sample(keys, 1500):
            x = rng.random()
            if x < 0.15:
                e.delete(k)
                model.pop(k, None)
            elif x < 0.3:
                r = Record(b"v%d-%s" % (rnd, k), clock.t + 10**9, b"meta")
                e.put(k, r.value, r.expire_at_ms, r.meta)
                model[k] = r
            else:
                e.put(k, b"v%d-%s" % (rnd, k))
                model[k] = Record(b"v%d-%s" % (rnd, k), 0, b"")
        e.flush()
    if with_range_delete:
        e.delete_range(b"k01000", b"k01500")
        e.flush()
        for k in keys[1000:1500]:
            model.pop(k, None)
    assert len(e._state.tables) > 1

    def check() -> None:
        for _touch in range(3):
            for k in keys:
                assert e.get(k) == model.get(k), k
        assert list(e.scan()) == sorted(model.items())
        assert list(e.scan(b"k00500", b"k02500")) == [
            (k, r) for k, r in sorted(model.items()) if b"k00500" <= k < b"k02500"]

    check()
    if not with_range_delete:
        blocks = list(e._cache._d.values())
        assert blocks and all(blk[0] is not None for blk in blocks)  # all in records form
    used = e._cache.used
    e.compact(full=True)
    check()
    assert e._cache.used <= used and all(k >> 32 in {t.number for t in e._state.tables}
                                         for k in e._cache._d)


def test_tables_with_different_bloom_k_are_all_read(fs: FaultFileSystem) -> None:
    e = open_engine(fs, bloom_bits_per_key=8)
    for i in range(300):
        e.put(b"a%03d" % i, b"x%d" % i)
    e.flush()
    e.close()
    e = open_engine(fs, bloom_bits_per_key=20)
    for i in range(300):
        e.put(b"b%03d" % i, b"y%d" % i)
    e.flush()
    assert len({t.bloom.k for t in e._state.tables}) == 2 and e._state.slow_path
    for _ in range(2):
        for i in range(300):
            assert e.get(b"a%03d" % i) == Record(b"x%d" % i, 0, b"")
            assert e.get(b"b%03d" % i) == Record(b"y%d" % i, 0, b"")
        assert e.get(b"a") is None and e.get(b"c") is None
    e.close()
