"""COPY, MOVE, OBJECT (respkv/commands/keys.py) and LCS (respkv/commands/strings.py), against
redis-server 7.0.15's replies and errors (each checked on a real server)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.commands import errors as E
from respkv.commands.core import TABLE, ServerState, dispatch
from respkv.commands.keys import OBJECT_SHARED_REFCOUNT, object_encoding_of, object_refcount_of
from respkv.commands.server import command_info
from respkv.commands.strings import lcs_rows
from respkv.config import Config
from respkv.protocol.resp import NULL_ARRAY, encode_reply
from respkv.storage.memory import MemoryEngine
from respkv.testing.resp import err

INT_RANGE = E.INT_RANGE % (-(1 << 31), (1 << 31) - 1)


# -- COPY -----------------------------------------------------------------------------------------

def test_copy_value_and_ttl(conn, clock) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "v", "PX", "5000")
    assert conn("COPY", "a", "b") == 1
    assert conn("GET", "b") == b"v" and conn("PTTL", "b") == 5000
    assert conn("COPY", "a", "b") == 0  # the destination exists
    conn("SET", "a", "w")
    assert conn("COPY", "a", "b", "REPLACE") == 1
    assert conn("GET", "b") == b"w" and conn("PTTL", "b") == -1  # the source's (no) TTL
    assert conn("COPY", "nokey", "b", "replace") == 0
    assert conn("GET", "b") == b"w"
    clock.advance(10)
    assert conn("GET", "a") == b"w"


def test_copy_to_another_database(conn) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "v", "EX", "100")
    assert conn("COPY", "a", "a", "DB", "1") == 1
    assert conn("COPY", "a", "a", "db", "1") == 0
    assert conn("COPY", "a", "a", "DB", "1", "REPLACE") == 1
    assert conn("GET", "a") == b"v"  # still here
    conn("SELECT", "1")
    assert conn("GET", "a") == b"v" and conn("TTL", "a") == 100
    assert conn("COPY", "a", "x", "DB", "0") == 1
    conn("SELECT", "0")
    assert conn("GET", "x") == b"v"


def test_copy_errors_in_redis_order(conn) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "1")
    assert err(conn("COPY", "a", "a")) == E.SAME_OBJECT
    assert err(conn("COPY", "a", "a", "DB", "0")) == E.SAME_OBJECT
    assert err(conn("COPY", "nokey", "nokey")) == E.SAME_OBJECT  # before the lookup
    assert err(conn("COPY", "a", "b", "DB", "16")) == E.DB_INDEX
    assert err(conn("COPY", "a", "b", "DB", "-1")) == E.DB_INDEX
    assert err(conn("COPY", "a", "b", "DB", "abc")) == E.NOT_INTEGER
    assert err(conn("COPY", "a", "b", "DB", "01")) == E.NOT_INTEGER
    assert err(conn("COPY", "a", "b", "DB", "99999999999")) == INT_RANGE
    assert err(conn("COPY", "a", "b", "DB")) == E.SYNTAX
    assert err(conn("COPY", "a", "b", "FOO")) == E.SYNTAX
    assert err(conn("COPY", "a", "b", "REPLACE", "FOO")) == E.SYNTAX
    assert err(conn("COPY", "a", "b", "DB", "16", "FOO")) == E.DB_INDEX  # DB checked as parsed
    assert err(conn("COPY", "a", "b", "FOO", "DB", "16")) == E.SYNTAX
    assert err(conn("COPY", "a", "b", "DB", "1", "DB", "abc")) == E.NOT_INTEGER
    assert err(conn("COPY", "a")) == E.WRONG_ARGS % "copy"
    assert conn("COPY", "a", "b", "REPLACE\x00junk") == 1  # strcasecmp stops at the NUL


def test_copy_expired_source_and_destination(conn, clock) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "v", "PX", "100")
    conn("SET", "b", "old", "PX", "50")
    clock.advance(60)
    assert conn("COPY", "a", "b") == 1  # b expired: it does not exist
    clock.advance(50)
    assert conn("COPY", "a", "c") == 0 and conn("EXISTS", "b") == 0


def test_copy_touches_watchers_of_the_destination(conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    other = make_conn()
    other("SET", "a", "v")
    conn("SELECT", "2")
    conn("WATCH", "b")
    other("COPY", "a", "b", "DB", "2")
    conn("MULTI")
    conn("GET", "b")
    assert conn("EXEC") is NULL_ARRAY


# -- MOVE -----------------------------------------------------------------------------------------

def test_move(conn, server) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "v", "EX", "100")
    assert conn("MOVE", "a", "3") == 1
    assert conn("EXISTS", "a") == 0
    conn("SELECT", "3")
    assert conn("GET", "a") == b"v" and conn("TTL", "a") == 100
    conn("SELECT", "0")
    conn("SET", "a", "here")
    assert conn("MOVE", "a", "3") == 0  # the target has it: nothing moves
    assert conn("GET", "a") == b"here"
    assert conn("MOVE", "nokey", "3") == 0
    # the TTL was handed to the target's expiry hints
    assert server.dbs[3]._expires.get(b"a")


def test_move_errors_in_redis_order(conn) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "v")
    assert err(conn("MOVE", "a", "0")) == E.SAME_OBJECT
    assert err(conn("MOVE", "nokey", "0")) == E.SAME_OBJECT
    assert err(conn("MOVE", "a", "16")) == E.DB_INDEX
    assert err(conn("MOVE", "a", "-1")) == E.DB_INDEX
    assert err(conn("MOVE", "nokey", "abc")) == E.NOT_INTEGER
    assert err(conn("MOVE", "a", "4294967296")) == INT_RANGE
    assert err(conn("MOVE", "a")) == E.WRONG_ARGS % "move"
    assert err(conn("MOVE", "a", "1", "2")) == E.WRONG_ARGS % "move"


def test_move_is_one_engine_batch(conn, server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The key is written to the target and deleted from the source in one write_batch: a
    crash keeps it in exactly one database."""
    conn("SET", "a", "v", "PX", "9000")
    batches: list[Any] = []
    engine = server.engine
    real_batch, real_put, real_delete = engine.write_batch, engine.put, engine.delete

    def batch(mutations: Any) -> int:
        batches.append(mutations)
        return real_batch(mutations)

    def outside(real: Any) -> Any:
        def check(*a: Any) -> Any:  # the memory engine's batch calls put/delete itself
            import inspect

            assert inspect.stack()[1].function == "write_batch", "MOVE wrote outside a batch"
            return real(*a)
        return check

    monkeypatch.setattr(engine, "write_batch", batch)
    monkeypatch.setattr(engine, "put", outside(real_put))
    monkeypatch.setattr(engine, "delete", outside(real_delete))
    assert conn("MOVE", "a", "1") == 1
    [batch] = batches
    assert [(k, None if r is None else (r.value, r.expire_at_ms > 0)) for k, r in batch] == [
        (b"\x00\x01a", (b"v", True)), (b"\x00\x00a", None)]


def test_move_touches_watchers_of_both(conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    other = make_conn()
    other("SET", "a", "v")
    for source, target in (("0", "1"), ("1", "0")):  # conn watches db 0: the source, the target
        conn("WATCH", "a")
        other("SELECT", source)
        assert other("MOVE", "a", target) == 1
        conn("MULTI")
        conn("GET", "a")
        assert conn("EXEC") is NULL_ARRAY


# -- OBJECT ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, encoding", [
    (b"0", b"int"), (b"-1", b"int"), (b"9223372036854775807", b"int"),
    (b"-9223372036854775808", b"int"), (b"9223372036854775808", b"embstr"),
    (b"-9223372036854775809", b"embstr"), (b"007", b"embstr"), (b"-0", b"embstr"),
    (b"+1", b"embstr"), (b" 1", b"embstr"), (b"1.5", b"embstr"), (b"", b"embstr"),
    (b"x" * 44, b"embstr"), (b"x" * 45, b"raw"), (b"1" * 45, b"raw"), (b"\x00\xff", b"embstr"),
])
def test_object_encoding_by_redis_set_rule(conn, value: bytes, encoding: bytes) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", value)
    assert conn("OBJECT", "ENCODING", "k") == encoding == object_encoding_of(value)


@pytest.mark.parametrize("value, refcount", [
    (b"0", OBJECT_SHARED_REFCOUNT), (b"9999", OBJECT_SHARED_REFCOUNT), (b"10000", 1),
    (b"-1", 1), (b"-5", 1), (b"007", 1), (b"hello", 1), (b"12345678901234567890", 1),
])
def test_object_refcount_shared_integers(conn, value: bytes, refcount: int) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", value)
    assert conn("OBJECT", "REFCOUNT", "k") == refcount == object_refcount_of(value)
    assert OBJECT_SHARED_REFCOUNT == 2147483647


def test_object_missing_key_is_nil_before_anything(conn) -> None:  # type: ignore[no-untyped-def]
    for sub in ("ENCODING", "REFCOUNT", "FREQ", "IDLETIME", "encoding", "Freq"):
        assert conn("OBJECT", sub, "nokey") is None


def test_object_freq_and_idletime_errors(conn) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", "v")
    assert err(conn("OBJECT", "FREQ", "k")) == E.LFU_NOT_SELECTED
    assert err(conn("OBJECT", "IDLETIME", "k")) == E.IDLETIME_NOT_TRACKED


def test_object_arity_subcommand_and_help(conn) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("OBJECT")) == E.WRONG_ARGS % "object"
    assert err(conn("OBJECT", "ENCODING")) == E.WRONG_ARGS % "object|encoding"
    assert err(conn("OBJECT", "ENCODING", "a", "b")) == E.WRONG_ARGS % "object|encoding"
    assert err(conn("OBJECT", "HELP", "x")) == E.WRONG_ARGS % "object|help"
    assert err(conn("OBJECT", "foo", "k")) == "ERR unknown subcommand 'foo'. Try OBJECT HELP."
    help_lines = conn("OBJECT", "help")
    assert help_lines[0] == "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert help_lines[1:3] == [
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value"]
    assert help_lines[-2:] == ["HELP", "    Prints this help."] and len(help_lines) == 15
    assert encode_reply(help_lines, False).startswith(b"*15\r\n+OBJECT <subcommand>")


def test_object_command_info(conn) -> None:  # type: ignore[no-untyped-def]
    spec = TABLE.lookup(b"object")
    assert spec is not None and spec.subcommands is not None
    # Redis 7.0.15's COMMAND INFO object|encoding (and the other three on a key)
    for name in ("encoding", "refcount", "freq", "idletime"):
        info = command_info(spec.subcommands[name])
        assert info[:6] == [f"object|{name}".encode(), 3, ["readonly"], 2, 2, 1]
        assert list(info[6]) == ["@keyspace", "@read", "@slow"]
        assert list(info[7]) == [b"nondeterministic_output"]
        assert list(info[8])[0][b"flags"] == ["RO"]
    info = command_info(spec.subcommands["help"])
    assert info[:6] == [b"object|help", 2, ["loading", "stale"], 0, 0, 0]
    # the container: respkv's key positions (2, -1, 1) route OBJECT's key in cluster mode
    assert command_info(spec)[:6] == [b"object", -2, [], 2, -1, 1]
    assert conn("COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k") == [b"k"]
    assert err(conn("COMMAND", "GETKEYS", "OBJECT", "HELP")) == E.GETKEYS_NO_KEYS


def test_object_counts_keyspace_hits_and_misses(conn, server) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", "1")
    stats = server.dbs[0].stats
    before = (stats["keyspace_hits"], stats["keyspace_misses"])
    conn("OBJECT", "ENCODING", "k")
    conn("OBJECT", "ENCODING", "nokey")
    assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (before[0] + 1, before[1] + 1)


# -- LCS ------------------------------------------------------------------------------------------

def lcs_redis(a: bytes, b: bytes, getlen: bool, getidx: bool, minmatchlen: int,
              withmatchlen: bool) -> Any:
    """t_string.c lcsCommand with its full table, line for line (the reference)."""
    alen, blen = len(a), len(b)
    t = [[0] * (blen + 1) for _ in range(alen + 1)]
    for i in range(1, alen + 1):
        for j in range(1, blen + 1):
            if a[i - 1] == b[j - 1]:
                t[i][j] = t[i - 1][j - 1] + 1
            else:
                t[i][j] = max(t[i - 1][j], t[i][j - 1])
    idx = t[alen][blen]
    result = bytearray(idx)
    arange_start, arange_end, brange_start, brange_end = alen, 0, 0, 0
    matches = []
    computelcs = getidx or not getlen
    i, j = alen, blen
    while computelcs and i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[idx - 1] = a[i - 1]
            if arange_start == alen:
                arange_start = arange_end = i - 1
                brange_start = brange_end = j - 1
            elif arange_start == i and brange_start == j:
                arange_start -= 1
                brange_start -= 1
            else:
                emit = True
            if arange_start == 0 or brange_start == 0:
                emit = True
            idx, i, j = idx - 1, i - 1, j - 1
        else:
            if t[i - 1][j] > t[i][j - 1]:
                i -= 1
            else:
                j -= 1
            if arange_start != alen:
                emit = True
        match_len = arange_end - arange_start + 1
        if emit:
            if minmatchlen == 0 or match_len >= minmatchlen:
                m: list[Any] = [[arange_start, arange_end], [brange_start, brange_end]]
                if withmatchlen:
                    m.append(match_len)
                matches.append(m)
            arange_start = alen
    if getidx:
        return {b"matches": matches, b"len": t[alen][blen]}
    if getlen:
        return t[alen][blen]
    return bytes(result)


def test_lcs_redis_documentation_examples(conn) -> None:  # type: ignore[no-untyped-def]
    conn("MSET", "key1", "ohmytext", "key2", "mynewtext")
    assert conn("LCS", "key1", "key2") == b"mytext"
    assert conn("LCS", "key1", "key2", "LEN") == 6
    assert conn("LCS", "key1", "key2", "IDX") == {
        b"matches": [[[4, 7], [5, 8]], [[2, 3], [0, 1]]], b"len": 6}
    assert conn("LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN") == {
        b"matches": [[[4, 7], [5, 8], 4]], b"len": 6}
    assert conn("LCS", "key1", "key2", "WITHMATCHLEN") == b"mytext"  # ignored without IDX
    assert conn("LCS", "key1", "key2", "MINMATCHLEN", "-5", "IDX") == conn(
        "LCS", "key1", "key2", "IDX")
    assert conn("LCS", "key1", "key2", "LEN", "LEN", "MINMATCHLEN", "2") == 6
    assert conn("LCS", "nokey", "key2") == b""
    assert conn("LCS", "nokey", "nokey2", "IDX", "WITHMATCHLEN") == {b"matches": [], b"len": 0}


def test_lcs_wire_forms(conn) -> None:  # type: ignore[no-untyped-def]
    conn("MSET", "key1", "ohmytext", "key2", "mynewtext")
    reply = conn("LCS", "key1", "key2", "IDX", "WITHMATCHLEN")
    # bytes as redis-server 7.0.15 wrote them, RESP2 then RESP3
    assert encode_reply(reply, False) == (
        b"*4\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n*3\r\n*2"
        b"\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n")
    assert encode_reply(reply, True) == (
        b"%2\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n*3\r\n*2"
        b"\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n")


def test_lcs_errors(conn) -> None:  # type: ignore[no-untyped-def]
    conn("MSET", "a", "x", "b", "y")
    assert err(conn("LCS", "a", "b", "IDX", "LEN")) == E.LCS_LEN_AND_IDX
    assert err(conn("LCS", "a", "b", "LEN", "IDX")) == E.LCS_LEN_AND_IDX
    assert err(conn("LCS", "a", "b", "MINMATCHLEN")) == E.SYNTAX
    assert err(conn("LCS", "a", "b", "MINMATCHLEN", "abc")) == E.NOT_INTEGER
    assert err(conn("LCS", "a", "b", "FOO", "LEN", "IDX")) == E.SYNTAX
    assert err(conn("LCS", "a", "b", "LEN", "IDX", "FOO")) == E.SYNTAX
    assert err(conn("LCS", "a")) == E.WRONG_ARGS % "lcs"
    assert conn("LCS", "a", "b", "len\x00x") == 0  # strcasecmp stops at the NUL


def test_lcs_table_limit_is_redis_s(conn, clock) -> None:  # type: ignore[no-untyped-def]
    """Redis refuses when (len1+1)*(len2+1)*4 > proto-max-bulk-len (checked at 1 MB on 7.0.15:
    600 and 435 bytes pass, 600 and 436 do not)."""
    server = ServerState(Config(engine="memory", proto_max_bulk_len=1024 * 1024), MemoryEngine(),
                         clock)
    c = type(conn)(server)
    c("SET", "x", "a" * 600)
    c("SET", "y", "a" * 436)
    assert err(c("LCS", "x", "y", "LEN")) == E.LCS_TOO_MUCH_MEMORY
    assert err(c("LCS", "x", "y")) == E.LCS_TOO_MUCH_MEMORY
    c("SET", "y", "a" * 435)
    assert c("LCS", "x", "y", "LEN") == 435
    assert c("LCS", "x", "y") == b"a" * 435


@settings(max_examples=400)
@given(st.binary(max_size=30), st.binary(max_size=30), st.sampled_from(b"ab\x00"),
       st.booleans(), st.booleans(), st.integers(0, 4), st.booleans())
def test_lcs_equals_redis_algorithm(a: bytes, b: bytes, fill: int, small_alphabet: bool,
                                    getidx: bool, minmatchlen: int, withmatchlen: bool) -> None:
    if small_alphabet:  # many matches and ties
        a = bytes(fill if x & 1 else 0x61 for x in a)
        b = bytes(fill if x & 1 else 0x61 for x in b)
    server = ServerState(Config(engine="memory"), MemoryEngine(), lambda: 1)
    client = server.new_client()
    dispatch(TABLE, client, [b"MSET", b"a", a, b"b", b])
    for getlen in (False, True):
        if getlen and getidx:
            continue
        args = [b"LCS", b"a", b"b"]
        if getlen:
            args.append(b"LEN")
        if getidx:
            args.append(b"IDX")
        if minmatchlen:
            args += [b"MINMATCHLEN", b"%d" % minmatchlen]
        if withmatchlen:
            args.append(b"WITHMATCHLEN")
        assert dispatch(TABLE, client, args) == lcs_redis(a, b, getlen, getidx, minmatchlen,
                                                          withmatchlen)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_lcs_rows_are_the_dp_increments(a: bytes, b: bytes) -> None:
    length, rows, width = lcs_rows(a, b)
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j],
                                                                         t[i][j - 1])
        row = int.from_bytes(rows[(i - 1) * width : i * width], "little")
        assert [row >> (j - 1) & 1 for j in range(1, len(b) + 1)] == [
            t[i][j] - t[i][j - 1] for j in range(1, len(b) + 1)]
    assert length == t[len(a)][len(b)]
    assert lcs_rows(a, b, keep_rows=False)[0] == length


def test_lcs_a_few_kilobytes_is_quick(conn) -> None:  # type: ignore[no-untyped-def]
    a = bytes((i * 7919) % 251 % 4 + 65 for i in range(5000))
    b = bytes((i * 104729) % 241 % 4 + 65 for i in range(5000))
    conn("MSET", "a", a, "b", b)
    reply = conn("LCS", "a", "b", "IDX", "WITHMATCHLEN")
    assert reply[b"len"] == conn("LCS", "a", "b", "LEN") == len(conn("LCS", "a", "b"))
    assert all(a[m[0][0]:m[0][1] + 1] == b[m[1][0]:m[1][1] + 1] for m in reply[b"matches"])
