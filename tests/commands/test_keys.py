"""Keyspace commands against redis-server 7.0.15's replies and error strings (expected values
checked on a real server), the Redis glob matcher, and SCAN's guarantee under writes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from respkv.commands import errors as E
from respkv.commands.core import TABLE, ServerState
from respkv.commands.errors import CommandError
from respkv.commands.keys import glob_literal_prefix, parse_scan_cursor, stringmatch
from respkv.commands.keyspace import (
    RANDOM_KEY_LOOKAHEAD,
    RANDOM_KEY_TRIES,
    SCAN_CURSORS_KEPT,
    key_successor,
)
from respkv.config import Config
from respkv.protocol.resp import OK
from respkv.storage.memory import MemoryEngine

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply
FakeClock = Any

I64_MAX = 9223372036854775807


def assert_err(reply: object, text: str) -> None:
    assert isinstance(reply, CommandError), reply
    assert str(reply) == text


def scan_all(conn: Conn, *opts: str) -> tuple[list[bytes], int]:
    """Every key a full SCAN returns (with repeats), and the number of calls."""
    cursor: bytes = b"0"
    out: list[bytes] = []
    calls = 0
    while True:
        reply = conn("SCAN", cursor, *opts)
        assert isinstance(reply, list), reply
        cursor, page = reply
        out += page
        calls += 1
        if cursor == b"0":
            return out, calls


# -- DEL UNLINK EXISTS TOUCH TYPE -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["DEL", "UNLINK"])
def test_del_counts_distinct_deleted_keys(conn: Conn, clock: FakeClock, name: str) -> None:
    conn("MSET", "a", "1", "b", "2")
    conn("SET", "gone", "x", "PX", "5")
    clock.advance(5)
    assert conn(name, "a", "a", "b", "c", "gone") == 2
    assert conn("EXISTS", "a", "b") == 0
    assert_err(conn(name), f"ERR wrong number of arguments for '{name.lower()}' command")


def test_exists_and_touch_count_repeats(conn: Conn) -> None:
    conn("SET", "a", "1")
    assert conn("EXISTS", "a", "a", "b") == 2
    assert conn("TOUCH", "a", "a", "b") == 2
    assert conn("EXISTS", "b") == 0
    assert_err(conn("EXISTS"), "ERR wrong number of arguments for 'exists' command")


def test_exists_counts_keyspace_hits_and_misses(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("EXISTS", "a", "b")
    assert conn.client.db.stats["keyspace_hits"] == 1
    assert conn.client.db.stats["keyspace_misses"] == 1


def test_exists_after_expiry(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "a", "1", "PX", "100")
    clock.advance(99)
    assert conn("EXISTS", "a") == 1
    clock.advance(1)
    assert conn("EXISTS", "a") == 0


def test_type(conn: Conn) -> None:
    conn("SET", "a", "1")
    assert conn("TYPE", "a") == "string"
    assert conn("TYPE", "nope") == "none"
    assert type(conn("TYPE", "a")).__name__ == "SimpleString"


# -- EXPIRE family --------------------------------------------------------------------------------

def test_expire_and_ttl(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "v")
    assert conn("TTL", "k") == -1
    assert conn("PTTL", "k") == -1
    assert conn("EXPIRETIME", "k") == -1
    assert conn("PEXPIRETIME", "k") == -1
    assert conn("EXPIRE", "k", "10") == 1
    assert conn("TTL", "k") == 10
    assert conn("PTTL", "k") == 10_000
    assert conn("PEXPIRETIME", "k") == clock() + 10_000
    clock.advance(9_999)
    assert conn("PTTL", "k") == 1
    assert conn("TTL", "k") == 0
    clock.advance(1)
    assert conn("GET", "k") is None
    assert conn("TTL", "k") == -2
    assert conn("PTTL", "k") == -2
    assert conn("EXPIRETIME", "k") == -2
    assert conn("PEXPIRETIME", "k") == -2


def test_ttl_rounds_to_nearest_second(conn: Conn) -> None:
    conn("SET", "k", "v")
    conn("PEXPIRE", "k", "1500")
    assert conn("TTL", "k") == 2
    conn("PEXPIRE", "k", "1499")
    assert conn("TTL", "k") == 1


def test_expire_variants(conn: Conn, clock: FakeClock) -> None:
    now = clock()
    conn("SET", "k", "v")
    assert conn("PEXPIRE", "k", "1234") == 1
    assert conn("PEXPIRETIME", "k") == now + 1234
    assert conn("EXPIREAT", "k", str(now // 1000 + 100)) == 1
    assert conn("PEXPIRETIME", "k") == (now // 1000 + 100) * 1000
    assert conn("EXPIRETIME", "k") == now // 1000 + 100
    assert conn("PEXPIREAT", "k", str(now + 5)) == 1
    assert conn("PTTL", "k") == 5


def test_expire_keeps_value_and_missing_key_is_zero(conn: Conn) -> None:
    conn("SET", "k", "v")
    conn("EXPIRE", "k", "100")
    assert conn("GET", "k") == b"v"
    assert conn("EXPIRE", "nokey", "10") == 0
    assert conn("EXISTS", "nokey") == 0


@pytest.mark.parametrize(
    "cmd, arg",
    [("EXPIRE", "0"), ("EXPIRE", "-5"), ("PEXPIRE", "0"), ("PEXPIRE", "-5"), ("EXPIREAT", "1"),
     ("PEXPIREAT", "1"), ("EXPIRE", "-9223372036854775")],
)
def test_expire_in_the_past_deletes(conn: Conn, cmd: str, arg: str) -> None:
    conn("SET", "k", "v", "EX", "100")
    assert conn(cmd, "k", arg) == 1
    assert conn("EXISTS", "k") == 0
    assert conn(cmd, "k", arg) == 0


def test_pexpireat_now_deletes(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "v")
    assert conn("PEXPIREAT", "k", str(clock())) == 1
    assert conn("EXISTS", "k") == 0


def test_expire_option_errors(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert_err(conn("EXPIRE", "k", "10", "nx", "xx"), E.NX_XX_GT_LT)
    assert_err(conn("EXPIRE", "k", "10", "NX", "GT"), E.NX_XX_GT_LT)
    assert_err(conn("EXPIRE", "k", "10", "nx", "lt"), E.NX_XX_GT_LT)
    assert_err(conn("EXPIRE", "k", "10", "gt", "lt"), E.GT_LT_NX)
    assert_err(conn("EXPIRE", "k", "10", "Foo"), "ERR Unsupported option Foo")
    # Options are parsed before the time.
    assert_err(conn("EXPIRE", "k", "x", "foo"), "ERR Unsupported option foo")
    assert_err(conn("EXPIRE", "k", "x", "nx", "xx"), E.NX_XX_GT_LT)
    assert_err(conn("EXPIRE", "k", "x"), E.NOT_INTEGER)
    assert_err(conn("EXPIRE", "nokey", "x"), E.NOT_INTEGER)
    assert_err(conn("EXPIRE", "k"), "ERR wrong number of arguments for 'expire' command")
    assert conn("TTL", "k") == -1


@pytest.mark.parametrize(
    "cmd, arg",
    [("EXPIRE", "9223372036854776"), ("EXPIRE", "-9223372036854776"), ("PEXPIRE", str(I64_MAX)),
     ("EXPIREAT", "9223372036854776")],
)
def test_expire_overflow(conn: Conn, cmd: str, arg: str) -> None:
    conn("SET", "k", "v")
    assert_err(conn(cmd, "k", arg), f"ERR invalid expire time in '{cmd.lower()}' command")
    assert conn("TTL", "k") == -1


def test_pexpireat_max(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "v")
    assert conn("PEXPIREAT", "k", str(I64_MAX)) == 1
    assert conn("PEXPIRETIME", "k") == I64_MAX
    assert conn("EXPIRETIME", "k") == 9223372036854776
    assert conn("PTTL", "k") == I64_MAX - clock()


def test_expire_nx_xx(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert conn("EXPIRE", "k", "10", "XX") == 0
    assert conn("TTL", "k") == -1
    assert conn("EXPIRE", "k", "10", "NX") == 1
    assert conn("EXPIRE", "k", "20", "NX") == 0
    assert conn("TTL", "k") == 10
    assert conn("EXPIRE", "k", "30", "XX") == 1
    assert conn("TTL", "k") == 30
    assert conn("EXPIRE", "nokey", "10", "NX") == 0


def test_expire_gt_lt(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert conn("EXPIRE", "k", "100", "GT") == 0  # no TTL counts as infinite
    assert conn("EXPIRE", "k", "100", "LT") == 1
    assert conn("EXPIRE", "k", "50", "XX", "LT") == 1
    assert conn("EXPIRE", "k", "60", "LT") == 0
    assert conn("EXPIRE", "k", "50", "GT") == 0  # equal is not greater
    assert conn("EXPIRE", "k", "60", "GT") == 1
    assert conn("TTL", "k") == 60


def test_expire_negative_with_gt_lt(conn: Conn) -> None:
    conn("SET", "k", "v")
    assert conn("EXPIRE", "k", "-5", "GT") == 0
    assert conn("EXISTS", "k") == 1
    assert conn("EXPIRE", "k", "-5", "LT") == 1
    assert conn("EXISTS", "k") == 0


def test_persist(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "k", "v", "EX", "10")
    assert conn("PERSIST", "k") == 1
    assert conn("PERSIST", "k") == 0
    assert conn("PERSIST", "nokey") == 0
    assert conn("TTL", "k") == -1
    clock.advance(20_000)
    assert conn("GET", "k") == b"v"


def test_active_expiry_sees_new_ttls(conn: Conn, clock: FakeClock) -> None:
    db = conn.client.db
    conn("SET", "k", "v")
    conn("EXPIRE", "k", "10")
    conn("SET", "p", "v", "EX", "5")
    conn("PERSIST", "p")
    clock.advance(10_000)
    assert db.active_expire_cycle(20) == 1
    assert db.engine.get(db.prefix + b"k") is None
    assert conn("GET", "p") == b"v"


# -- RENAME RENAMENX ----------------------------------------------------------------------------

def test_rename(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("SET", "b", "2")
    assert conn("RENAME", "a", "b") is OK
    assert conn("MGET", "a", "b") == [None, b"1"]
    assert conn("RENAME", "b", "c") is OK
    assert conn("GET", "c") == b"1"


def test_rename_moves_ttl_and_clears_destination_ttl(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "a", "1")
    conn("PEXPIRE", "a", "100000")
    assert conn("RENAME", "a", "b") is OK
    assert conn("PTTL", "b") == 100000
    conn("SET", "c", "3")
    conn("SET", "d", "4", "EX", "5")
    assert conn("RENAME", "c", "d") is OK
    assert conn("TTL", "d") == -1
    clock.advance(100_000)
    assert conn.client.db.active_expire_cycle(20) == 1  # the TTL index followed the rename
    assert conn("EXISTS", "b") == 0


def test_rename_errors_and_same_key(conn: Conn) -> None:
    assert_err(conn("RENAME", "nokey", "x"), E.NO_SUCH_KEY)
    assert_err(conn("RENAME", "nokey", "nokey"), E.NO_SUCH_KEY)
    assert_err(conn("RENAMENX", "nokey", "x"), E.NO_SUCH_KEY)
    conn("SET", "k", "v", "EX", "100")
    assert conn("RENAME", "k", "k") is OK
    assert conn("RENAMENX", "k", "k") == 0
    assert conn("TTL", "k") == 100


def test_renamenx(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("SET", "b", "2")
    assert conn("RENAMENX", "a", "b") == 0
    assert conn("MGET", "a", "b") == [b"1", b"2"]
    assert conn("RENAMENX", "a", "c") == 1
    assert conn("MGET", "a", "c") == [None, b"1"]


def test_rename_over_expired_source(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "a", "1", "PX", "10")
    clock.advance(10)
    assert_err(conn("RENAME", "a", "b"), E.NO_SUCH_KEY)


# -- glob patterns -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "pattern, string, expected",
    [
        (b"*", b"anything", True),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h*llo", b"hllo", True),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hallo", True),  # a reversed range is swapped
        (b"h[a-b]llo", b"hcllo", False),
        (b"h\\*llo", b"h*llo", True),
        (b"h\\*llo", b"hello", False),
        (b"[\\]]", b"]", True),
        (b"[]a]", b"a", False),  # "[]" is an empty class; "a]" follows
        (b"[]a]", b"]a]", False),
        (b"[a-]", b"_", True),  # a range up to ']': the class then runs on
        (b"[abc", b"b", True),  # unterminated class ends with the pattern
        (b"[", b"[", False),
        (b"[^", b"x", True),
        (b"\\", b"\\", True),
        (b"a\\", b"a\\", True),
        (b"*", b"", False),  # Redis never enters its loop for an empty string
        (b"", b"", True),
        (b"", b"a", False),
        (b"a*", b"a", True),
        (b"a**b", b"ab", True),
        (b"*a*b*c*", b"xxaxxbxxcxx", True),
        (b"*a*b*c*", b"xxaxxcxxbxx", False),
        (b"[a-\xff]", b"\x00", True),  # signed chars: \xff is -1
        (b"[a-\xff]", b"\x80", False),
        (b"?", b"\n", True),
        (b"*" * 2000 + b"x", b"a" * 100 + b"x", True),
    ],
)
def test_stringmatch(pattern: bytes, string: bytes, expected: bool) -> None:
    assert stringmatch(pattern, string) is expected


def test_stringmatch_no_exponential_blowup() -> None:
    pattern = b"a*" * 30 + b"b"
    assert stringmatch(pattern, b"a" * 200) is False  # instant with leftmost placement


@pytest.mark.parametrize(
    "pattern, prefix",
    [(b"user:*", b"user:"), (b"a\\*b*", b"a*b"), (b"*x", b""), (b"ab?", b"ab"), (b"ab[c]", b"ab"),
     (b"abc", b"abc"), (b"ab\\", b"ab\\")],
)
def test_glob_literal_prefix(pattern: bytes, prefix: bytes) -> None:
    assert glob_literal_prefix(pattern) == prefix


def test_key_successor() -> None:
    assert key_successor(b"ab") == b"ac"
    assert key_successor(b"a\xff") == b"b"
    assert key_successor(b"\xff\xff") is None


# -- KEYS -------------------------------------------------------------------------------------------

def test_keys(conn: Conn, clock: FakeClock) -> None:
    conn("MSET", "user:1", "a", "user:2", "b", "usr", "c", "", "empty")
    conn("SET", "user:3", "x", "PX", "5")
    clock.advance(5)
    assert sorted(conn("KEYS", "*")) == [b"", b"user:1", b"user:2", b"usr"]  # type: ignore[type-var]
    assert sorted(conn("KEYS", "user:*")) == [b"user:1", b"user:2"]  # type: ignore[type-var]
    assert sorted(conn("KEYS", "u*r*")) == [b"user:1", b"user:2", b"usr"]  # type: ignore[type-var]
    assert conn("KEYS", "**") == [b"user:1", b"user:2", b"usr"]  # "" only matches "*" itself
    assert conn("KEYS", "") == [b""]
    assert conn("KEYS", "nomatch*") == []


def test_keys_only_current_db(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("SELECT", "1")
    conn("SET", "b", "1")
    assert conn("KEYS", "*") == [b"b"]


# -- SCAN -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "arg, cursor",
    [("0", 0), ("", 0), ("+0", 0), ("-1", 2**64 - 1), ("18446744073709551615", 2**64 - 1),
     ("007", 7), ("5\x00junk", 5), ("-18446744073709551615", 1)],
)
def test_parse_scan_cursor(arg: str, cursor: int) -> None:
    assert parse_scan_cursor(arg.encode()) == cursor


@pytest.mark.parametrize("arg", ["x", " 0", "0 ", "18446744073709551616", "-", "+", "0x1", "1.0"])
def test_scan_invalid_cursor(conn: Conn, arg: str) -> None:
    assert_err(conn("SCAN", arg), E.INVALID_CURSOR)
    assert_err(conn("SCAN", arg, "COUNT", "0"), E.INVALID_CURSOR)  # the cursor is checked first


@pytest.mark.parametrize(
    "opts, error",
    [(["COUNT", "0"], E.SYNTAX), (["COUNT", "-1"], E.SYNTAX), (["COUNT", "x"], E.NOT_INTEGER),
     (["COUNT"], E.SYNTAX), (["MATCH"], E.SYNTAX), (["TYPE"], E.SYNTAX), (["foo", "bar"], E.SYNTAX),
     (["COUNT", "1", "COUNT"], E.SYNTAX)],
)
def test_scan_option_errors(conn: Conn, opts: list[str], error: str) -> None:
    assert_err(conn("SCAN", "0", *opts), error)


def test_scan_small_db_in_one_call(conn: Conn) -> None:
    conn("MSET", "a", "1", "b", "2", "c", "3")
    assert conn("SCAN", "0") == [b"0", [b"a", b"b", b"c"]]
    assert conn("SCAN", "0", "TYPE", "STRING") == [b"0", [b"a", b"b", b"c"]]
    assert conn("SCAN", "0", "type", "hash") == [b"0", []]
    assert conn("SCAN", "0", "type", "foo") == [b"0", []]
    assert conn("SCAN", "0", "MATCH", "[ab]") == [b"0", [b"a", b"b"]]
    assert conn("SCAN", "0", "MATCH", "*") == [b"0", [b"a", b"b", b"c"]]


def test_scan_pages_with_count(conn: Conn) -> None:
    for i in range(25):
        conn("SET", f"k{i:02d}", "v")
    cursor, page = conn("SCAN", "0", "COUNT", "10")  # type: ignore[misc]
    assert cursor != b"0" and len(page) == 10
    got, calls = scan_all(conn, "COUNT", "10")
    assert sorted(got) == [b"k%02d" % i for i in range(25)]
    assert calls == 3


def test_scan_match_with_prefix(conn: Conn) -> None:
    for i in range(30):
        conn("SET", f"a:{i}", "v")
        conn("SET", f"b:{i}", "v")
    got, _ = scan_all(conn, "MATCH", "b:*", "COUNT", "7")
    assert sorted(got) == sorted(b"b:%d" % i for i in range(30))
    got, _ = scan_all(conn, "MATCH", "*:1?", "COUNT", "7")
    assert len(got) == 20


def test_scan_skips_expired_keys(conn: Conn, clock: FakeClock) -> None:
    conn("SET", "a", "1")
    conn("SET", "b", "1", "PX", "5")
    clock.advance(5)
    assert conn("SCAN", "0") == [b"0", [b"a"]]


def test_scan_same_cursor_twice_gives_same_page(conn: Conn) -> None:
    for i in range(20):
        conn("SET", f"k{i:02d}", "v")
    cursor, first = conn("SCAN", "0", "COUNT", "5")  # type: ignore[misc]
    again = conn("SCAN", cursor, "COUNT", "5")[1]  # type: ignore[index]
    assert again == conn("SCAN", cursor, "COUNT", "5")[1]  # type: ignore[index]
    assert not set(again) & set(first)
    assert conn("SCAN", cursor, "COUNT", "5")[1][0] == b"k05"  # type: ignore[index]


def test_scan_guarantee_under_writes(conn: Conn) -> None:
    """Keys present for the whole scan are all returned, whatever is added or deleted."""
    rng = random.Random(5)
    stable = {b"s%03d" % i for i in range(150)}
    for k in stable:
        conn("SET", k, "v")
    seen: set[bytes] = set()
    cursor: bytes = b"0"
    n = 0
    while True:
        cursor, page = conn("SCAN", cursor, "COUNT", "7")  # type: ignore[misc]
        seen.update(page)
        for _ in range(5):
            k = b"%s%03d" % (rng.choice([b"a", b"s", b"t", b"z"]), rng.randrange(1000))
            if k in stable:
                continue
            if rng.random() < 0.5:
                conn("SET", k, "x")
            else:
                conn("DEL", k)
        n += 1
        if cursor == b"0":
            break
    assert stable <= seen
    assert n > 20


def test_scan_forgotten_cursor_still_skips_nothing(conn: Conn) -> None:
    keys = [b"key:%04d" % i for i in range(40)]  # six shared bytes: cursors need the registry
    for k in keys:
        conn("SET", k, "v")
    cursor, page = conn("SCAN", "0", "COUNT", "10")  # type: ignore[misc]
    assert int(cursor) & 0xFFFF  # a registry cursor
    seen = list(page)
    conn.client.db._scan_cursors.clear()  # as if SCAN_CURSORS_KEPT newer cursors pushed it out
    while cursor != b"0":
        cursor, page = conn("SCAN", cursor, "COUNT", "10")  # type: ignore[misc]
        seen += page
    assert set(seen) == set(keys)
    assert len(seen) > len(keys)  # the forgotten cursor restarted at "key:00": repeats


def test_scan_stateless_cursors_need_no_registry(conn: Conn) -> None:
    keys = [b"%03d" % i for i in range(50)]
    for k in keys:
        conn("SET", k, "v")
    seen: list[bytes] = []
    cursor: bytes = b"0"
    while True:
        conn.client.db._scan_cursors.clear()
        cursor, page = conn("SCAN", cursor, "COUNT", "7")  # type: ignore[misc]
        seen += page
        if cursor == b"0":
            break
        assert int(cursor) & 0xFFFF == 0
    assert seen == keys  # exact: no repeats, in key order


def test_scan_cursor_registry_is_bounded(conn: Conn) -> None:
    conn("MSET", "aaaaaa1", "1", "aaaaaa2", "2")
    for _ in range(SCAN_CURSORS_KEPT + 50):
        conn("SCAN", "0", "COUNT", "1")
    assert len(conn.client.db._scan_cursors) == SCAN_CURSORS_KEPT


def test_scan_cursor_fits_in_64_bits_and_is_not_zero(conn: Conn) -> None:
    conn("MSET", "\xff" * 10, "1", "\xff" * 11, "2", "", "3")
    cursor, _ = conn("SCAN", "0", "COUNT", "1")  # type: ignore[misc]
    assert 0 < int(cursor) < 2**64
    got, _ = scan_all(conn, "COUNT", "1")
    assert sorted(got) == sorted([b"", "\xff".encode() * 10, "\xff".encode() * 11])


# -- RANDOMKEY DBSIZE FLUSHDB FLUSHALL ----------------------------------------------------------

def test_randomkey(conn: Conn, clock: FakeClock) -> None:
    assert conn("RANDOMKEY") is None
    conn("MSET", "a", "1", "b", "2", "c", "3")
    assert conn("RANDOMKEY") in (b"a", b"b", b"c")
    conn("SET", "d", "1", "PX", "1")
    clock.advance(1)
    conn("DEL", "a", "b", "c")
    assert conn("RANDOMKEY") is None


def test_randomkey_uses_the_injected_rng(conn: Conn, clock: FakeClock) -> None:
    server = ServerState(Config(engine="memory"), MemoryEngine(), clock, rng=random.Random(1))
    c = type(conn)(server)
    for i in range(20):
        c("SET", f"k{i:02d}", "v")
    picks = {c("RANDOMKEY") for _ in range(60)}
    assert len(picks) > 5


class CountingEngine(MemoryEngine):
    """Counts the records every scan yields (the work of a whole-keyspace command)."""

    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0

    def scan(self, start: bytes = b"", end: bytes | None = None):  # type: ignore[no-untyped-def]
        for item in super().scan(start, end):
            self.scanned += 1
            yield item


def test_randomkey_work_does_not_grow_with_the_database(conn: Conn, clock: FakeClock) -> None:
    """RANDOMKEY samples (Engine.sample_key) and looks a few keys on: 50,000 keys cost what 50
    do. (It had listed every key: O(N) time and memory per call.)"""
    engine = CountingEngine()
    server = ServerState(Config(engine="memory"), engine, clock, rng=random.Random(4))
    c = type(conn)(server)
    c("SELECT", "1")
    for i in range(50_000):
        engine.put(b"\x00\x01k%d" % i, b"v")  # db 1's keys, written under the keyspace
    engine.scanned = 0
    picks = {c("RANDOMKEY") for _ in range(200)}
    assert engine.scanned <= 200 * RANDOM_KEY_TRIES * RANDOM_KEY_LOOKAHEAD
    assert engine.scanned < 2_000  # a live key is found at once: about one record a call
    assert len(picks) > 150 and all(p.startswith(b"k") for p in picks)
    c("SELECT", "0")
    assert c("RANDOMKEY") is None  # db 1's keys are not db 0's


def test_randomkey_answers_live_keys_among_many_expired(conn: Conn, clock: FakeClock) -> None:
    server = ServerState(Config(engine="memory"), MemoryEngine(), clock, rng=random.Random(2))
    c = type(conn)(server)
    for i in range(2_000):
        c("SET", f"gone{i:04d}", "v", "PX", "10")
    live = {b"live%d" % i for i in range(10)}
    for k in live:
        c("SET", k, "v")
    clock.advance(10)
    picks = {c("RANDOMKEY") for _ in range(100)}
    assert picks <= live and len(picks) >= 5
    for k in live:
        c("DEL", k)
    assert c("RANDOMKEY") is None  # only expired keys left: none (after the bounded tries)


def test_dbsize(conn: Conn, clock: FakeClock) -> None:
    assert conn("DBSIZE") == 0
    conn("MSET", "a", "1", "b", "2")
    conn("SET", "c", "1", "PX", "5")
    assert conn("DBSIZE") == 3
    clock.advance(5)
    assert conn("DBSIZE") == 2


def test_flushdb_and_flushall(conn: Conn) -> None:
    conn("SET", "a", "1")
    conn("SELECT", "1")
    conn("SET", "b", "1")
    assert conn("FLUSHDB") is OK
    assert conn("DBSIZE") == 0
    conn("SELECT", "0")
    assert conn("DBSIZE") == 1
    conn("SELECT", "2")
    conn("SET", "c", "1")
    assert conn("FLUSHALL", "ASYNC") is OK
    for db in range(3):
        conn("SELECT", str(db))
        assert conn("DBSIZE") == 0
    assert conn("FLUSHDB", "sync") is OK
    assert conn("FLUSHALL", "SYNC") is OK


@pytest.mark.parametrize("name", ["FLUSHDB", "FLUSHALL"])
@pytest.mark.parametrize("opts", [["x"], ["sync", "async"], ["async", "async"]])
def test_flush_syntax_errors(conn: Conn, name: str, opts: list[str]) -> None:
    conn("SET", "a", "1")
    assert_err(conn(name, *opts), E.SYNTAX)
    assert conn("DBSIZE") == 1


# -- the command table --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, arity, flags, keys, group",
    [
        ("del", -2, "write", (1, -1, 1), "generic"),
        ("unlink", -2, "write fast", (1, -1, 1), "generic"),
        ("exists", -2, "readonly fast", (1, -1, 1), "generic"),
        ("touch", -2, "readonly fast", (1, -1, 1), "generic"),
        ("expire", -3, "write fast", (1, 1, 1), "generic"),
        ("pexpireat", -3, "write fast", (1, 1, 1), "generic"),
        ("expiretime", 2, "readonly fast", (1, 1, 1), "generic"),
        ("ttl", 2, "readonly fast", (1, 1, 1), "generic"),
        ("persist", 2, "write fast", (1, 1, 1), "generic"),
        ("type", 2, "readonly fast", (1, 1, 1), "generic"),
        ("rename", 3, "write", (1, 2, 1), "generic"),
        ("renamenx", 3, "write fast", (1, 2, 1), "generic"),
        ("keys", 2, "readonly", (0, 0, 0), "generic"),
        ("scan", -2, "readonly", (0, 0, 0), "generic"),
        ("randomkey", 1, "readonly", (0, 0, 0), "generic"),
        ("dbsize", 1, "readonly fast", (0, 0, 0), "server"),
        ("flushdb", -1, "write", (0, 0, 0), "server"),
        ("flushall", -1, "write", (0, 0, 0), "server"),
    ],
)
def test_specs_match_command_info(
    name: str, arity: int, flags: str, keys: tuple[int, int, int], group: str
) -> None:
    spec = TABLE.lookup(name.encode())
    assert spec is not None
    assert (spec.arity, spec.flags, (spec.first_key, spec.last_key, spec.step), spec.group) == (
        arity, tuple(flags.split()), keys, group,
    )


def test_rename_key_positions() -> None:
    spec = TABLE.lookup(b"rename")
    assert spec is not None
    assert list(spec.key_positions(3)) == [1, 2]


def test_randomkey_on_a_flushed_database_scans_it_about_once(tmp_path: Any, clock: FakeClock) -> None:
    """After FLUSHDB the tables still hold the old entries under a range delete until
    compaction; each sample lands on one and its scan meets only dead entries. A scan that
    reaches the end shrinks the range below its sample, so all the scans together read the
    entries about once (16 scans of about half the database each, before)."""
    from respkv.storage import sstable
    from respkv.storage.lsm import LSMEngine

    eng = LSMEngine.open(str(tmp_path / "db"), now_ms=clock, inline_background=True)
    server = ServerState(Config(engine="lsm"), eng, clock, rng=random.Random(3))
    for i in range(20_000):
        eng.put(b"\x00\x00k%05d" % i, b"v")
    eng.flush()
    server.dbs[0].flush()  # FLUSHDB: one range delete over the database
    read = [0]
    orig = sstable.TableReader.iter_batches

    def counting(self, *a, **kw):  # type: ignore[no-untyped-def]
        for batch in orig(self, *a, **kw):
            read[0] += len(batch)
            yield batch

    sstable.TableReader.iter_batches = counting  # type: ignore[method-assign]
    try:
        assert server.dbs[0].random_key(server.rng) is None
    finally:
        sstable.TableReader.iter_batches = orig  # type: ignore[method-assign]
    assert 0 < read[0] <= 2 * 20_000
    eng.close()
