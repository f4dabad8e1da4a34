"""Binary building blocks shared by the cluster's serialized values (no I/O).

* Unsigned LEB128 varints (as protobuf): 7 bits per byte, low groups first, high bit = "more".
* Strings are a varint byte length followed by UTF-8.
* A *framed* payload is ``version byte || body || xxh32(version || body)`` (4 bytes, big-endian);
  :func:`unframe` checks length, checksum and version before anything is parsed.

Decoding errors raise :class:`DecodeError` (a ``ValueError``); callers wrap it in their own,
more specific error with a message fit for a client.
"""

from __future__ import annotations

import xxhash

CHECKSUM_LEN = 4
MAX_VARINT_BYTES = 10  # enough for 64-bit values


class DecodeError(ValueError):
    """Malformed bytes: truncated, bad checksum, unknown version, or out-of-range field."""


def put_uvarint(out: bytearray, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value)
        return
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at ``data[pos]`` and the position just after it. Raises DecodeError
    when ``data`` ends first or the varint runs past :data:`MAX_VARINT_BYTES` bytes. (Hot
    decoders inline the one-byte case, ``byte < 0x80``, and call this for the rest.)"""
    # Unrolled up to six bytes (42 bits: any unix-ms timestamp until the year 2109), which
    # costs far less per byte than a loop; longer varints finish in the loop.
    try:
        byte = data[pos]
        if byte < 0x80:
            return byte, pos + 1
        result = byte & 0x7F
        byte = data[pos + 1]
        result |= (byte & 0x7F) << 7
        if byte < 0x80:
            return result, pos + 2
        byte = data[pos + 2]
        result |= (byte & 0x7F) << 14
        if byte < 0x80:
            return result, pos + 3
        byte = data[pos + 3]
        result |= (byte & 0x7F) << 21
        if byte < 0x80:
            return result, pos + 4
        byte = data[pos + 4]
        result |= (byte & 0x7F) << 28
        if byte < 0x80:
            return result, pos + 5
        byte = data[pos + 5]
        result |= (byte & 0x7F) << 35
        if byte < 0x80:
            return result, pos + 6
        for shift in _VARINT_SHIFTS_AFTER_SIX:
            pos += 1
            byte = data[pos + 5]
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos + 6
    except IndexError:
        raise DecodeError("truncated varint") from None
    raise DecodeError("varint too long")


_VARINT_SHIFTS_AFTER_SIX = tuple(range(42, 7 * MAX_VARINT_BYTES, 7))


def put_str(out: bytearray, text: str) -> None:
    raw = text.encode()
    put_uvarint(out, len(raw))
    out += raw


def put_bytes(out: bytearray, raw: bytes) -> None:
    put_uvarint(out, len(raw))
    out += raw


def frame(version: int, body: bytes | bytearray) -> bytes:
    head = bytearray((version,))
    head += body
    return seal(head)


def seal(head: bytearray) -> bytes:
    """``head`` (the version byte then the body) framed, as :func:`frame` would: the checksum
    is appended to ``head`` in place. For encoders that write their body straight after the
    version byte, saving frame's copies."""
    head += xxhash.xxh32_intdigest(head).to_bytes(CHECKSUM_LEN, "big")
    return bytes(head)


def unframe(data: bytes, version: int) -> bytes:
    """The body of a framed payload, after checking checksum then version."""
    last = len(data) - CHECKSUM_LEN  # where the checksum starts
    if last < 1:
        raise DecodeError("truncated")
    if xxhash.xxh32_intdigest(data[:last]) != int.from_bytes(data[last:], "big"):
        raise DecodeError("checksum mismatch")
    if data[0] != version:
        raise DecodeError(f"unknown format version {data[0]}")
    return data[1:last]


class Reader:
    """Sequential reader over a bytes body; every method raises DecodeError on truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uvarint(self) -> int:
        value, self.pos = read_uvarint(self.data, self.pos)
        return value

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("truncated field")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.raw(1)[0]

    def bytes_(self) -> bytes:
        return self.raw(self.uvarint())

    def str_(self) -> str:
        try:
            return self.bytes_().decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8") from exc

    def u64(self) -> int:
        return int.from_bytes(self.raw(8), "big")

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def expect_end(self) -> None:
        if not self.at_end():
            raise DecodeError("trailing bytes")
