"""The durable hint store of hinted handoff (DeCandia et al. 2007, Dynamo §4.6; Cassandra hints/).

A fallback node that accepts a write for a down replica ``target`` keeps it here until the target
is back, then replays it and acks it; hints older than the hint window are expired (anti-entropy
repairs what they carried). Byte layout, removal and recovery rules: docs/formats/hints.md (the
constants below are its source of truth).

Contracts:

* **Durability**: ``add``, ``ack`` and ``expire`` change memory only. A hint (an ack, an expiry)
  is durable once a ``sync()`` that *started after* it returns; the node acknowledges a hinted
  write only then. A ``sync()`` that raises keeps everything in memory; the next one truncates the
  files it was writing back to their last fsynced length and writes the rest again.
* **Threads**: ``sync()`` (and ``close()``) do the file I/O and may run in a worker thread while
  the other methods are called from one other thread (the trio thread); syncs are serialized. The
  other methods take a short lock and never block on I/O, except ``iterate``, which ``pread``s the
  hints it returns from the page cache.
* **Memory**: an index (offset, size, created_ms, pending flag per hint) plus the bytes added or
  acked since the last sync; keys and sibling sets are read back from the files by ``iterate``.
* **Recovery** (``open``): a torn tail is dropped, a corrupt record in the middle is skipped and
  counted (``stats()["corrupt_records"]``) -- opening never fails because of file contents; a hint
  whose ack was synced never comes back.
* No clock: ``created_ms`` and ``now_ms`` are passed in. Every file call goes through the
  ``FileSystem`` seam, so the crash tests run it on ``FaultFileSystem``.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import struct
import threading
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from respkv.storage.format import MAX_RECORD_PAYLOAD, RECORD_HEADER, RECORD_HEADER_SIZE
from respkv.storage.fs import FileSystem, OSFileSystem, RandomAccessFile, WritableFile

log = logging.getLogger(__name__)

# -- format constants (docs/formats/hints.md) --------------------------------------------------
HINT = 20  # segment record: one hint
ACKED = 21  # ack-file record: offsets of hints the target acknowledged
EXPIRED = 22  # ack-file record: offsets of hints dropped by expire()
SEGMENT_SUFFIX = ".hints"
ACKS_SUFFIX = ".acks"
SEGMENT_DIGITS = 10
OFFSET_BITS = 40  # hint_id = segment_number << OFFSET_BITS | offset
DEFAULT_SEGMENT_BYTES = 16 << 20
# HINT payload: created_ms i64 | db u32 | tlen u16 | klen u32 | vlen u32 | target | key | set
HINT_FIXED = struct.Struct("<qIHII")
# ACKED / EXPIRED payload: count u32 | count * offset u64
ACK_COUNT = struct.Struct("<I")
MAX_OFFSETS_PER_ACK_RECORD = 1 << 16

_SEED = {t: zlib.crc32(bytes([t])) for t in (HINT, ACKED, EXPIRED)}


class Hint(NamedTuple):
    hint_id: int
    created_ms: int
    db: int
    key: bytes
    set_bytes: bytes


def segment_name(number: int, target: str) -> str:
    return f"{number:0{SEGMENT_DIGITS}d}-{target.encode().hex()}{SEGMENT_SUFFIX}"


def acks_name(number: int) -> str:
    return f"{number:0{SEGMENT_DIGITS}d}{ACKS_SUFFIX}"


def parse_name(name: str) -> tuple[str, int, str | None] | None:
    """("segment", number, target) / ("acks", number, None), or None for a foreign name."""
    if name.endswith(SEGMENT_SUFFIX):
        num, sep, hexed = name[: -len(SEGMENT_SUFFIX)].partition("-")
        if not sep or len(num) != SEGMENT_DIGITS or not num.isdigit():
            return None
        try:
            return "segment", int(num), bytes.fromhex(hexed).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    if name.endswith(ACKS_SUFFIX):
        num = name[: -len(ACKS_SUFFIX)]
        if len(num) == SEGMENT_DIGITS and num.isdigit():
            return "acks", int(num), None
    return None


def frame(record_type: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, _SEED[record_type])
    return RECORD_HEADER.pack(crc, len(payload), record_type) + payload


def encode_hint(target: str, created_ms: int, db: int, key: bytes, set_bytes: bytes) -> bytes:
    t = target.encode()
    fixed = HINT_FIXED.pack(created_ms, db, len(t), len(key), len(set_bytes))
    return frame(HINT, b"".join((fixed, t, key, set_bytes)))


def decode_hint(payload: bytes | memoryview) -> tuple[int, int, str, bytes, bytes]:
    """(created_ms, db, target, key, set_bytes); ValueError when the fields do not add up."""
    if len(payload) < HINT_FIXED.size:
        raise ValueError("short hint record")
    created, db, tl, kl, vl = HINT_FIXED.unpack_from(payload, 0)
    o = HINT_FIXED.size
    if o + tl + kl + vl != len(payload):
        raise ValueError("hint record length mismatch")
    target = bytes(payload[o : o + tl]).decode()
    o += tl
    key = bytes(payload[o : o + kl])
    o += kl
    return created, db, target, key, bytes(payload[o : o + vl])


def encode_acks(record_type: int, offsets: list[int]) -> bytes:
    out = []
    for i in range(0, len(offsets), MAX_OFFSETS_PER_ACK_RECORD):
        chunk = offsets[i : i + MAX_OFFSETS_PER_ACK_RECORD]
        body = ACK_COUNT.pack(len(chunk)) + struct.pack(f"<{len(chunk)}Q", *chunk)
        out.append(frame(record_type, body))
    return b"".join(out)


def decode_acks(payload: bytes | memoryview) -> tuple[int, ...]:
    if len(payload) < ACK_COUNT.size:
        raise ValueError("short ack record")
    (n,) = ACK_COUNT.unpack_from(payload, 0)
    if ACK_COUNT.size + 8 * n != len(payload):
        raise ValueError("ack record length mismatch")
    return struct.unpack_from(f"<{n}Q", payload, ACK_COUNT.size)


@dataclass
class ScanResult:
    # (offset, size, type, payload) of each valid record, in file order
    records: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    valid_end: int = 0  # offset after the last valid record
    torn_bytes: int = 0
    corrupt: list[int] = field(default_factory=list)  # offsets of skipped corrupt regions


def _valid_at(
    data: bytes, pos: int, types: frozenset[int], check: object
) -> tuple[int, int] | None:
    n = len(data)
    if n - pos < RECORD_HEADER_SIZE:
        return None
    crc, length, rtype = RECORD_HEADER.unpack_from(data, pos)
    end = pos + RECORD_HEADER_SIZE + length
    if rtype not in types or length > MAX_RECORD_PAYLOAD or end > n:
        return None
    if zlib.crc32(memoryview(data)[pos + RECORD_HEADER_SIZE : end], _SEED[rtype]) != crc:
        return None
    if check is not None:
        try:
            check(rtype, memoryview(data)[pos + RECORD_HEADER_SIZE : end])  # type: ignore[operator]
        except (ValueError, UnicodeDecodeError, struct.error):
            return None
    return rtype, end


def scan_records(data: bytes, types: frozenset[int], check: object = None) -> ScanResult:
    """Split a hint-store file into valid records (docs/formats/hints.md, "Reading"): a bad
    record followed by no valid record is a torn tail; followed by one, a skipped corruption.
    ``check(type, payload)`` raises ValueError for a well-framed but malformed payload."""
    res = ScanResult()
    n = len(data)
    type_bytes = [bytes([t]) for t in types]
    pos = 0
    while pos < n:
        ok = _valid_at(data, pos, types, check)
        if ok is not None:
            rtype, end = ok
            res.records.append((pos, end - pos, rtype, data[pos + RECORD_HEADER_SIZE : end]))
            pos = res.valid_end = end
            continue
        nxt = None
        # Candidates: offsets whose type byte (at +8) is a known type.
        cands = heapq.merge(*(_find_all(data, tb, pos + 9) for tb in type_bytes))
        for q in (c - 8 for c in cands):
            if _valid_at(data, q, types, check) is not None:
                nxt = q
                break
        if nxt is None:
            res.torn_bytes = n - pos
            break
        res.corrupt.append(pos)
        pos = nxt
    return res


def _find_all(data: bytes, needle: bytes, start: int) -> Iterable[int]:
    i = data.find(needle, start)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)


class _Segment:
    """One segment file and its ack file. Offsets of hints are ascending in ``offsets``.

    Bytes ``[0, synced)`` of the segment are fsynced; ``buffer`` holds ``[synced, end)``;
    ``written`` (between the two) is what the OS has. The same three for the ack file."""

    __slots__ = ("number", "target", "path", "acks_path", "offsets", "sizes", "created", "live",
                 "pending", "end", "synced", "written", "buffer", "writer", "reader", "exists",
                 "active", "dirty", "ack_exists", "ack_synced", "ack_written", "ack_buffer",
                 "ack_writer", "ack_dirty", "new_acked", "new_expired")

    def __init__(self, number: int, target: str, path: str, acks_path: str) -> None:
        self.number = number
        self.target = target
        self.path = path
        self.acks_path = acks_path
        self.offsets = array("Q")
        self.sizes = array("I")
        self.created = array("q")
        self.live = bytearray()
        self.pending = 0
        self.end = self.synced = self.written = 0
        self.buffer = bytearray()
        self.writer: WritableFile | None = None
        self.reader: RandomAccessFile | None = None
        self.exists = False  # the file has been created
        self.active = False
        self.dirty = False  # a write or fsync failed: truncate to ``synced`` before writing
        self.ack_exists = False
        self.ack_synced = self.ack_written = 0
        self.ack_buffer = bytearray()
        self.ack_writer: WritableFile | None = None
        self.ack_dirty = False
        self.new_acked: list[int] = []  # offsets acked since the last ack-record encoding
        self.new_expired: list[int] = []

    def index_of(self, offset: int) -> int:
        i = bisect.bisect_left(self.offsets, offset)
        if i < len(self.offsets) and self.offsets[i] == offset:
            return i
        return -1

    def remove(self, i: int, expired: bool) -> None:
        self.live[i] = 0
        self.pending -= 1
        (self.new_expired if expired else self.new_acked).append(self.offsets[i])

    def live_indexes(self, start: int = 0) -> Iterable[int]:
        live = self.live
        i = live.find(1, start)
        while i >= 0:
            yield i
            i = live.find(1, i + 1)


class HintStore:
    """Per-target append-only hint segments with ack files (docs/formats/hints.md)."""

    def __init__(self, directory: str, fs: FileSystem, segment_bytes: int) -> None:
        self.dir = directory
        self.fs = fs
        self.segment_bytes = min(segment_bytes, (1 << OFFSET_BITS) - 1)
        self._lock = threading.Lock()  # in-memory state
        self._io_lock = threading.Lock()  # serializes sync/close
        self._segments: dict[int, _Segment] = {}
        self._by_target: dict[str, list[_Segment]] = {}
        self._active: dict[str, _Segment] = {}
        self._doomed: list[_Segment] = []  # fully removed, files still to delete
        self._next_number = 1
        self._dir_dirty = False
        self.counters = {"added": 0, "acked": 0, "expired": 0, "corrupt_records": 0,
                         "torn_tails": 0, "orphan_ack_files": 0, "sync_failures": 0}

    # -- open / recovery ---------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str, fs: FileSystem | None = None, *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> HintStore:
        """Open (creating it if needed) the hint directory and rebuild the index."""
        fs = fs or OSFileSystem()
        fs.mkdir(directory)
        store = cls(directory, fs, segment_bytes)
        store._recover()
        return store

    def _recover(self) -> None:
        fs = self.fs
        segs: dict[int, tuple[str, str]] = {}
        acks: set[int] = set()
        top = 0
        for name in fs.listdir(self.dir):
            parsed = parse_name(name)
            if parsed is None:
                continue
            kind, number, target = parsed
            top = max(top, number)
            if kind == "segment":
                assert target is not None
                segs[number] = (target, name)
            else:
                acks.add(number)
        self._next_number = top + 1
        orphans = sorted(acks - set(segs))
        for number in orphans:
            fs.unlink(fs.join(self.dir, acks_name(number)))
            self.counters["orphan_ack_files"] += 1
        if orphans:
            fs.fsync_dir(self.dir)
        for number in sorted(segs):
            target, name = segs[number]
            self._load_segment(number, target, name, number in acks)

    def _load_segment(self, number: int, target: str, name: str, has_acks: bool) -> None:
        fs = self.fs
        path = fs.join(self.dir, name)
        seg = _Segment(number, target, path, fs.join(self.dir, acks_name(number)))
        seg.exists = True

        def check_hint(_t: int, payload: memoryview) -> None:
            if decode_hint(payload)[2] != target:
                raise ValueError("hint for another target")

        res = scan_records(fs.read_file(path), frozenset((HINT,)), check_hint)
        self._count_damage(path, res)
        for off, size, _t, payload in res.records:
            seg.offsets.append(off)
            seg.sizes.append(size)
            seg.created.append(HINT_FIXED.unpack_from(payload, 0)[0])
        seg.live = bytearray(b"\x01" * len(seg.offsets))
        seg.pending = len(seg.offsets)
        seg.end = seg.synced = seg.written = res.valid_end
        if has_acks:
            seg.ack_exists = True
            ares = scan_records(fs.read_file(seg.acks_path), frozenset((ACKED, EXPIRED)),
                                lambda _t, p: decode_acks(p))
            self._count_damage(seg.acks_path, ares)
            if ares.torn_bytes:  # new ack records are appended: cut the tail off first
                fs.truncate(seg.acks_path, ares.valid_end)
            seg.ack_synced = seg.ack_written = ares.valid_end
            for _off, _size, _t, payload in ares.records:
                for off in decode_acks(payload):
                    i = seg.index_of(off)
                    if i >= 0 and seg.live[i]:
                        seg.live[i] = 0
                        seg.pending -= 1
        if seg.pending == 0:
            self._doomed.append(seg)  # delete at the next sync
            return
        self._segments[number] = seg
        self._by_target.setdefault(target, []).append(seg)

    def _count_damage(self, path: str, res: ScanResult) -> None:
        if res.torn_bytes:
            self.counters["torn_tails"] += 1
            log.info("event=hints_torn_tail file=%s offset=%d bytes=%d", path, res.valid_end,
                     res.torn_bytes)
        for off in res.corrupt:
            self.counters["corrupt_records"] += 1
            log.warning("event=hints_corrupt_record file=%s offset=%d (skipped)", path, off)

    # -- the in-memory operations --------------------------------------------------------------
    def add(self, target: str, created_ms: int, db: int, key: bytes, set_bytes: bytes) -> int:
        """Buffer a hint for ``target``; returns its id. Durable once a later ``sync()``
        returns."""
        rec = encode_hint(target, created_ms, db, key, set_bytes)
        with self._lock:
            seg = self._active.get(target)
            if seg is None or seg.end >= self.segment_bytes:
                if seg is not None:
                    seg.active = False
                seg = self._new_segment(target)
            off = seg.end
            seg.buffer += rec
            seg.end += len(rec)
            seg.offsets.append(off)
            seg.sizes.append(len(rec))
            seg.created.append(created_ms)
            seg.live.append(1)
            seg.pending += 1
            self.counters["added"] += 1
            return seg.number << OFFSET_BITS | off

    def _new_segment(self, target: str) -> _Segment:
        number = self._next_number
        self._next_number += 1
        fs = self.fs
        seg = _Segment(number, target, fs.join(self.dir, segment_name(number, target)),
                       fs.join(self.dir, acks_name(number)))
        seg.active = True
        self._segments[number] = seg
        self._by_target.setdefault(target, []).append(seg)
        self._active[target] = seg
        return seg

    def targets(self) -> list[str]:
        """Targets with pending hints."""
        with self._lock:
            return [t for t, segs in self._by_target.items() if any(s.pending for s in segs)]

    def pending(self, target: str) -> int:
        with self._lock:
            return sum(s.pending for s in self._by_target.get(target, ()))

    def iterate(self, target: str, limit: int, after: int = -1) -> list[Hint]:
        """Up to ``limit`` pending hints of ``target`` with id > ``after``, oldest first."""
        out: list[Hint] = []
        if limit <= 0:
            return out
        with self._lock:
            for seg in self._by_target.get(target, ()):
                if not seg.pending or (seg.number + 1) << OFFSET_BITS <= after + 1:
                    continue
                start = 0
                if after >> OFFSET_BITS == seg.number:
                    start = bisect.bisect_right(seg.offsets, after & ((1 << OFFSET_BITS) - 1))
                for i in seg.live_indexes(start):
                    out.append(self._read(seg, i))
                    if len(out) >= limit:
                        return out
        return out

    def _read(self, seg: _Segment, i: int) -> Hint:
        off, size = seg.offsets[i], seg.sizes[i]
        if off >= seg.synced:
            data: bytes | bytearray = seg.buffer[off - seg.synced : off - seg.synced + size]
        else:
            if seg.reader is None:
                seg.reader = self.fs.open_read(seg.path)
            data = seg.reader.pread(off, size)
            if len(data) != size:
                raise OSError(f"short read of hint at {seg.path}:{off}")
        created, db, _target, key, value = decode_hint(memoryview(data)[RECORD_HEADER_SIZE:])
        return Hint(seg.number << OFFSET_BITS | off, created, db, key, value)

    def ack(self, target: str, hint_ids: Iterable[int] = (), *, up_to: int | None = None) -> int:
        """Remove the given hints of ``target`` (and, with ``up_to``, every one whose id is
        ``<= up_to``); unknown or already removed ids are ignored. Returns how many were removed.
        Durable once a later ``sync()`` returns."""
        n = 0
        mask = (1 << OFFSET_BITS) - 1
        with self._lock:
            for hid in hint_ids:
                seg = self._segments.get(hid >> OFFSET_BITS)
                if seg is None or seg.target != target:
                    continue
                i = seg.index_of(hid & mask)
                if i >= 0 and seg.live[i]:
                    seg.remove(i, expired=False)
                    n += 1
            if up_to is not None:
                for seg in self._by_target.get(target, ()):
                    if seg.number > up_to >> OFFSET_BITS:
                        break
                    last = up_to & mask if seg.number == up_to >> OFFSET_BITS else None
                    for i in list(seg.live_indexes()):
                        if last is not None and seg.offsets[i] > last:
                            break
                        seg.remove(i, expired=False)
                        n += 1
            self.counters["acked"] += n
        return n

    def expire(self, now_ms: int, window_ms: int) -> int:
        """Drop every pending hint created before ``now_ms - window_ms``; returns how many."""
        cutoff = now_ms - window_ms
        n = 0
        with self._lock:
            for seg in self._segments.values():
                if not seg.pending:
                    continue
                created = seg.created
                for i in list(seg.live_indexes()):
                    if created[i] < cutoff:
                        seg.remove(i, expired=True)
                        n += 1
            self.counters["expired"] += n
        return n

    def stats(self) -> dict[str, object]:
        """Pending hints, bytes and segments per target and the ``created_ms`` of its
        earliest-added pending hint (``oldest_created_ms``; O(segments), not O(hints)), plus
        totals and counters."""
        with self._lock:
            per: dict[str, dict[str, int | None]] = {}
            for target, segs in self._by_target.items():
                pend = sum(s.pending for s in segs)
                first = next((s for s in segs if s.pending), None)
                oldest = first.created[first.live.find(1)] if first is not None else None
                per[target] = {"pending": pend, "bytes": sum(s.end for s in segs),
                               "segments": len(segs), "oldest_created_ms": oldest}
            return {"targets": per, "pending": sum(int(p["pending"] or 0) for p in per.values()),
                    "bytes": sum(int(p["bytes"] or 0) for p in per.values()),
                    "segments": len(self._segments), **self.counters}

    # -- I/O -------------------------------------------------------------------------------
    def sync(self) -> None:
        """Write and fsync everything added, acked or expired before this call; delete segments
        with no pending hint. Raises OSError (nothing is lost from memory; see the module
        docstring)."""
        with self._io_lock:
            with self._lock:
                work: list[tuple[_Segment, bytes, bytes]] = []
                for seg in list(self._segments.values()):
                    if seg.new_acked or seg.new_expired:
                        seg.ack_buffer += encode_acks(ACKED, seg.new_acked)
                        seg.ack_buffer += encode_acks(EXPIRED, seg.new_expired)
                        seg.new_acked, seg.new_expired = [], []
                    if seg.pending == 0:
                        # Retire it; its acks are still made durable before it is unlinked,
                        # so an unlink that fails (or is lost) brings back no acked hint.
                        self._retire(seg)
                        seg.buffer.clear()
                        seg.written = seg.synced
                        seg.dirty = False
                        if not seg.exists:
                            continue
                    data = bytes(seg.buffer[seg.written - seg.synced :])
                    acks = bytes(seg.ack_buffer[seg.ack_written - seg.ack_synced :])
                    if data or acks or seg.written > seg.synced or seg.ack_written > seg.ack_synced:
                        work.append((seg, data, acks))
                doomed = list(self._doomed)
            try:
                for seg, data, acks in work:
                    self._write(seg, data, acks)
                for seg, _d, _a in work:
                    self._fsync(seg)
                if self._dir_dirty:
                    self.fs.fsync_dir(self.dir)
                    self._dir_dirty = False
            except Exception:
                self.counters["sync_failures"] += 1
                raise
            for seg, _d, _a in work:
                with self._lock:
                    n = seg.written - seg.synced
                    del seg.buffer[:n]
                    seg.synced = seg.written
                    m = seg.ack_written - seg.ack_synced
                    del seg.ack_buffer[:m]
                    seg.ack_synced = seg.ack_written
                    if not seg.active and not seg.buffer and seg.writer is not None:
                        seg.writer.close()
                        seg.writer = None
            if doomed:
                self._delete(doomed)

    def _retire(self, seg: _Segment) -> None:
        # Under _lock: a segment with nothing pending leaves the index; its files go at sync.
        del self._segments[seg.number]
        self._by_target[seg.target].remove(seg)
        if not self._by_target[seg.target]:
            del self._by_target[seg.target]
        if self._active.get(seg.target) is seg:
            del self._active[seg.target]
        seg.active = False
        self._doomed.append(seg)

    def _write(self, seg: _Segment, data: bytes, acks: bytes) -> None:
        fs = self.fs
        try:
            if data or seg.dirty:
                if seg.writer is None:
                    if not seg.exists:
                        seg.writer = fs.create(seg.path)
                        seg.exists = True
                        self._dir_dirty = True
                    else:
                        seg.writer = fs.open_append(seg.path)
                if seg.dirty:
                    fs.truncate(seg.path, seg.synced)
                    with self._lock:
                        seg.written = seg.synced
                        data = bytes(seg.buffer)
                    seg.dirty = False
                seg.writer.append(data)
                with self._lock:
                    seg.written += len(data)
        except Exception:
            seg.dirty = True
            raise
        try:
            if acks or seg.ack_dirty:
                if seg.ack_writer is None:
                    if not seg.ack_exists:
                        seg.ack_writer = fs.create(seg.acks_path)
                        seg.ack_exists = True
                        self._dir_dirty = True
                    else:
                        seg.ack_writer = fs.open_append(seg.acks_path)
                if seg.ack_dirty:
                    fs.truncate(seg.acks_path, seg.ack_synced)
                    with self._lock:
                        seg.ack_written = seg.ack_synced
                        acks = bytes(seg.ack_buffer)
                    seg.ack_dirty = False
                seg.ack_writer.append(acks)
                with self._lock:
                    seg.ack_written += len(acks)
        except Exception:
            seg.ack_dirty = True
            raise

    def _fsync(self, seg: _Segment) -> None:
        if seg.written > seg.synced:
            assert seg.writer is not None
            try:
                seg.writer.sync()
            except Exception:
                seg.dirty = True  # never trust a retried fsync: rewrite from the buffer
                raise
        if seg.ack_written > seg.ack_synced:
            assert seg.ack_writer is not None
            try:
                seg.ack_writer.sync()
            except Exception:
                seg.ack_dirty = True
                raise

    def _delete(self, doomed: list[_Segment]) -> None:
        """Unlink retired segments, fsync the directory, then unlink their ack files (a crash
        can leave an orphan ack file, removed on open; never a segment without its acks)."""
        fs = self.fs
        gone = []
        for seg in doomed:
            for f in (seg.writer, seg.reader, seg.ack_writer):
                if f is not None:
                    f.close()
            seg.writer = seg.reader = seg.ack_writer = None
            if seg.exists:
                try:
                    fs.unlink(seg.path)
                except OSError as e:  # the hints are already durably acked: retry next sync
                    log.warning("event=hints_unlink_failed file=%s error=%r", seg.path, str(e))
                    continue
                seg.exists = False
            gone.append(seg)
        fs.fsync_dir(self.dir)
        for seg in gone:
            if seg.ack_exists:
                try:
                    fs.unlink(seg.acks_path)
                except OSError as e:  # an orphan: removed on the next open
                    log.warning("event=hints_unlink_failed file=%s error=%r", seg.acks_path,
                                str(e))
                seg.ack_exists = False
        with self._lock:
            self._doomed = [s for s in self._doomed if s not in gone]

    def close(self) -> None:
        """Release file handles (does not sync: call ``sync()`` first to keep what is
        buffered)."""
        with self._io_lock, self._lock:
            for seg in [*self._segments.values(), *self._doomed]:
                for f in (seg.writer, seg.reader, seg.ack_writer):
                    if f is not None:
                        f.close()
                seg.writer = seg.reader = seg.ack_writer = None
