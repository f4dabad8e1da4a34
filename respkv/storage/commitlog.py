"""The commit log: checksummed records, one per mutation (a batch is one record, hence atomic).

Byte layout: docs/formats/commitlog.md (framing in format.py). One log file belongs to one
memtable; it is deleted once that memtable is in a table recorded in the manifest.

Writing: the engine appends encoded records to ``LogWriter.buf`` (a bytearray) on the trio thread
without a lock — that is the hot path. ``LogWriter.write_out`` (under the engine's write lock)
moves a prefix of the buffer to the file; it never swaps the bytearray object, it deletes the
written prefix in place, so an append racing with it lands either in the written prefix (it did
not: the prefix length is read first) or after it. Each bytearray operation is atomic under the
GIL.

Reading (recovery): ``read_log`` returns the operations of every valid record, stopping at a torn
tail: a bad record (short header, impossible length, checksum mismatch) after which no valid
record can be found. A bad record *followed by* a valid one is corruption in the middle: it
raises ``LogCorruptionError`` naming the file and offset, or with ``skip_corrupt`` is skipped
(logged) and reading resumes at the next valid record.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

from respkv.storage.errors import LogCorruptionError
from respkv.storage.format import (
    KIND_DELETE,
    KIND_PUT,
    LOG_BATCH,
    LOG_BATCH_ENTRY,
    LOG_BATCH_FIXED,
    LOG_DELETE,
    LOG_DELETE_FIXED,
    LOG_PUT,
    LOG_PUT_FIXED,
    LOG_RANGE_DELETE,
    LOG_RANGE_DELETE_FIXED,
    MANIFEST_EDIT,
    MAX_RECORD_PAYLOAD,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    type_crc_seed,
)
from respkv.storage.fs import WritableFile

log = logging.getLogger(__name__)

_SEEDS = {t: type_crc_seed(t) for t in (LOG_PUT, LOG_DELETE, LOG_BATCH, LOG_RANGE_DELETE, MANIFEST_EDIT)}
PUT_SEED = _SEEDS[LOG_PUT]
DELETE_SEED = _SEEDS[LOG_DELETE]

# Replayed operations:
#   ("put", seq, key, value, expire_at_ms, meta)
#   ("del", seq, key, deleted_at_ms)
#   ("rdel", seq, start, end_or_None, deleted_at_ms)
Op = tuple


def frame(record_type: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, _SEEDS[record_type])
    return RECORD_HEADER.pack(crc, len(payload), record_type) + payload


def encode_put(seq: int, key: bytes, value: bytes, expire_at_ms: int, meta: bytes) -> bytes:
    body = LOG_PUT_FIXED.pack(seq, expire_at_ms, len(key), len(meta), len(value)) + key + meta + value
    return frame(LOG_PUT, body)


def encode_delete(seq: int, key: bytes, deleted_at_ms: int) -> bytes:
    return frame(LOG_DELETE, LOG_DELETE_FIXED.pack(seq, deleted_at_ms, len(key)) + key)


def encode_range_delete(seq: int, start: bytes, end: bytes | None, deleted_at_ms: int) -> bytes:
    e = end if end is not None else b""
    body = LOG_RANGE_DELETE_FIXED.pack(seq, deleted_at_ms, len(start), len(e), end is not None)
    return frame(LOG_RANGE_DELETE, body + start + e)


def encode_batch(first_seq: int, entries: list[tuple[int, bytes, bytes, int, bytes]]) -> bytes:
    """``entries``: (kind, key, value, time, meta); time is expire_at_ms or deleted_at_ms."""
    parts = [LOG_BATCH_FIXED.pack(first_seq, len(entries))]
    for kind, key, value, t, meta in entries:
        parts.append(LOG_BATCH_ENTRY.pack(kind, t, len(key), len(meta), len(value)))
        parts += (key, meta, value)
    return frame(LOG_BATCH, b"".join(parts))


def decode_payload(record_type: int, p: bytes) -> list[Op]:
    """Operations of one record whose checksum matched. Raises ValueError on a malformed body."""
    if record_type == LOG_PUT:
        seq, exp, kl, ml, vl = LOG_PUT_FIXED.unpack_from(p, 0)
        o = LOG_PUT_FIXED.size
        if o + kl + ml + vl != len(p):
            raise ValueError("put length mismatch")
        return [("put", seq, p[o : o + kl], p[o + kl + ml : o + kl + ml + vl], exp, p[o + kl : o + kl + ml])]
    if record_type == LOG_DELETE:
        seq, t, kl = LOG_DELETE_FIXED.unpack_from(p, 0)
        o = LOG_DELETE_FIXED.size
        if o + kl != len(p):
            raise ValueError("delete length mismatch")
        return [("del", seq, p[o : o + kl], t)]
    if record_type == LOG_RANGE_DELETE:
        seq, t, sl, el, has_end = LOG_RANGE_DELETE_FIXED.unpack_from(p, 0)
        o = LOG_RANGE_DELETE_FIXED.size
        if o + sl + el != len(p):
            raise ValueError("range delete length mismatch")
        return [("rdel", seq, p[o : o + sl], p[o + sl : o + sl + el] if has_end else None, t)]
    if record_type == LOG_BATCH:
        first, count = LOG_BATCH_FIXED.unpack_from(p, 0)
        o = LOG_BATCH_FIXED.size
        ops: list[Op] = []
        for i in range(count):
            kind, t, kl, ml, vl = LOG_BATCH_ENTRY.unpack_from(p, o)
            o += LOG_BATCH_ENTRY.size
            key = p[o : o + kl]
            meta = p[o + kl : o + kl + ml]
            value = p[o + kl + ml : o + kl + ml + vl]
            o += kl + ml + vl
            if kind == KIND_PUT:
                ops.append(("put", first + i, key, value, t, meta))
            elif kind == KIND_DELETE:
                ops.append(("del", first + i, key, t))
            else:
                raise ValueError(f"unknown batch entry kind {kind}")
        if o != len(p):
            raise ValueError("batch length mismatch")
        return ops
    raise ValueError(f"unknown record type {record_type}")


def _valid_at(data: bytes, pos: int, known_types: frozenset[int]) -> tuple[int, int] | None:
    """(type, end) if a well-formed record with a matching checksum starts at ``pos``."""
    n = len(data)
    if n - pos < RECORD_HEADER_SIZE:
        return None
    crc, length, rtype = RECORD_HEADER.unpack_from(data, pos)
    end = pos + RECORD_HEADER_SIZE + length
    if rtype not in known_types or length > MAX_RECORD_PAYLOAD or end > n:
        return None
    if zlib.crc32(data[pos + RECORD_HEADER_SIZE : end], type_crc_seed(rtype)) != crc:
        return None
    return rtype, end


@dataclass
class ReadResult:
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (type, payload)
    valid_end: int = 0  # offset after the last good record: the file is truncated here
    torn_bytes: int = 0  # bytes dropped as a torn tail
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)


def read_records(
    data: bytes, path: str, known_types: frozenset[int], skip_corrupt: bool = False
) -> ReadResult:
    """Split a framed file (commit log or manifest) into records; see the module docstring for
    the torn-tail versus mid-file corruption rule."""
    res = ReadResult()
    n = len(data)
    pos = 0
    while pos < n:
        ok = _valid_at(data, pos, known_types)
        if ok is not None:
            rtype, end = ok
            res.records.append((rtype, data[pos + RECORD_HEADER_SIZE : end]))
            pos = end
            res.valid_end = pos
            continue
        # A bad record: torn tail unless a valid record follows somewhere.
        nxt = next((q for q in range(pos + 1, n) if _valid_at(data, q, known_types)), None)
        if nxt is None:
            res.torn_bytes = n - pos
            break
        reason = "bad record (checksum, length or type) followed by valid records"
        if not skip_corrupt:
            raise LogCorruptionError(path, pos, reason)
        log.warning("skipping corrupt record in %s at offset %d (%d bytes)", path, pos, nxt - pos)
        res.skipped.append((pos, reason))
        pos = nxt
    return res


LOG_TYPES = frozenset((LOG_PUT, LOG_DELETE, LOG_BATCH, LOG_RANGE_DELETE))


def read_log(data: bytes, path: str, skip_corrupt: bool = False) -> tuple[list[Op], ReadResult]:
    res = read_records(data, path, LOG_TYPES, skip_corrupt)
    ops: list[Op] = []
    offset_hint = 0
    for rtype, payload in res.records:
        try:
            ops.extend(decode_payload(rtype, payload))
        except (ValueError, IndexError) as e:  # checksum matched but the body is malformed
            if not skip_corrupt:
                raise LogCorruptionError(path, offset_hint, f"malformed record: {e}") from e
            log.warning("skipping malformed record in %s: %s", path, e)
    return ops, res


class LogWriter:
    """One commit-log file and its in-memory append buffer.

    Ownership: ``buf`` is appended to by the trio thread only; ``write_out`` and ``sync`` are
    called by whoever holds the engine's write lock / sync lock respectively.
    """

    __slots__ = ("number", "path", "file", "buf", "written_seq", "synced_seq",
                 "needs_dir_sync", "closed", "size")

    def __init__(self, number: int, path: str, file: WritableFile) -> None:
        self.number = number
        self.path = path
        self.file = file
        self.buf = bytearray()
        self.written_seq = 0  # highest seq whose record is in the OS
        self.synced_seq = 0  # highest seq whose record is durable
        self.needs_dir_sync = True  # the file's name is not yet durable
        self.closed = False
        self.size = 0  # bytes handed to the OS

    def write_out(self, seq: int) -> None:
        """Hand the buffered bytes to the OS. ``seq`` must have been read *before* calling, so
        every record up to ``seq`` is in the buffer; records appended meanwhile may go too."""
        buf = self.buf
        n = len(buf)
        if n:
            data = bytes(buf[:n])
            self.file.append(data)  # on error nothing is removed; the engine stops writing
            del buf[:n]
            self.size += n
        if seq > self.written_seq:
            self.written_seq = seq
