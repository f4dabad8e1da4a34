"""SSTables: immutable sorted files of entries, one version per key (the newest the writer saw).

Byte layout: docs/formats/sstable.md. In short: ~4 KB data blocks, each followed by its checksum;
then a Bloom filter block, a range-deletion block, a properties block and an index block (first
key, offset and length of every data block), each also followed by its checksum; then a fixed-size
footer locating them, with its own checksum and a magic number.

Reads: ``TableReader.get`` bisects the sparse index, fetches the block through the shared
``BlockCache`` (keyed by table number and block index; a block is cached raw on first use and in
records form, its answers decoded, once hit again) and looks the key up in it. A block whose
checksum does not match raises ``TableCorruptionError``: a read never returns bytes it could not
verify (a records-form block was decoded from verified bytes). ``LSMEngine.get`` inlines the
common path; ``TableReader.get``/``probe_block`` are the readable version of the same steps.

Concurrency: a TableReader is immutable after open; ``get`` runs on the trio thread, iteration
(compaction) on a worker thread, both only ``pread``. The cache is touched only by the thread that
passes it in (``BlockCache.forget_table`` excepted: any thread may call it).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice, repeat
from operator import add as _add
from operator import lt as _lt
from typing import TYPE_CHECKING, cast

from respkv.storage.api import Record
from respkv.storage.bloom import DEFAULT_BITS_PER_KEY, BloomBuilder, BloomFilter
from respkv.storage.errors import TableCorruptionError
from respkv.storage.format import (
    BLOCK_TARGET_SIZE,
    BLOCK_TRAILER,
    ENTRY_HEADER,
    ENTRY_HEADER_SIZE,
    INDEX_COUNT,
    INDEX_ENTRY,
    KIND_DELETE,
    KIND_PUT,
    RDEL_COUNT,
    RDEL_ENTRY,
    TABLE_FOOTER,
    TABLE_FOOTER_SIZE,
    TABLE_FORMAT_VERSION,
    TABLE_MAGIC,
    TABLE_PROPS_FIXED,
    U32,
    block_checksum,
)
from respkv.storage.fs import RandomAccessFile, WritableFile

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Buffer

MISSING = object()  # TableReader.get: the table holds no entry for the key
_WRITE_CHUNK = 1 << 20
_TRAILER = BLOCK_TRAILER.size
_HDR = ENTRY_HEADER_SIZE
_unpack_entry = ENTRY_HEADER.unpack_from
_KIND_TIME = struct.Struct("<B20xq")  # an entry header's kind and time fields
_PLAIN = {(KIND_PUT, 0)}
# block_checksum is annotated for bytes, but XXH3 hashes any buffer: iter_raw_columns checks
# memoryview slices of a chunk (no copy). The cast runs once, at import.
_checksum = cast("Callable[[Buffer], int]", block_checksum)
_trailer_structs: dict[int, struct.Struct] = {}
_LITTLE_ENDIAN = sys.byteorder == "little"
# Python memory of a cached raw block beyond len(data): the bytes header, the trailer
# memoryview and its buffer, the cache's list and key, the OrderedDict node (tracemalloc on
# CPython 3.11: ~560 bytes).
RAW_BLOCK_OVERHEAD = 560
# Beyond its keys and answers, a records-form block holds the cache's list, key and node.
RECORDS_BLOCK_OVERHEAD = 300
# Record(...) goes through a Python-level __new__; tuple.__new__ builds the same NamedTuple.
_new_tuple = tuple.__new__


def _trailer_struct(n: int) -> struct.Struct:
    """Unpacks a block's offsets and key lengths (2n u32) in one call."""
    st = _trailer_structs.get(n)
    if st is None:
        st = _trailer_structs[n] = struct.Struct(f"<{2 * n}I")
    return st

# An internal entry, as the merging iterators see it. Tuples sort by (key, -seq): for one key the
# newest version comes first, and (key, -seq) is unique so later fields are never compared.
#   (key, -seq, kind, time, meta, value)      time: expire_at_ms (put) / deleted_at_ms (delete)
#   (key, -seq, kind, time, raw, None)        raw: the entry's bytes as stored in a data block
Entry = tuple


@dataclass(frozen=True)
class RangeTombstone:
    """Deletes every key k with start <= k < end (end None: unbounded) whose seq < ``seq``."""

    start: bytes
    end: bytes | None
    seq: int
    deleted_at_ms: int

    def covers(self, key: bytes, seq: int) -> bool:
        return seq < self.seq and self.start <= key and (self.end is None or key < self.end)


@dataclass(frozen=True)
class TableProps:
    entries: int
    tombstones: int
    min_seq: int
    max_seq: int
    data_blocks: int
    smallest: bytes
    largest: bytes


class BlockCache:
    """A bounded cache of data blocks, keyed by (table number << 32 | block index), evicting
    with CLOCK (second chance; Corbato 1968): a hit only sets the block's reference bit (a
    list store, where an LRU's move-to-end relinks three cold nodes), and eviction walks from
    the oldest insertion, re-queuing referenced blocks once with the bit cleared.

    A block enters in *raw* form (its verified bytes plus a view of its offsets: cheap to load,
    searched by slicing keys on demand) and is upgraded in place to *records* form (a sorted
    key list bisected in C, and each entry's answer ready-made; the bytes are dropped) when it
    is hit again and the upgrade fits without evicting anything, so one-off reads never pay for
    decoding and a full cache holds more (raw) blocks rather than churning. A cache entry is a
    list (see BLK_* below); ``charge`` approximates the Python memory the block holds in its
    current form (tests/storage check it against tracemalloc)."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict[int, list] = OrderedDict()
        self._dead: list[int] = []  # numbers of deleted tables whose blocks are still here

    def forget_table(self, number: int) -> None:
        """Table ``number`` was deleted: its blocks are dropped at the next insert. Safe from
        any thread (a list append); the purge itself runs on the cache's thread."""
        self._dead.append(number)

    def insert(self, k: int, block: list, charge: int) -> None:
        d = self._d
        if self._dead:
            self._purge_dead()
        if k in d or charge > self.capacity:
            return
        d[k] = block
        self.used += charge
        self._evict()

    def grew(self, delta: int) -> None:
        """A cached block was upgraded in place and now holds ``delta`` more bytes."""
        self.used += delta
        self._evict()

    def _purge_dead(self) -> None:
        dead = self._dead
        self._dead = []
        numbers = set(dead)
        d = self._d
        for k in [k for k in d if k >> 32 in numbers]:
            self.used -= d.pop(k)[BLK_CHARGE]

    def _evict(self) -> None:
        d = self._d
        while self.used > self.capacity and d:
            k, old = d.popitem(last=False)
            if old[BLK_REF]:
                old[BLK_REF] = False  # second chance; terminates: only hits set the bit
                d[k] = old
            else:
                self.used -= old[BLK_CHARGE]

    def __len__(self) -> int:
        return len(self._d)


# A cached block is a list:
#   raw form:     [None, offsets-then-key-lengths (2n u32), data, charge, ref]
#   records form: [keys, answers, None, charge, ref]
# where answers[j] is the value (bytes) of a put with no expiry and no meta, a Record for
# any other put, or the int deleted_at_ms of a point tombstone.
BLK_KEYS = 0
BLK_BOTH = BLK_ANSWERS = 1
BLK_DATA = 2
BLK_CHARGE = 3
BLK_REF = 4


def raw_block(data: bytes, path: str, offset: int) -> list:
    """A verified data block (checksum stripped) in the cache's *raw* form. On a little-endian
    host the 2n u32 are a memoryview on the block's own trailer (no copy, no int objects:
    ~500 bytes per block instead of ~1.5 KB for a tuple of ints)."""
    end = len(data) - 4
    try:
        (n,) = U32.unpack_from(data, end)
        start = end - 8 * n
        if start < 0:
            raise struct.error(f"{n} entries do not fit in {len(data)} bytes")
        both: Sequence[int]  # u32s: a memoryview, or a tuple of ints on a big-endian host
        if _LITTLE_ENDIAN:
            both = memoryview(data)[start:end].cast("I")
        else:
            both = _trailer_struct(n).unpack_from(data, start)
    except (struct.error, MemoryError) as e:
        raise TableCorruptionError(path, offset, f"malformed block trailer: {e}") from None
    return [None, both, data, len(data) + RAW_BLOCK_OVERHEAD, False]


def _bytes_mem(n: int) -> int:
    """tracemalloc size of a bytes object of length n (CPython 3.11: 33-byte header, 16-byte
    allocation granules)."""
    return (48 + n) & ~15


def records_extra_estimate(blk: list) -> int:
    """A lower-bound guess, from a raw block's size alone, of how many more bytes it will be
    charged in records form (decoding it to find out exactly would cost what the check saves)."""
    n = len(blk[BLK_BOTH]) >> 1
    data = blk[BLK_DATA]
    payload = len(data) - 4 - (8 + _HDR) * n  # keys, metas and values
    return payload + 100 * n + RECORDS_BLOCK_OVERHEAD - blk[BLK_CHARGE]


def to_records(blk: list) -> int:
    """Upgrade a raw block to records form in place; returns the change in its charge."""
    both = blk[BLK_BOTH]
    data = blk[BLK_DATA]
    n = len(both) >> 1
    keys = []
    answers: list[object] = []
    charge = RECORDS_BLOCK_OVERHEAD + 2 * (8 * n + (n >> 3) * 8)  # two lists, ~1/8 slack
    unpack = _unpack_entry
    for j in range(n):
        o = both[j]
        kind, kl, ml, vl, _seq, t = unpack(data, o)
        p = o + _HDR
        keys.append(data[p : p + kl])
        p += kl
        charge += _bytes_mem(kl)
        if kind != KIND_PUT:
            answers.append(t)
            charge += 32
        elif t == 0 and ml == 0:
            answers.append(data[p : p + vl])
            charge += _bytes_mem(vl)
        else:
            answers.append(_new_tuple(Record, (data[p + ml : p + ml + vl], t, data[p : p + ml])))
            charge += 64 + 32 + _bytes_mem(vl) + _bytes_mem(ml)
    blk[BLK_KEYS] = keys
    blk[BLK_ANSWERS] = answers
    blk[BLK_DATA] = None
    delta = charge - blk[BLK_CHARGE]
    blk[BLK_CHARGE] = charge
    return delta


def with_keys(blk: list) -> tuple[list[bytes], Sequence[int], bytes]:
    """(keys, offsets-and-key-lengths, data) of a raw-form block, for iteration."""
    both = blk[BLK_BOTH]
    data = blk[BLK_DATA]
    n = len(both) >> 1
    keys = [data[o + _HDR : o + _HDR + kl] for o, kl in zip(both[:n], both[n:], strict=True)]
    return keys, both, data


def search_raw(blk: list, key: bytes) -> int:
    """Index of ``key`` in a raw-form block, or -1; binary search slicing keys on demand."""
    both = blk[1]
    data = blk[2]
    n = len(both) >> 1
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        o = both[mid] + _HDR
        if data[o : o + both[n + mid]] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n:
        o = both[lo] + _HDR
        if data[o : o + both[n + lo]] == key:
            return lo
    return -1


def block_get(blk: list, key: bytes) -> object:
    """Record, None (a tombstone) or MISSING: ``key`` looked up in a block of either form."""
    keys = blk[BLK_KEYS]
    if keys is not None:
        j = bisect_left(keys, key)
        if j == len(keys) or keys[j] != key:
            return MISSING
        v = blk[BLK_ANSWERS][j]
        if v.__class__ is bytes:
            return _new_tuple(Record, (v, 0, b""))
        return None if v.__class__ is int else v
    j = search_raw(blk, key)
    if j < 0:
        return MISSING
    data = blk[BLK_DATA]
    o = blk[BLK_BOTH][j]
    kind, kl, ml, vl, _seq, t = _unpack_entry(data, o)
    if kind != KIND_PUT:
        return None
    p = o + _HDR + kl
    return _new_tuple(Record, (data[p + ml : p + ml + vl], t, data[p : p + ml]))


def decode_entry(data: bytes, o: int) -> Entry:
    kind, kl, ml, vl, seq, t = _unpack_entry(data, o)
    p = o + _HDR
    key = data[p : p + kl]
    p += kl
    return (key, -seq, kind, t, data[p : p + ml], data[p + ml : p + ml + vl])


def _answer_entry(key: bytes, nseq: int, a: object) -> Entry:
    """The entry (with seq ``-nseq``) of a records-form answer that is not a plain value."""
    if a.__class__ is int:
        return (key, nseq, KIND_DELETE, a, b"", b"")
    return (key, nseq, KIND_PUT, a[1], a[2], a[0])  # type: ignore[index]


class TableBuilder:
    """Writes one table. Keys must be added in strictly increasing order, one version each.
    ``finish`` fsyncs the file; making its *name* durable (fsync_dir) is the caller's job.

    The hot path is ``add_encoded``: flush and compaction hand over whole columns (sorted keys,
    the entries' encoded bytes as a flat list of parts, their sizes) and blocks are cut, joined
    and indexed with C-level maps and joins, a few Python steps per block rather than per entry.
    ``add``/``add_entries`` (internal-entry tuples) are the readable version, built on it."""

    def __init__(self, file: WritableFile, expected_keys: int,
                 bits_per_key: int = DEFAULT_BITS_PER_KEY) -> None:
        self._file = file
        self._out = bytearray()
        self._offset = 0  # file offset of _out[0]
        self._bloom = BloomBuilder(max(1, expected_keys), bits_per_key)
        self._index: list[tuple[bytes, int, int]] = []
        self._rdels: list[RangeTombstone] = []
        # the open (not yet full) data block: its entries' parts, sizes, key lengths
        self._parts: list[bytes] = []
        self._blk_sizes: list[int] = []
        self._blk_klens: list[int] = []
        self._blk_size = 0
        self._first_key: bytes | None = None
        self._last_key: bytes | None = None
        self._smallest: bytes | None = None
        self.entries = 0
        self.tombstones = 0
        self.min_seq = 1 << 64
        self.max_seq = 0

    def add(self, key: bytes, seq: int, kind: int, t: int, meta: bytes, value: bytes) -> None:
        self.add_entries([(key, -seq, kind, t, meta, value)])

    def add_entries(self, entries: Iterable[Entry]) -> None:
        """Add internal entries (key, -seq, kind, time, meta, value), or raw ones (key, -seq,
        kind, time, encoded bytes, None), in strictly increasing key order."""
        pack = ENTRY_HEADER.pack
        it = iter(entries)
        while True:
            chunk = list(islice(it, 4096))
            if not chunk:
                return
            keys = []
            parts: list[bytes] = []
            sizes = []
            tombs = 0
            lo = 1 << 64
            hi = 0
            for key, nseq, kind, t, meta, value in chunk:
                keys.append(key)
                if value is None:  # raw form: ``meta`` holds the entry's encoded bytes
                    enc = meta
                else:
                    enc = pack(kind, len(key), len(meta), len(value), -nseq, t) + key + meta + value
                parts.append(enc)
                sizes.append(len(enc))
                if kind == KIND_DELETE:
                    tombs += 1
                if -nseq < lo:
                    lo = -nseq
                if -nseq > hi:
                    hi = -nseq
            self.add_encoded(keys, parts, sizes, tombs, lo, hi)

    def add_encoded(self, keys: list[bytes], parts: list[bytes], sizes: list[int],
                    tombstones: int, min_seq: int, max_seq: int) -> None:
        """Add entries given as columns: ``keys`` strictly increasing (and above every key added
        before); ``parts`` the entries' encoded bytes (data-block entry layout) as a flat list,
        the same number of parts per entry (entry i is the concatenation of parts[i*w:(i+1)*w]);
        ``sizes[i]`` its length; how many are tombstones and their seq range."""
        n = len(keys)
        if not n:
            return
        last = self._last_key
        if (last is not None and keys[0] <= last) or not all(map(_lt, keys, islice(keys, 1, None))):
            raise ValueError("keys must be added in strictly increasing order")
        w = len(parts) // n
        klens = list(map(len, keys))
        # ends[i]: bytes of this call's entries before entry i (ends[0] = 0)
        ends = list(accumulate(sizes, initial=0))
        target = BLOCK_TARGET_SIZE
        s = 0
        open_size = self._blk_size
        index = self._index
        while True:
            # the open block closes after the first entry e-1 that brings it to >= target bytes
            e = bisect_left(ends, ends[s] + target - open_size, s + 1)
            if e > n:
                break
            if open_size:
                bparts = self._parts
                bparts += parts[s * w : e * w]
                bsizes = self._blk_sizes
                bsizes += sizes[s:e]
                bklens = self._blk_klens
                bklens += klens[s:e]
                first = self._first_key
                assert first is not None  # set with the open block's first entry
                self._parts = []
                self._blk_sizes = []
                self._blk_klens = []
                open_size = 0
            else:
                bparts = parts[s * w : e * w]
                bsizes = sizes[s:e]
                bklens = klens[s:e]
                first = keys[s]
            m = len(bklens)
            bsizes.pop()
            bparts.append(_trailer_struct(m).pack(*accumulate(bsizes, initial=0), *bklens))
            bparts.append(U32.pack(m))
            off, ln = self._emit(b"".join(bparts))
            index.append((first, off, ln))
            s = e
        if s < n:  # the rest stays in the open block
            if not open_size:
                self._first_key = keys[s]
            self._parts += parts[s * w :]
            self._blk_sizes += sizes[s:]
            self._blk_klens += klens[s:]
            open_size += ends[n] - ends[s]
        self._blk_size = open_size
        self._bloom.add_keys(keys)
        if self._smallest is None:
            self._smallest = keys[0]
        self._last_key = keys[-1]
        self.entries += n
        self.tombstones += tombstones
        if min_seq < self.min_seq:
            self.min_seq = min_seq
        if max_seq > self.max_seq:
            self.max_seq = max_seq

    def add_range_tombstone(self, rt: RangeTombstone) -> None:
        self._rdels.append(rt)
        self.min_seq = min(self.min_seq, rt.seq)
        self.max_seq = max(self.max_seq, rt.seq)

    def _emit(self, block: bytes | bytearray) -> tuple[int, int]:
        """Append a block and its checksum; (offset, length without checksum)."""
        off = self._offset + len(self._out)
        self._out += block
        self._out += BLOCK_TRAILER.pack(_checksum(block))
        if len(self._out) >= _WRITE_CHUNK:
            self._file.append(self._out)
            self._offset += len(self._out)
            self._out = bytearray()
        return off, len(block)

    def _finish_block(self) -> None:
        """Close the open block (at finish: whatever is left under the target size)."""
        m = len(self._blk_klens)
        if not m:
            return
        parts = self._parts
        sizes = self._blk_sizes
        sizes.pop()
        parts.append(_trailer_struct(m).pack(*accumulate(sizes, initial=0), *self._blk_klens))
        parts.append(U32.pack(m))
        off, ln = self._emit(b"".join(parts))
        assert self._first_key is not None
        self._index.append((self._first_key, off, ln))
        self._parts = []
        self._blk_sizes = []
        self._blk_klens = []
        self._blk_size = 0

    def finish(self) -> tuple[int, TableProps]:
        """Write the meta blocks and footer, fsync; returns (file size, properties)."""
        self._finish_block()
        f_off, f_len = self._emit(self._bloom.finish())
        rd = [RDEL_COUNT.pack(len(self._rdels))]
        for rt in self._rdels:
            e = rt.end if rt.end is not None else b""
            rd.append(RDEL_ENTRY.pack(rt.seq, rt.deleted_at_ms, len(rt.start), len(e), rt.end is not None))
            rd += (rt.start, e)
        r_off, r_len = self._emit(b"".join(rd))
        smallest = self._smallest or b""
        largest = self._last_key or b""
        if self.max_seq == 0:
            self.min_seq = 0
        props = TableProps(self.entries, self.tombstones, self.min_seq, self.max_seq,
                           len(self._index), smallest, largest)
        p_off, p_len = self._emit(
            TABLE_PROPS_FIXED.pack(props.entries, props.tombstones, props.min_seq, props.max_seq,
                                   props.data_blocks, len(smallest), len(largest)) + smallest + largest)
        ix = [INDEX_COUNT.pack(len(self._index))]
        for k, off, ln in self._index:
            ix.append(INDEX_ENTRY.pack(off, ln, len(k)))
            ix.append(k)
        i_off, i_len = self._emit(b"".join(ix))
        head = TABLE_FOOTER.pack(i_off, i_len, f_off, f_len, r_off, r_len, p_off, p_len,
                                 TABLE_FORMAT_VERSION, 0, TABLE_MAGIC)
        crc = _checksum(head[:-12])
        self._out += TABLE_FOOTER.pack(i_off, i_len, f_off, f_len, r_off, r_len, p_off, p_len,
                                       TABLE_FORMAT_VERSION, crc, TABLE_MAGIC)
        self._file.append(self._out)
        size = self._offset + len(self._out)
        self._out = bytearray()
        self._file.sync()
        self._file.close()
        return size, props


class TableReader:
    """An open table. Loads the index, filter, range deletions and properties at open and checks
    every checksum it reads; raises TableCorruptionError (naming file and offset) on damage."""

    def __init__(self, file: RandomAccessFile, number: int, level: int = 0) -> None:
        self.file = file
        self.path = file.path
        self.number = number
        self.level = level
        self.cache_base = number << 32
        self.size = file.size()
        path = self.path
        if self.size < TABLE_FOOTER_SIZE:
            raise TableCorruptionError(path, 0, f"file too short for a footer ({self.size} bytes)")
        foot_off = self.size - TABLE_FOOTER_SIZE
        foot = file.pread(foot_off, TABLE_FOOTER_SIZE)
        (i_off, i_len, f_off, f_len, r_off, r_len, p_off, p_len, version, crc, magic) = (
            TABLE_FOOTER.unpack(foot))
        if magic != TABLE_MAGIC:
            raise TableCorruptionError(path, foot_off, "bad magic number (truncated or not a table)")
        if _checksum(foot[:-12]) != crc:
            raise TableCorruptionError(path, foot_off, "footer checksum mismatch")
        if version != TABLE_FORMAT_VERSION:
            raise TableCorruptionError(path, foot_off, f"unknown table format version {version}")
        for off, ln in ((i_off, i_len), (f_off, f_len), (r_off, r_len), (p_off, p_len)):
            if off + ln + _TRAILER > foot_off:
                raise TableCorruptionError(path, off, "meta block beyond the footer")
        # properties
        p = self.read_raw(p_off, p_len)
        entries, tombs, min_seq, max_seq, nblocks, sl, ll = TABLE_PROPS_FIXED.unpack_from(p, 0)
        o = TABLE_PROPS_FIXED.size
        self.props = TableProps(entries, tombs, min_seq, max_seq, nblocks, p[o : o + sl],
                                p[o + sl : o + sl + ll])
        self.smallest = self.props.smallest
        self.largest = self.props.largest
        self.empty = entries == 0
        # index
        ix = self.read_raw(i_off, i_len)
        (n,) = INDEX_COUNT.unpack_from(ix, 0)
        o = INDEX_COUNT.size
        keys: list[bytes] = []
        offs = array("Q")  # compact: a table of N GB holds ~N * 256k blocks
        lens = array("I")
        for _ in range(n):
            boff, blen, kl = INDEX_ENTRY.unpack_from(ix, o)
            o += INDEX_ENTRY.size
            keys.append(ix[o : o + kl])
            o += kl
            if boff + blen + _TRAILER > f_off:
                raise TableCorruptionError(path, i_off, "index points beyond the data blocks")
            offs.append(boff)
            lens.append(blen)
        self.first_keys = keys
        self.block_offs = offs
        self.block_lens = lens
        # filter
        try:
            self.bloom = BloomFilter.decode(self.read_raw(f_off, f_len))
        except (ValueError, struct.error) as e:
            raise TableCorruptionError(path, f_off, f"bad filter block: {e}") from None
        # unpacked for the engine's inlined probe: words[h1 % nwords] & mask == mask
        self.bloom_words = self.bloom.words
        self.bloom_nwords = self.bloom.nwords
        # range deletions
        r = self.read_raw(r_off, r_len)
        (rn,) = RDEL_COUNT.unpack_from(r, 0)
        o = RDEL_COUNT.size
        rts: list[RangeTombstone] = []
        for _ in range(rn):
            seq, t, sl, el, has_end = RDEL_ENTRY.unpack_from(r, o)
            o += RDEL_ENTRY.size
            rts.append(RangeTombstone(r[o : o + sl], r[o + sl : o + sl + el] if has_end else None,
                                      seq, t))
            o += sl + el
        self.range_tombstones = rts

    def read_raw(self, off: int, ln: int) -> bytes:
        """A block's bytes after checking its checksum."""
        data = self.file.pread(off, ln + _TRAILER)
        if len(data) != ln + _TRAILER:
            raise TableCorruptionError(self.path, off, "block extends beyond end of file")
        (crc,) = BLOCK_TRAILER.unpack_from(data, ln)
        block = data[:ln]
        if _checksum(block) != crc:
            raise TableCorruptionError(self.path, off, "block checksum mismatch")
        return block

    def block(self, i: int, cache: BlockCache | None, fill: bool = True
              ) -> tuple[list[bytes], Sequence[int], bytes]:
        """(keys, offsets-and-key-lengths, data) of block ``i``, for iteration: from the cache
        when it holds the block in raw form, else read (and cached raw if ``fill``). A block
        cached in records form no longer has its bytes; it is read again (not re-cached)."""
        if cache is not None:
            ck = self.cache_base + i
            blk = cache._d.get(ck)
            if blk is not None and blk[BLK_DATA] is not None:
                blk[BLK_REF] = True
                cache.hits += 1
                return with_keys(blk)
            cache.misses += 1
        off = self.block_offs[i]
        blk = raw_block(self.read_raw(off, self.block_lens[i]), self.path, off)
        if cache is not None and fill:
            cache.insert(self.cache_base + i, blk, blk[BLK_CHARGE])
        return with_keys(blk)

    def probe_block(self, i: int, key: bytes, blk: list | None, cache: BlockCache) -> object:
        """``key`` looked up in block ``i`` (Record, None for a tombstone, or MISSING), given
        ``blk``, the cache's entry for it (None on a miss: the block is read and cached raw).
        A raw block hit again is upgraded to records form if that fits without evicting.
        Counts nothing in ``cache.hits``/``misses`` (callers do)."""
        if blk is None:
            off = self.block_offs[i]
            blk = raw_block(self.read_raw(off, self.block_lens[i]), self.path, off)
            cache.insert(self.cache_base + i, blk, blk[BLK_CHARGE])
        else:
            blk[BLK_REF] = True
            if (blk[BLK_KEYS] is None
                    and cache.used + records_extra_estimate(blk) <= cache.capacity):
                cache.grew(to_records(blk))
        return block_get(blk, key)

    def get(self, key: bytes, cache: BlockCache | None) -> object:
        """Record, None (a tombstone), or MISSING. Range tombstones are the caller's business."""
        i = bisect_right(self.first_keys, key) - 1
        if i < 0:
            return MISSING
        if cache is None:
            off = self.block_offs[i]
            return block_get(raw_block(self.read_raw(off, self.block_lens[i]), self.path, off),
                             key)
        blk = cache._d.get(self.cache_base + i)
        if blk is None:
            cache.misses += 1
        else:
            cache.hits += 1
        return self.probe_block(i, key, blk, cache)

    def get_entry(self, key: bytes, cache: BlockCache | None) -> Entry | None:
        i = bisect_right(self.first_keys, key) - 1
        if i < 0:
            return None
        keys, offs, data = self.block(i, cache)
        j = bisect_left(keys, key)
        if j == len(keys) or keys[j] != key:
            return None
        return decode_entry(data, offs[j])

    def iter_entries(self, start: bytes = b"", end: bytes | None = None,
                     cache: BlockCache | None = None) -> Iterator[Entry]:
        """Entries with start <= key < end in key order; blocks read lazily, not cached."""
        i = max(0, bisect_right(self.first_keys, start) - 1) if start else 0
        nblocks = len(self.first_keys)
        while i < nblocks:
            if end is not None and self.first_keys[i] >= end:
                return
            keys, offs, data = self.block(i, cache, fill=False)
            first = bisect_left(keys, start) if start else 0
            for j in range(first, len(keys)):
                if end is not None and keys[j] >= end:
                    return
                yield decode_entry(data, offs[j])
            i += 1

    def block_keys(self, i: int, cache: BlockCache | None = None) -> list[bytes]:
        """The sorted keys of data block ``i`` (tombstones' included)."""
        blk = cache._d.get(self.cache_base + i) if cache is not None else None
        if blk is not None and blk[BLK_DATA] is None:  # records form: the keys are kept
            return blk[BLK_KEYS]  # type: ignore[no-any-return]
        return self.block(i, cache, fill=False)[0]

    def iter_batches(self, start: bytes = b"", end: bytes | None = None,
                     cache: BlockCache | None = None) -> Iterator[list[Entry]]:
        """Like iter_entries, one list per data block (for the batched merge of a scan)."""
        i = max(0, bisect_right(self.first_keys, start) - 1) if start else 0
        nblocks = len(self.first_keys)
        while i < nblocks:
            if end is not None and self.first_keys[i] >= end:
                return
            blk = cache._d.get(self.cache_base + i) if cache is not None else None
            if blk is not None and blk[BLK_DATA] is None:
                # Records form: entries rebuilt from the answers, with the table's max_seq as
                # every entry's seq. Safe for a scan's merge: tables hold disjoint seq ranges
                # and at most one entry per key, so it orders versions across sources exactly
                # as the true seq would; and a range tombstone covers the proxy iff it covers
                # the true seq (older tables' tombstones cover neither, newer ones cover both,
                # the table's own never cover its entries).
                blk[BLK_REF] = True
                cache.hits += 1  # type: ignore[union-attr]
                keys = blk[BLK_KEYS]
                lo = bisect_left(keys, start) if start else 0
                hi = len(keys) if end is None else bisect_left(keys, end)
                nseq = -self.props.max_seq
                yield [(k, nseq, KIND_PUT, 0, b"", a) if a.__class__ is bytes
                       else _answer_entry(k, nseq, a)
                       for k, a in zip(keys[lo:hi], blk[BLK_ANSWERS][lo:hi], strict=True)]
            else:
                keys, offs, data = self.block(i, cache, fill=False)
                lo = bisect_left(keys, start) if start else 0
                hi = len(keys) if end is None else bisect_left(keys, end)
                yield [decode_entry(data, o) for o in offs[lo:hi]]
            if hi < len(keys):
                return
            i += 1

    def iter_raw_batches(self) -> Iterator[list[Entry]]:
        """Every entry, one list per data block, in the raw form compaction copies without
        re-encoding: (key, -seq, kind, time, <the entry's bytes>, None)."""
        unpack = _unpack_entry
        for i in range(len(self.first_keys)):
            keys, offs, data = self.block(i, None, fill=False)
            n = len(keys)
            ends = [*offs[1:n], len(data) - 4 - 8 * n]
            out = []
            for key, o, end in zip(keys, offs, ends, strict=False):  # offs also holds the key lengths
                kind, _kl, _ml, _vl, seq, t = unpack(data, o)
                out.append((key, -seq, kind, t, data[o:end], None))
            yield out

    def iter_raw_columns(self, chunk_bytes: int = 1 << 18
                         ) -> Iterator[tuple[list[bytes], list[bytes], bool]]:
        """Every entry, for compaction, in chunks of consecutive data blocks (one pread of about
        ``chunk_bytes`` each, every block's checksum verified): (keys, raws, plain) where
        ``raws[i]`` is entry i's bytes as stored (copied by the writer without re-encoding) and
        ``plain`` says every entry of the chunk is a put with no expiry. Keys and entries are
        sliced with C-level maps: a few Python steps per block, none per entry."""
        offs = self.block_offs
        lens = self.block_lens
        nblocks = len(offs)
        path = self.path
        i = 0
        while i < nblocks:
            start = end = offs[i]
            j = i
            while j < nblocks and offs[j] == end and end - start < chunk_bytes:
                end = offs[j] + lens[j] + _TRAILER
                j += 1
            buf = self.file.pread(start, end - start)
            if len(buf) != end - start:
                raise TableCorruptionError(path, start, "block extends beyond end of file")
            mv = memoryview(buf)
            starts: list[int] = []
            rends: list[int] = []
            klens: list[int] = []
            for b in range(i, j):
                base = offs[b] - start
                ln = lens[b]
                (crc,) = BLOCK_TRAILER.unpack_from(buf, base + ln)
                if _checksum(mv[base : base + ln]) != crc:
                    raise TableCorruptionError(path, offs[b], "block checksum mismatch")
                tend = base + ln - 4
                try:
                    (n,) = U32.unpack_from(buf, tend)
                    tstart = tend - 8 * n
                    if tstart < base:
                        raise struct.error(f"{n} entries do not fit in {ln} bytes")
                    both = _trailer_struct(n).unpack_from(buf, tstart)
                except struct.error as e:
                    raise TableCorruptionError(path, offs[b], f"malformed block trailer: {e}"
                                               ) from None
                s = list(map(base.__add__, both[:n]))
                starts += s
                rends += islice(s, 1, None)
                rends.append(tstart)
                klens += both[n:]
            mv.release()
            kstarts = list(map(_HDR.__add__, starts))
            keys = list(map(buf.__getitem__, map(slice, kstarts, map(_add, kstarts, klens))))
            raws = list(map(buf.__getitem__, map(slice, starts, rends)))
            plain = set(map(_KIND_TIME.unpack_from, repeat(buf), starts)) <= _PLAIN
            yield keys, raws, plain
            i = j

    def close(self) -> None:
        self.file.close()
