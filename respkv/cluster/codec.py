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
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_str(out: bytearray, text: str) -> None:
    raw = text.encode()
    put_uvarint(out, len(raw))
    out += raw


def put_bytes(out: bytearray, raw: bytes) -> None:
    put_uvarint(out, len(raw))
    out += raw


def frame(version: int, body: bytes | bytearray) -> bytes:
    head = bytes([version]) + bytes(body)
    return head + xxhash.xxh32_intdigest(head).to_bytes(CHECKSUM_LEN, "big")


def unframe(data: bytes, version: int) -> bytes:
    """The body of a framed payload, after checking checksum then version."""
    if len(data) < 1 + CHECKSUM_LEN:
        raise DecodeError("truncated")
    head, check = data[:-CHECKSUM_LEN], data[-CHECKSUM_LEN:]
    if xxhash.xxh32_intdigest(head).to_bytes(CHECKSUM_LEN, "big") != check:
        raise DecodeError("checksum mismatch")
    if head[0] != version:
        raise DecodeError(f"unknown format version {head[0]}")
    return head[1:]


class Reader:
    """Sequential reader over a bytes body; every method raises DecodeError on truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uvarint(self) -> int:
        result = 0
        shift = 0
        for _ in range(MAX_VARINT_BYTES):
            if self.pos >= len(self.data):
                raise DecodeError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
        raise DecodeError("varint too long")

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
