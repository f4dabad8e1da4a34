"""The DUMP/RESTORE serialized-value format (redis-server 7.0's RDB value encoding), sans I/O.

Format: docs/formats/dump.md (the source of truth for every constant here). Pure functions over
bytes: ``dump_string`` builds the payload DUMP answers, ``load_string`` reads one RESTORE was
given (``PayloadError`` subclasses say why not), ``crc64`` is Redis's CRC-64 (Jones polynomial)
and ``lzf_decompress`` liblzf's decompressor (Lehmann's LZF, an LZ77 variant: Ziv and Lempel
1977).

Bounded work: nothing is allocated by a length read from the payload before it was checked
against the bytes present or against the caller's ``max_len`` (proto-max-bulk-len).
"""

from __future__ import annotations

import struct
import sys

from respkv.protocol.resp import string2ll

RDB_VERSION = 10
"""The RDB version redis-server 7.0 writes; a payload of a higher version is refused."""

TYPE_STRING = 0
ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF = 0, 1, 2, 3
LEN_32BIT, LEN_64BIT = 0x80, 0x81
FOOTER_SIZE = 10  # 2 bytes of version, 8 of CRC

# RDB value types of redis-server 7.0 (rdb.h) other than STRING, by the name of their Redis type.
OTHER_TYPES: dict[int, str] = {
    1: "list", 10: "list", 14: "list", 18: "list",
    2: "set", 11: "set",
    3: "zset", 5: "zset", 12: "zset", 17: "zset",
    4: "hash", 9: "hash", 13: "hash", 16: "hash",
    15: "stream", 19: "stream",
    6: "module", 7: "module",
}


class PayloadError(ValueError):
    """A RESTORE payload respkv cannot load."""


class ChecksumError(PayloadError):
    """Too short, a version above RDB_VERSION, or a CRC that does not match."""


class BadFormatError(PayloadError):
    """Not an RDB value redis-server could read (its "Bad data format")."""


class UnsupportedTypeError(PayloadError):
    """A valid payload of a Redis type respkv does not store; ``type_name``: "list", ..."""

    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


class TooLargeError(PayloadError):
    """The value would be longer than the caller's ``max_len``."""


# -- CRC-64 (Jones), slicing-by-8 ----------------------------------------------------------------

_CRC64_POLY_REFLECTED = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9, bit-reversed


def _crc64_tables() -> list[list[int]]:
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC64_POLY_REFLECTED if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(v >> 8) ^ t0[v & 0xFF] for v in prev])
    return tables


_T = _crc64_tables()
_WORDS = struct.Struct("<Q")
_LITTLE_ENDIAN = sys.byteorder == "little"


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Redis's crc64(crc, data): reflected, polynomial 0xad93d23594c935a9, no final xor.

    Eight bytes per step through eight tables (as crcspeed does), the tail byte by byte.
    """
    view = memoryview(data).cast("B")
    n8 = len(view) & ~7
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    if n8:
        # little-endian 64-bit words: a native cast where the machine is little-endian (faster)
        words = (view[:n8].cast("Q") if _LITTLE_ENDIAN
                 else (w for (w,) in _WORDS.iter_unpack(view[:n8])))
        for w in words:
            x = crc ^ w
            crc = (t7[x & 0xFF] ^ t6[(x >> 8) & 0xFF] ^ t5[(x >> 16) & 0xFF]
                   ^ t4[(x >> 24) & 0xFF] ^ t3[(x >> 32) & 0xFF] ^ t2[(x >> 40) & 0xFF]
                   ^ t1[(x >> 48) & 0xFF] ^ t0[x >> 56])
    for b in view[n8:]:
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


# -- LZF ----------------------------------------------------------------------------------------

def lzf_decompress(data: bytes | memoryview, out_len: int) -> bytes:
    """liblzf's lzf_decompress of ``data`` into a buffer of ``out_len`` bytes: the bytes it
    produced, or b"" where liblzf fails and returns 0 (a token that would write past
    ``out_len``, input that ends inside a token, a reference before the start of the output).

    The output grows as tokens produce bytes and never beyond ``out_len``: the caller bounds
    ``out_len``. A back reference may overlap what it writes (byte-by-byte copy semantics).
    """
    out = bytearray()
    n_in = len(data)
    ip = 0
    while ip < n_in:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            ctrl += 1
            if len(out) + ctrl > out_len or ip + ctrl > n_in:
                return b""
            out += data[ip : ip + ctrl]
            ip += ctrl
            continue
        length = ctrl >> 5
        if ip >= n_in:
            return b""
        if length == 7:
            length += data[ip]
            ip += 1
            if ip >= n_in:
                return b""
        back = ((ctrl & 0x1F) << 8) + data[ip] + 1
        ip += 1
        length += 2
        produced = len(out)
        start = produced - back
        if produced + length > out_len or start < 0:
            return b""
        if back >= length:
            out += out[start : start + length]
        else:  # the copy overlaps its own output: the last ``back`` bytes repeat
            out += (out[start:] * (length // back + 1))[:length]
    return bytes(out)


# -- writing ------------------------------------------------------------------------------------

def encode_length(n: int) -> bytes:
    """rdbSaveLen: the shortest RDB length form of ``n``."""
    if n < 64:
        return bytes((n,))
    if n < 16384:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return bytes((LEN_32BIT,)) + n.to_bytes(4, "big")
    return bytes((LEN_64BIT,)) + n.to_bytes(8, "big")


def _int_encoding(value: bytes) -> bytes | None:
    """INT8/16/32 for the canonical decimal of an integer in [-2^31, 2^31 - 1], else None."""
    if len(value) <= 11:
        n = string2ll(value)
        if n is not None:
            if -(1 << 7) <= n < (1 << 7):
                return bytes((0xC0 | ENC_INT8,)) + n.to_bytes(1, "little", signed=True)
            if -(1 << 15) <= n < (1 << 15):
                return bytes((0xC0 | ENC_INT16,)) + n.to_bytes(2, "little", signed=True)
            if -(1 << 31) <= n < (1 << 31):
                return bytes((0xC0 | ENC_INT32,)) + n.to_bytes(4, "little", signed=True)
    return None


def encode_string(value: bytes) -> bytes:
    """An RDB string as redis-server 7.0 writes it, LZF aside: an int encoding when one
    applies, else the plain form (never compressed)."""
    encoded = _int_encoding(value)
    return encode_length(len(value)) + value if encoded is None else encoded


def with_footer(body: bytes, version: int = RDB_VERSION) -> bytes:
    """``body`` followed by the version and the CRC-64 of both (createDumpPayload's footer)."""
    head = body + version.to_bytes(2, "little")
    return head + crc64(head).to_bytes(8, "little")


def dump_string(value: bytes) -> bytes:
    """The DUMP payload of a string value: built with one copy of ``value`` (the CRC runs over
    the pieces in turn), however large it is."""
    encoded = _int_encoding(value)
    parts = [bytes((TYPE_STRING,)) + (encode_length(len(value)) if encoded is None else encoded)]
    if encoded is None:
        parts.append(value)
    parts.append(RDB_VERSION.to_bytes(2, "little"))
    crc = 0
    for part in parts:
        crc = crc64(part, crc)
    parts.append(crc.to_bytes(8, "little"))
    return b"".join(parts)


# -- reading ------------------------------------------------------------------------------------

def verify_payload(payload: bytes) -> bool:
    """verifyDumpPayload: at least the footer, a version <= RDB_VERSION, the right CRC."""
    n = len(payload)
    if n < FOOTER_SIZE:
        return False
    if int.from_bytes(payload[n - 10 : n - 8], "little") > RDB_VERSION:
        return False
    return crc64(memoryview(payload)[: n - 8]) == int.from_bytes(payload[n - 8 :], "little")


class _Reader:
    """rioRead over the whole payload (footer included, as RESTORE's rio buffer is)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise BadFormatError("truncated")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def length(self) -> tuple[int, bool]:
        """rdbLoadLenByRef: (length, is_encoded); for an encoded string the length is ``E``."""
        first = self.take(1)[0]
        kind = first >> 6
        if kind == 3:
            return first & 0x3F, True
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.take(1)[0], False
        if first == LEN_32BIT:
            return int.from_bytes(self.take(4), "big"), False
        if first == LEN_64BIT:
            n = int.from_bytes(self.take(8), "big")
            if n == (1 << 64) - 1:  # RDB_LENERR
                raise BadFormatError("length error")
            return n, False
        raise BadFormatError("unknown length encoding")


def _load_string(r: _Reader, max_len: int) -> bytes:
    """rdbGenericLoadStringObject."""
    n, encoded = r.length()
    if not encoded:
        return r.take(n)  # a slice of bytes present, however large n claims to be
    if n == ENC_INT8:
        return b"%d" % int.from_bytes(r.take(1), "little", signed=True)
    if n == ENC_INT16:
        return b"%d" % int.from_bytes(r.take(2), "little", signed=True)
    if n == ENC_INT32:
        return b"%d" % int.from_bytes(r.take(4), "little", signed=True)
    if n == ENC_LZF:
        clen, _ = r.length()
        out_len, _ = r.length()
        if out_len == (1 << 64) - 1 or clen == (1 << 64) - 1:
            raise BadFormatError("length error")
        compressed = r.take(clen)
        if out_len > max_len:
            raise TooLargeError(out_len)
        if out_len == 0:
            return b""  # lzf_decompress's 0 (success or failure) equals the length
        out = lzf_decompress(compressed, out_len)
        if len(out) != out_len:
            raise BadFormatError("invalid LZF compressed string")
        return out
    raise BadFormatError("unknown string encoding")


def load_string(payload: bytes, max_len: int) -> bytes:
    """The string value of a RESTORE payload, checked as redis-server 7.0 checks it (see
    docs/formats/dump.md, "Reading a payload"); raises a ``PayloadError`` subclass."""
    if not verify_payload(payload):
        raise ChecksumError("DUMP payload version or checksum are wrong")
    r = _Reader(payload)
    kind = r.take(1)[0]
    if kind != TYPE_STRING:
        name = OTHER_TYPES.get(kind)
        if name is None:
            raise BadFormatError("unknown type")
        raise UnsupportedTypeError(name)
    return _load_string(r, max_len)
