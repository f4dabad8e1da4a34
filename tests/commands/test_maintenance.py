"""BGREWRITEAOF, LOLWUT, DEBUG, REPLICAOF/SLAVEOF, READONLY/READWRITE/ASKING
(respkv/commands/maintenance.py) and INFO commandstats/errorstats around MULTI/EXEC
(core.account_command), sans I/O. What must equal redis-server byte for byte is also compared
with it in compat/test_maintenance_compat.py; the figures here were read from redis-server
7.0.15 (COMMAND INFO, INFO commandstats after the same commands)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from respkv import __version__
from respkv.commands import errors as E
from respkv.commands.core import TABLE, ServerState, account_command, dispatch, is_local_peer
from respkv.commands.errors import RejectedError
from respkv.commands.maintenance import atoi, strtod_prefix
from respkv.commands.server import command_info, info_section
from respkv.protocol.resp import OK, ErrorReply, SimpleString, Verbatim

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply


def with_debug(server: ServerState, mode: str) -> None:
    server.config = dataclasses.replace(server.config, enable_debug_command=mode)


def run(conn: Conn, *args: str) -> Any:
    """Dispatch and count, as the node's serve loop does (timing left at 0 us)."""
    raw = [a.encode() for a in args]
    reply = dispatch(TABLE, conn.client, raw)
    account_command(conn.server, TABLE.lookup(raw[0]), conn.client, raw, reply, 0)
    return reply


def stats(server: ServerState) -> dict[str, list[int]]:
    return {k: v for k, v in server.cmdstats.items() if k != "config"}


# -- COMMAND INFO: redis-server 7.0.15's entries -------------------------------------------------

REDIS_COMMAND_INFO = {
    "bgrewriteaof": [1, ["admin", "noscript", "no_async_loading"], ["@admin", "@slow", "@dangerous"]],
    "lolwut": [-1, ["readonly", "fast"], ["@read", "@fast"]],
    "debug": [-2, ["admin", "noscript", "loading", "stale"], ["@admin", "@slow", "@dangerous"]],
    "replicaof": [3, ["admin", "noscript", "stale", "no_async_loading"],
                  ["@admin", "@slow", "@dangerous"]],
    "slaveof": [3, ["admin", "noscript", "stale", "no_async_loading"],
                ["@admin", "@slow", "@dangerous"]],
    "readonly": [1, ["loading", "stale", "fast"], ["@fast", "@connection"]],
    "readwrite": [1, ["loading", "stale", "fast"], ["@fast", "@connection"]],
    "asking": [1, ["fast"], ["@fast", "@connection"]],
}


@pytest.mark.parametrize("name", sorted(REDIS_COMMAND_INFO))
def test_command_info_is_redis_7_0(name: str) -> None:
    spec = TABLE.lookup(name.encode())
    assert spec is not None
    info = command_info(spec)
    arity, flags, acl = REDIS_COMMAND_INFO[name]
    assert info[0] == name.encode() and info[1] == arity
    assert [str(f) for f in info[2]] == flags
    assert info[3:6] == [0, 0, 0]  # no keys
    assert [str(c) for c in info[6]] == acl
    assert list(info[7]) == [] and list(info[8]) == [] and list(info[9]) == []


# -- DEBUG ---------------------------------------------------------------------------------------


def test_debug_is_refused_by_default_as_a_rejected_call(conn: Conn, server: ServerState) -> None:
    for args in (("DEBUG", "HELP"), ("DEBUG", "SLEEP", "0"), ("DEBUG", "NOSUCH")):
        reply = run(conn, *args)
        assert isinstance(reply, RejectedError) and str(reply) == E.DEBUG_NOT_ALLOWED
    assert str(run(conn, "DEBUG")) == E.WRONG_ARGS % "debug"  # arity is checked first
    assert stats(server)["debug"] == [0, 0, 4, 0]
    assert server.errorstats == {"ERR": 4}


def test_debug_refusal_comes_before_authentication(conn: Conn, server: ServerState) -> None:
    server.config = dataclasses.replace(server.config, requirepass="pw")
    conn.client.authenticated = False
    assert str(run(conn, "DEBUG", "SLEEP", "0")) == E.DEBUG_NOT_ALLOWED
    with_debug(server, "yes")
    assert str(run(conn, "DEBUG", "SLEEP", "0")) == E.NOAUTH


def test_debug_refused_inside_multi_aborts_exec(conn: Conn, server: ServerState) -> None:
    run(conn, "MULTI")
    assert str(run(conn, "DEBUG", "SLEEP", "0")) == E.DEBUG_NOT_ALLOWED
    assert str(run(conn, "EXEC")) == E.EXECABORT
    assert stats(server) == {"multi": [1, 0, 0, 0], "debug": [0, 0, 1, 0], "exec": [1, 0, 0, 1]}
    assert server.errorstats == {"ERR": 1, "EXECABORT": 1}


@pytest.mark.parametrize("peer,local", [
    ("127.0.0.1:5000", True), ("10.1.2.3:5000", False), ("::1:6000", True),
    ("::ffff:127.0.0.1:7", True), ("2001:db8::1:80", False), ("", True),
    ("/tmp/respkv.sock", True),
])
def test_local_peers(peer: str, local: bool) -> None:
    assert is_local_peer(peer) is local


def test_enable_debug_command_local(conn: Conn, server: ServerState) -> None:
    with_debug(server, "local")
    assert run(conn, "DEBUG", "SLEEP", "0") is OK  # the fixture's peer is 127.0.0.1
    conn.client.peer = "192.0.2.7:4000"
    assert str(run(conn, "DEBUG", "SLEEP", "0")) == E.DEBUG_NOT_ALLOWED


def test_debug_help_and_unknown_subcommands(conn: Conn, server: ServerState) -> None:
    with_debug(server, "yes")
    help_ = run(conn, "DEBUG", "HELP")
    assert help_[0] == SimpleString(
        "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    assert [str(x) for x in help_ if not str(x).startswith(" ")] == [
        help_[0], "OBJECT <key>", "SET-ACTIVE-EXPIRE <0|1>", "SLEEP <seconds>", "HELP"]
    for args, shown in ((("DEBUG", "FOO"), "FOO"), (("DEBUG", "help", "x"), "help"),
                        (("DEBUG", "SLEEP"), "SLEEP"), (("DEBUG", "OBJECT", "a", "b"), "OBJECT"),
                        (("DEBUG", "set-active-expire"), "set-active-expire")):
        reply = run(conn, *args)
        assert str(reply) == E.SUBCOMMAND_SYNTAX % (shown, "DEBUG")
        assert not isinstance(reply, RejectedError)  # ran, failed: a failed call
    assert stats(server)["debug"] == [6, 0, 0, 5]


def test_debug_sleep_asks_the_node_for_microseconds(conn: Conn, server: ServerState) -> None:
    with_debug(server, "yes")
    asked: list[tuple[int, int]] = []
    server.sleep_client = lambda client, us: asked.append((client.id, us))  # type: ignore[attr-defined]
    for arg in ("0.25", "2", " 1.5x", "x", "-1", "0", "1e-7", "inf", "nan", "1e400"):
        assert run(conn, "DEBUG", "SLEEP", arg) is OK
    assert asked == [(conn.client.id, 250_000), (conn.client.id, 2_000_000),
                     (conn.client.id, 1_500_000)]


def test_strtod_and_atoi_as_c() -> None:
    assert strtod_prefix(b"  3.5e2xyz") == 350.0
    assert strtod_prefix(b".5") == 0.5 and strtod_prefix(b"abc") == 0.0
    assert [atoi(b) for b in (b"1", b" 2x", b"x", b"-3", b"+4")] == [1, 2, 0, -3, 4]
    assert atoi(b"4294967296") == 0  # glibc: strtol, then cut to an int
    assert atoi(b"99999999999999999999") == -1  # LONG_MAX cut to an int


def test_debug_set_active_expire(conn: Conn, server: ServerState) -> None:
    with_debug(server, "yes")
    assert server.active_expire_enabled
    for arg, enabled in (("0", False), ("1", True), ("x", False), ("2", True),
                         ("4294967296", False)):
        assert run(conn, "DEBUG", "SET-ACTIVE-EXPIRE", arg) is OK
        assert server.active_expire_enabled is enabled


def test_debug_object(conn: Conn, server: ServerState) -> None:
    with_debug(server, "yes")
    conn("SET", "s", "hello")
    conn("SET", "n", "123")
    conn("SET", "big", "a" * 100)
    conn("SET", "ttl", "v", "PX", "10")

    def fields(key: str) -> dict[str, str]:
        line = str(run(conn, "DEBUG", "OBJECT", key))
        assert line.startswith("Value at:0x")
        return dict(kv.split(":", 1) for kv in line.split(" ")[1:])

    # redis-server 7.0.15: embstr 6, int 2 (both as here); "big" is LZF-compressed there (13)
    assert fields("s") == {"at": fields("s")["at"], "refcount": "1", "encoding": "embstr",
                           "serializedlength": "6"}
    assert fields("n")["refcount"] == "2147483647" and fields("n")["encoding"] == "int"
    assert fields("n")["serializedlength"] == "2"
    assert fields("big")["encoding"] == "raw" and fields("big")["serializedlength"] == "102"
    server.clock_ms.advance(20)  # type: ignore[attr-defined]
    assert fields("ttl")["encoding"] == "embstr"  # as dictFind: expired but still stored
    assert str(run(conn, "DEBUG", "OBJECT", "nokey")) == E.NO_SUCH_KEY


# -- LOLWUT --------------------------------------------------------------------------------------


def test_lolwut(conn: Conn) -> None:
    want = f"respkv ver. {__version__} (Redis ver. 7.0.15 compatible)\n"
    for args in (("LOLWUT",), ("LOLWUT", "foo"), ("LOLWUT", "VERSION"), ("lolwut", "version", "5"),
                 ("LOLWUT", "VERSION", "6", "10", "5"), ("LOLWUT", "VERSION", "-1", "x"),
                 ("LOLWUT", "VERSION", "5", "1", "2", "3", "x")):
        reply = run(conn, *args)
        assert type(reply) is Verbatim and reply == want
    for args in (("LOLWUT", "VERSION", "x"), ("LOLWUT", "VERSION", "5", "x"),
                 ("LOLWUT", "VERSION", "6", "10", "y"), ("LOLWUT", "VERSION", "5", "1", "2", "z"),
                 ("LOLWUT", "VERSION", "99999999999999999999")):
        assert str(run(conn, *args)) == E.NOT_INTEGER


# -- REPLICAOF, SLAVEOF, READONLY, READWRITE, ASKING ---------------------------------------------


@pytest.mark.parametrize("name", ["REPLICAOF", "SLAVEOF"])
def test_replicaof(conn: Conn, name: str) -> None:
    assert run(conn, name, "NO", "ONE") is OK
    assert run(conn, name, "no", "one") is OK
    for port in ("b", "99999", "-1", "01", "ONE"):
        assert str(run(conn, name, "host", port)) == E.INVALID_MASTER_PORT
    err = run(conn, name.lower(), "127.0.0.1", "6379")
    assert str(err) == E.MULTI_UNSUPPORTED % (name, E.REPLICAOF_REASON)
    assert "--seed" in str(err)
    assert str(run(conn, name, "NO")) == E.WRONG_ARGS % name.lower()


def test_cluster_connection_commands(conn: Conn, server: ServerState) -> None:
    for name in ("READONLY", "READWRITE", "ASKING"):
        assert str(run(conn, name)) == E.CLUSTER_DISABLED
        assert str(run(conn, name, "x")) == E.WRONG_ARGS % name.lower()
    server.cluster = object()  # type: ignore[attr-defined]  # a cluster node's marker
    for name in ("READONLY", "READWRITE", "ASKING"):
        assert run(conn, name) is OK


# -- BGREWRITEAOF --------------------------------------------------------------------------------


def test_bgrewriteaof(conn: Conn, server: ServerState) -> None:
    started = SimpleString("Background append only file rewriting started")
    assert run(conn, "BGREWRITEAOF") == started  # no node: no commit log, done at once
    outcomes = iter(["started", "in_progress", "failed"])
    server.rewrite_aof = lambda: next(outcomes)  # type: ignore[attr-defined]
    assert run(conn, "BGREWRITEAOF") == started
    assert str(run(conn, "BGREWRITEAOF")) == E.AOF_REWRITE_IN_PROGRESS
    assert str(run(conn, "BGREWRITEAOF")) == E.AOF_REWRITE_FAILED
    server.rewrite_aof = lambda: "started"  # type: ignore[attr-defined]
    run(conn, "MULTI")
    run(conn, "BGREWRITEAOF")
    assert run(conn, "EXEC") == [SimpleString("Background append only file rewriting scheduled")]


def test_info_persistence_rewrite_fields_in_redis_order(server: ServerState) -> None:
    fields = list(info_section(server, "persistence"))
    aof = [f for f in fields if f.startswith("aof_")]
    assert aof == ["aof_enabled", "aof_rewrite_in_progress", "aof_rewrite_scheduled",
                   "aof_last_rewrite_time_sec", "aof_current_rewrite_time_sec",
                   "aof_last_bgrewrite_status", "aof_rewrites",
                   "aof_rewrites_consecutive_failures", "aof_last_write_status"]


# -- INFO commandstats and errorstats around MULTI/EXEC (redis-server 7.0.15's figures) ----------


def test_queued_commands_count_when_exec_runs_them(conn: Conn, server: ServerState) -> None:
    run(conn, "SET", "s", "x")
    run(conn, "MULTI")
    assert str(run(conn, "INCR", "s")) == "QUEUED"
    run(conn, "GET", "s")
    assert stats(server) == {"set": [1, 0, 0, 0], "multi": [1, 0, 0, 0]}
    reply = run(conn, "EXEC")
    assert isinstance(reply[0], ErrorReply) and reply[1] == b"x"
    assert stats(server) == {"set": [1, 0, 0, 0], "multi": [1, 0, 0, 0], "incr": [1, 0, 0, 1],
                             "get": [1, 0, 0, 0], "exec": [1, 0, 0, 0]}
    assert server.errorstats == {"ERR": 1}


def test_refused_while_queuing(conn: Conn, server: ServerState) -> None:
    run(conn, "MULTI")
    run(conn, "INCR", "s")
    run(conn, "SET", "a")  # wrong arity: rejected, the transaction aborts
    assert str(run(conn, "EXEC")) == E.EXECABORT
    assert stats(server) == {"multi": [1, 0, 0, 0], "set": [0, 0, 1, 0], "exec": [1, 0, 0, 1]}
    assert server.errorstats == {"ERR": 1, "EXECABORT": 1}


def test_errors_of_transaction_commands(conn: Conn, server: ServerState) -> None:
    for args in (("MULTI",), ("MULTI",), ("WATCH", "k"), ("FOOBAR",), ("SAVE",), ("DISCARD",),
                 ("EXEC",), ("DISCARD",), ("EXEC", "x"), ("MULTI",), ("EXEC", "x")):
        run(conn, *args)
    assert stats(server) == {
        "multi": [3, 0, 0, 1], "watch": [1, 0, 0, 1], "save": [0, 0, 1, 0],
        "discard": [2, 0, 0, 1], "exec": [1, 0, 2, 1]}
    assert server.errorstats == {"ERR": 6, "EXECABORT": 2}
    assert info_section(server, "stats")["total_error_replies"] == 8
    assert info_section(server, "errorstats") == {"errorstat_ERR": "count=6",
                                                 "errorstat_EXECABORT": "count=2"}
    run(conn, "CONFIG", "RESETSTAT")
    assert server.errorstats == {} and info_section(server, "errorstats") == {}


def test_exec_times_its_commands_with_the_nodes_clock(conn: Conn, server: ServerState) -> None:
    ticks = iter(range(0, 1000, 10))
    server.perf_us = lambda: next(ticks)
    seen: list[tuple[str, int]] = []
    server.observe_latency = lambda name, us: seen.append((name, us))
    run(conn, "MULTI")
    run(conn, "SET", "a", "1")
    run(conn, "GET", "a")
    run(conn, "EXEC")
    assert server.cmdstats["set"] == [1, 10, 0, 0] and server.cmdstats["get"] == [1, 10, 0, 0]
    assert ("set", 10) in seen and ("get", 10) in seen
