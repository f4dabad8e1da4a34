"""Byte layouts shared by the commit log, the SSTables and the manifest: the one source of truth
for magic numbers, record types, struct layouts and file names.

The documents in docs/formats/{commitlog,sstable,manifest}.md describe these bytes for a reader
who has never seen this code; a change here without a change there is a bug.

All integers are little-endian. Commit-log and manifest records carry CRC-32 (zlib.crc32, the
IEEE polynomial); SSTable blocks carry the low 32 bits of XXH3-64 (ten times faster than zlib's
CRC-32 on a 4 KB block, and a block is checked on every cache miss).
"""

from __future__ import annotations

import struct
import zlib

import xxhash

_xxh3_64 = xxhash.xxh3_64_intdigest


def block_checksum(data: bytes | bytearray) -> int:
    """The SSTable block checksum: low 32 bits of XXH3-64 with seed 0."""
    return _xxh3_64(data) & 0xFFFFFFFF

# -- record framing (commit log and manifest) -----------------------------------------------------
# crc32 u32 | length u32 | type u8 | payload[length]
# crc32 covers the type byte followed by the payload.
RECORD_HEADER = struct.Struct("<IIB")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 9
MAX_RECORD_PAYLOAD = 1 << 30

# commit-log record types
LOG_PUT = 1
LOG_DELETE = 2
LOG_BATCH = 3
LOG_RANGE_DELETE = 4
# manifest record type
MANIFEST_EDIT = 10


def type_crc_seed(record_type: int) -> int:
    """CRC-32 of the single type byte: the running value to continue over the payload."""
    return zlib.crc32(bytes([record_type]))


# PUT payload: seq u64 | expire_at_ms i64 | klen u32 | mlen u32 | vlen u32 | key | meta | value
LOG_PUT_FIXED = struct.Struct("<QqIII")
# DELETE payload: seq u64 | deleted_at_ms i64 | klen u32 | key
LOG_DELETE_FIXED = struct.Struct("<QqI")
# RANGE_DELETE payload: seq u64 | deleted_at_ms i64 | slen u32 | elen u32 | has_end u8 | start | end
LOG_RANGE_DELETE_FIXED = struct.Struct("<QqIIB")
# BATCH payload: first_seq u64 | count u32 | then count entries, each
#   kind u8 | expire_or_deleted_at_ms i64 | klen u32 | mlen u32 | vlen u32 | key | meta | value
# entry i has sequence number first_seq + i.
LOG_BATCH_FIXED = struct.Struct("<QI")
LOG_BATCH_ENTRY = struct.Struct("<BqIII")

# entry kinds (commit-log batch entries and SSTable entries)
KIND_PUT = 1
KIND_DELETE = 2

# -- SSTable --------------------------------------------------------------------------------------
# data-block entry: kind u8 | klen u32 | mlen u32 | vlen u32 | seq u64 | time i64 | key|meta|value
# time = expire_at_ms for a put, deleted_at_ms for a tombstone.
# A block ends with: entry offsets u32 x n | key lengths u32 x n | n u32
ENTRY_HEADER = struct.Struct("<BIIIQq")
ENTRY_HEADER_SIZE = ENTRY_HEADER.size  # 29
BLOCK_TARGET_SIZE = 4096
BLOCK_TRAILER = struct.Struct("<I")  # block_checksum of the block bytes, stored right after them
# footer: index_off u64 | index_len u32 | filter_off u64 | filter_len u32 |
#         rdel_off u64 | rdel_len u32 | props_off u64 | props_len u32 |
#         format_version u32 | footer_crc u32 | magic u64
TABLE_FOOTER = struct.Struct("<QIQIQIQIIIQ")
TABLE_FOOTER_SIZE = TABLE_FOOTER.size
TABLE_MAGIC = 0x52455350_53535431  # "RESPSST1" read as a big-endian u64, stored little-endian
TABLE_FORMAT_VERSION = 2  # 2: blocked Bloom filter (64-bit words); 1 is not read
# properties block: entries u64 | tombstones u64 | min_seq u64 | max_seq u64 |
#                   data_blocks u32 | slen u32 | llen u32 | smallest | largest
TABLE_PROPS_FIXED = struct.Struct("<QQQQIII")
# filter block: k u8 | words u64 | words x u64 (a blocked Bloom filter, see bloom.py)
FILTER_FIXED = struct.Struct("<BQ")
# range-deletion block: count u32 | then each: seq u64 | deleted_at_ms i64 | slen u32 |
#                       elen u32 | has_end u8 | start | end
RDEL_COUNT = struct.Struct("<I")
RDEL_ENTRY = struct.Struct("<QqIIB")
# index block: count u32 | then each: offset u64 | length u32 | klen u32 | first_key
INDEX_COUNT = struct.Struct("<I")
INDEX_ENTRY = struct.Struct("<QII")

# -- manifest edits -------------------------------------------------------------------------------
# An edit payload is a sequence of tagged fields: tag u8 then the field's bytes.
TAG_LOG_NUMBER = 1  # u64: logs numbered below this are fully in tables
TAG_NEXT_FILE = 2  # u64: next unused file number
TAG_LAST_SEQ = 3  # u64: highest sequence number stored in a table
TAG_ADD_TABLE = 4  # see ADD_TABLE_FIXED, then smallest, largest
TAG_DELETE_TABLE = 5  # u64 file number
TAG_FORMAT = 6  # u32 format version, must be the first field of the first edit
ADD_TABLE_FIXED = struct.Struct("<QQQQQBII")  # number, size, min_seq, max_seq, entries,
#                                                level, slen, llen
U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")
MANIFEST_FORMAT_VERSION = 1

# -- file names -----------------------------------------------------------------------------------
CURRENT = "CURRENT"
LOCK = "LOCK"  # held (flock) while an engine has the directory open
TEMP_SUFFIX = ".tmp"


def log_name(number: int) -> str:
    return f"{number:06d}.log"


def table_name(number: int) -> str:
    return f"{number:06d}.sst"


def manifest_name(number: int) -> str:
    return f"MANIFEST-{number:06d}"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """('log'|'sst'|'manifest'|'temp', number) for an engine file name, None for others."""
    if name.endswith(TEMP_SUFFIX):
        return ("temp", 0)
    if name.startswith("MANIFEST-"):
        digits = name[len("MANIFEST-") :]
        return ("manifest", int(digits)) if digits.isdigit() else None
    stem, dot, ext = name.partition(".")
    if dot and stem.isdigit() and ext in ("log", "sst"):
        return (ext, int(stem))
    return None
