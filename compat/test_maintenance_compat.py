"""BGREWRITEAOF, LOLWUT, DEBUG, REPLICAOF/SLAVEOF, READONLY/READWRITE/ASKING and INFO
commandstats/errorstats around MULTI/EXEC, respkv against redis-server 7.0: replies and errors
that must be byte for byte the same, in RESP2 and RESP3 (respkv/commands/maintenance.py;
where they differ on purpose is in docs/compatibility.md).

Both servers of the session run with DEBUG refused (enable-debug-command no, redis-server 7.0's
default); a second pair started here has it enabled. REPLICAOF host port is never sent to
redis-server: it would make it a replica."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rawresp import COMPARED, RawConn

from respkv.testing.procs import ServerProcess, redis_server_path, start_redis, start_respkv

STEPS: list[tuple[str, ...]] = [
    ("DEBUG",), ("DEBUG", "HELP"), ("DEBUG", "SLEEP", "0"), ("debug", "object", "k"),
    ("DEBUG", "nosuch", "x"), ("DEBUG", "SET-ACTIVE-EXPIRE", "1"),
    ("LOLWUT", "VERSION", "x"), ("LOLWUT", "VERSION", "5", "x"), ("LOLWUT", "VERSION", "6", "1", "y"),
    ("LOLWUT", "VERSION", "99999999999999999999"),
    ("REPLICAOF", "NO", "ONE"), ("SLAVEOF", "no", "one"), ("REPLICAOF", "NO"),
    ("REPLICAOF", "h", "port"), ("REPLICAOF", "h", "65536"), ("SLAVEOF", "h", "-1"),
    ("REPLICAOF", "NO", "TWO"), ("SLAVEOF", "a", "b", "c"),
    ("READONLY",), ("READWRITE",), ("ASKING",), ("READONLY", "x"), ("asking", "x"),
    ("BGREWRITEAOF", "x"),
    ("CONFIG", "GET", "enable-debug-command"), ("CONFIG", "SET", "enable-debug-command", "yes"),
    ("COMMAND", "INFO", "bgrewriteaof", "lolwut", "debug", "replicaof", "slaveof", "readonly",
     "readwrite", "asking"),
    ("COMMAND", "GETKEYS", "DEBUG", "OBJECT", "k"), ("COMMAND", "GETKEYS", "LOLWUT"),
]
"""Every reply must be the same bytes on both servers (arity, refusal and argument errors)."""


@pytest.mark.parametrize("proto", ["2", "3"])
def test_replies_and_errors_are_redis(both, proto: str) -> None:
    respkv, redis_srv = both
    with RawConn(respkv.port) as a, RawConn(redis_srv.port) as b:
        a.call("HELLO", proto)
        b.call("HELLO", proto)
        for step in STEPS:
            got, want = a.call(*step), b.call(*step)
            COMPARED[step[0].upper()] += 1
            assert got[1] == want[1], step


@pytest.mark.parametrize("proto,kind", [("2", "$"), ("3", "=")])
def test_lolwut_reply_type_and_version_line(both, proto: str, kind: str) -> None:
    respkv, redis_srv = both
    for args in (("LOLWUT",), ("LOLWUT", "VERSION", "5", "1", "1", "1"), ("LOLWUT", "VERSION", "6"),
                 ("LOLWUT", "VERSION", "-1")):
        with RawConn(respkv.port) as a, RawConn(redis_srv.port) as b:
            a.call("HELLO", proto)
            b.call("HELLO", proto)
            (ta, va), (tb, vb) = a.call(*args)[0], b.call(*args)[0]
        COMPARED["LOLWUT"] += 1
        assert ta == tb == kind, args
        assert vb.endswith(b"Redis ver. 7.0.15\n")
        assert re.fullmatch(rb"(txt:)?respkv ver\. \S+ \(Redis ver\. 7\.0\.15 compatible\)\n", va)


def _wait_no_rewrite(port: int) -> None:
    with RawConn(port) as c:
        deadline = time.monotonic() + 10
        while b"aof_rewrite_in_progress:1" in c.value("INFO", "persistence"):
            assert time.monotonic() < deadline, "redis-server's AOF rewrite did not end"
            time.sleep(0.02)  # a child process's rewrite: no event to wait on


def test_bgrewriteaof_replies(both) -> None:
    for sp in both:
        _wait_no_rewrite(sp.port)
    replies = []
    for sp in both:
        with RawConn(sp.port) as c:
            replies.append([c.call(*s)[1] for s in (("BGREWRITEAOF",),)])
        _wait_no_rewrite(sp.port)
        with RawConn(sp.port) as c:
            replies[-1] += [c.call(*s)[1] for s in (("MULTI",), ("BGREWRITEAOF",), ("EXEC",))]
        _wait_no_rewrite(sp.port)
    COMPARED["BGREWRITEAOF"] += 2
    assert replies[0] == replies[1] == [
        b"+Background append only file rewriting started\r\n", b"+OK\r\n", b"+QUEUED\r\n",
        b"*1\r\n+Background append only file rewriting scheduled\r\n"]


TRANSACTIONS: list[list[tuple[str, ...]]] = [
    [("SET", "s", "x"), ("MULTI",), ("INCR", "s"), ("GET", "s"), ("SET", "a"), ("EXEC",)],
    [("SET", "s", "x"), ("MULTI",), ("INCR", "s"), ("GET", "s"), ("EXEC",)],
    [("MULTI",), ("MULTI",), ("WATCH", "k"), ("FOOBAR",), ("SAVE",), ("DISCARD",)],
    [("EXEC",), ("DISCARD",), ("EXEC", "x")],
    [("MULTI",), ("EXEC", "x")],
    [("MULTI",), ("DEBUG", "SLEEP", "0"), ("EXEC",)],
    [("DEBUG", "SLEEP", "0"), ("GET",), ("MULTI",), ("SET", "k", "1"), ("RESTORE", "k", "0", "junk"),
     ("INCRBY", "k", "x"), ("GET", "k"), ("EXEC",)],
    [("SET", "w", "1"), ("WATCH", "w"), ("SET", "w", "2"), ("MULTI",), ("INCR", "w"), ("EXEC",)],
]


def _stats(c: RawConn) -> tuple[list[str], list[str], list[str]]:
    """commandstats (usec left out, sorted: Redis lists them in its dict's order; CONFIG
    RESETSTAT's own line left out: Redis names it config|resetstat, respkv counts subcommands
    under their command), errorstats, total_error_replies."""
    cmd = c.value("INFO", "commandstats").decode()
    err = c.value("INFO", "errorstats").decode()
    st = c.value("INFO", "stats").decode()
    return (sorted(re.sub(r"usec=\d+,usec_per_call=[\d.]+,", "", line)
                   for line in cmd.split("\r\n")
                   if line.startswith("cmdstat_") and not line.startswith("cmdstat_config")),
            [line for line in err.split("\r\n") if line.startswith("errorstat_")],
            [line for line in st.split("\r\n") if line.startswith("total_error_replies")])


@pytest.mark.parametrize("script", range(len(TRANSACTIONS)))
def test_commandstats_and_errorstats_around_exec(both, script: int) -> None:
    results = []
    for sp in both:
        with RawConn(sp.port) as c:
            c.call("CONFIG", "RESETSTAT")
            replies = [c.call(*s)[1] for s in TRANSACTIONS[script]]
            results.append((replies, _stats(c)))
    COMPARED["(commandstats)"] += 1
    (got, got_stats), (want, want_stats) = results
    assert got == want
    assert got_stats == want_stats


# -- with DEBUG enabled ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debug_pair() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed: run `bash compat/setup.sh`")
    respkv = start_respkv("--enable-debug-command", "yes", engine="memory")
    try:
        redis_srv = start_redis("--enable-debug-command", "yes")
        try:
            yield respkv, redis_srv
        finally:
            redis_srv.stop()
            shutil.rmtree(redis_srv.dir, ignore_errors=True)
    finally:
        respkv.stop()
        shutil.rmtree(respkv.dir, ignore_errors=True)


DEBUG_STEPS: list[tuple[str, ...]] = [
    ("DEBUG", "SLEEP", "0"), ("DEBUG", "SLEEP", "0.01"), ("DEBUG", "SLEEP", "x"),
    ("DEBUG", "SLEEP", "-1"), ("DEBUG", "SLEEP"), ("DEBUG", "SLEEP", "0", "x"),
    ("DEBUG", "OBJECT", "nokey"), ("DEBUG", "OBJECT"), ("DEBUG", "OBJECT", "a", "b"),
    ("DEBUG", "SET-ACTIVE-EXPIRE", "0"), ("DEBUG", "SET-ACTIVE-EXPIRE", "x"),
    ("DEBUG", "SET-ACTIVE-EXPIRE", "1"), ("DEBUG", "SET-ACTIVE-EXPIRE"),
    ("DEBUG", "FOO"), ("DEBUG", "foo", "bar"), ("debug", "help", "x"),
    ("MULTI",), ("DEBUG", "SLEEP", "0"), ("DEBUG", "NOSUCH"), ("EXEC",),
]


def test_debug_enabled_replies_are_redis(debug_pair) -> None:
    respkv, redis_srv = debug_pair
    with RawConn(respkv.port) as a, RawConn(redis_srv.port) as b:
        for step in DEBUG_STEPS:
            got, want = a.call(*step), b.call(*step)
            COMPARED["DEBUG"] += 1
            assert got[1] == want[1], step
        help_a, help_b = a.value("DEBUG", "HELP"), b.value("DEBUG", "HELP")
        assert help_a[0] == help_b[0]  # the same header; respkv lists what it implements
        assert all(line in help_b for line in help_a if not line[1].startswith(b"    "))


def _object_fields(c: RawConn, key: str) -> dict[bytes, bytes]:
    tree = c.call("DEBUG", "OBJECT", key)[0]
    assert tree[0] == "+", tree
    assert tree[1].startswith(b"Value at:0x")
    return dict(kv.split(b":", 1) for kv in tree[1].split(b" ")[2:])


@pytest.mark.parametrize("value", ["hello", "123", "-5", "9999", "10000", "x" * 20, "12345678901"])
def test_debug_object_fields_respkv_can_give(debug_pair, value: str) -> None:
    """refcount, encoding and serializedlength equal Redis's for values Redis does not
    compress (up to 20 bytes); lru and lru_seconds_idle are not given (no access times)."""
    fields = []
    for sp in debug_pair:
        with RawConn(sp.port) as c:
            c.call("SET", "k", value)
            fields.append(_object_fields(c, "k"))
    COMPARED["DEBUG"] += 1
    got, want = fields
    assert set(want) - set(got) == {b"lru", b"lru_seconds_idle"}
    assert got == {k: v for k, v in want.items() if k in got}


def test_debug_sleep_replies_after_the_sleep(debug_pair) -> None:
    for sp in debug_pair:
        with RawConn(sp.port) as c:
            t0 = time.monotonic()
            assert c.call("DEBUG", "SLEEP", "0.2")[1] == b"+OK\r\n"
            assert time.monotonic() - t0 >= 0.2
            entry: Any = c.value("SLOWLOG", "GET", "1")[0][1]
            assert entry[2][1] >= 200_000  # the slept time is DEBUG's duration
            assert [x[1] for x in entry[3][1]] == [b"DEBUG", b"SLEEP", b"0.2"]
