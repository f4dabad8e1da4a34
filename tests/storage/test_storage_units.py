"""Unit tests per component: commit-log records, Bloom filter, SSTable, manifest edits, the
compaction picker and the fault file system itself."""

from __future__ import annotations

import random

import pytest

from respkv.storage.api import Record
from respkv.storage.bloom import BloomBuilder, BloomFilter
from respkv.storage.commitlog import (
    encode_batch,
    encode_delete,
    encode_put,
    encode_range_delete,
    read_log,
)
from respkv.storage.compaction import merge_entries, pick_run
from respkv.storage.errors import LogCorruptionError, TableCorruptionError
from respkv.storage.faultfs import FaultFileSystem, SimulatedCrash
from respkv.storage.format import ENTRY_HEADER, KIND_DELETE, KIND_PUT, RECORD_HEADER_SIZE
from respkv.storage.manifest import TableMeta, VersionEdit
from respkv.storage.sstable import MISSING, BlockCache, RangeTombstone, TableBuilder, TableReader

# -- commit log ---------------------------------------------------------------------------------


def _log_bytes() -> tuple[bytes, list[int]]:
    recs = [
        encode_put(1, b"a", b"va", 0, b""),
        encode_put(2, b"b", b"vb" * 50, 123, b"meta"),
        encode_delete(3, b"a", 99),
        encode_batch(4, [(KIND_PUT, b"c", b"vc", 0, b""), (KIND_DELETE, b"d", b"", 7, b"")]),
        encode_range_delete(6, b"x", None, 5),
        encode_range_delete(7, b"m", b"n", 5),
    ]
    offsets = []
    o = 0
    for r in recs:
        offsets.append(o)
        o += len(r)
    return b"".join(recs), offsets


EXPECTED_OPS = [
    ("put", 1, b"a", b"va", 0, b""),
    ("put", 2, b"b", b"vb" * 50, 123, b"meta"),
    ("del", 3, b"a", 99),
    ("put", 4, b"c", b"vc", 0, b""),
    ("del", 5, b"d", 7),
    ("rdel", 6, b"x", None, 5),
    ("rdel", 7, b"m", b"n", 5),
]


def test_log_records_round_trip() -> None:
    data, _ = _log_bytes()
    ops, res = read_log(data, "x.log")
    assert ops == EXPECTED_OPS
    assert res.torn_bytes == 0 and res.valid_end == len(data)


@pytest.mark.parametrize("cut", range(1, 40))
def test_log_torn_tail_is_dropped(cut: int) -> None:
    data, offsets = _log_bytes()
    torn = data[: len(data) - cut]
    ops, res = read_log(torn, "x.log")
    # every whole record survives, the partial last one goes
    last_whole = max(i for i, o in enumerate(offsets) if o <= len(torn))
    assert res.valid_end == offsets[last_whole]
    assert res.torn_bytes == len(torn) - offsets[last_whole]
    assert ops == EXPECTED_OPS[: len(ops)] and len(ops) >= 4


def test_log_bad_record_in_middle_names_file_and_offset() -> None:
    data, offsets = _log_bytes()
    bad = bytearray(data)
    bad[offsets[1] + RECORD_HEADER_SIZE + 3] ^= 0x40  # a bit in the second record's payload
    with pytest.raises(LogCorruptionError) as ei:
        read_log(bytes(bad), "/db/000007.log")
    assert ei.value.path == "/db/000007.log" and ei.value.offset == offsets[1]
    assert "/db/000007.log" in str(ei.value) and str(offsets[1]) in str(ei.value)
    ops, res = read_log(bytes(bad), "/db/000007.log", skip_corrupt=True)
    assert ops == [EXPECTED_OPS[0]] + EXPECTED_OPS[2:]
    assert res.skipped and res.skipped[0][0] == offsets[1]


def test_log_zeroed_tail_is_torn_not_corrupt() -> None:
    data, _ = _log_bytes()
    ops, res = read_log(data + bytes(100), "x.log")
    assert ops == EXPECTED_OPS and res.torn_bytes == 100


# -- Bloom filter -------------------------------------------------------------------------------


@pytest.mark.parametrize(("bits_per_key", "lo", "hi"), [(12, 0.008, 0.03), (10, 0.012, 0.04)])
def test_bloom_no_false_negatives_and_fp_rate(bits_per_key: int, lo: float, hi: float) -> None:
    n = 20000
    b = BloomBuilder(n, bits_per_key=bits_per_key)
    keys = [b"key-%d" % i for i in range(n)]
    for k in keys:
        b.add(k)
    f = BloomFilter.decode(b.finish())
    assert all(f.may_contain(k) for k in keys)
    probes = 50000
    fp = sum(f.may_contain(b"absent-%d" % i) for i in range(probes))
    rate = fp / probes
    assert lo < rate < hi, rate  # blocked filter, measured: 1.6% at 12 bits/key, 2.4% at 10


def test_bloom_filter_block_is_checked() -> None:
    data = BloomBuilder(100).finish()
    with pytest.raises(ValueError):
        BloomFilter.decode(data[:-1])
    with pytest.raises(ValueError):
        BloomFilter.decode(b"\x00" + data[1:])  # k = 0


# -- SSTable ------------------------------------------------------------------------------------


def _build(fs: FaultFileSystem, path: str, n: int, rts: list[RangeTombstone] | None = None) -> None:
    fs.mkdir("/t")
    b = TableBuilder(fs.create(path), n)
    for i in range(n):
        key = b"k%06d" % i
        if i % 10 == 3:
            b.add(key, i + 1, KIND_DELETE, 555, b"", b"")
        else:
            b.add(key, i + 1, KIND_PUT, i, b"m" if i % 2 else b"", b"value-%d" % i * 3)
    for rt in rts or []:
        b.add_range_tombstone(rt)
    b.finish()


def test_sstable_round_trip(fs: FaultFileSystem) -> None:
    rt = RangeTombstone(b"a", b"b", 10**6, 1)
    _build(fs, "/t/1.sst", 5000, [rt])
    r = TableReader(fs.open_read("/t/1.sst"), 1)
    assert r.props.entries == 5000 and r.props.data_blocks > 10
    assert r.range_tombstones == [rt]
    cache = BlockCache(16 << 20)
    for _pass in range(2):  # raw blocks, then (hit again) records form
        for i in range(5000):
            got = r.get(b"k%06d" % i, cache)
            if i % 10 == 3:
                assert got is None
            else:
                assert got == Record(b"value-%d" % i * 3, i, b"m" if i % 2 else b"")
        assert r.get(b"k", cache) is MISSING and r.get(b"k0000015", cache) is MISSING
        assert r.get(b"z", cache) is MISSING
    assert all(blk[0] is not None for blk in cache._d.values())
    assert cache.hits > 0 and cache.misses > 0
    keys = [e[0] for e in r.iter_entries()]
    assert keys == [b"k%06d" % i for i in range(5000)]
    assert [e[0] for e in r.iter_entries(cache=cache)] == keys
    assert [e[0] for b in r.iter_batches(cache=cache) for e in b] == keys
    assert [e[0] for e in r.iter_entries(b"k000100", b"k000105")] == [
        b"k%06d" % i for i in range(100, 105)]


def test_block_cache_is_bounded(fs: FaultFileSystem) -> None:
    _build(fs, "/t/1.sst", 5000)
    r = TableReader(fs.open_read("/t/1.sst"), 1)
    cache = BlockCache(20000)
    for i in range(5000):
        r.get(b"k%06d" % i, cache)
    assert cache.used <= 20000 and len(cache) >= 1


def test_sstable_flipped_bit_in_data_block_is_an_error_never_wrong_data(fs: FaultFileSystem) -> None:
    _build(fs, "/t/1.sst", 2000)
    r = TableReader(fs.open_read("/t/1.sst"), 1)
    victim = 3
    fs.corrupt("/t/1.sst", r.block_offs[victim] + 40)
    r = TableReader(fs.open_read("/t/1.sst"), 1)  # meta blocks are intact: opens fine
    key_in_victim = r.first_keys[victim]
    with pytest.raises(TableCorruptionError) as ei:
        r.get(key_in_victim, BlockCache(1 << 20))
    assert ei.value.path == "/t/1.sst" and ei.value.offset == r.block_offs[victim]
    assert r.get(r.first_keys[0], None) is not MISSING  # other blocks still read


@pytest.mark.parametrize("keep", [0, 10, 100, -1, -30, -60])
def test_truncated_table_fails_to_open_clearly(fs: FaultFileSystem, keep: int) -> None:
    _build(fs, "/t/1.sst", 2000)
    size = fs.size("/t/1.sst")
    fs.chop("/t/1.sst", keep if keep >= 0 else size + keep)
    with pytest.raises(TableCorruptionError) as ei:
        TableReader(fs.open_read("/t/1.sst"), 1)
    assert "/t/1.sst" in str(ei.value)


# -- manifest edits -----------------------------------------------------------------------------


def test_version_edit_round_trip() -> None:
    e = VersionEdit(1, 7, 12, 999, [TableMeta(5, 100, 1, 50, 40, 2, b"a", b"zz")], [3, 4])
    assert VersionEdit.decode(e.encode()) == e
    assert VersionEdit.decode(VersionEdit(next_file=3).encode()) == VersionEdit(next_file=3)


# -- compaction policy and merge ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_batched_merge_equals_heap_merge(seed: int) -> None:
    import heapq

    from respkv.storage.compaction import batched_merge

    rng = random.Random(seed)
    sources = []
    for s in range(rng.randrange(1, 5)):
        keys = sorted(rng.sample(range(200), rng.randrange(0, 60)))
        entries = [(b"%03d" % k, -(s * 1000 + k), KIND_PUT, 0, b"", b"") for k in keys]
        cuts = sorted(rng.sample(range(len(entries) + 1), min(3, len(entries) + 1)))
        batches = [entries[a:b] for a, b in zip([0] + cuts, cuts + [len(entries)], strict=True)]
        sources.append(batches)
    want = list(heapq.merge(*[[e for b in bs for e in b] for bs in sources]))
    got = [e for b in batched_merge([iter(bs) for bs in sources]) for e in b]
    assert got == want


def test_pick_run_size_tiered() -> None:
    assert pick_run([10, 10, 10]) is None
    assert pick_run([10, 11, 9, 10]) == (0, 4)
    assert pick_run([10, 10, 10, 10, 40]) == (0, 4)
    assert pick_run([5, 40, 40, 41, 39, 1000]) == (1, 5)
    assert pick_run([1, 100, 1, 100, 1, 100, 1, 100, 1, 100, 1, 100, 1]) == (0, 2)
    assert pick_run([10] * 20) == (0, 8)  # bounded merge width


def test_merge_drops_shadowed_tombstones_and_expired_only_at_bottom() -> None:
    new = iter([[(b"a", -10, KIND_DELETE, 0, b"", b"")], [(b"b", -11, KIND_PUT, 5, b"", b"exp")]])
    old = iter([[(b"a", -1, KIND_PUT, 0, b"", b"old"), (b"b", -2, KIND_PUT, 0, b"", b"old"),
                 (b"c", -3, KIND_PUT, 0, b"", b"c")]])
    out = list(merge_entries([new, old], [], bottom=False, now_ms=100, grace_ms=1000))
    assert [(e[0], e[2]) for e in out] == [(b"a", KIND_DELETE), (b"b", KIND_DELETE), (b"c", KIND_PUT)]
    new = iter([[(b"a", -10, KIND_DELETE, 0, b"", b""), (b"b", -11, KIND_PUT, 5, b"", b"exp")]])
    old = iter([[(b"a", -1, KIND_PUT, 0, b"", b"old")], [], [(b"c", -3, KIND_PUT, 0, b"", b"c")]])
    out = list(merge_entries([new, old], [], bottom=True, now_ms=100, grace_ms=1000))
    assert [e[0] for e in out] == [b"a", b"c"]  # tombstone within grace stays
    new = iter([[(b"a", -10, KIND_DELETE, 0, b"", b"")]])
    out = list(merge_entries([new], [], bottom=True, now_ms=5000, grace_ms=1000))
    assert out == []
    rt = RangeTombstone(b"b", b"c", 5, 0)
    src = iter([[(b"a", -1, KIND_PUT, 0, b"", b""), (b"b", -2, KIND_PUT, 0, b"", b""),
                 (b"bb", -7, KIND_PUT, 0, b"", b"")]])
    assert [e[0] for e in merge_entries([src], [rt], False, 0, 0)] == [b"a", b"bb"]


def _random_tables(rng: random.Random, fs: FaultFileSystem) -> list[TableReader]:
    """2-4 tables (newest first, disjoint seq ranges, one version per key) mixing plain puts,
    puts with meta or expiry, and tombstones, over overlapping key ranges."""
    tables = []
    seq = 10_000
    ntables = rng.randrange(2, 5)
    for ti in range(ntables):
        keys = sorted(rng.sample(range(3000), rng.randrange(0, 1500)))
        path = f"/c/{ti}.sst"
        b = TableBuilder(fs.create(path), max(1, len(keys)))
        for k in keys:
            seq -= 1
            key = b"k%05d" % k
            r = rng.random()
            if r < 0.05:
                b.add(key, seq, KIND_DELETE, rng.choice([0, 50, 5000]), b"", b"")
            elif r < 0.1:
                b.add(key, seq, KIND_PUT, rng.choice([0, 50, 5000]), b"m", b"v%d" % k)
            else:
                b.add(key, seq, KIND_PUT, 0, b"", b"value-%d" % k * rng.randrange(1, 4))
        b.finish()
        tables.append(TableReader(fs.open_read(path), ti))
    return tables  # the first built holds the highest seqs: newest first


@pytest.mark.parametrize("seed", range(12))
def test_merge_raw_columns_equals_merge_entries(seed: int) -> None:
    """Compaction's column merge keeps exactly what merge_entries keeps, byte for byte, for
    chunks of any size and with or without tombstones, expiry and range tombstones."""
    from respkv.storage.compaction import merge_raw_columns

    rng = random.Random(seed)
    fs = FaultFileSystem(rng)
    fs.mkdir("/c")
    tables = _random_tables(rng, fs)
    rts = [] if seed % 3 else [RangeTombstone(b"k00100", b"k00900", 9_990, 40)]
    for bottom in (False, True):
        for now in (0, 100, 10_000):
            want = list(merge_entries([t.iter_raw_batches() for t in tables], rts, bottom, now, 1000))
            chunk = rng.choice([1, 4096, 1 << 18])
            got_k: list[bytes] = []
            got_r: list[bytes] = []
            tombs = 0
            for ks, rs, nt, lo, hi in merge_raw_columns(
                    [t.iter_raw_columns(chunk) for t in tables], rts, bottom, now, 1000):
                got_k += ks
                got_r += rs
                tombs += nt
                if ks:
                    seqs = [-e[1] for e in want if e[0] in set(ks)]
                    assert (lo, hi) == (min(seqs), max(seqs))
            assert got_k == [e[0] for e in want]
            # entries as the writer would encode them
            enc = []
            for e in want:
                if e[5] is None:
                    enc.append(e[4])
                else:  # an expired put turned into a tombstone: (key, -seq, KIND_DELETE, t, b"", b"")
                    enc.append(ENTRY_HEADER.pack(e[2], len(e[0]), 0, 0, -e[1], e[3]) + e[0])
            assert got_r == enc
            assert tombs == sum(1 for e in want if e[2] == KIND_DELETE)


@pytest.mark.parametrize("seed", range(6))
def test_add_encoded_writes_what_add_entries_writes(seed: int) -> None:
    """Table bytes do not depend on how entries are handed to the builder."""
    rng = random.Random(seed)
    fs = FaultFileSystem(rng)
    fs.mkdir("/t")
    entries = []
    for i, k in enumerate(sorted(rng.sample(range(10**6), rng.randrange(1, 4000)))):
        key = b"%07d" % k
        vl = rng.choice([0, 3, 100, 100, 100, 5000])
        entries.append((key, -(i + 1), KIND_PUT if i % 7 else KIND_DELETE, i % 3, b"m" * (i % 2),
                        rng.randbytes(vl)))
    a = TableBuilder(fs.create("/t/a.sst"), len(entries))
    a.add_entries(entries)
    a.finish()
    b = TableBuilder(fs.create("/t/b.sst"), len(entries))
    i = 0
    while i < len(entries):
        j = i + rng.choice([1, 2, 50, 3000])
        ks, parts, sizes = [], [], []
        for key, nseq, kind, t, meta, value in entries[i:j]:
            ks.append(key)
            parts += (ENTRY_HEADER.pack(kind, len(key), len(meta), len(value), -nseq, t),
                      key, meta, value)
            sizes.append(29 + len(key) + len(meta) + len(value))
        chunk = entries[i:j]
        b.add_encoded(ks, parts, sizes, sum(1 for e in chunk if e[2] == KIND_DELETE),
                      min(-e[1] for e in chunk), max(-e[1] for e in chunk))
        i = j
    b.finish()
    assert fs.read_file("/t/a.sst") == fs.read_file("/t/b.sst")
    with pytest.raises(ValueError):
        b2 = TableBuilder(fs.create("/t/c.sst"), 2)
        b2.add_encoded([b"b", b"a"], [b"x", b"y"], [1, 1], 0, 1, 2)


# -- the fault file system ----------------------------------------------------------------------


def test_faultfs_crash_keeps_only_synced_bytes_and_names() -> None:
    fs = FaultFileSystem(random.Random(0))
    fs.mkdir("/d")
    a = fs.create("/d/a")
    a.append(b"hello")
    a.sync()
    fs.fsync_dir("/d")
    a.append(b" world")
    b = fs.create("/d/b")  # name never made durable
    b.append(b"x")
    b.sync()
    fs.unlink("/d/a")  # unlink not made durable
    fs.crash()
    assert fs.listdir("/d") == ["a"]
    assert fs.read_file("/d/a") == b"hello"


def test_faultfs_tears_unsynced_tail_and_injects_faults() -> None:
    fs = FaultFileSystem(random.Random(5))
    fs.mkdir("/d")
    f = fs.create("/d/f")
    fs.fsync_dir("/d")
    f.append(b"A" * 10)
    f.sync()
    f.append(b"B" * 1000)
    fs.crash(tear=True)
    data = fs.read_file("/d/f")
    assert data.startswith(b"A" * 10) and set(data[10:]) <= {ord("B")} and len(data) < 1010
    fs.space_left = 3
    g = fs.open_append("/d/f")
    with pytest.raises(OSError) as ei:
        g.append(b"12345")
    assert ei.value.errno == 28  # ENOSPC, after a short write
    assert fs.read_file("/d/f").endswith(b"123")
    fs.eio_paths.add("/d/f")
    with pytest.raises(OSError):
        fs.open_read("/d/f").pread(0, 1)
    fs.crash_after(2)
    fs.space_left = None
    g = fs.open_append("/d/f")
    g.append(b"x")
    with pytest.raises(SimulatedCrash):
        g.sync()
    with pytest.raises(SimulatedCrash):
        fs.create("/d/h")


def test_only_the_fs_seam_touches_the_os() -> None:
    """Every OS call goes through respkv/storage/fs.py; no other storage module imports os,
    time, random, socket or trio (faultfs takes its randomness as an argument)."""
    import ast
    import pathlib

    import respkv.storage as pkg

    forbidden = {"os", "time", "random", "socket", "trio", "io", "shutil", "tempfile", "mmap"}
    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        if path.name == "fs.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not forbidden & set(names), (path.name, names)


def _cache_memory_ratio(fs: FaultFileSystem, touches: int) -> float:
    """cache.used over the memory tracemalloc sees the cache keep, after every block of a
    table was looked up ``touches`` times."""
    import gc
    import tracemalloc

    fs.mkdir("/t")
    b = TableBuilder(fs.create("/t/1.sst"), 3000)
    rng = random.Random(7)
    for i, key in enumerate(sorted({rng.randbytes(12) for _ in range(3000)})):
        if i % 50 == 7:
            b.add(key, i + 1, KIND_DELETE, 555, b"", b"")
        elif i % 50 == 9:
            b.add(key, i + 1, KIND_PUT, 10**12, b"meta", rng.randbytes(100))
        else:
            b.add(key, i + 1, KIND_PUT, 0, b"", rng.randbytes(100))
    b.finish()
    r = TableReader(fs.open_read("/t/1.sst"), 1)
    cache = BlockCache(1 << 30)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(touches):
            for k in r.first_keys:
                assert r.get(k, cache) is not MISSING
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == len(r.first_keys)
    forms = {blk[0] is None for blk in cache._d.values()}
    assert forms == ({True} if touches == 1 else {False})  # raw, or all in records form
    return cache.used / kept


@pytest.mark.parametrize("touches", [1, 2])
def test_block_cache_charges_what_the_blocks_hold(fs: FaultFileSystem, touches: int) -> None:
    # 1 touch: raw form; 2: records form (the honest count block_cache_bytes relies on)
    assert 0.85 < _cache_memory_ratio(fs, touches) < 1.2
