"""Compaction policy and merge: size-tiered, over contiguous runs of tables (as RocksDB's
"universal" compaction), after Cassandra's SizeTieredCompactionStrategy.

Why size-tiered and not leveled: this engine is CPU-bound in Python, and every byte a compaction
rewrites costs interpreter time that the trio thread competes with (the GIL). Size-tiered
rewrites each byte about log_4(data / memtable) times, leveled about 10x per level; reads pay
with more tables to probe, which the per-table Bloom filters (one hash per get, shared across
tables) make cheap. Restricting merges to runs that are contiguous in age keeps the tables'
sequence ranges disjoint, so the read path can stop at the first (newest) table holding a key.
The full argument is in docs/formats/manifest.md.

Tombstones (point and range) and expired records are dropped only when the run includes the
oldest table ("bottom"), since only then can no older table still hold the key; a tombstone is
kept until ``tombstone_grace_ms`` after its deletion (Cassandra's gc_grace: it must outlive
repair). An expired record in a non-bottom run becomes a tombstone (its deletion time is its
expiry), so it keeps shadowing older versions.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence

from respkv.storage.format import ENTRY_HEADER, KIND_DELETE
from respkv.storage.sstable import Entry, RangeTombstone

_unpack_header = ENTRY_HEADER.unpack_from
_SEQ = struct.Struct("<13xQ")  # an entry header's seq field

MIN_MERGE_WIDTH = 4  # tables of similar size merged at once (Cassandra's min_threshold)
MAX_MERGE_WIDTH = 8  # at most this many per merge (Cassandra's max_threshold is 32), so one
#                      merge stays a bounded unit of background work
SIMILAR_RATIO = 2.0  # a run is "similar" when its largest table <= ratio x its smallest
MAX_TABLES = 12  # beyond this, merge the newest tables regardless of size


def pick_run(sizes: Sequence[int], min_width: int = MIN_MERGE_WIDTH,
             ratio: float = SIMILAR_RATIO, max_tables: int = MAX_TABLES,
             max_width: int = MAX_MERGE_WIDTH) -> tuple[int, int] | None:
    """[start, end) of the run of tables (newest first, by size) to merge next, or None."""
    n = len(sizes)
    for start in range(n - min_width + 1):
        lo = hi = sizes[start]
        j = start + 1
        while j < n and j - start < max_width:
            nlo, nhi = min(lo, sizes[j]), max(hi, sizes[j])
            if nhi > ratio * max(nlo, 1):
                break
            lo, hi = nlo, nhi
            j += 1
        if j - start >= min_width:
            return (start, j)
    if n > max_tables:
        return (0, min(max_width, max(2, n - max_tables + 1)))
    return None


_AFTER_ANY_SEQ = float("inf")


def batched_merge(sources: list[Iterator[list[Entry]]]) -> Iterator[list[Entry]]:
    """Merge sources of sorted batches into sorted batches. Each round takes, from every source,
    the entries up to the smallest "last key" among the sources' current batches — every version
    of those keys is then in hand — and sorts them in C (timsort merges the sorted runs), instead
    of a Python-level heap step per entry."""
    bufs: list[list[Entry]] = []
    iters: list[Iterator[list[Entry]]] = []
    for src in sources:
        for b in src:
            if b:
                bufs.append(b)
                iters.append(src)
                break
    while bufs:
        if len(bufs) == 1:
            yield bufs[0]
            for b in iters[0]:
                if b:
                    yield b
            return
        bound = (min(b[-1][0] for b in bufs), _AFTER_ANY_SEQ)
        out: list[Entry] = []
        nbufs: list[list[Entry]] = []
        niters: list[Iterator[list[Entry]]] = []
        for b, src in zip(bufs, iters, strict=True):
            i = bisect_right(b, bound)
            if i == len(b):
                out += b
                b = next((x for x in src if x), [])
            else:
                out += b[:i]
                b = b[i:]
            if b:
                nbufs.append(b)
                niters.append(src)
        bufs, iters = nbufs, niters
        out.sort()
        yield out


def merge_entries(sources: list[Iterator[list[Entry]]], rts: list[RangeTombstone], bottom: bool,
                  now_ms: int, grace_ms: int) -> Iterator[Entry]:
    """The newest version of each key across ``sources`` (each yielding sorted batches of
    entries sorted by (key, -seq)), minus what ``rts`` deletes, minus what compaction may drop
    (see the module docstring)."""
    last = None
    for batch in batched_merge(sources):
        for e in batch:
            key = e[0]
            if key == last:
                continue  # an older version, shadowed
            last = key
            if rts:
                seq = -e[1]
                if any(rt.covers(key, seq) for rt in rts):
                    continue
            t = e[3]
            if e[2] == KIND_DELETE:
                if bottom and t + grace_ms <= now_ms:
                    continue
            elif t and t <= now_ms:
                if bottom:
                    continue
                e = (key, e[1], KIND_DELETE, t, b"", b"")
            yield e


# (keys, raws, tombstones, min_seq, max_seq): TableBuilder.add_encoded's input, sizes aside
Columns = tuple[list[bytes], list[bytes], int, int, int]


def merge_raw_columns(sources: list[Iterator[tuple[list[bytes], list[bytes], bool]]],
                      rts: list[RangeTombstone], bottom: bool, now_ms: int,
                      grace_ms: int) -> Iterator[Columns]:
    """``merge_entries`` over tables' ``iter_raw_columns`` (sources newest first: tables hold
    one version per key and disjoint seq ranges, so the newest table's version is the newest),
    in column form: each round takes, from every source, the entries up to the smallest "last
    key" among the sources' current chunks, dedups them in a dict (fed oldest first, so the
    newest version of a key is the one left) and sorts its keys in C. Only a round holding a
    tombstone, an expiring entry, or under range tombstones takes a Python step per entry."""
    bufs: list[list] = []  # [keys, raws, plain, pos, source]
    for src in sources:
        for keys, raws, plain in src:
            if keys:
                bufs.append([keys, raws, plain, 0, src])
                break
    while bufs:
        bound = min(b[0][-1] for b in bufs)
        pieces = []
        nbufs = []
        for b in bufs:
            keys, raws, plain, pos, src = b
            i = bisect_right(keys, bound, pos)
            if i > pos:
                if pos == 0 and i == len(keys):
                    pieces.append((keys, raws, plain))
                else:
                    pieces.append((keys[pos:i], raws[pos:i], plain))
            if i < len(keys):
                b[3] = i
                nbufs.append(b)
            else:
                for keys, raws, plain in src:
                    if keys:
                        nbufs.append([keys, raws, plain, 0, src])
                        break
        bufs = nbufs
        if len(pieces) == 1:
            ks, rs, plain = pieces[0]
        else:
            m: dict[bytes, bytes] = {}
            plain = True
            for keys, raws, p in reversed(pieces):  # oldest first: newer versions overwrite
                m.update(zip(keys, raws, strict=True))
                plain = plain and p
            ks = sorted(m)
            rs = list(map(m.__getitem__, ks))
        if plain and not rts:
            seqs = list(map(_SEQ.unpack_from, rs))
            yield ks, rs, 0, min(seqs)[0], max(seqs)[0]
        else:
            yield _filter_columns(ks, rs, rts, bottom, now_ms, grace_ms)


def _filter_columns(ks: list[bytes], rs: list[bytes], rts: list[RangeTombstone], bottom: bool,
                    now_ms: int, grace_ms: int) -> Columns:
    """The per-entry rules of ``merge_entries`` over one version per key."""
    okeys: list[bytes] = []
    oraws: list[bytes] = []
    tombs = 0
    lo = 1 << 64
    hi = 0
    for key, raw in zip(ks, rs, strict=True):
        kind, kl, _ml, _vl, seq, t = _unpack_header(raw)
        if rts and any(rt.covers(key, seq) for rt in rts):
            continue
        if kind == KIND_DELETE:
            if bottom and t + grace_ms <= now_ms:
                continue
            tombs += 1
        elif t and t <= now_ms:
            if bottom:
                continue
            raw = ENTRY_HEADER.pack(KIND_DELETE, kl, 0, 0, seq, t) + key
            tombs += 1
        okeys.append(key)
        oraws.append(raw)
        if seq < lo:
            lo = seq
        if seq > hi:
            hi = seq
    return okeys, oraws, tombs, lo, hi


def surviving_range_tombstones(rts: list[RangeTombstone], bottom: bool, now_ms: int,
                               grace_ms: int) -> list[RangeTombstone]:
    if not bottom:
        return list(rts)
    return [rt for rt in rts if rt.deleted_at_ms + grace_ms > now_ms]
