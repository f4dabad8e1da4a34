"""Bit commands against redis-server 7.0.15's replies and error strings (each expected value was
checked on a real server with raw RESP), plus a model-based test of SETBIT, GETBIT, BITCOUNT,
BITPOS, BITOP and BITFIELD against a plain list of bits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from respkv.commands import errors as E
from respkv.commands.bitmaps import StringEdit, first_bit, popcount, read_field
from respkv.commands.core import TABLE, ServerState, dispatch
from respkv.commands.errors import CommandError
from respkv.config import Config
from respkv.protocol.resp import OK
from respkv.storage.memory import MemoryEngine

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply
FakeClock = Any

I64_MAX = 9223372036854775807
I64_MIN = -9223372036854775808


def assert_err(reply: object, text: str) -> None:
    assert isinstance(reply, CommandError), reply
    assert str(reply) == text


def limited(conn: Conn, clock: FakeClock, max_len: int) -> Conn:
    """A connection to a fresh server whose proto-max-bulk-len is ``max_len``."""
    server = ServerState(Config(engine="memory", proto_max_bulk_len=max_len), MemoryEngine(), clock)
    return type(conn)(server)


# -- the command table --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, arity, flags, keys",
    [  # COMMAND INFO <name> on redis-server 7.0.15
        ("setbit", 4, "write denyoom", (1, 1, 1)),
        ("getbit", 3, "readonly fast", (1, 1, 1)),
        ("bitcount", -2, "readonly", (1, 1, 1)),
        ("bitpos", -3, "readonly", (1, 1, 1)),
        ("bitop", -4, "write denyoom", (2, -1, 1)),
        ("bitfield", -2, "write denyoom", (1, 1, 1)),
        ("bitfield_ro", -2, "readonly fast", (1, 1, 1)),
    ],
)
def test_specs_match_command_info(name: str, arity: int, flags: str, keys: tuple[int, int, int]) -> None:
    spec = TABLE.lookup(name.encode())
    assert spec is not None
    assert (spec.arity, spec.flags, (spec.first_key, spec.last_key, spec.step), spec.group) == (
        arity, tuple(flags.split()), keys, "bitmap",
    )


def test_command_info_categories_and_key_flags() -> None:
    from respkv.commands.server import acl_categories, key_spec_flags

    def spec(name: bytes) -> Any:
        found = TABLE.lookup(name)
        assert found is not None
        return found

    assert acl_categories(spec(b"setbit")) == ["@write", "@bitmap", "@slow"]
    assert acl_categories(spec(b"getbit")) == ["@read", "@bitmap", "@fast"]
    assert acl_categories(spec(b"bitfield")) == ["@write", "@bitmap", "@slow"]
    assert key_spec_flags(spec(b"setbit")) == ("RW", "access", "update")
    assert key_spec_flags(spec(b"bitfield")) == ("RW", "access", "update", "variable_flags")
    assert key_spec_flags(spec(b"bitfield_ro")) == ("RO", "access")


# -- SETBIT / GETBIT -----------------------------------------------------------------------------

def test_setbit_getbit_basics(conn: Conn) -> None:
    assert conn("SETBIT", "k", 7, 1) == 0
    assert conn("GET", "k") == b"\x01"
    assert conn("SETBIT", "k", 7, 1) == 1
    assert conn("SETBIT", "k", 0, 1) == 0
    assert conn("GET", "k") == b"\x81"
    assert conn("SETBIT", "k", 7, 0) == 1
    assert conn("GET", "k") == b"\x80"
    assert conn("SETBIT", "k", 20, 1) == 0  # grows with zero bytes
    assert conn("GET", "k") == b"\x80\x00\x08"
    assert conn("SETBIT", "k", 23, 0) == 0
    assert conn("SETBIT", "k", 24, 0) == 0  # clearing a bit past the end still grows
    assert conn("GET", "k") == b"\x80\x00\x08\x00"
    assert [conn("GETBIT", "k", i) for i in (0, 1, 20, 24, 31, 32, 10**9)] == [1, 0, 1, 0, 0, 0, 0]
    assert conn("GETBIT", "nokey", 5) == 0
    assert conn("SETBIT", "new", 0, 0) == 0  # creates the key
    assert conn("GET", "new") == b"\x00"


def test_setbit_on_an_empty_string_and_binary_values(conn: Conn) -> None:
    conn("SET", "e", "")
    assert conn("GETBIT", "e", 0) == 0
    assert conn("SETBIT", "e", 9, 1) == 0
    assert conn("GET", "e") == b"\x00\x40"
    conn("SET", "b", b"\xff\x00")
    assert conn("SETBIT", "b", 3, 0) == 1
    assert conn("GET", "b") == b"\xef\x00"


@pytest.mark.parametrize("offset", [b"-1", b"4294967296", b"abc", b"", b"01", b"+1", b" 1",
                                    b"9223372036854775807", b"9223372036854775808", b"1.0",
                                    b"0\x00", b"#1"])
def test_bad_offsets(conn: Conn, offset: bytes) -> None:
    assert_err(conn("SETBIT", "k", offset, 1), E.BIT_OFFSET)
    assert_err(conn("GETBIT", "k", offset), E.BIT_OFFSET)
    assert conn("EXISTS", "k") == 0


@pytest.mark.parametrize("value", [b"2", b"-1", b"abc", b"01", b"1.0", b"1\x00", b"", b"+1"])
def test_bad_bit_values(conn: Conn, value: bytes) -> None:
    assert_err(conn("SETBIT", "k", 0, value), E.BIT_VALUE)
    assert_err(conn("SETBIT", "k", "abc", value), E.BIT_OFFSET)  # the offset is checked first
    assert conn("EXISTS", "k") == 0


def test_offsets_are_capped_at_proto_max_bulk_len(conn: Conn, clock: FakeClock) -> None:
    # The largest offset of the default 512 MB is valid (reads need no allocation)...
    assert conn("GETBIT", "k", 4294967295) == 0
    assert_err(conn("GETBIT", "k", 4294967296), E.BIT_OFFSET)
    # ...and the cap is proto-max-bulk-len's, checked before anything is allocated.
    small = limited(conn, clock, 16)
    assert small("SETBIT", "k", 127, 1) == 0
    assert small("STRLEN", "k") == 16
    assert_err(small("SETBIT", "k", 128, 1), E.BIT_OFFSET)
    assert_err(small("GETBIT", "k", 128), E.BIT_OFFSET)
    assert_err(small("BITFIELD", "k", "GET", "u8", "#16"), E.BIT_OFFSET)
    assert small("BITFIELD", "k", "GET", "u8", "#15") == [1]
    # BITFIELD checks the offset, not the field's end: an i64 at the last bit grows 8 bytes
    # past the cap, as in Redis.
    assert small("BITFIELD", "n", "SET", "i64", 127, 1) == [0]
    assert small("STRLEN", "n") == 24


def test_setbit_keeps_the_ttl(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "abc", "EX", 100)
    assert conn("SETBIT", "k", 100, 1) == 0
    assert conn("TTL", "k") == 100
    assert conn("BITFIELD", "k", "SET", "u8", 200, 1) == [0]
    assert conn("TTL", "k") == 100
    clock.advance(100_000)
    assert conn("GETBIT", "k", 100) == 0
    assert conn("EXISTS", "k") == 0


def test_a_write_that_changes_nothing_writes_nothing(server: ServerState, make_conn: Any) -> None:
    """WATCH sees what redis-server signals: SETBIT and BITFIELD writes that change no bit (and
    grow nothing) are no modification; a changed bit or a grown string is."""
    a, b = make_conn(), make_conn()
    b("SET", "k", b"\x01")

    def touched(*command: Any) -> bool:
        a("WATCH", "k")
        b(*command)
        dirty = a.client.dirty_cas
        a("UNWATCH")
        a.client.dirty_cas = False
        return dirty

    assert not touched("SETBIT", "k", 7, 1)
    assert touched("SETBIT", "k", 7, 0)
    assert touched("SETBIT", "k", 15, 0)  # grown
    assert not touched("BITFIELD", "k", "SET", "u8", 0, 0)
    assert not touched("BITFIELD", "k", "INCRBY", "u8", 0, 0)
    assert not touched("BITFIELD", "k", "GET", "u8", 0)
    assert not touched("BITFIELD", "k", "OVERFLOW", "FAIL", "SET", "u8", 0, 300)
    assert touched("BITFIELD", "k", "SET", "u8", 0, 1)
    assert touched("BITFIELD", "k", "INCRBY", "u8", 0, 1, "INCRBY", "u8", 0, -1)
    assert touched("BITFIELD", "k", "SET", "u8", 400, 0)  # grown


def test_keyspace_hits_as_redis_counts_them(conn: Conn) -> None:
    stats = conn.client.db.stats
    conn("SET", "k", "x")
    before = dict(stats)
    conn("SETBIT", "k", 1, 1)  # lookupKeyWrite: not counted
    conn("BITFIELD", "k", "SET", "u8", 0, 1)
    assert stats == before
    conn("GETBIT", "k", 1)
    conn("GETBIT", "nokey", 1)
    conn("BITFIELD_RO", "k", "GET", "u8", 0)
    conn("BITOP", "OR", "d", "k", "nokey")
    assert stats["keyspace_hits"] == before["keyspace_hits"] + 3
    assert stats["keyspace_misses"] == before["keyspace_misses"] + 2


# -- BITCOUNT ------------------------------------------------------------------------------------

def test_bitcount(conn: Conn) -> None:
    conn("SET", "s", b"\xff\xf0\x00")
    assert conn("BITCOUNT", "s") == 12
    assert conn("BITCOUNT", "s", 0, -1) == 12
    assert conn("BITCOUNT", "s", -2, -1) == 4
    assert conn("BITCOUNT", "s", -1, -2) == 0
    assert conn("BITCOUNT", "s", 1, 1) == 4
    assert conn("BITCOUNT", "s", 5, 3, "bit") == 0
    assert conn("BITCOUNT", "s", 5, 30, "bit") == 7
    assert conn("BITCOUNT", "s", 4, 11, "BIT") == 8
    assert conn("BITCOUNT", "s", 4, 11, "bYtE") == 0
    assert conn("BITCOUNT", "s", -100, -1, "bit") == 12
    assert conn("BITCOUNT", "s", 9, 9, "bit") == 1
    assert conn("BITCOUNT", "s", 12, 12, "bit") == 0
    assert conn("BITCOUNT", "s", I64_MAX, I64_MIN) == 0
    assert conn("BITCOUNT", "s", I64_MIN, I64_MAX) == 12
    assert conn("BITCOUNT", "s", I64_MIN, I64_MAX, "bit") == 12
    assert conn("BITCOUNT", "s", 0, 1, b"bit\x00") == 2  # strcasecmp stops at the NUL


def test_bitcount_errors_and_missing_keys(conn: Conn) -> None:
    conn("SET", "s", b"\xff")
    assert_err(conn("BITCOUNT", "s", 0), E.SYNTAX)
    assert_err(conn("BITCOUNT", "s", 0, 1, "foo"), E.SYNTAX)
    assert_err(conn("BITCOUNT", "s", 0, 1, "bits"), E.SYNTAX)
    assert_err(conn("BITCOUNT", "s", 1, 2, 3, 4), E.SYNTAX)
    assert_err(conn("BITCOUNT", "s", "a", 1), E.NOT_INTEGER)
    assert_err(conn("BITCOUNT", "s", 0, "abc", "foo"), E.NOT_INTEGER)  # numbers before the unit
    assert_err(conn("BITCOUNT", "s", 0, "9223372036854775808"), E.NOT_INTEGER)
    # 7.0 looks the key up first: a missing key is 0 whatever follows.
    for extra in ([], ["a", "b"], ["0"], ["0", "1", "foo"], ["1", "2", "3", "4"]):
        assert conn("BITCOUNT", "nokey", *extra) == 0
    conn("SET", "e", "")
    assert conn("BITCOUNT", "e") == 0
    assert conn("BITCOUNT", "e", 0, -1, "bit") == 0


# -- BITPOS --------------------------------------------------------------------------------------

def test_bitpos(conn: Conn) -> None:
    conn("SET", "s", b"\xff\xf0\x00")
    cases = [
        ((0,), 12), ((1,), 0), ((0, 1), 12), ((0, 0, 0), -1), ((0, 0, -1), 12), ((0, 1, 1), 12),
        ((0, 12, -1, "bit"), 12), ((0, 0, 7, "bit"), -1), ((0, 0, 7, "BIT"), -1),
        ((0, 3, 7, "bit"), -1), ((0, 3, 100, "bit"), 12), ((1, -5, -1, "bit"), -1),
        ((1, -100, -1, "bit"), 0), ((1, 5, 2), -1), ((1, -1, -2), -1), ((0, 2, -1, "byte"), 16),
        ((0, I64_MIN, I64_MAX, "bit"), 12), ((1, I64_MIN, I64_MAX, "bit"), 0),
        ((1, 0, -1, b"bit\x00"), 0), ((0, 0, -1, "bytE"), 12),
    ]
    for args, expected in cases:
        assert conn("BITPOS", "s", *args) == expected, args
    conn("SET", "ff", b"\xff\xff")
    cases = [((0,), 16), ((0, 0), 16), ((0, 0, -1), -1), ((0, 1), 16), ((0, 0, 100), -1),
             ((0, 0, 15, "bit"), -1), ((0, 100), -1), ((1, 9, 9, "bit"), 9)]
    for args, expected in cases:
        assert conn("BITPOS", "ff", *args) == expected, args
    conn("SET", "e", "")
    for args in ((0,), (1,), (0, 0), (0, 0, -1), (0, 0, -1, "bit"), (1, 0, -1, "bit")):
        assert conn("BITPOS", "e", *args) == -1


def test_bitpos_bit_ranges_over_masked_and_whole_bytes(conn: Conn) -> None:
    conn("SET", "f", b"\xff" * 5)
    cases = [((0, 0, 20), -1), ((0, 0, 8), -1), ((0, 3, 20), -1), ((1, 3, 20), 3),
             ((0, 3, 39), -1), ((0, 3, 40), -1)]
    for args, expected in cases:
        assert conn("BITPOS", "f", *args, "BIT") == expected, args
    conn("SET", "g", b"\xff\xff\xfe\xff\x7f")
    cases = [((0, 3, 20), -1), ((0, 3, 22), -1), ((0, 3, 23), 23), ((0, 24, 32), 32),
             ((0, 25, 39), 32), ((1, 33, 39), 33), ((0, -1, -1), -1), ((0, -8, -1), 32)]
    for args, expected in cases:
        assert conn("BITPOS", "g", *args, "BIT") == expected, args
    # Negative indexes the wrong way round: empty for BITCOUNT, clamped to byte 0 for BITPOS.
    assert conn("BITCOUNT", "g", -5, -6) == 0
    assert conn("BITPOS", "g", 1, -5, -6) == 0
    assert conn("BITPOS", "g", 0, -5, -6) == -1
    assert conn("BITCOUNT", "g", 0, -100) == 8
    assert conn("BITCOUNT", "g", 3, 20, "BIT") == 18


def test_bitpos_errors_and_missing_keys(conn: Conn) -> None:
    conn("SET", "s", b"\xff")
    assert_err(conn("BITPOS", "s", 2), E.BITPOS_BIT)
    assert_err(conn("BITPOS", "nokey", 2), E.BITPOS_BIT)  # the bit before the key
    assert_err(conn("BITPOS", "nokey", "a"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", "01"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", "-0"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", 1, "a"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", 1, 0, "a"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", 0, 3, "bit"), E.NOT_INTEGER)  # BIT needs an end
    assert_err(conn("BITPOS", "s", 1, 0, "abc", "foo"), E.SYNTAX)  # the unit before the end
    assert_err(conn("BITPOS", "s", 1, "abc", 0, "foo"), E.NOT_INTEGER)
    assert_err(conn("BITPOS", "s", 1, 0, 1, b"\x00"), E.SYNTAX)
    assert_err(conn("BITPOS", "s", 1, 0, 1, 2, 3), E.SYNTAX)
    # A missing key is all zeros, before the range is even parsed.
    assert conn("BITPOS", "nokey", 1) == -1
    assert conn("BITPOS", "nokey", 0) == 0
    assert conn("BITPOS", "nokey", 0, "a") == 0
    assert conn("BITPOS", "nokey", 1, 0, 1, "foo") == -1
    assert conn("BITPOS", "nokey", 1, 0, 1, 2, 3) == -1


# -- BITOP ---------------------------------------------------------------------------------------

def test_bitop(conn: Conn) -> None:
    conn("SET", "a", b"\x0f\xf0\xaa")
    conn("SET", "b", b"\xff\x0f")
    assert conn("BITOP", "AND", "d", "a", "b") == 3
    assert conn("GET", "d") == b"\x0f\x00\x00"  # the shorter one is zero-padded
    assert conn("BITOP", "or", "d", "a", "b") == 3
    assert conn("GET", "d") == b"\xff\xff\xaa"
    assert conn("BITOP", "XoR", "d", "a", "b", "a") == 3
    assert conn("GET", "d") == b"\xff\x0f\x00"
    assert conn("BITOP", "NOT", "d", "a") == 3
    assert conn("GET", "d") == b"\xf0\x0f\x55"
    assert conn("BITOP", "AND", "d", "a", "nokey") == 3  # a missing key is an empty string
    assert conn("GET", "d") == b"\x00\x00\x00"
    assert conn("BITOP", "OR", "a", "a", "b") == 3  # the destination may be a source
    assert conn("GET", "a") == b"\xff\xff\xaa"
    assert conn("BITOP", b"and\x00x", "d", "b") == 2  # strcasecmp stops at the NUL
    assert conn("GET", "d") == b"\xff\x0f"


def test_bitop_destination(conn: Conn) -> None:
    conn("SET", "src", b"\x01")
    conn("SET", "d", "x", "EX", 100)
    assert conn("BITOP", "OR", "d", "src") == 1
    assert conn("TTL", "d") == -1  # set like SET: the TTL goes
    assert conn("BITOP", "OR", "d", "nokey", "nokey2") == 0  # nothing: the destination goes
    assert conn("EXISTS", "d") == 0
    conn("SET", "e", "")
    conn("SET", "d", "x")
    assert conn("BITOP", "NOT", "d", "e") == 0
    assert conn("EXISTS", "d") == 0
    assert conn("BITOP", "NOT", "d", "nokey") == 0
    assert conn("EXISTS", "d") == 0


def test_bitop_errors(conn: Conn) -> None:
    assert_err(conn("BITOP", "foo", "d", "a"), E.SYNTAX)
    assert_err(conn("BITOP", "nand", "d", "a"), E.SYNTAX)
    assert_err(conn("BITOP", "not", "d", "a", "b"), E.BITOP_NOT_ONE_SOURCE)
    assert_err(conn("BITOP", "foo", "d"), E.WRONG_ARGS % "bitop")
    assert_err(conn("BITOP", "not", "d"), E.WRONG_ARGS % "bitop")


def test_bitop_on_many_chunks(conn: Conn) -> None:
    """Strings longer than one chunk of the int arithmetic (1 MiB), of different lengths."""
    a = bytes(range(256)) * 9000  # 2.3 MB
    b = b"\x5a" * 1_500_000
    conn("SET", "a", a)
    conn("SET", "b", b)
    assert conn("BITOP", "XOR", "d", "a", "b") == len(a)
    expected = (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")
    assert conn("GET", "d") == expected
    assert conn("BITCOUNT", "d") == int.from_bytes(expected, "big").bit_count()
    assert conn("BITOP", "NOT", "n", "b") == len(b)
    assert conn("GET", "n") == b"\xa5" * len(b)


# -- BITFIELD ------------------------------------------------------------------------------------

def test_bitfield_basics(conn: Conn) -> None:
    assert conn("BITFIELD", "nokey") == []
    assert conn("BITFIELD", "nokey", "GET", "u8", 0) == [0]
    assert conn("EXISTS", "nokey") == 0
    assert conn("BITFIELD", "k", "SET", "u8", 0, 255, "GET", "u8", 0, "GET", "i8", 0, "GET", "u4",
                4, "GET", "i4", 4) == [0, 255, -1, 15, -1]
    assert conn("BITFIELD", "k", "get", "i64", 0) == [-72057594037927936]
    assert conn("BITFIELD", "k", "get", "u63", 0) == [9187343239835811840]
    assert conn("BITFIELD", "k", "get", b"i8\x00x", 0) == [-1]  # the width is read up to a NUL
    assert conn("BITFIELD", "k", "get", "i8", "#1") == [0]
    assert conn("BITFIELD", "k", "get", "i8", 4294967295) == [0]
    assert conn("BITFIELD", "k", "get", "i8", "#536870911") == [0]
    assert conn("BITFIELD", "k", "overflow", "FaiL") == []
    assert conn("BITFIELD", "k", "overflow", "sat", "get", "i8", 0, "overflow", "wrap") == [-1]
    assert conn("BITFIELD", "k", b"get\x00", "u8", 0, "OVERFLOW", b"sat\x00zz") == [255]


def test_bitfield_hash_offsets_multiply_as_int64() -> None:
    """``#n`` is n * width in C int64, which wraps: 2**60 * 64 is 0, a valid offset."""
    server = ServerState(Config(engine="memory"), MemoryEngine(), lambda: 0)
    c = server.new_client()

    def run(*a: Any) -> Any:
        return dispatch(TABLE, c, [x if isinstance(x, bytes) else str(x).encode() for x in a])

    run("SET", "k", b"\xff\x00")
    assert run("BITFIELD", "k", "GET", "i64", "#1152921504606846976") == [-72057594037927936]
    assert run("BITFIELD", "k", "GET", "i64", "#2305843009213693952") == [-72057594037927936]
    assert run("BITFIELD", "k", "GET", "i64", "#-2305843009213693952") == [-72057594037927936]
    for bad in ("#1152921504606846975", "#9223372036854775807", "#-1", "##1", "#", "#01",
                "#-0", "#+1", "#0\x00", "-1", "4294967296", "#536870912x"):
        assert_err(run("BITFIELD", "k", "GET", "i64", bad), E.BIT_OFFSET)
    assert_err(run("BITFIELD", "k", "GET", "i3", "#3074457345618258603"), E.BIT_OFFSET)
    assert_err(run("BITFIELD", "k", "GET", "i8", "#536870912"), E.BIT_OFFSET)


@pytest.mark.parametrize("kind", [b"U8", b"u64", b"i65", b"i0", b"u0", b"i-1", b"i08", b"i+8",
                                  b"", b"i", b"x8", b"\x00i8", b" i8", b"i 8"])
def test_bitfield_bad_types(conn: Conn, kind: bytes) -> None:
    assert_err(conn("BITFIELD", "k", "GET", kind, 0), E.BITFIELD_TYPE)
    assert_err(conn("BITFIELD_RO", "k", "GET", kind, 0), E.BITFIELD_TYPE)


def test_bitfield_parse_errors_in_order(conn: Conn) -> None:
    conn("SET", "k", b"\xff")
    assert_err(conn("BITFIELD", "k", "get"), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "get", "i8"), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "set", "i8", 0), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "incrby", "i8", 0), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "foo"), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "overflow"), E.SYNTAX)
    assert_err(conn("BITFIELD", "k", "overflow", "foo"), E.BITFIELD_OVERFLOW)
    assert_err(conn("BITFIELD", "k", "set", "i8", 0, "abc"), E.NOT_INTEGER)
    assert_err(conn("BITFIELD", "k", "set", "i8", 0, "9223372036854775808"), E.NOT_INTEGER)
    assert_err(conn("BITFIELD", "k", "incrby", "i8", 0, "abc"), E.NOT_INTEGER)
    assert_err(conn("BITFIELD", "k", "get", "i8", 0, "set", "i8", "abc", 1), E.BIT_OFFSET)
    assert_err(conn("BITFIELD", "k", "set", "i8", "abc", 1, "get", "i65", 0), E.BIT_OFFSET)
    assert_err(conn("BITFIELD", "k", "get", "i65", 0, "set", "i8", "abc", 1), E.BITFIELD_TYPE)
    # An error anywhere means nothing ran.
    assert_err(conn("BITFIELD", "k", "set", "u8", 0, 1, "get", "u8"), E.SYNTAX)
    assert conn("GET", "k") == b"\xff"


def test_bitfield_ro(conn: Conn) -> None:
    conn("SET", "k", b"\xff")
    assert conn("BITFIELD_RO", "k", "get", "u8", 0) == [255]
    assert conn("BITFIELD_RO", "k", "overflow", "fail", "get", "u8", 0) == [255]
    assert conn("BITFIELD_RO", "k") == []
    assert conn("BITFIELD_RO", "nokey") == []
    for args in (("set", "u8", 0, 1), ("incrby", "u8", 0, 1), ("get", "u8", 0, "incrby", "u8", 0, 1)):
        assert_err(conn("BITFIELD_RO", "k", *args), E.BITFIELD_RO_GET_ONLY)
    assert_err(conn("BITFIELD_RO", "nokey", "set", "u8", 0, 1), E.BITFIELD_RO_GET_ONLY)
    assert conn("EXISTS", "nokey") == 0
    assert_err(conn("BITFIELD_RO", "k", "set", "u8", "abc", 1), E.BIT_OFFSET)  # parsed first
    assert_err(conn("BITFIELD_RO", "k", "foo"), E.SYNTAX)
    assert conn("GET", "k") == b"\xff"


def test_bitfield_overflow(conn: Conn) -> None:
    def bf(*args: Any) -> Any:
        return conn("BITFIELD", "k", *args)

    assert bf("overflow", "fail", "set", "u8", 0, 300) == [None]
    assert conn("GET", "k") == b"\x00"  # created even though the write failed, as Redis
    assert bf("overflow", "fail", "set", "u8", 100, 300) == [None]
    assert conn("STRLEN", "k") == 14  # grown likewise
    assert bf("set", "u8", 0, 300, "set", "u8", 8, -1, "get", "u16", 0) == [0, 0, 11519]
    assert bf("overflow", "sat", "set", "u8", 0, 300, "set", "u8", 8, -1, "get", "u16", 0) == [
        44, 255, 65535]
    assert bf("overflow", "sat", "set", "i8", 0, 300, "set", "i8", 8, -300, "get", "i16", 0,
              "get", "i8", 0, "get", "i8", 8) == [-1, -1, 32640, 127, -128]
    assert bf("overflow", "wrap", "set", "i8", 0, 300, "set", "i8", 8, -300, "get", "i8", 0,
              "get", "i8", 8) == [127, -128, 44, -44]
    assert bf("overflow", "fail", "set", "i8", 0, 127, "incrby", "i8", 0, 1, "get", "i8", 0,
              "incrby", "i8", 0, -255, "incrby", "i8", 0, -1) == [44, None, 127, -128, None]
    assert bf("overflow", "sat", "set", "i8", 0, 127, "incrby", "i8", 0, 1, "incrby", "i8", 0,
              -255, "incrby", "i8", 0, -1000000) == [-128, 127, -128, -128]
    assert bf("overflow", "wrap", "set", "i8", 0, 127, "incrby", "i8", 0, 1, "incrby", "i8", 0,
              -255, "incrby", "i8", 0, -1000000) == [-128, -128, -127, 65]
    assert bf("set", "u8", 0, 200, "incrby", "u8", 0, 100, "overflow", "sat", "incrby", "u8", 0,
              200, "incrby", "u8", 0, -300, "overflow", "fail", "incrby", "u8", 0, -1) == [
        65, 44, 244, 0, None]


def test_bitfield_64_bit_edges(conn: Conn) -> None:
    def bf(*args: Any) -> Any:
        return conn("BITFIELD", "k", *args)

    conn("SET", "k", b"\x00\xd4" + bytes(12))
    assert bf("set", "i64", 0, I64_MAX, "incrby", "i64", 0, 1, "overflow", "sat", "incrby", "i64",
              0, -1, "incrby", "i64", 0, I64_MAX) == [59672695062659072, I64_MIN, I64_MIN, -1]
    assert bf("overflow", "sat", "set", "i64", 0, I64_MIN, "incrby", "i64", 0, -1, "overflow",
              "wrap", "incrby", "i64", 0, -1) == [-1, I64_MIN, I64_MAX]
    assert bf("overflow", "fail", "set", "i64", 0, I64_MIN, "incrby", "i64", 0, -1, "incrby",
              "i64", 0, 1) == [I64_MAX, None, -I64_MAX]
    conn("SET", "k", b"\x80" + bytes(8))
    assert bf("set", "u63", 0, I64_MAX, "incrby", "u63", 0, 1, "overflow", "sat", "incrby", "u63",
              0, I64_MAX, "incrby", "u63", 0, I64_MIN) == [4611686018427387904, 0, I64_MAX, 0]
    assert bf("overflow", "sat", "set", "u63", 0, -1, "set", "u63", 0, I64_MIN, "overflow",
              "wrap", "set", "u63", 0, -1, "get", "u63", 0) == [0, I64_MAX, I64_MAX, I64_MAX]


def test_bitfield_one_bit_fields(conn: Conn) -> None:
    conn("SET", "k", b"\xe9")
    assert conn("BITFIELD", "k", "set", "u1", 3, 1, "get", "u8", 0, "set", "i1", 4, -1, "get",
                "i1", 4, "get", "u1", 4, "set", "i1", 5, 1, "get", "i1", 5) == [
        0, 249, -1, -1, 1, 0, -1]
    assert conn("BITFIELD", "k", "overflow", "sat", "set", "i1", 5, 1, "get", "i1", 5, "set", "i1",
                6, -5, "get", "i1", 6, "incrby", "i1", 6, -1, "incrby", "u1", 7, 5) == [
        -1, 0, 0, -1, -1, 1]


def test_bitfield_unaligned_reads_past_the_end(conn: Conn) -> None:
    conn("SET", "k", b"\xd4\x00\xff\xf8\x00\x00\x00\x00\x00\x00\x00\x00\x01")
    assert conn("BITFIELD", "k", "get", "i64", 3, "get", "u63", 60, "get", "i64", 100000, "get",
                "u5", 99, "get", "i7", 100) == [-6915277502705303552, 524288, 0, 1, 8]


def test_bitfield_incrby_grows_from_nothing(conn: Conn) -> None:
    assert conn("BITFIELD", "k", "incrby", "u2", 100, 1, "overflow", "sat", "incrby", "u2", 102, 1,
                "get", "u2", 100) == [1, 1, 1]
    assert conn("STRLEN", "k") == 13


# -- the helpers ---------------------------------------------------------------------------------

def test_first_bit_and_popcount_across_scan_chunks() -> None:
    s = bytes(200_000) + b"\x10" + b"\xff" * 70_000 + b"\xef"
    assert first_bit(s, 0, len(s), 1) == 200_000 * 8 + 3
    assert first_bit(s, 200_001, 70_001, 0) == 70_000 * 8 + 3
    assert first_bit(s, 200_001, 70_000, 0) == 70_000 * 8  # none: the first bit after
    assert first_bit(s, 0, 200_000, 1) == -1
    assert first_bit(s, 5, 0, 1) == -1 and first_bit(s, 5, 0, 0) == 0
    assert popcount(s, 0, len(s)) == 1 + 70_000 * 8 + 7
    # Without the last two bytes (0xff, 0xef): 15 bits fewer.
    assert popcount(s * 5, 3, 5 * len(s) - 2) == 5 * (1 + 70_000 * 8 + 7) - 15


def test_string_edit_copies_once_and_pads() -> None:
    edit = StringEdit(b"\x01\x02", 6)
    assert edit.read(0, 16, False) == 0x0102
    edit.write(36, 8, 0xAB)  # spans bytes 4 and 5, past the stored end
    edit.write(4, 4, 0xF)
    assert edit.read(36, 8, False) == 0xAB
    assert edit.value() == b"\x0f\x02\x00\x00\x0a\xb0"
    assert StringEdit(b"abc", 2).value() == b"abc"
    assert StringEdit(b"ab", 4).value() == b"ab\x00\x00"
    assert read_field(b"\x80", 0, 1, True) == -1 and read_field(b"", 60, 64, True) == 0


# -- model: a list of bits -----------------------------------------------------------------------

KEYS = st.sampled_from([b"a", b"b", b"c"])
OFFSETS = st.integers(0, 140)
RANGE_INTS = st.integers(-40, 40)
UNITS = st.sampled_from([None, b"BYTE", b"BIT", b"byte", b"bit"])
FIELD_TYPES = st.tuples(st.booleans(), st.integers(1, 64)).filter(lambda t: t[0] or t[1] < 64)


def to_bits(value: bytes) -> list[int]:
    return [(byte >> (7 - i)) & 1 for byte in value for i in range(8)]


def to_bytes(bits: list[int]) -> bytes:
    return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def resolve(start: int, end: int, length: int) -> tuple[int, int]:
    """Redis's documented range rules: negative from the end, clamped to the string."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    return max(start, 0), min(max(end, 0), length - 1)


class BitsModel(RuleBasedStateMachine):
    """Each key is a plain list of 0/1 ints (or absent); every command's reply is computed on
    that list by the documented rules, bit by bit, and compared with respkv's."""

    def __init__(self) -> None:
        super().__init__()
        self.server = ServerState(Config(engine="memory"), MemoryEngine(), lambda: 0)
        self.client = self.server.new_client()
        self.model: dict[bytes, list[int]] = {}

    def run(self, *args: Any) -> Any:
        raw = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        reply = dispatch(TABLE, self.client, raw)
        assert not isinstance(reply, CommandError), (args, reply)
        return reply

    @rule(key=KEYS, value=st.binary(max_size=12))
    def set(self, key: bytes, value: bytes) -> None:
        assert self.run("SET", key, value) is OK
        self.model[key] = to_bits(value)

    @rule(key=KEYS, value=st.sampled_from([b"\x00" * 5, b"\xff" * 5, b"\x00\xff\x00", b"\x80"]))
    def set_runs(self, key: bytes, value: bytes) -> None:
        self.set(key, value)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.run("DEL", key)
        self.model.pop(key, None)

    @rule(key=KEYS, offset=OFFSETS, on=st.integers(0, 1))
    def setbit(self, key: bytes, offset: int, on: int) -> None:
        bits = self.model.setdefault(key, [])
        if offset >= len(bits):
            bits.extend([0] * ((offset // 8 + 1) * 8 - len(bits)))
        expected = bits[offset]
        bits[offset] = on
        assert self.run("SETBIT", key, offset, on) == expected

    @rule(key=KEYS, offset=st.integers(0, 200))
    def getbit(self, key: bytes, offset: int) -> None:
        bits = self.model.get(key, [])
        assert self.run("GETBIT", key, offset) == (bits[offset] if offset < len(bits) else 0)

    @rule(key=KEYS, start=RANGE_INTS, end=RANGE_INTS, unit=UNITS, whole=st.booleans())
    def bitcount(self, key: bytes, start: int, end: int, unit: bytes | None, whole: bool) -> None:
        bits = self.model.get(key)
        if whole:
            reply = self.run("BITCOUNT", key)
            expected = sum(bits or [])
        else:
            extra = [] if unit is None else [unit]
            reply = self.run("BITCOUNT", key, start, end, *extra)
            expected = 0
            # Two negative indexes the wrong way round are empty, even when clamping would
            # have made them one byte (BITCOUNT only; BITPOS has no such rule).
            if bits is not None and not (start < 0 and end < 0 and start > end):
                in_bits = unit is not None and unit.lower() == b"bit"
                s, e = resolve(start, end, len(bits) if in_bits else len(bits) // 8)
                if not in_bits:
                    s, e = s * 8, e * 8 + 7
                expected = sum(bits[s : e + 1]) if s <= e else 0
        assert reply == expected

    @rule(key=KEYS, bit=st.integers(0, 1), start=st.none() | RANGE_INTS,
          end=st.none() | RANGE_INTS, unit=UNITS)
    def bitpos(self, key: bytes, bit: int, start: int | None, end: int | None,
               unit: bytes | None) -> None:
        args: list[Any] = [bit]
        if start is not None:
            args.append(start)
            if end is not None:
                args.append(end)
                if unit is not None:
                    args.append(unit)
        reply = self.run("BITPOS", key, *args)
        bits = self.model.get(key)
        if bits is None:
            assert reply == (-1 if bit else 0)
            return
        in_bits = len(args) == 4 and unit is not None and unit.lower() == b"bit"
        length = len(bits) if in_bits else len(bits) // 8
        s, e = resolve(args[1] if len(args) > 1 else 0, args[2] if len(args) > 2 else -1, length)
        if s > e:
            assert reply == -1
            return
        if not in_bits:
            s, e = s * 8, e * 8 + 7
        found = next((i for i in range(s, e + 1) if bits[i] == bit), None)
        if found is None:
            # Without an explicit end the string is followed by zeros: a 0 is found there.
            found = e + 1 if bit == 0 and len(args) <= 2 else -1
        assert reply == found

    @rule(key=KEYS, bit=st.integers(0, 1), start=st.integers(0, 45), end=st.integers(0, 45))
    def bitpos_bit_range(self, key: bytes, bit: int, start: int, end: int) -> None:
        """BIT ranges inside the string: masked first and last bytes around whole ones."""
        self.bitpos(key, bit, start, end, b"BIT")

    @rule(op=st.sampled_from([b"AND", b"OR", b"XOR", b"NOT"]), dest=KEYS,
          sources=st.lists(KEYS, min_size=1, max_size=3))
    def bitop(self, op: bytes, dest: bytes, sources: list[bytes]) -> None:
        if op == b"NOT":
            sources = sources[:1]
        values = [self.model.get(k, []) for k in sources]
        size = max(len(v) for v in values)
        padded = [v + [0] * (size - len(v)) for v in values]
        if op == b"NOT":
            result = [1 - b for b in padded[0]]
        else:
            result = padded[0]
            for v in padded[1:]:
                result = [(x & y) if op == b"AND" else (x | y) if op == b"OR" else (x ^ y)
                          for x, y in zip(result, v, strict=True)]
        assert self.run("BITOP", op, dest, *sources) == size // 8
        if size:
            self.model[dest] = result
        else:
            self.model.pop(dest, None)

    def field(self, bits: list[int], offset: int, width: int, signed: bool) -> int:
        chunk = (bits[offset : offset + width] + [0] * width)[:width]
        v = int("".join(map(str, chunk)), 2)
        return v - (1 << width) if signed and chunk[0] else v

    @rule(key=KEYS, ops=st.lists(st.tuples(
        st.sampled_from(["GET", "SET", "INCRBY"]), FIELD_TYPES, st.integers(0, 100),
        st.integers(I64_MIN, I64_MAX) | st.integers(-300, 300),
        st.sampled_from(["WRAP", "SAT", "FAIL"])), max_size=4), read_only=st.booleans())
    def bitfield(self, key: bytes, ops: list[Any], read_only: bool) -> None:
        if read_only:
            ops = [o for o in ops if o[0] == "GET"]
        args: list[Any] = []
        writes = [o for o in ops if o[0] != "GET"]
        bits = list(self.model.get(key, []))
        if writes:
            need = max(off + width for _, (_, width), off, _, _ in writes)
            if need > len(bits):
                bits += [0] * ((need + 7) // 8 * 8 - len(bits))
        expected: list[int | None] = []
        for name, (signed, width), offset, number, overflow in ops:
            kind = b"%s%d" % (b"i" if signed else b"u", width)
            args += ["OVERFLOW", overflow, name, kind, offset]
            old = self.field(bits, offset, width, signed)
            if name == "GET":
                expected.append(old)
                continue
            args.append(number)
            low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            if name == "INCRBY":
                new = old + number
            else:  # an unsigned field takes the int64 as uint64
                new = number if signed else number % (1 << 64)
            if not low <= new <= high:
                if overflow == "FAIL":
                    expected.append(None)
                    continue
                new = (high if new > high else low) if overflow == "SAT" else \
                    (new - low) % (1 << width) + low
            expected.append(new if name == "INCRBY" else old)
            u = new % (1 << width)
            bits[offset : offset + width] = [(u >> (width - 1 - i)) & 1 for i in range(width)]
        assert self.run("BITFIELD_RO" if read_only else "BITFIELD", key, *args) == expected
        if writes:
            self.model[key] = bits

    @invariant()
    def stored_values_match(self) -> None:
        for key in (b"a", b"b", b"c"):
            bits = self.model.get(key)
            got = self.run("GET", key)
            assert got == (None if bits is None else to_bytes(bits))


BitsModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBitsModel = BitsModel.TestCase
