"""String commands against redis-server 7.0.15's replies and error strings (checked on a real
server with redis-cli; see the expected values inline)."""

from __future__ import annotations

from typing import Any

import pytest

from respkv.commands import errors as E
from respkv.commands.core import TABLE, ServerState
from respkv.commands.errors import CommandError
from respkv.config import Config
from respkv.protocol.resp import OK, encode_reply
from respkv.storage.memory import MemoryEngine

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply
FakeClock = Any

I64_MAX = 9223372036854775807
I64_MIN = -9223372036854775808


def err(text: str) -> CommandError:
    return CommandError(text)


def is_err(reply: object, text: str) -> bool:
    return isinstance(reply, CommandError) and str(reply) == text


def assert_err(reply: object, text: str) -> None:
    assert isinstance(reply, CommandError), reply
    assert str(reply) == text


# -- GET / SET (the hot path; options) -------------------------------------------------------------

def test_get_set_basic(conn: Conn) -> None:
    assert conn("GET", "k") is None
    assert conn("SET", "k", "v") is OK
    assert conn("GET", "k") == b"v"


def test_set_repeated_expire_option_last_wins(conn: Conn) -> None:
    # redis-server accepts EX twice (its parser only rejects a *different* unit).
    assert conn("SET", "k", "v", "EX", "10", "EX", "20") is OK
    assert conn("TTL", "k") == 20
    assert conn("SET", "k", "v", "PX", "100", "PX", "2000") is OK
    assert conn("PTTL", "k") == 2000
    assert_err(conn("SET", "k", "v", "EX", "10", "PX", "100"), E.SYNTAX)
    assert_err(conn("SET", "k", "v", "EX", "10", "EX"), E.SYNTAX)
    assert conn("SET", "k", "v", "NX", "NX") is None
    assert conn("SET", "k", "w", "GET", "GET") == b"v"
    assert conn("SET", "k", "v", "KEEPTTL", "KEEPTTL") is OK


def test_set_nx_does_not_count_a_keyspace_hit(conn: Conn) -> None:
    db = conn.client.db
    conn("SET", "k", "v")
    conn("SET", "k", "v", "NX")
    conn("SET", "k", "v", "XX")
    assert db.stats["keyspace_hits"] == 0 and db.stats["keyspace_misses"] == 0
    conn("SET", "k", "v", "GET")
    assert db.stats["keyspace_hits"] == 1


# -- SETNX SETEX PSETEX GETSET GETDEL ----------------------------------------------------------

def test_setnx(conn: Conn) -> None:
    assert conn("SETNX", "k", "1") == 1
    assert conn("SETNX", "k", "2") == 0
    assert conn("GET", "k") == b"1"
    assert_err(conn("SETNX", "k"), "ERR wrong number of arguments for 'setnx' command")


def test_setnx_over_an_expired_key(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "old", "PX", "10")
    clock.advance(10)
    assert conn("SETNX", "k", "new") == 1
    assert conn("GET", "k") == b"new"
    assert conn("TTL", "k") == -1


def test_setex_and_psetex(conn: Conn, clock: FakeClock) -> None:
    assert conn("SETEX", "k", "10", "v") is OK
    assert conn("TTL", "k") == 10
    assert conn("PSETEX", "p", "1500", "v") is OK
    assert conn("PTTL", "p") == 1500
    clock.advance(1500)
    assert conn("GET", "p") is None
    assert conn("GET", "k") == b"v"
    clock.advance(8500)
    assert conn("GET", "k") is None


@pytest.mark.parametrize("name", ["setex", "psetex"])
@pytest.mark.parametrize("arg", ["0", "-1", "9223372036854775807"])
def test_setex_invalid_expire(conn: Conn, name: str, arg: str) -> None:
    assert_err(conn(name, "k", arg, "v"), f"ERR invalid expire time in '{name}' command")
    assert conn("EXISTS", "k") == 0


def test_setex_seconds_overflow_and_not_integer(conn: Conn) -> None:
    assert_err(conn("SETEX", "k", "9223372036854775", "v"), "ERR invalid expire time in 'setex' command")
    assert_err(conn("SETEX", "k", "x", "v"), E.NOT_INTEGER)
    assert_err(conn("PSETEX", "k", "1.5", "v"), E.NOT_INTEGER)
    assert_err(conn("SETEX", "k", "10"), "ERR wrong number of arguments for 'setex' command")


def test_setex_replaces_value_and_ttl(conn: Conn) -> None:
    conn("SET", "k", "a", "EX", "100")
    conn("SETEX", "k", "5", "b")
    assert conn("GET", "k") == b"b"
    assert conn("TTL", "k") == 5


def test_getset(conn: Conn) -> None:
    assert conn("GETSET", "k", "1") is None
    assert conn("GETSET", "k", "2") == b"1"
    assert conn("GET", "k") == b"2"


def test_getset_clears_ttl(conn: Conn) -> None:
    conn("SET", "k", "1", "EX", "100")
    assert conn("GETSET", "k", "2") == b"1"
    assert conn("TTL", "k") == -1


def test_getdel(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "v")
    assert conn("GETDEL", "k") == b"v"
    assert conn("GETDEL", "k") is None
    assert conn("EXISTS", "k") == 0
    conn("SET", "e", "v", "PX", "5")
    clock.advance(5)
    assert conn("GETDEL", "e") is None


# -- GETEX ----------------------------------------------------------------------------------------

def test_getex_without_options_is_get(conn: Conn) -> None:
    conn("SET", "k", "v", "EX", "100")
    assert conn("GETEX", "k") == b"v"
    assert conn("TTL", "k") == 100
    assert conn("GETEX", "missing") is None


def test_getex_sets_each_kind_of_expiry(conn: Conn, clock: FakeClock) -> None:
    now = clock()
    conn("SET", "k", "v")
    assert conn("GETEX", "k", "EX", "10") == b"v"
    assert conn("PTTL", "k") == 10_000
    assert conn("GETEX", "k", "px", "1234") == b"v"
    assert conn("PTTL", "k") == 1234
    assert conn("GETEX", "k", "EXAT", str(now // 1000 + 50)) == b"v"
    assert conn("EXPIRETIME", "k") == now // 1000 + 50
    assert conn("GETEX", "k", "PXAT", str(now + 777)) == b"v"
    assert conn("PEXPIRETIME", "k") == now + 777
    assert conn("GETEX", "k", "EX", "10", "EX", "20") == b"v"  # the last one wins
    assert conn("TTL", "k") == 20
    assert conn("GETEX", "k", "PERSIST") == b"v"
    assert conn("TTL", "k") == -1
    assert conn("GETEX", "k", "PERSIST", "PERSIST") == b"v"


def test_getex_past_absolute_time_deletes_but_returns_value(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert conn("GETEX", "k", "EXAT", "1") == b"v"
    assert conn("EXISTS", "k") == 0
    conn("SET", "k", "v")
    assert conn("GETEX", "k", "PXAT", "1") == b"v"
    assert conn("EXISTS", "k") == 0


@pytest.mark.parametrize(
    "opts",
    [
        ["EX"],
        ["EX", "10", "PX", "10"],
        ["PERSIST", "EX", "1"],
        ["EX", "1", "PERSIST"],
        ["KEEPTTL"],
        ["NX"],
        ["XX"],
        ["GET"],
        ["FOO"],
    ],
)
def test_getex_syntax_errors(conn: Conn, opts: list[str]) -> None:
    conn("SET", "k", "v")
    assert_err(conn("GETEX", "k", *opts), E.SYNTAX)
    assert_err(conn("GETEX", "missing", *opts), E.SYNTAX)  # options are checked first


def test_getex_invalid_times(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert_err(conn("GETEX", "k", "EX", "-1"), "ERR invalid expire time in 'getex' command")
    assert_err(conn("GETEX", "k", "PX", "0"), "ERR invalid expire time in 'getex' command")
    assert_err(conn("GETEX", "k", "EX", "9223372036854775"), "ERR invalid expire time in 'getex' command")
    assert_err(conn("GETEX", "k", "PX", str(I64_MAX)), "ERR invalid expire time in 'getex' command")
    assert_err(conn("GETEX", "k", "EX", "x"), E.NOT_INTEGER)
    # A missing key answers nil before the time is looked at.
    assert conn("GETEX", "missing", "EX", "-1") is None
    assert conn("TTL", "k") == -1


# -- MGET MSET MSETNX ---------------------------------------------------------------------------

def test_mget(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("SET", "b", "2")
    assert conn("MGET", "a", "x", "b", "a") == [b"1", None, b"2", b"1"]
    assert_err(conn("MGET"), "ERR wrong number of arguments for 'mget' command")


def test_mset(conn: Conn) -> None:
    conn("SET", "a", "old", "EX", "100")
    assert conn("MSET", "a", "1", "b", "2", "a", "3") is OK
    assert conn("MGET", "a", "b") == [b"3", b"2"]
    assert conn("TTL", "a") == -1


@pytest.mark.parametrize("name", ["mset", "msetnx"])
def test_mset_wrong_arity(conn: Conn, name: str) -> None:
    msg = f"ERR wrong number of arguments for '{name}' command"
    assert_err(conn(name.upper(), "a"), msg)
    assert_err(conn(name.upper(), "a", "1", "b"), msg)
    assert conn("EXISTS", "a") == 0


def test_msetnx(conn: Conn) -> None:
    assert conn("MSETNX", "a", "1", "b", "2") == 1
    assert conn("MSETNX", "b", "x", "c", "3") == 0
    assert conn("MGET", "a", "b", "c") == [b"1", b"2", None]


# -- INCR DECR INCRBY DECRBY --------------------------------------------------------------------

def test_incr_family(conn: Conn) -> None:
    assert conn("INCR", "n") == 1
    assert conn("INCRBY", "n", "41") == 42
    assert conn("DECR", "n") == 41
    assert conn("DECRBY", "n", "-9") == 50
    assert conn("INCRBY", "n", "-100") == -50
    assert conn("GET", "n") == b"-50"
    assert conn("DECR", "new") == -1


def test_incr_keeps_ttl(conn: Conn) -> None:
    conn("SET", "n", "1", "EX", "100")
    conn("INCR", "n")
    assert conn("TTL", "n") == 100


@pytest.mark.parametrize("value", ["abc", " 1", "1 ", "01", "+1", "-0", "1.5", "", "99999999999999999999"])
def test_incr_not_an_integer(conn: Conn, value: str) -> None:
    conn("SET", "n", value)
    assert_err(conn("INCR", "n"), E.NOT_INTEGER)
    assert conn("GET", "n") == value.encode()


@pytest.mark.parametrize("arg", ["x", "1.0", "", "9223372036854775808", "0x10"])
def test_incrby_bad_increment(conn: Conn, arg: str) -> None:
    assert_err(conn("INCRBY", "n", arg), E.NOT_INTEGER)
    assert_err(conn("DECRBY", "n", arg), E.NOT_INTEGER)
    assert conn("EXISTS", "n") == 0


def test_incr_overflow(conn: Conn) -> None:
    conn("SET", "n", str(I64_MAX))
    assert_err(conn("INCR", "n"), E.OVERFLOW)
    assert_err(conn("INCRBY", "n", "1"), E.OVERFLOW)
    assert conn("GET", "n") == str(I64_MAX).encode()
    conn("SET", "n", "-1")
    assert conn("DECRBY", "n", str(I64_MAX)) == I64_MIN
    assert_err(conn("DECR", "n"), E.OVERFLOW)
    assert conn("INCRBY", "m", str(I64_MIN)) == I64_MIN


def test_decrby_min_int(conn: Conn) -> None:
    conn("SET", "n", "abc")  # checked before the value is read
    assert_err(conn("DECRBY", "n", str(I64_MIN)), "ERR decrement would overflow")


# -- INCRBYFLOAT --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "start, incr, result",
    [
        ("10.5", "0.1", b"10.6"),
        ("10.6", "1e17", b"100000000000000010.6015625"),
        ("0", "-1e-20", b"0"),  # "-0.00000000000000000" trimmed and "-0" made "0"
        ("-0", "-0", b"0"),
        ("1", "0x10", b"17"),
        ("1", "+.5", b"1.5"),
        ("1", "5.", b"6"),
        ("0", "3.814697265625e-06", b"0.00000381469726562"),  # a tie: half to even
        ("0", "0.000003814697265625", b"0.00000381469726562"),
        ("1", "2.0000000000000000001e-18", b"1"),
        ("0", "1.5e308", b"149999999999999999999901476489468468031016840965060944967133685421180106066691046036756664728216022031902928370522024964340854582506645209487860806577896175175227643677561112877760303256738896516844124921428435196017215141331511736789270744288327321353040504243421434090049846615188904452633296864511849922560"),
        ("5", "-5", b"0"),
        ("3.0", "0.1", b"3.1"),
        ("1e3", "0", b"1000"),
        ("0x1p-3", "0X.8P1", b"1.125"),
    ],
)
def test_incrbyfloat_matches_long_double(conn: Conn, start: str, incr: str, result: bytes) -> None:
    conn("SET", "f", start)
    assert conn("INCRBYFLOAT", "f", incr) == result
    assert conn("GET", "f") == result


def test_incrbyfloat_huge_values_print_in_full(conn: Conn) -> None:
    out = conn("INCRBYFLOAT", "f", "1e4931")
    assert isinstance(out, bytes) and len(out) == 4932 and out.startswith(b"10000000000000000000060189")
    assert conn("INCRBYFLOAT", "f", "3e-17") == out  # far below the precision


def test_incrbyfloat_missing_key_and_ttl(conn: Conn) -> None:
    assert conn("INCRBYFLOAT", "f", "2.5") == b"2.5"
    conn("EXPIRE", "f", "100")
    assert conn("INCRBYFLOAT", "f", "-0.5") == b"2"
    assert conn("TTL", "f") == 100


@pytest.mark.parametrize(
    "arg", ["nan", "x", " 1", "1 ", "1e5000", "1e-5000", ".", "1e", "0x", "1_0", "1\x00abc", "", "1" * 5120]
)
def test_incrbyfloat_invalid_increment(conn: Conn, arg: str) -> None:
    conn("SET", "f", "1")
    assert_err(conn("INCRBYFLOAT", "f", arg), E.NOT_FLOAT)
    assert conn("GET", "f") == b"1"


@pytest.mark.parametrize("value", ["abc", "nan", " 1", "1e9999"])
def test_incrbyfloat_invalid_value(conn: Conn, value: str) -> None:
    conn("SET", "f", value)
    assert_err(conn("INCRBYFLOAT", "f", "1"), E.NOT_FLOAT)


@pytest.mark.parametrize("start, incr", [("1", "inf"), ("1", "-Infinity"), ("inf", "1"), ("1.18e4932", "1e4931")])
def test_incrbyfloat_infinity(conn: Conn, start: str, incr: str) -> None:
    conn("SET", "f", start)
    assert_err(conn("INCRBYFLOAT", "f", incr), E.INCR_NAN)
    assert conn("GET", "f") == start.encode()


# -- APPEND STRLEN ------------------------------------------------------------------------------

def test_append_and_strlen(conn: Conn) -> None:
    assert conn("STRLEN", "k") == 0
    assert conn("APPEND", "k", "hello") == 5
    assert conn("APPEND", "k", " world") == 11
    assert conn("GET", "k") == b"hello world"
    assert conn("STRLEN", "k") == 11
    assert conn("APPEND", "e", "") == 0
    assert conn("EXISTS", "e") == 1  # APPEND creates the key even when empty


def test_append_keeps_ttl(conn: Conn) -> None:
    conn("SET", "k", "a", "EX", "100")
    conn("APPEND", "k", "b")
    assert conn("TTL", "k") == 100


def limited(conn: Conn, clock: FakeClock, max_len: int) -> Conn:
    """A connection to a fresh server whose proto-max-bulk-len is ``max_len``."""
    server = ServerState(Config(engine="memory", proto_max_bulk_len=max_len), MemoryEngine(), clock)
    return type(conn)(server)


def test_append_limit(conn: Conn, clock: FakeClock) -> None:
    conn = limited(conn, clock, 10)
    conn("SET", "k", "12345")
    assert conn("APPEND", "k", "67890") == 10
    assert_err(conn("APPEND", "k", "x"), E.STRING_TOO_LONG)
    assert conn("GET", "k") == b"1234567890"


# -- GETRANGE SUBSTR SETRANGE -------------------------------------------------------------------

@pytest.mark.parametrize(
    "start, end, result",
    [
        (0, -1, b"hello"),
        (-3, -1, b"llo"),
        (-1, -3, b""),
        (10, 20, b""),
        (-100, 2, b"hel"),
        (3, 1, b""),
        (0, I64_MAX, b"hello"),
        (I64_MIN, I64_MIN, b"h"),
        (1, 1, b"e"),
        (4, 100, b"o"),
    ],
)
def test_getrange(conn: Conn, start: int, end: int, result: bytes) -> None:
    conn("SET", "k", "hello")
    assert conn("GETRANGE", "k", start, end) == result
    assert conn("SUBSTR", "k", start, end) == result


def test_getrange_missing_empty_and_errors(conn: Conn) -> None:
    assert conn("GETRANGE", "missing", "0", "1") == b""
    conn("SET", "e", "")
    assert conn("GETRANGE", "e", "0", "-1") == b""
    assert conn("GETRANGE", "e", "-1", "0") == b""
    assert_err(conn("GETRANGE", "missing", "x", "1"), E.NOT_INTEGER)
    assert_err(conn("GETRANGE", "e", "0", "9223372036854775808"), E.NOT_INTEGER)
    assert_err(conn("SUBSTR", "e", "0"), "ERR wrong number of arguments for 'substr' command")


def test_setrange(conn: Conn) -> None:
    conn("SET", "k", "hello")
    assert conn("SETRANGE", "k", "1", "EY") == 5
    assert conn("GET", "k") == b"hEYlo"
    assert conn("SETRANGE", "k", "7", "X") == 8
    assert conn("GET", "k") == b"hEYlo\x00\x00X"
    assert conn("SETRANGE", "k", "1", "") == 8
    assert conn("SETRANGE", "new", "2", "ab") == 4
    assert conn("GET", "new") == b"\x00\x00ab"


def test_setrange_empty_value_on_missing_key_creates_nothing(conn: Conn) -> None:
    assert conn("SETRANGE", "k", "0", "") == 0
    assert conn("SETRANGE", "k", str(I64_MAX), "") == 0
    assert conn("EXISTS", "k") == 0


def test_setrange_errors(conn: Conn) -> None:
    conn("SET", "k", "v", "EX", "100")
    assert_err(conn("SETRANGE", "k", "-1", "x"), E.OFFSET_OUT_OF_RANGE)
    assert_err(conn("SETRANGE", "k", "x", "x"), E.NOT_INTEGER)
    assert_err(conn("SETRANGE", "k", "536870912", "x"), E.STRING_TOO_LONG)
    assert_err(conn("SETRANGE", "n", str(I64_MAX), "x"), E.STRING_TOO_LONG)
    assert conn("SETRANGE", "k", "0", "w") == 1
    assert conn("TTL", "k") == 100  # kept


def test_setrange_limit_boundary(conn: Conn, clock: FakeClock) -> None:
    conn = limited(conn, clock, 8)
    assert conn("SETRANGE", "k", "7", "x") == 8
    assert_err(conn("SETRANGE", "k", "8", "x"), E.STRING_TOO_LONG)


# -- the command table --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, arity, flags, keys",
    [
        ("setnx", 3, "write denyoom fast", (1, 1, 1)),
        ("setex", 4, "write denyoom", (1, 1, 1)),
        ("psetex", 4, "write denyoom", (1, 1, 1)),
        ("getset", 3, "write denyoom fast", (1, 1, 1)),
        ("getdel", 2, "write fast", (1, 1, 1)),
        ("getex", -2, "write fast", (1, 1, 1)),
        ("mget", -2, "readonly fast", (1, -1, 1)),
        ("mset", -3, "write denyoom", (1, -1, 2)),
        ("msetnx", -3, "write denyoom", (1, -1, 2)),
        ("incr", 2, "write denyoom fast", (1, 1, 1)),
        ("decrby", 3, "write denyoom fast", (1, 1, 1)),
        ("incrbyfloat", 3, "write denyoom fast", (1, 1, 1)),
        ("append", 3, "write denyoom fast", (1, 1, 1)),
        ("strlen", 2, "readonly fast", (1, 1, 1)),
        ("getrange", 4, "readonly", (1, 1, 1)),
        ("substr", 4, "readonly", (1, 1, 1)),
        ("setrange", 4, "write denyoom", (1, 1, 1)),
    ],
)
def test_specs_match_command_info(name: str, arity: int, flags: str, keys: tuple[int, int, int]) -> None:
    spec = TABLE.lookup(name.encode())
    assert spec is not None
    assert (spec.arity, spec.flags, (spec.first_key, spec.last_key, spec.step)) == (
        arity, tuple(flags.split()), keys,
    )
    assert spec.group == "string"


def test_mset_key_positions(conn: Conn) -> None:
    spec = TABLE.lookup(b"mset")
    assert spec is not None
    assert list(spec.key_positions(7)) == [1, 3, 5]


def test_replies_encode() -> None:
    assert encode_reply(err(E.DECR_OVERFLOW)) == b"-ERR decrement would overflow\r\n"
    assert is_err(err(E.NOT_FLOAT), E.NOT_FLOAT)
