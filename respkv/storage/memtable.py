"""The memtable: a dict from key to its newest entry, plus the range tombstones written to it.

A dict gives the fastest point access in CPython; order is only needed by scans and flushes, so
keys are sorted then, incrementally: the dict keeps insertion order, so the keys added since the
last sort are exactly the dict's tail, and merging two sorted runs is linear (timsort).

Entries (the dict's values):
  (seq, value)                 a put with no expiry and no meta (``value`` is bytes)
  (seq, Record)                any other put
  (seq, None, deleted_at_ms)   a point tombstone
``entry[1]`` is the get() answer (None: deleted), a bytes value standing for
``Record(value, 0, b"")``. Why not always a Record: CPython's cyclic GC untracks a tuple once it
holds only untracked objects, but only an *exact* tuple; a Record (a NamedTuple, i.e. a tuple
subclass) stays tracked forever, and so does the entry holding it. Every memtable entry would
then survive into the oldest generation and trigger full collections (each walking the whole
heap); a plain entry is untracked at its first young collection, and is ~75 bytes smaller.

Invariant: no entry in a memtable is covered by one of its own range tombstones (``delete_range``
removes the covered keys as it adds the tombstone, and later entries have higher seqs). So a read
that finds the key here may return it; a read that does not but is covered by a tombstone here
knows the key is deleted in every older source.

Ownership: the active memtable is mutated by the trio thread only; once frozen it is immutable and
read by the trio thread and the flush worker (``sorted_keys`` is guarded by a lock).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import chain, islice, repeat
from operator import add, itemgetter

from respkv.storage.format import ENTRY_HEADER, ENTRY_HEADER_SIZE, KIND_DELETE, KIND_PUT
from respkv.storage.sstable import Entry, RangeTombstone


def covered(rts: list[RangeTombstone], key: bytes) -> bool:
    """True if one of ``rts`` spans ``key`` (regardless of seq)."""
    for rt in rts:
        if rt.start <= key and (rt.end is None or key < rt.end):
            return True
    return False


_get0 = itemgetter(0)
_get1 = itemgetter(1)
_get2 = itemgetter(2)
_pack_header = ENTRY_HEADER.pack


def to_entry(key: bytes, e: tuple) -> Entry:
    rec = e[1]
    if rec.__class__ is bytes:
        return (key, -e[0], KIND_PUT, 0, b"", rec)
    if rec is None:
        return (key, -e[0], KIND_DELETE, e[2], b"", b"")
    return (key, -e[0], KIND_PUT, rec.expire_at_ms, rec.meta, rec.value)


class Memtable:
    __slots__ = ("data", "rts", "log_number", "next_log_number", "last_seq", "first_seq",
                 "_sorted", "_nsorted", "_lock")

    def __init__(self, log_number: int, first_seq: int) -> None:
        self.data: dict[bytes, tuple] = {}
        self.rts: list[RangeTombstone] = []
        self.log_number = log_number  # the commit log holding this memtable's records
        self.next_log_number = 0  # set when frozen: the log of the memtable after this one
        self.first_seq = first_seq
        self.last_seq = 0  # set when frozen
        self._sorted: list[bytes] = []
        self._nsorted = 0
        self._lock = threading.Lock()

    def is_empty(self) -> bool:
        return not self.data and not self.rts

    def add_range_tombstone(self, rt: RangeTombstone) -> None:
        """Trio thread, active memtable only. O(size of the memtable)."""
        d = self.data
        doomed = [k for k in d if rt.start <= k and (rt.end is None or k < rt.end)]
        for k in doomed:
            del d[k]
        if doomed:
            with self._lock:
                self._sorted = []
                self._nsorted = 0
        self.rts.append(rt)

    def sorted_keys(self) -> list[bytes]:
        """All keys in order. The returned list is never mutated afterwards (a new one is built
        when keys were added), so callers may keep it as a snapshot."""
        with self._lock:
            d = self.data
            if self._nsorted != len(d):
                if self._nsorted == 0:
                    self._sorted = sorted(d)
                else:
                    new = sorted(islice(d, self._nsorted, None))
                    merged = self._sorted + new
                    merged.sort()
                    self._sorted = merged
                self._nsorted = len(d)
            return self._sorted

    def snapshot_entries(self, start: bytes, end: bytes | None,
                         limit: int | None = None) -> tuple[list[Entry], bytes | None]:
        """Entries with start <= key < end, copied now (for a scan of the active memtable): at
        most ``limit`` of them. Returns them and ``cut``: None when they are all of the range,
        else the first key not copied (the range copied is start <= key < cut)."""
        keys = self.sorted_keys()
        lo = bisect_left(keys, start) if start else 0
        hi = len(keys) if end is None else bisect_left(keys, end)
        cut = None
        if limit is not None and hi - lo > limit:
            hi = lo + limit
            cut = keys[hi]
        d = self.data
        return [to_entry(k, d[k]) for k in keys[lo:hi]], cut

    def iter_entries(self, start: bytes = b"", end: bytes | None = None) -> Iterator[Entry]:
        """Lazily; only for a frozen (immutable) memtable."""
        keys = self.sorted_keys()
        lo = bisect_left(keys, start) if start else 0
        hi = len(keys) if end is None else bisect_left(keys, end)
        d = self.data
        put = KIND_PUT
        for k in keys[lo:hi] if (lo or hi != len(keys)) else keys:
            e = d[k]
            rec = e[1]
            if rec.__class__ is bytes:
                yield (k, -e[0], put, 0, b"", rec)
            elif rec is None:
                yield (k, -e[0], KIND_DELETE, e[2], b"", b"")
            else:
                yield (k, -e[0], put, rec[1], rec[2], rec[0])

    def encoded_columns(self) -> tuple[list[bytes], list[bytes], list[int], int, int, int]:
        """Every entry in key order, encoded for a table, as ``TableBuilder.add_encoded`` takes
        them: (keys, parts: header, key, [meta,] value per entry, sizes, tombstones, min_seq,
        max_seq). Only for a frozen (immutable) memtable. Built column by column with C-level
        maps: no Python step per entry when the memtable holds only puts."""
        keys = self.sorted_keys()
        d = self.data
        ents = list(map(d.__getitem__, keys))
        seqs = list(map(_get0, ents))
        recs = list(map(_get1, ents))
        klens = list(map(len, keys))
        # columns for the header map: constant ones are repeat()s when only plain puts, else lists
        mlens: Iterable[int]
        times: Iterable[int]
        metas: Iterable[bytes]
        kinds: Iterable[int]
        if all(map(bytes.__instancecheck__, recs)):  # only plain puts (the common case)
            tombs = 0
            values = recs
            vlens = list(map(len, values))
            mlens = times = repeat(0)
            metas = repeat(b"")
            kinds = repeat(KIND_PUT)
            sizes = list(map(ENTRY_HEADER_SIZE.__add__, map(add, klens, vlens)))
            headers = map(_pack_header, kinds, klens, mlens, vlens, seqs, times)
            parts = list(chain.from_iterable(zip(headers, keys, values, strict=True)))
        else:
            tombs = 0
            values = []
            times = []
            metas = []
            kinds = []
            for e in ents:
                rec = e[1]
                if rec.__class__ is bytes:
                    kinds.append(KIND_PUT)
                    times.append(0)
                    metas.append(b"")
                    values.append(rec)
                elif rec is None:
                    kinds.append(KIND_DELETE)
                    times.append(e[2])
                    metas.append(b"")
                    values.append(b"")
                    tombs += 1
                else:
                    kinds.append(KIND_PUT)
                    times.append(rec[1])
                    metas.append(rec[2])
                    values.append(rec[0])
            mlens = list(map(len, metas))
            vlens = list(map(len, values))
            sizes = list(map(ENTRY_HEADER_SIZE.__add__, map(add, map(add, klens, mlens), vlens)))
            headers = map(_pack_header, kinds, klens, mlens, vlens, seqs, times)
            parts = list(chain.from_iterable(zip(headers, keys, metas, values, strict=True)))
        if not seqs:
            return keys, parts, sizes, 0, 0, 0
        return keys, parts, sizes, tombs, min(seqs), max(seqs)
