"""LSMEngine: the hand-written log-structured merge tree behind ``respkv.storage.api.Engine``.

After O'Neil et al., "The Log-Structured Merge-Tree" (1996), in the shape of LevelDB/Bigtable
(Chang et al. 2006): a commit log and a memtable in front, immutable SSTables behind, a manifest
naming the live tables. Byte layouts: docs/formats/{commitlog,sstable,manifest}.md.

Threads and ownership
---------------------
* The trio thread calls get/put/delete/write_batch/delete_range/scan, and owns the active
  memtable and the commit-log append buffer (no lock on that path).
* ``sync`` may run in a worker thread concurrently with it; ``do_background_work`` (flush and
  compaction) in another. Flush and compaction may also run concurrently with each other
  (``do_flush``/``do_compaction``).
* The read path sees the frozen memtables and the tables through one immutable ``_State`` swapped
  atomically under ``_state_lock`` (held only for the swap, never across I/O), so a reader never
  sees a memtable disappear before its table appears.
* ``_write_lock`` orders writes into the current log file (a short write(2)); ``_sync_lock``
  serializes fsyncs of log files and their deletion; ``_manifest_lock`` serializes manifest edits.

API beyond ``respkv.storage.api.Engine``
----------------------------------------
``LSMEngine.open(path, *, fs, now_ms, memtable_bytes, block_cache_bytes, skip_corrupt,
inline_background, tombstone_grace_ms, bloom_bits_per_key, max_frozen)``;
``do_flush()`` / ``do_compaction()`` (the two halves of ``do_background_work()``, safe to run in
two workers at once); ``flush()`` (freeze and flush everything now) and
``compact(full=True, newest=None)`` for tests, benches and operators.

Durability
----------
A mutation is durable once a ``sync()`` that started after it returns (it returns the highest
durable seq). Logs are rotated with the memtable; a sealed log is fsynced by the next ``sync()``.
A log is deleted only after a manifest edit recording the table that holds its memtable (and a
``log_number`` past it) is fsynced. Recovery replays the logs the manifest does not cover,
writes them to a table, and starts a fresh manifest and log; every crash point recovers to a
state holding every synced write (tests/storage/test_crash.py checks each one).
"""

from __future__ import annotations

import itertools
import logging
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from respkv.storage.api import (
    SCAN_WINDOW_FIRST,
    SCAN_WINDOW_MAX,
    Mutation,
    RandomSource,
    Record,
    windowed_scan,
)
from respkv.storage.bloom import (
    DEFAULT_BITS_PER_KEY,
    MASK_SHIFT,
    key_hash,
    mask_table,
    num_probes,
)
from respkv.storage.commitlog import (
    DELETE_SEED,
    PUT_SEED,
    LogWriter,
    encode_batch,
    encode_range_delete,
    read_log,
)
from respkv.storage.compaction import (
    batched_merge,
    merge_raw_columns,
    pick_run,
    surviving_range_tombstones,
)
from respkv.storage.errors import EngineClosedError, TableCorruptionError
from respkv.storage.format import (
    KIND_DELETE,
    KIND_PUT,
    LOCK,
    LOG_DELETE,
    LOG_DELETE_FIXED,
    LOG_PUT,
    LOG_PUT_FIXED,
    RECORD_HEADER,
    log_name,
    parse_file_name,
    table_name,
)
from respkv.storage.fs import FileSystem, OSFileSystem, wall_clock_ms
from respkv.storage.manifest import (
    ManifestState,
    ManifestWriter,
    TableMeta,
    VersionEdit,
    read_current,
    read_manifest,
)
from respkv.storage.memtable import Memtable, covered
from respkv.storage.sstable import (
    MISSING,
    BlockCache,
    Entry,
    RangeTombstone,
    TableBuilder,
    TableReader,
)

log = logging.getLogger(__name__)

DEFAULT_MEMTABLE_BYTES = 64 << 20
DEFAULT_BLOCK_CACHE_BYTES = 32 << 20
DEFAULT_TOMBSTONE_GRACE_MS = 10 * 24 * 3600 * 1000  # 10 days, like Cassandra's gc_grace_seconds
# Python memory per memtable entry beyond its key/value/meta bytes (dict slot, tuple, Record,
# int, bytes headers), measured with tracemalloc on CPython 3.11; memtable_bytes counts it.
# (An entry of a plain put holds no Record and measures ~70 bytes less: 180-202 for 5k-60k
# entries; the one figure is kept for every entry, erring on the side of freezing early.)
ENTRY_OVERHEAD = 280
MAX_FROZEN = 2  # write_stalled() when this many frozen memtables wait for a flush

_put_pack = LOG_PUT_FIXED.pack
_del_pack = LOG_DELETE_FIXED.pack
_hdr_pack = RECORD_HEADER.pack
_crc32 = zlib.crc32
# Record(...) goes through a Python-level __new__; tuple.__new__ builds the same NamedTuple
# without that frame (half the cost on the put and get paths).
_new_tuple = tuple.__new__


SAMPLE_BLOCK_TRIES = 3  # sample_key: blocks of one table drawn at most (see there)


class _State:
    """What the read path sees besides the active memtable. Immutable; swapped whole."""

    __slots__ = ("frozen", "tables", "probes", "masks", "slow_path")

    def __init__(self, frozen: tuple[Memtable, ...], tables: tuple[TableReader, ...]) -> None:
        self.frozen = frozen  # newest first
        self.tables = tables  # newest first (disjoint seq ranges, descending)
        # The inlined probe in get() assumes no range tombstones and one Bloom k for all tables
        # (so one mask per get serves every table); otherwise get() takes the slow path.
        ks = {t.bloom.k for t in tables}
        self.slow_path = len(ks) > 1 or any(t.range_tombstones for t in tables)
        self.masks = mask_table(ks.pop() if len(ks) == 1 else num_probes(DEFAULT_BITS_PER_KEY))
        # per table with entries, what get() needs, unpacked in one step (n: its position)
        self.probes = tuple((t.bloom_words, t.bloom_nwords, n, t.smallest, t.largest,
                             t.first_keys, t.cache_base, t)
                            for n, t in enumerate(t for t in tables if not t.empty))


def _sorted_tables(tables: list[TableReader] | tuple[TableReader, ...]) -> tuple[TableReader, ...]:
    return tuple(sorted(tables, key=lambda t: t.props.max_seq, reverse=True))


class LSMEngine:
    """See the module docstring. Construct with ``LSMEngine.open``."""

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str,
        *,
        fs: FileSystem | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        memtable_bytes: int = DEFAULT_MEMTABLE_BYTES,
        block_cache_bytes: int = DEFAULT_BLOCK_CACHE_BYTES,
        skip_corrupt: bool = False,
        inline_background: bool = False,
        tombstone_grace_ms: int = DEFAULT_TOMBSTONE_GRACE_MS,
        bloom_bits_per_key: int = DEFAULT_BITS_PER_KEY,
        max_frozen: int = MAX_FROZEN,
    ) -> LSMEngine:
        """Open (creating if needed) the database in directory ``path``.

        Recovery replays the commit logs the manifest does not cover: a torn tail is truncated;
        a bad record followed by valid ones raises LogCorruptionError (file, offset) unless
        ``skip_corrupt``, which skips it with a warning (like Redis's aof-load-truncated). A
        damaged table raises TableCorruptionError. Orphan files of a crashed flush, compaction
        or open are deleted.
        """
        self = cls.__new__(cls)
        self._init(path, fs or OSFileSystem(), now_ms, memtable_bytes, block_cache_bytes,
                   skip_corrupt, inline_background, tombstone_grace_ms, bloom_bits_per_key,
                   max_frozen)
        return self

    def _init(self, path: str, fs: FileSystem, now_ms: Callable[[], int], memtable_bytes: int,
              block_cache_bytes: int, skip_corrupt: bool, inline_background: bool,
              tombstone_grace_ms: int, bloom_bits_per_key: int, max_frozen: int) -> None:
        self._fs = fs
        self._dir = path
        self._now_ms = now_ms
        self._memtable_bytes = memtable_bytes
        self._inline = inline_background
        self._grace = tombstone_grace_ms
        self._bits_per_key = bloom_bits_per_key
        self._max_frozen = max_frozen
        self._cache = BlockCache(block_cache_bytes)
        self._cache_d = self._cache._d
        self._get_cache_misses = 0
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._manifest_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._compact_lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False
        # figures for stats()
        self._bloom_negatives = 0
        self._bloom_false_positives = 0
        self._bloom_true_positives = 0
        self._table_bytes_written = 0
        self._user_bytes_base = 0
        self._flushes = 0
        self._compactions = 0
        self._recovered_torn_bytes = 0
        self._recovered_skipped = 0
        self._recovered_ops = 0

        fs.mkdir(path)
        self._dir_lock = fs.lock(fs.join(path, LOCK))
        try:
            self._recover(skip_corrupt)
        except BaseException:
            fs.unlock(self._dir_lock)
            raise

    def _recover(self, skip_corrupt: bool) -> None:
        fs = self._fs
        path = self._dir
        memtable_bytes = self._memtable_bytes
        current = read_current(fs, path)
        mstate = read_manifest(fs, fs.join(path, current)) if current else ManifestState()
        names = fs.listdir(path)
        max_seen = max((p[1] for p in map(parse_file_name, names) if p), default=0)
        self._next_file = itertools.count(max(mstate.next_file, max_seen + 1))

        tables: list[TableReader] = []
        for meta in mstate.tables.values():
            tpath = fs.join(path, table_name(meta.number))
            if not fs.exists(tpath):
                raise TableCorruptionError(tpath, 0, "table named by the manifest is missing")
            tables.append(TableReader(fs.open_read(tpath), meta.number, meta.level))
        seq = mstate.last_seq

        # Replay the logs the manifest does not cover, oldest first, into memtables.
        log_numbers = sorted(n for k, n in filter(None, map(parse_file_name, names))
                             if k == "log" and n >= mstate.log_number)
        mems: list[Memtable] = []
        mem = Memtable(0, seq + 1)
        mem_bytes = 0
        for n in log_numbers:
            lpath = fs.join(path, log_name(n))
            ops, res = read_log(fs.read_file(lpath), lpath, skip_corrupt)
            if res.torn_bytes:
                log.warning("commit log %s: dropped a torn tail of %d bytes at offset %d",
                            lpath, res.torn_bytes, res.valid_end)
            self._recovered_torn_bytes += res.torn_bytes
            self._recovered_skipped += len(res.skipped)
            self._recovered_ops += len(ops)
            for op in ops:
                s = op[1]
                if s <= mstate.last_seq:
                    continue  # already in a table (cannot happen with a sane manifest)
                if op[0] == "put":
                    mem.data[op[2]] = ((s, op[3]) if not op[4] and not op[5]
                                       else (s, Record(op[3], op[4], op[5])))
                    mem_bytes += len(op[2]) + len(op[3]) + len(op[5]) + ENTRY_OVERHEAD
                elif op[0] == "del":
                    mem.data[op[2]] = (s, None, op[3])
                    mem_bytes += len(op[2]) + ENTRY_OVERHEAD
                else:
                    mem.add_range_tombstone(RangeTombstone(op[2], op[3], s, op[4]))
                seq = max(seq, s)
                if mem_bytes >= memtable_bytes:
                    mem.last_seq = seq
                    mems.append(mem)
                    mem = Memtable(0, seq + 1)
                    mem_bytes = 0
        mem.last_seq = seq
        mems.append(mem)
        # Write the recovered memtables to tables; the new manifest will name them.
        added: list[TableMeta] = []
        for m in mems:
            if m.is_empty():
                continue
            new_meta, reader = self._write_table(self._alloc(), _memtable_filler(m), m.rts,
                                                 len(m.data), level=0)
            if reader is not None:
                assert new_meta is not None  # _write_table returns both or neither
                tables.append(reader)
                added.append(new_meta)
        # New log, then a new manifest holding everything (its CURRENT switch fsyncs the dir,
        # which also makes the new log's and the recovered tables' names durable).
        log_number = self._alloc()
        lpath = fs.join(path, log_name(log_number))
        self._log = LogWriter(log_number, lpath, fs.create(lpath))
        for meta in added:
            mstate.tables[meta.number] = meta
        mstate.log_number = log_number
        mstate.last_seq = seq
        manifest_number = self._alloc()
        mstate.next_file = manifest_number + 1
        self._manifest = ManifestWriter.create(fs, path, manifest_number, mstate)
        self._mstate = mstate
        self._log.needs_dir_sync = False
        # Everything else is garbage: old logs and manifests, orphans of crashed work.
        live_tables = set(mstate.tables)
        for name in fs.listdir(path):
            p = parse_file_name(name)
            if p is None:
                continue
            kind, n = p
            if ((kind == "sst" and n not in live_tables) or (kind == "log" and n != log_number)
                    or (kind == "manifest" and n != manifest_number) or kind == "temp"):
                fs.unlink(fs.join(path, name))

        self._seq = seq
        self._durable_seq = seq
        self._logs: dict[int, LogWriter] = {log_number: self._log}
        self._sealed: list[LogWriter] = []
        self._buf = self._log.buf
        self._mem = Memtable(log_number, seq + 1)
        self._mem_data = self._mem.data
        self._user_bytes = 0
        self._set_freeze_threshold()
        self._state = _State((), _sorted_tables(tables))
        if self._inline:
            self._run_background_inline()

    def _alloc(self) -> int:
        return next(self._next_file)

    def _set_freeze_threshold(self) -> None:
        # put() freezes the memtable when user_bytes + seq * OVERHEAD reaches this.
        self._freeze_at = (self._user_bytes + self._seq * ENTRY_OVERHEAD
                           + self._memtable_bytes)

    # -- writes (trio thread) ----------------------------------------------------------------
    def put(self, key: bytes, value: bytes, expire_at_ms: int = 0, meta: bytes = b"") -> int:
        seq = self._seq + 1
        ub = self._user_bytes + len(key) + len(value) + len(meta)
        if ub + seq * ENTRY_OVERHEAD >= self._freeze_at:
            self._make_room()
            ub = self._user_bytes + len(key) + len(value) + len(meta)
        body = _put_pack(seq, expire_at_ms, len(key), len(meta), len(value)) + key + meta + value
        buf = self._buf
        buf += _hdr_pack(_crc32(body, PUT_SEED), len(body), LOG_PUT)
        buf += body
        if expire_at_ms or meta or value.__class__ is not bytes:
            self._mem_data[key] = (seq, _new_tuple(Record, (value, expire_at_ms, meta)))
        else:
            self._mem_data[key] = (seq, value)  # plain: see memtable.py
        self._user_bytes = ub
        self._seq = seq
        return seq

    def delete(self, key: bytes) -> int:
        seq = self._seq + 1
        ub = self._user_bytes + len(key)
        if ub + seq * ENTRY_OVERHEAD >= self._freeze_at:
            self._make_room()
            ub = self._user_bytes + len(key)
        now = self._now_ms()
        body = _del_pack(seq, now, len(key)) + key
        buf = self._buf
        buf += _hdr_pack(_crc32(body, DELETE_SEED), len(body), LOG_DELETE)
        buf += body
        self._mem_data[key] = (seq, None, now)
        self._user_bytes = ub
        self._seq = seq
        return seq

    def write_batch(self, mutations: list[Mutation]) -> int:
        """All or nothing: one commit-log record. Returns the last seq (``last_seq`` if empty)."""
        if not mutations:
            return self._seq
        first = self._seq + 1
        last = self._seq + len(mutations)
        n = sum(len(k) + (len(r.value) + len(r.meta) if r else 0) for k, r in mutations)
        if self._user_bytes + n + last * ENTRY_OVERHEAD >= self._freeze_at:
            self._make_room()
        ub = self._user_bytes + n
        now = self._now_ms()
        entries = [(KIND_PUT, k, r.value, r.expire_at_ms, r.meta) if r is not None
                   else (KIND_DELETE, k, b"", now, b"") for k, r in mutations]
        self._buf += encode_batch(first, entries)
        d = self._mem_data
        for i, (k, r) in enumerate(mutations):
            if r is not None:
                if r.expire_at_ms or r.meta or r.value.__class__ is not bytes:
                    d[k] = (first + i, Record(r.value, r.expire_at_ms, r.meta))
                else:
                    d[k] = (first + i, r.value)
            else:
                d[k] = (first + i, None, now)
        self._user_bytes = ub
        self._seq = last
        return last

    def delete_range(self, start: bytes, end: bytes | None) -> int:
        """One range-tombstone record in the log (O(1) log bytes whatever the range holds); the
        active memtable drops its covered keys at once (O(memtable)); tables are filtered on
        read and purged by compaction."""
        seq = self._seq + 1
        n = len(start) + len(end or b"")
        if self._user_bytes + n + seq * ENTRY_OVERHEAD >= self._freeze_at:
            self._make_room()
        ub = self._user_bytes + n
        now = self._now_ms()
        self._buf += encode_range_delete(seq, start, end, now)
        self._mem.add_range_tombstone(RangeTombstone(start, end, seq, now))
        self._user_bytes = ub
        self._seq = seq
        return seq

    def _check_usable(self) -> None:
        if self._closed:
            raise EngineClosedError("engine is closed")
        if self._error is not None:
            raise EngineClosedError("engine stopped after a write error") from self._error

    def _make_room(self) -> None:
        """Slow path of every write: the memtable is full (or the engine is unusable, which sets
        the threshold to -1)."""
        self._check_usable()
        if self._mem.is_empty():
            self._set_freeze_threshold()
            return
        self._freeze()
        if self._inline:
            self._run_background_inline()

    def _freeze(self) -> None:
        """Trio thread: seal the active memtable and its log, start new ones."""
        number = self._alloc()
        lpath = self._fs.join(self._dir, log_name(number))
        new_log = LogWriter(number, lpath, self._fs.create(lpath))
        old = self._mem
        with self._write_lock:
            old_log = self._log
            try:
                old_log.write_out(self._seq)
            except OSError as e:
                self._fail(e)
                raise
            self._log = new_log
            self._logs[number] = new_log
            self._sealed.append(old_log)
        self._buf = new_log.buf
        old.next_log_number = number
        old.last_seq = self._seq
        self._user_bytes_base += self._user_bytes
        self._user_bytes = 0
        new = Memtable(number, self._seq + 1)
        with self._state_lock:
            st = self._state
            self._state = _State((old,) + st.frozen, st.tables)
        self._mem = new
        self._mem_data = new.data
        self._set_freeze_threshold()

    def _fail(self, e: BaseException) -> None:
        # After a failed log write the file may end in a partial record; stop accepting writes
        # rather than append valid records after it (which recovery would call corruption).
        if self._error is None:
            self._error = e
        self._freeze_at = -1

    # -- durability ---------------------------------------------------------------------------
    def write_pending(self) -> int:
        with self._write_lock:
            self._check_usable()
            seq = self._seq  # read before the buffer length: see LogWriter.write_out
            try:
                self._log.write_out(seq)
            except OSError as e:
                self._fail(e)
                raise
            return seq

    def sync(self) -> int:
        with self._sync_lock:
            with self._write_lock:
                self._check_usable()
                seq = self._seq
                current = self._log
                sealed = self._sealed
                self._sealed = []
                try:
                    current.write_out(seq)
                except OSError as e:
                    self._fail(e)
                    raise
            try:
                need_dir = current.needs_dir_sync
                for lw in sealed:
                    if not lw.closed:
                        lw.file.sync()
                        need_dir = need_dir or lw.needs_dir_sync
                current.file.sync()
                if need_dir:
                    self._fs.fsync_dir(self._dir)
                    current.needs_dir_sync = False
                    for lw in sealed:
                        lw.needs_dir_sync = False
            except OSError as e:
                self._fail(e)
                raise
            if seq > self._durable_seq:
                self._durable_seq = seq
            return self._durable_seq

    @property
    def last_seq(self) -> int:
        return self._seq

    # -- reads (trio thread) -----------------------------------------------------------------
    def get(self, key: bytes) -> Record | None:
        # The hot read path: the table probe (Bloom filter, sparse index, block cache, block
        # search) is inlined here; TableReader.get is the readable version of the same steps.
        e = self._mem_data.get(key)
        if e is not None:
            v = e[1]
            if v.__class__ is bytes:  # a plain put (memtable.py)
                return _new_tuple(Record, (v, 0, b""))
            return v
        mem = self._mem
        if mem.rts and covered(mem.rts, key):
            return None
        st = self._state
        for m in st.frozen:
            e = m.data.get(key)
            if e is not None:
                v = e[1]
                if v.__class__ is bytes:
                    return _new_tuple(Record, (v, 0, b""))
                return v
            if m.rts and covered(m.rts, key):
                return None
        if st.slow_path:
            return self._get_from_tables_with_range_deletes(st.tables, key)
        h = key_hash(key)
        mask = st.masks[h >> MASK_SHIFT]
        cache_d = self._cache_d
        looked = 0  # block lookups so far; the other tables passed were Bloom negatives
        for words, nwords, n, smallest, largest, first_keys, base, t in st.probes:
            # The blocked Bloom filter first (one word, see bloom.py): it rejects ~98% of
            # tables. The key range is checked only when it says maybe (and a table it
            # rules out counts as a negative: no block is touched).
            if words[h % nwords] & mask != mask or key < smallest or key > largest:
                continue
            looked += 1
            i = bisect_right(first_keys, key) - 1
            blk = cache_d.get(base + i)
            if blk is not None and blk[2] is None:
                # The common hit: a block in records form (see BlockCache). blk[4] is the
                # CLOCK reference bit, blk[0] the sorted keys, blk[1] the answers.
                blk[4] = True
                keys = blk[0]
                j = bisect_left(keys, key)
                if j < len(keys) and keys[j] == key:
                    self._bloom_negatives += n - looked + 1
                    self._bloom_true_positives += 1
                    v = blk[1][j]
                    if v.__class__ is bytes:  # a put with no expiry and no meta
                        return _new_tuple(Record, (v, 0, b""))
                    return None if v.__class__ is int else v  # int: a tombstone
            else:
                if blk is None:
                    self._get_cache_misses += 1
                r = t.probe_block(i, key, blk, self._cache)
                if r is not MISSING:
                    self._bloom_negatives += n - looked + 1
                    self._bloom_true_positives += 1
                    return r  # type: ignore[return-value]
            self._bloom_false_positives += 1
        self._bloom_negatives += len(st.probes) - looked
        return None

    def _get_from_tables_with_range_deletes(self, tables: tuple[TableReader, ...],
                                            key: bytes) -> Record | None:
        """get() over tables when some table holds range tombstones (rare: after FLUSHDB), or
        when tables differ in Bloom k (written under different ``bloom_bits_per_key``)."""
        h = key_hash(key)
        cache = self._cache
        for t in tables:
            if t.range_tombstones:
                r = self._get_from_table_with_range_deletes(t, key, h)
                if r is MISSING:
                    continue
                return r  # type: ignore[return-value]
            if t.empty or key < t.smallest or key > t.largest:
                continue
            if not t.bloom.may_contain_hash(h):
                self._bloom_negatives += 1
                continue
            r = t.get(key, cache)
            if r is MISSING:
                self._bloom_false_positives += 1
                continue
            self._bloom_true_positives += 1
            return r  # type: ignore[return-value]
        return None

    def _get_from_table_with_range_deletes(self, t: TableReader, key: bytes, h: int) -> object:
        """Record, None (deleted: by a point tombstone, or by a range tombstone that hides every
        older table too) or MISSING (look in older tables)."""
        if not t.empty and t.smallest <= key <= t.largest and t.bloom.may_contain_hash(h):
            r = t.get(key, self._cache)
            if r is not MISSING:
                return r
        if covered(t.range_tombstones, key):
            return None
        return MISSING

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, Record]]:
        """Live records with start <= key < end, in key order, read in windows: each window is
        a consistent snapshot of a key range holding a bounded number of the active memtable's
        entries (``SCAN_WINDOW_FIRST``, doubling up to ``SCAN_WINDOW_MAX``; copied when the
        window is taken; frozen memtables and tables are immutable). The first window is taken
        here, the next ones when the iteration reaches them, so a caller that stops after a few
        keys copies a few entries, not the memtable's whole tail. Every key is visited once, in
        order, as of the time its window was taken (a write between windows is seen or not
        according to its key's place)."""
        return windowed_scan(self._window, start, end, SCAN_WINDOW_FIRST, SCAN_WINDOW_MAX)

    def _window(self, start: bytes, end: bytes | None, size: int
                ) -> tuple[Iterator[tuple[bytes, Record]], bytes | None]:
        mem = self._mem
        st = self._state
        entries, cut = mem.snapshot_entries(start, end, size)
        if cut is not None:
            end = cut
        sources = [_chunks(iter(entries), 512)]
        rts = list(mem.rts)
        for m in st.frozen:
            sources.append(_chunks(m.iter_entries(start, end), 512))
            rts += m.rts
        for t in st.tables:
            rts += t.range_tombstones
            if not t.empty and (end is None or t.smallest < end) and t.largest >= start:
                sources.append(t.iter_batches(start, end, self._cache))
        return _live(sources, rts), cut

    def sample_key(self, start: bytes, end: bytes | None, rng: RandomSource) -> bytes | None:
        """``Engine.sample_key``: a source (memtable or table) is drawn with a probability
        proportional to its entries in range (a table's estimated from its blocks in range and
        its mean entries per block), then an entry of it: a memtable's from its sorted keys, a
        table's from a block in range drawn uniformly (a few block reads at most)."""
        st = self._state
        weights: list[float] = []
        picks: list[tuple[object, int, int]] = []
        for m in (self._mem, *st.frozen):
            keys = m.sorted_keys()
            lo = bisect_left(keys, start) if start else 0
            hi = len(keys) if end is None else bisect_left(keys, end)
            if hi > lo:
                weights.append(hi - lo)
                picks.append((keys, lo, hi))
        for t in st.tables:
            if t.empty or (end is not None and t.smallest >= end) or t.largest < start:
                continue
            fk = t.first_keys
            lo = max(0, bisect_right(fk, start) - 1) if start else 0
            hi = len(fk) if end is None else bisect_left(fk, end)
            if hi > lo:
                weights.append((hi - lo) * t.props.entries / len(fk))
                picks.append((t, lo, hi))
        if not picks:
            return None
        r = rng.random() * sum(weights)
        n = 0
        while n < len(picks) - 1 and r >= weights[n]:
            r -= weights[n]
            n += 1
        src, lo, hi = picks[n]
        if isinstance(src, list):
            return src[lo + rng.randrange(hi - lo)]  # type: ignore[no-any-return]
        assert isinstance(src, TableReader)
        # A block drawn uniformly, then a key of it: a key of a block holding fewer keys than
        # the table's mean (its last block; blocks of large values) would come more often, so
        # such a block is kept with probability keys/mean, else another is drawn (up to
        # SAMPLE_BLOCK_TRIES blocks read: the bias is bounded, not removed; if none is kept,
        # the fullest of them serves).
        mean = src.props.entries / len(src.first_keys)
        best: tuple[list[bytes], int, int] = ([], 0, 0)
        for _ in range(SAMPLE_BLOCK_TRIES):
            keys = src.block_keys(lo + rng.randrange(hi - lo), self._cache)
            # Edge blocks reach outside the range: draw among their keys inside it.
            klo = bisect_left(keys, start) if start else 0
            khi = len(keys) if end is None else bisect_left(keys, end)
            if khi - klo > best[2] - best[1]:
                best = (keys, klo, khi)
            if rng.random() * mean < khi - klo:
                best = (keys, klo, khi)
                break
        keys, klo, khi = best
        if khi > klo:
            return keys[klo + rng.randrange(khi - klo)]
        # No key of the drawn block is in range (an edge block, the range falling between two
        # of its keys): the range's start, from which the caller looks on.
        return start

    # -- background work ----------------------------------------------------------------------
    def background_work_pending(self) -> bool:
        st = self._state
        return bool(st.frozen) or self._pick(st) is not None

    def do_background_work(self) -> bool:
        """One unit: flush the oldest frozen memtable if any, else one compaction."""
        return self.do_flush() or self.do_compaction()

    def write_stalled(self) -> bool:
        return len(self._state.frozen) >= self._max_frozen

    def seal_commit_log(self) -> bool:
        """Trio thread (BGREWRITEAOF): freeze the active memtable and start a new commit log,
        so that background work flushes the memtable to a table and then deletes the log files
        it covered, as a memtable that filled up would be. False (nothing done) when the active
        memtable is empty: its log holds no record that a table does not hold already."""
        self._check_usable()
        if self._mem.is_empty():
            return False
        self._freeze()
        if self._inline:
            self._run_background_inline()
        return True

    def flush_pending(self) -> bool:
        """Frozen memtables wait to be flushed (their commit logs are kept until they are)."""
        return bool(self._state.frozen)

    def _run_background_inline(self) -> None:
        while self.do_background_work():
            pass

    def flush(self) -> None:
        """Freeze the active memtable (if not empty) and flush every frozen one, synchronously.
        For tests and benches; the node uses do_background_work()."""
        self._check_usable()
        if not self._mem.is_empty():
            self._freeze()
        while self.do_flush():
            pass

    def compact(self, full: bool = True, newest: int | None = None) -> None:
        """Synchronously compact: everything into one table (``full``); or only the ``newest``
        n tables (a run that is not the bottom unless it holds every table); or, with
        ``full=False``, whatever the policy picks until nothing is due. For tests and benches."""
        if newest is None and not full:
            while self.do_compaction():
                pass
            return
        with self._compact_lock:
            tables = self._state.tables
            if newest is not None:
                if newest >= 2 and len(tables) >= newest:
                    self._compact_run(tables[:newest], bottom=(newest == len(tables)))
                return
            if len(tables) > 1 or any(t.range_tombstones or t.props.tombstones for t in tables):
                self._compact_run(tables, bottom=True)

    def do_flush(self) -> bool:
        with self._flush_lock:
            st = self._state
            if not st.frozen:
                return False
            if self._closed:
                return False
            mem = st.frozen[-1]  # the oldest: logs are retired in order
            added: list[TableMeta] = []
            reader = None
            if not mem.is_empty():
                meta, reader = self._write_table(self._alloc(), _memtable_filler(mem), mem.rts,
                                                 len(mem.data), level=0)
                if meta is not None:
                    added.append(meta)
                    self._fs.fsync_dir(self._dir)  # the table's name before the edit naming it
            edit = VersionEdit(log_number=mem.next_log_number, last_seq=mem.last_seq,
                               next_file=self._peek_next_file(), added=added)
            self._commit(edit)
            with self._state_lock:
                st = self._state
                tables = list(st.tables) + ([reader] if reader is not None else [])
                self._state = _State(tuple(m for m in st.frozen if m is not mem),
                                     _sorted_tables(tables))
            self._flushes += 1
            self._delete_logs_below(mem.next_log_number)
            return True

    def do_compaction(self) -> bool:
        if not self._compact_lock.acquire(blocking=False):
            return False
        try:
            if self._closed:
                return False
            tables = self._state.tables
            run = self._pick(self._state)
            if run is None:
                return False
            i, j = run
            self._compact_run(tables[i:j], bottom=(j == len(tables)))
            return True
        finally:
            self._compact_lock.release()

    def _pick(self, st: _State) -> tuple[int, int] | None:
        return pick_run([t.size for t in st.tables])

    def _compact_run(self, inputs: tuple[TableReader, ...], bottom: bool) -> None:
        """Merge ``inputs`` (contiguous in age) into one table, off to the side; then one
        manifest edit swaps them; then their files are deleted. Caller holds _compact_lock."""
        now = self._now_ms()
        rts = [rt for t in inputs for rt in t.range_tombstones]
        merged = merge_raw_columns([t.iter_raw_columns() for t in inputs], rts, bottom, now,
                                   self._grace)
        out_rts = surviving_range_tombstones(rts, bottom, now, self._grace)
        level = min(9, max(t.level for t in inputs) + 1)
        meta, reader = self._write_table(self._alloc(), _columns_filler(merged), out_rts,
                                         sum(t.props.entries for t in inputs), level)
        if reader is not None:
            self._fs.fsync_dir(self._dir)
        doomed = {t.number for t in inputs}
        edit = VersionEdit(next_file=self._peek_next_file(),
                           added=[meta] if meta is not None else [], deleted=sorted(doomed))
        self._commit(edit)
        with self._state_lock:
            st = self._state
            tables = [t for t in st.tables if t.number not in doomed]
            if reader is not None:
                tables.append(reader)
            self._state = _State(st.frozen, _sorted_tables(tables))
        self._compactions += 1
        for t in inputs:
            self._cache.forget_table(t.number)
            # Readers already holding ``t`` (a scan) keep its open file; the name goes now.
            self._fs.unlink(t.path)

    def _peek_next_file(self) -> int:
        # A file number no file uses yet (recovery also scans the directory, so this need only
        # be a lower bound).
        return self._alloc()

    def _commit(self, edit: VersionEdit) -> None:
        with self._manifest_lock:
            self._manifest.append(edit)
            self._mstate.apply(edit)

    def _write_table(self, number: int, fill: Callable[[TableBuilder], None],
                     rts: list[RangeTombstone], expected: int,
                     level: int) -> tuple[TableMeta | None, TableReader | None]:
        """Build table ``number``: ``fill`` adds the sorted entries to the builder, then the
        range tombstones are added; fsynced, name not yet durable. Returns (None, None),
        leaving no file, when there is nothing to write."""
        fs = self._fs
        path = fs.join(self._dir, table_name(number))
        f = fs.create(path)
        try:
            b = TableBuilder(f, expected, self._bits_per_key)
            fill(b)
            for rt in rts:
                b.add_range_tombstone(rt)
            if b.entries == 0 and not rts:
                f.close()
                fs.unlink(path)
                return None, None
            size, props = b.finish()
        except OSError:
            # e.g. ENOSPC: drop the partial table; the memtable or inputs stay as they were and
            # the work can be retried (a crash instead leaves an orphan that open() deletes)
            f.close()
            fs.unlink(path)
            raise
        self._table_bytes_written += size
        meta = TableMeta(number, size, props.min_seq, props.max_seq, props.entries, level,
                         props.smallest, props.largest)
        return meta, TableReader(fs.open_read(path), number, level)

    def _delete_logs_below(self, number: int) -> None:
        with self._sync_lock:
            with self._write_lock:
                doomed = [lw for n, lw in self._logs.items() if n < number]
                for lw in doomed:
                    del self._logs[lw.number]
                self._sealed = [lw for lw in self._sealed if lw.number >= number]
            for lw in doomed:
                lw.closed = True
                lw.file.close()
                self._fs.unlink(lw.path)

    # -- stats and close ----------------------------------------------------------------------
    def stats(self) -> dict[str, int | float | str]:
        st = self._state
        levels: dict[int, int] = {}
        for t in st.tables:
            levels[t.level] = levels.get(t.level, 0) + 1
        user = self._user_bytes_base + self._user_bytes
        neg = self._bloom_negatives + self._bloom_false_positives
        logs = list(self._logs.values())
        out: dict[str, int | float | str] = {
            "engine": "lsm",
            "aof_size": sum(lw.size + len(lw.buf) for lw in logs),
            "commit_log_files": len(logs),
            "memtable_bytes": self._user_bytes + (self._seq + 1 - self._mem.first_seq) * ENTRY_OVERHEAD,
            "memtable_keys": len(self._mem_data),
            "frozen_memtables": len(st.frozen),
            "tables": len(st.tables),
            "table_bytes": sum(t.size for t in st.tables),
            "pending_compactions": 1 if self._pick(st) is not None else 0,
            "flushes": self._flushes,
            "compactions": self._compactions,
            "bloom_checks": neg + self._bloom_true_positives,
            "bloom_false_positives": self._bloom_false_positives,
            "bloom_false_positive_rate": round(self._bloom_false_positives / neg, 6) if neg else 0.0,
            "write_amplification": round(self._table_bytes_written / user, 4) if user else 0.0,
            "user_bytes_written": user,
            "table_bytes_written": self._table_bytes_written,
            # get() counts only its misses: each of its cache lookups is a Bloom "maybe"
            "block_cache_hits": self._cache.hits + self._bloom_true_positives
            + self._bloom_false_positives - self._get_cache_misses,
            "block_cache_misses": self._cache.misses + self._get_cache_misses,
            "block_cache_bytes": self._cache.used,
            "last_seq": self._seq,
            "durable_seq": self._durable_seq,
            "recovered_torn_bytes": self._recovered_torn_bytes,
            "recovered_skipped_records": self._recovered_skipped,
            "write_stalled": int(self.write_stalled()),
        }
        for lvl in range(max(levels, default=0) + 1):
            out[f"level{lvl}_tables"] = levels.get(lvl, 0)
        return out

    def close(self) -> None:
        """Sync the log and release files. Memtables are not flushed: the log replays them."""
        if self._closed:
            return
        if self._error is None:
            self.sync()
        with self._flush_lock, self._compact_lock:
            self._closed = True
            self._freeze_at = -1
            for lw in self._logs.values():
                lw.file.close()
            self._manifest.close()
            for t in self._state.tables:
                t.close()
            self._fs.unlock(self._dir_lock)


def _memtable_filler(mem: Memtable) -> Callable[[TableBuilder], None]:
    def fill(b: TableBuilder) -> None:
        b.add_encoded(*mem.encoded_columns())
    return fill


def _columns_filler(merged: Iterator[tuple[list[bytes], list[bytes], int, int, int]]
                    ) -> Callable[[TableBuilder], None]:
    def fill(b: TableBuilder) -> None:
        add = b.add_encoded
        for keys, raws, tombs, lo, hi in merged:
            add(keys, raws, list(map(len, raws)), tombs, lo, hi)
    return fill


def _chunks(it: Iterator[Entry], n: int) -> Iterator[list[Entry]]:
    while True:
        chunk = list(itertools.islice(it, n))
        if not chunk:
            return
        yield chunk


def _live(sources: list[Iterator[list[Entry]]],
          rts: list[RangeTombstone]) -> Iterator[tuple[bytes, Record]]:
    """Merge sources (sorted batches) newest-version-first and yield live records (see
    memtable.py for why a range tombstone need only be compared by seq)."""
    last = None
    for batch in batched_merge(sources):
        for e in batch:
            k = e[0]
            if k == last:
                continue
            last = k
            if e[2] != KIND_PUT:
                continue
            if rts:
                seq = -e[1]
                if any(rt.covers(k, seq) for rt in rts):
                    continue
            yield k, _new_tuple(Record, (e[5], e[3], e[4]))
