"""Specification of the cluster's binary building blocks (respkv.cluster.codec): the fast varint
reader and the in-place framing agree with the straightforward definitions."""

from __future__ import annotations

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.codec import (
    CHECKSUM_LEN,
    MAX_VARINT_BYTES,
    DecodeError,
    Reader,
    frame,
    put_uvarint,
    read_uvarint,
    seal,
    unframe,
)


def reference_put_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def reference_read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """LEB128 as the format documents define it: at most MAX_VARINT_BYTES bytes."""
    result = 0
    for i in range(MAX_VARINT_BYTES):
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos
    raise DecodeError("varint too long")


def outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except DecodeError:
        return DecodeError


@given(st.integers(0, 2**70 - 1), st.binary(max_size=3), st.binary(max_size=3))
def test_varint_round_trip(value: int, before: bytes, after: bytes) -> None:
    out = bytearray(before)
    put_uvarint(out, value)
    assert bytes(out) == before + reference_put_uvarint(value)
    data = bytes(out) + after
    assert read_uvarint(data, len(before)) == (value, len(out))
    r = Reader(data)
    r.pos = len(before)
    assert r.uvarint() == value and r.pos == len(out)


@given(st.binary(max_size=14), st.integers(0, 14))
def test_read_uvarint_agrees_with_the_definition_on_any_bytes(data: bytes, pos: int) -> None:
    # Truncated, overlong (> 10 bytes) and non-minimal varints included.
    assert outcome(read_uvarint, data, pos) == outcome(reference_read_uvarint, data, pos)


@pytest.mark.parametrize("n", range(1, MAX_VARINT_BYTES + 2))
def test_read_uvarint_length_limit(n: int) -> None:
    data = b"\xff" * (n - 1) + b"\x01"
    assert outcome(read_uvarint, data, 0) == outcome(reference_read_uvarint, data, 0)
    assert (outcome(read_uvarint, data, 0) is DecodeError) == (n > MAX_VARINT_BYTES)
    assert outcome(read_uvarint, data[:-1], 0) is DecodeError


def test_put_uvarint_refuses_negatives() -> None:
    with pytest.raises(ValueError):
        put_uvarint(bytearray(), -1)


@given(st.integers(0, 255), st.binary(max_size=40))
def test_frame_and_seal_agree_and_unframe_inverts(version: int, body: bytes) -> None:
    head = bytes([version]) + body
    expected = head + xxhash.xxh32_intdigest(head).to_bytes(CHECKSUM_LEN, "big")
    assert frame(version, body) == frame(version, bytearray(body)) == expected
    assert seal(bytearray(head)) == expected
    assert unframe(expected, version) == body


@given(st.integers(0, 255), st.binary(max_size=40), st.data())
def test_unframe_rejects_damage(version: int, body: bytes, data: st.DataObject) -> None:
    framed = bytearray(frame(version, body))
    pos = data.draw(st.integers(0, len(framed) - 1))
    framed[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError):
        unframe(bytes(framed), version)
    with pytest.raises(DecodeError):
        unframe(frame(version, body)[: data.draw(st.integers(0, len(body) + CHECKSUM_LEN))],
                version)
    with pytest.raises(DecodeError, match="unknown format version"):
        unframe(frame(version, body), (version + 1) % 256)
