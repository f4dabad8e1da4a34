"""DUMP and RESTORE: the payload codec (respkv/protocol/rdb.py, docs/formats/dump.md) and the
commands (respkv/commands/dump.py).

Payloads of redis-server 7.0.15 are kept in redis_7_0_dumps.json (made by SET k <value>; DUMP k
with the values of REDIS_VALUES below): respkv must restore every one of them, and its own DUMP
must equal them wherever Redis did not compress.
"""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.commands import errors as E
from respkv.commands.core import ServerState
from respkv.config import Config
from respkv.protocol import rdb
from respkv.protocol.resp import NULL_ARRAY, OK, encode_reply
from respkv.storage.memory import MemoryEngine
from respkv.testing.resp import err

REDIS_VALUES: dict[str, bytes] = {
    "a_x100": b"a" * 100,
    "hello_world_x2000": b"hello world " * 2000,
    "squares_mod_1000": b"".join(b"%d," % (i * i % 1000) for i in range(3000)),
    "bytes_0_255_x40": bytes(range(256)) * 40,
    "x_x21": b"x" * 21,
    "ab_x11": b"ab" * 11,
    "zeros_100000": b"\x00" * 100000,
    "x_x20": b"x" * 20,
    "int_-129": b"-129",
    "int_2147483647": b"2147483647",
    "int_2147483648": b"2147483648",
    "int_-2147483648": b"-2147483648",
    "int_-2147483649": b"-2147483649",
    "int_max64": b"9223372036854775807",
    "not_int_007": b"007",
    "empty": b"",
    "binary_short": b"\x00\xff\r\n",
    "abcabc_x8": b"abcabcabc" * 8,
}
_DATA = json.loads((pathlib.Path(__file__).parent / "redis_7_0_dumps.json").read_text())
REDIS_PAYLOADS: dict[str, bytes] = {k: bytes.fromhex(v) for k, v in _DATA["payload_hex"].items()}
BIG = 1 << 30


# -- references: byte-at-a-time ports of redis-server's crc64.c and lzf_d.c ---------------------

def crc64_reference(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


def lzf_reference(data: bytes, out_len: int) -> bytes:
    """lzf_d.c, one byte at a time (the copy of a back reference included)."""
    out = bytearray()
    ip = 0
    while ip < len(data):
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:
            ctrl += 1
            if len(out) + ctrl > out_len or ip + ctrl > len(data):
                return b""
            for _ in range(ctrl):
                out.append(data[ip])
                ip += 1
        else:
            length = ctrl >> 5
            ref = len(out) - ((ctrl & 0x1F) << 8) - 1
            if ip >= len(data):
                return b""
            if length == 7:
                length += data[ip]
                ip += 1
                if ip >= len(data):
                    return b""
            ref -= data[ip]
            ip += 1
            if len(out) + length + 2 > out_len or ref < 0:
                return b""
            for _ in range(length + 2):
                out.append(out[ref])
                ref += 1
    return bytes(out)


def lzf_literals(value: bytes) -> bytes:
    """A valid LZF form of ``value`` made of literal runs only."""
    return b"".join(bytes((len(value[i:i + 32]) - 1,)) + value[i:i + 32]
                    for i in range(0, len(value), 32))


def lzf_payload(compressed: bytes, length: int) -> bytes:
    body = (b"\x00\xc3" + rdb.encode_length(len(compressed)) + rdb.encode_length(length)
            + compressed)
    return rdb.with_footer(body)


# -- CRC-64 --------------------------------------------------------------------------------------

def test_crc64_check_value_is_redis_s() -> None:
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # crc64.c's test vector
    assert rdb.crc64(b"") == 0


@given(st.binary(max_size=300), st.integers(0, (1 << 64) - 1))
def test_crc64_slicing_by_8_equals_bytewise(data: bytes, seed: int) -> None:
    assert rdb.crc64(data, seed) == crc64_reference(data, seed)
    cut = len(data) // 3
    assert rdb.crc64(data[cut:], rdb.crc64(data[:cut])) == rdb.crc64(data)


def test_crc64_without_the_native_little_endian_cast(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 5 + b"tail"
    expected = crc64_reference(data)
    monkeypatch.setattr(rdb, "_LITTLE_ENDIAN", False)
    assert rdb.crc64(data) == expected


# -- LZF -----------------------------------------------------------------------------------------

@settings(max_examples=500)
@given(st.binary(max_size=80), st.integers(0, 300))
def test_lzf_decompress_equals_liblzf_on_any_input(data: bytes, out_len: int) -> None:
    assert rdb.lzf_decompress(data, out_len) == lzf_reference(data, out_len)


@st.composite
def lzf_streams(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid LZF stream (literal runs and back references, overlapping ones included) and
    the bytes it decompresses to."""
    out = bytearray()
    stream = bytearray()
    for _ in range(draw(st.integers(1, 12))):
        if not out or draw(st.booleans()):
            lit = draw(st.binary(min_size=1, max_size=32))
            stream += bytes((len(lit) - 1,)) + lit
            out += lit
        else:
            back = draw(st.integers(1, min(len(out), 8192)))
            length = draw(st.integers(3, 264))
            off = back - 1
            if length - 2 < 7:
                stream += bytes((((length - 2) << 5) | (off >> 8), off & 0xFF))
            else:
                stream += bytes((0xE0 | (off >> 8), length - 2 - 7, off & 0xFF))
            for _ in range(length):
                out.append(out[-back])
    return bytes(stream), bytes(out)


@settings(max_examples=300)
@given(lzf_streams())
def test_lzf_streams_decompress_and_restore(stream_and_value: tuple[bytes, bytes]) -> None:
    stream, value = stream_and_value
    assert rdb.lzf_decompress(stream, len(value)) == value
    assert rdb.load_string(lzf_payload(stream, len(value)), BIG) == value
    # one byte short of room: liblzf fails (E2BIG), so RESTORE does
    assert rdb.lzf_decompress(stream, len(value) - 1) == b""
    with pytest.raises(rdb.BadFormatError):
        rdb.load_string(lzf_payload(stream, len(value) + 1), BIG)


# -- payloads of redis-server 7.0 ---------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(REDIS_VALUES))
def test_every_redis_payload_restores_and_plain_ones_are_dumped_identically(name: str) -> None:
    value, payload = REDIS_VALUES[name], REDIS_PAYLOADS[name]
    assert rdb.load_string(payload, BIG) == value
    mine = rdb.dump_string(value)
    assert rdb.load_string(mine, BIG) == value
    if payload[1] == 0xC3:  # Redis compressed it (longer than 20 bytes, LZF saves 4+)
        assert len(value) > 20 and mine != payload
    else:
        assert mine == payload


def test_int_encodings_and_lengths_as_redis_writes_them() -> None:
    assert rdb.encode_string(b"0") == b"\xc0\x00"
    assert rdb.encode_string(b"-128") == b"\xc0\x80"
    assert rdb.encode_string(b"128") == b"\xc1\x80\x00"
    assert rdb.encode_string(b"-32769") == b"\xc2\xff\x7f\xff\xff"
    for not_canonical in (b"007", b"-0", b"+1", b" 1", b"1 ", b"1.0", b"2147483648"):
        assert rdb.encode_string(not_canonical)[0] < 0xC0
    assert rdb.encode_length(63) == b"\x3f"
    assert rdb.encode_length(64) == b"\x40\x40"
    assert rdb.encode_length(16383) == b"\x7f\xff"
    assert rdb.encode_length(16384) == b"\x80\x00\x00\x40\x00"
    assert rdb.encode_length(1 << 32) == b"\x81" + (1 << 32).to_bytes(8, "big")


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), st.integers(-(1 << 63), (1 << 63) - 1).map(
    lambda n: b"%d" % n), st.sampled_from([b"-0", b"007", b"+5", b"1e3"])))
def test_round_trip(value: bytes) -> None:
    payload = rdb.dump_string(value)
    assert rdb.verify_payload(payload)
    assert payload[-10:-8] == b"\x0a\x00"
    assert rdb.load_string(payload, BIG) == value
    assert rdb.load_string(lzf_payload(lzf_literals(value), len(value)), BIG) == value


def test_non_canonical_length_forms_are_accepted() -> None:
    for body in (b"\x00\x80\x00\x00\x00\x01a", b"\x00\x81" + (1).to_bytes(8, "big") + b"a",
                 b"\x00\x40\x01a"):
        assert rdb.load_string(rdb.with_footer(body), BIG) == b"a"
    # an LZF string's two lengths read an encoded first byte as its 6 bits (rdbLoadLen(NULL))
    assert rdb.load_string(rdb.with_footer(b"\x00\xc3\xc3\xc2\x01ab"), BIG) == b"ab"


def test_checks_in_redis_order() -> None:
    good = rdb.dump_string(b"hello")
    for bad in (b"", b"short", good[:-1], good[:-8] + bytes(8), rdb.with_footer(b"\x00\x01a", 11)):
        with pytest.raises(rdb.ChecksumError):
            rdb.load_string(bad, BIG)
    assert rdb.load_string(rdb.with_footer(b"\x00\x05hello", 9), BIG) == b"hello"  # older: fine
    for body in (b"\x08\x01a", b"\x14\x01a", b"\xff", b"\x00", b"\x00\x82\x00\x00\x00\x01a",
                 b"\x00\xc4", b"\x00\x15hello", b"\x00\xc3\x03\x05\x01ab",
                 b"\x00\xc3\x05\x02\x01ab\x00c", b"\x00\xc3\x02\x03\x20\x00"):
        with pytest.raises(rdb.BadFormatError):
            rdb.load_string(rdb.with_footer(body), BIG)
    for kind, name in ((1, "list"), (2, "set"), (3, "zset"), (4, "hash"), (15, "stream"),
                       (7, "module"), (18, "list"), (16, "hash")):
        with pytest.raises(rdb.UnsupportedTypeError) as info:
            rdb.load_string(rdb.with_footer(bytes((kind,)) + b"\x01a"), BIG)
        assert info.value.type_name == name


def test_quirks_redis_has_and_respkv_keeps() -> None:
    # the value is read from the whole buffer: a length running into the footer takes it
    payload = rdb.with_footer(b"\x00\x0fhello")
    assert rdb.load_string(payload, BIG) == b"hello" + payload[-10:]
    # bytes after the value are ignored
    assert rdb.load_string(rdb.with_footer(b"\x00\x05helloXYZ"), BIG) == b"hello"
    # INT8 reads its byte from the footer (the version's low byte, 10)
    assert rdb.load_string(rdb.with_footer(b"\x00\xc0"), BIG) == b"10"
    # LZF of length 0 is the empty string whatever the compressed bytes hold
    assert rdb.load_string(rdb.with_footer(b"\x00\xc3\x05\x00\xff\xff\xff\xff\xff"), BIG) == b""
    assert rdb.load_string(rdb.with_footer(b"\x00\xc3\x00\x00"), BIG) == b""


def test_decompression_is_bounded() -> None:
    # a claimed length above the limit is refused before anything is allocated
    with pytest.raises(rdb.TooLargeError):
        rdb.load_string(lzf_payload(b"\x00a", 1 << 40), 512 * 1024 * 1024)
    # a claimed length within the limit that the stream does not produce: it stops at what the
    # tokens make (here 1 byte), then fails
    with pytest.raises(rdb.BadFormatError):
        rdb.load_string(lzf_payload(b"\x00a", 512 * 1024 * 1024), 512 * 1024 * 1024)
    # a plain length far beyond the payload: a truncated read, no allocation
    with pytest.raises(rdb.BadFormatError):
        rdb.load_string(rdb.with_footer(b"\x00\x81" + (1 << 62).to_bytes(8, "big")), BIG)
    with pytest.raises(rdb.BadFormatError):
        rdb.load_string(rdb.with_footer(b"\x00\x81" + b"\xff" * 8), BIG)
    # the most a token can make: 264 bytes from 3 (a run of one byte)
    run = b"\x00a" + b"\xe0\xff\x00" * 100
    assert rdb.load_string(lzf_payload(run, 1 + 26400), BIG) == b"a" * 26401


def _corruption_payloads() -> list[bytes]:
    return [REDIS_PAYLOADS[n] for n in ("a_x100", "abcabc_x8", "int_-129", "binary_short",
                                        "ab_x11", "empty", "x_x20")]


@pytest.mark.parametrize("index", range(7))
def test_every_single_byte_corruption_is_rejected_or_valid(index: int) -> None:
    """Every position, every other byte value: with the CRC as it was (the checksum catches
    it) and with the CRC recomputed (the decoder sees the corrupt body). Never an exception
    other than PayloadError, never an output longer than the claimed length allows."""
    payload = _corruption_payloads()[index]
    body = payload[:-10]
    for pos in range(len(payload)):
        for v in range(256):
            if v == payload[pos]:
                continue
            bad = payload[:pos] + bytes((v,)) + payload[pos + 1:]
            with pytest.raises(rdb.PayloadError):
                rdb.load_string(bad, BIG)
            if pos < len(body):
                rebuilt = rdb.with_footer(bad[:len(body)])
                try:
                    value = rdb.load_string(rebuilt, 1 << 20)
                except rdb.PayloadError:
                    continue
                assert isinstance(value, bytes) and len(value) <= 1 << 20


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=40))
def test_random_bodies_never_crash_the_decoder(body: bytes) -> None:
    try:
        value = rdb.load_string(rdb.with_footer(body), 1 << 16)
    except rdb.PayloadError:
        return
    assert isinstance(value, bytes) and len(value) <= 1 << 16


# -- the commands ---------------------------------------------------------------------------------

def test_dump_nil_and_payload(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("DUMP", "nokey") is None
    conn("SET", "k", "hello")
    assert conn("DUMP", "k") == bytes.fromhex("000568656c6c6f0a006372df766534200a")
    conn("SET", "k", "-129")
    assert conn("DUMP", "k") == REDIS_PAYLOADS["int_-129"]
    assert err(conn("DUMP")) == E.WRONG_ARGS % "dump"
    assert err(conn("DUMP", "a", "b")) == E.WRONG_ARGS % "dump"


def test_restore_round_trip_with_ttl(conn, clock) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "src", "v" * 30, "PX", "5000")
    payload = conn("DUMP", "src")
    assert conn("RESTORE", "dst", "0", payload) == OK
    assert conn("GET", "dst") == b"v" * 30 and conn("PTTL", "dst") == -1
    assert conn("RESTORE", "ttl", "2500", payload) == OK
    assert conn("PTTL", "ttl") == 2500
    clock.advance(2500)
    assert conn("EXISTS", "ttl") == 0
    at = clock.now_ms + 10_000
    assert conn("RESTORE", "abs", str(at), payload, "ABSTTL") == OK
    assert conn("PEXPIRETIME", "abs") == at


@pytest.mark.parametrize("name", sorted(REDIS_VALUES))
def test_restore_every_redis_payload(conn, name: str) -> None:  # type: ignore[no-untyped-def]
    assert conn("RESTORE", "k", "0", REDIS_PAYLOADS[name]) == OK
    assert conn("GET", "k") == REDIS_VALUES[name]


def test_restore_errors_in_redis_order(conn) -> None:  # type: ignore[no-untyped-def]
    good = rdb.dump_string(b"hello")
    bad_crc = good[:-1] + bytes((good[-1] ^ 1,))
    conn("SET", "busy", "x")
    # options first, then the existing key, then the TTL, then the payload
    assert err(conn("RESTORE", "busy", "abc", bad_crc, "FOO")) == E.SYNTAX
    assert err(conn("RESTORE", "busy", "abc", bad_crc, "IDLETIME")) == E.SYNTAX
    assert err(conn("RESTORE", "busy", "0", good, "IDLETIME", "-1")) == E.INVALID_IDLETIME
    assert err(conn("RESTORE", "busy", "0", good, "IDLETIME", "x")) == E.NOT_INTEGER
    assert err(conn("RESTORE", "busy", "0", good, "FREQ", "256")) == E.INVALID_FREQ
    assert err(conn("RESTORE", "busy", "0", good, "FREQ", "-1")) == E.INVALID_FREQ
    assert err(conn("RESTORE", "busy", "0", good, "FREQ", "1", "IDLETIME", "1")) == E.SYNTAX
    assert err(conn("RESTORE", "busy", "0", good, "IDLETIME", "1", "FREQ", "1")) == E.SYNTAX
    assert err(conn("RESTORE", "busy", "-1", bad_crc)) == E.BUSYKEY
    assert err(conn("RESTORE", "busy", "abc", bad_crc, "REPLACE")) == E.NOT_INTEGER
    assert err(conn("RESTORE", "busy", "-1", bad_crc, "REPLACE")) == E.INVALID_TTL
    assert err(conn("RESTORE", "busy", "0", bad_crc, "REPLACE")) == E.DUMP_PAYLOAD
    assert err(conn("RESTORE", "new", "0", b"short")) == E.DUMP_PAYLOAD
    assert err(conn("RESTORE", "new", "0", rdb.with_footer(b"\x08\x01a"))) == E.BAD_DATA_FORMAT
    assert err(conn("RESTORE", "new", "0", rdb.with_footer(b"\x02\x01\x01a"))) == \
        E.DUMP_UNSUPPORTED_TYPE % "set"
    assert err(conn("RESTORE", "new", "0")) == E.WRONG_ARGS % "restore"
    assert conn("EXISTS", "new") == 0 and conn("GET", "busy") == b"x"
    # repeated IDLETIME or FREQ, any case, with REPLACE and ABSTTL: fine (and ignored)
    assert conn("RESTORE", "busy", "0", good, "idletime", "1", "IdleTime", "2", "replace") == OK
    assert conn("RESTORE", "busy", "0", good, "FREQ", "0", "freq", "255", "REPLACE", "ABSTTL") \
        == OK
    assert conn("GET", "busy") == b"hello"


def test_restore_of_a_value_above_proto_max_bulk_len(conn, clock) -> None:  # type: ignore[no-untyped-def]
    server = ServerState(Config(engine="memory", proto_max_bulk_len=1024 * 1024), MemoryEngine(),
                         clock)
    conn = type(conn)(server)
    run = b"\x00a" + b"\xe0\xff\x00" * 4000  # 1,056,001 bytes from 12 KB
    assert err(conn("RESTORE", "k", "0", lzf_payload(run, 1 + 4000 * 264))) == E.STRING_TOO_LONG
    assert conn("RESTORE", "k", "0", lzf_payload(run[:3 * 3000 + 2], 1 + 3000 * 264)) == OK
    assert conn("STRLEN", "k") == 1 + 3000 * 264


def test_restore_expired_ttl_and_replace(conn, clock) -> None:  # type: ignore[no-untyped-def]
    good = rdb.dump_string(b"new")
    past = str(clock.now_ms - 1)
    assert conn("RESTORE", "k", past, good, "ABSTTL") == OK
    assert conn("EXISTS", "k") == 0
    conn("SET", "k", "old")
    assert conn("RESTORE", "k", past, good, "ABSTTL", "REPLACE") == OK
    assert conn("EXISTS", "k") == 0  # REPLACE deleted it, the expired value never arrived
    # a relative TTL that overflows int64 wraps, in redis-server, to a time long past
    assert conn("RESTORE", "k", "9223372036854775807", good) == OK
    assert conn("EXISTS", "k") == 0
    assert conn("RESTORE", "k", "9223372036854775807", good, "ABSTTL") == OK
    assert conn("PEXPIRETIME", "k") == 9223372036854775807
    conn("SET", "k", "old", "EX", "100")
    assert conn("RESTORE", "k", "0", good, "REPLACE") == OK
    assert conn("GET", "k") == b"new" and conn("TTL", "k") == -1


def test_restore_touches_watchers(conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    other = make_conn()
    conn("WATCH", "k")
    other("RESTORE", "k", "0", rdb.dump_string(b"v"))
    conn("MULTI")
    conn("GET", "k")
    assert conn("EXEC") is NULL_ARRAY


def test_dump_reply_is_a_bulk_in_both_protocols(conn) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", "1")
    payload = conn("DUMP", "k")
    assert encode_reply(payload, True) == b"$%d\r\n%s\r\n" % (len(payload), payload)
