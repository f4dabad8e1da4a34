"""MONITOR (what is shown and how), ROLE, WAIT, MEMORY, LATENCY, ACL: the sans-I/O part.

Expected bytes and error strings were captured from redis-server 7.0.15 (raw sockets, RESP2 and
RESP3); comments name the deliberate differences. The node's part (delivery to monitors, the
waiting of WAIT) is tested in tests/node/test_monitor.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from respkv.commands import errors as E
from respkv.commands.connection import REDACTED
from respkv.commands.core import QUEUED, TABLE, Client, dispatch
from respkv.commands.server import (
    LATENCY_DOCTOR,
    MEMORY_DOCTOR_CLIENT_BUFFERS,
    MEMORY_DOCTOR_EMPTY,
    MEMORY_DOCTOR_FINE,
    MEMORY_DOCTOR_PEAK,
    MEMORY_USAGE_ENTRY_OVERHEAD,
    called_spec,
    memory_usage,
    monitor_line,
    quote_arg,
    shown_to_monitors,
    touches_keyspace,
)
from respkv.protocol.resp import NO_REPLY, OK, Raw, Verbatim
from respkv.testing.resp import err, parsed, wire


def b(*args: str | bytes) -> list[bytes]:
    return [a if isinstance(a, bytes) else a.encode() for a in args]


def run(conn: Any, args: list[bytes]) -> Any:
    """Dispatch ``args`` itself (``conn(...)`` copies them): a handler may redact them."""
    return dispatch(TABLE, conn.client, args)


# -- MONITOR: the line format ------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg, quoted",
    [
        (b"keys", b'"keys"'),
        (b"", b'""'),
        (b"a b", b'"a b"'),
        # redis-server 7.0.15 printed "v\x00\xc3\xbf\"\\\n\r\t\a\b x" for these bytes
        (b'v\x00\xc3\xbf"\\\n\r\t\x07\x08 x', b'"v\\x00\\xc3\\xbf\\"\\\\\\n\\r\\t\\a\\b x"'),
        (b"\x7f\x1f~", b'"\\x7f\\x1f~"'),
    ],
)
def test_arguments_are_quoted_as_sdscatrepr(arg: bytes, quoted: bytes) -> None:
    assert quote_arg(arg) == quoted


def test_monitor_line_is_redis_format() -> None:
    line = monitor_line(1339518083_107412, 0, "127.0.0.1:60866", [b"keys", b"*"])
    assert line == b'+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"\r\n'
    assert monitor_line(5_000_001, 12, "10.0.0.1:1", [b"PING"]) == b'+5.000001 [12 10.0.0.1:1] "PING"\r\n'


# -- MONITOR: which commands are shown -----------------------------------------------------------


def shown(conn: Any, *args: str) -> bool:
    """Run ``args`` on ``conn`` and answer whether a monitor would be shown it."""
    raw = b(*args)
    conn(*raw)
    spec = TABLE.lookup(raw[0])
    return shown_to_monitors(spec, conn.client, raw)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["SET", "a", "1"], True),
        (["GET", "a"], True),
        (["PING"], True),
        (["CLIENT", "ID"], True),
        (["CLIENT", "SETNAME", "x"], True),
        (["INFO", "server"], True),
        (["ROLE"], True),  # @admin as an ACL category, but not an admin command
        (["ACL", "WHOAMI"], True),
        (["ACL", "CAT"], True),
        (["MEMORY", "USAGE", "a"], True),
        (["LATENCY", "HELP"], True),
        (["WAIT", "0", "0"], True),
        (["HELLO", "4"], True),  # refused by the command itself: it ran
        (["AUTH", "u", "p", "x"], True),
        # refused before running (processCommand): never shown
        (["NOSUCH"], False),
        (["GET"], False),
        (["CLIENT", "ID", "x"], False),
        (["CLIENT", "FOO"], False),
        (["CONFIG"], False),
        # administrative: hidden
        (["CONFIG", "GET", "hz"], False),
        (["CLIENT", "LIST"], False),
        (["SLOWLOG", "LEN"], False),
        (["ACL", "LIST"], False),
        (["ACL", "USERS"], False),
        (["LATENCY", "LATEST"], False),
        (["SHUTDOWN", "ABORT"], False),
        (["MONITOR"], False),
    ],
)
def test_what_monitors_are_shown(conn, args: list[str], expected: bool) -> None:  # type: ignore[no-untyped-def]
    assert shown(conn, *args) is expected


def test_queued_commands_are_shown_by_exec_not_when_queued(conn) -> None:  # type: ignore[no-untyped-def]
    assert shown(conn, "MULTI") is True
    assert shown(conn, "SET", "x", "1") is False  # QUEUED
    assert shown(conn, "GET") is False  # refused while queuing
    assert shown(conn, "MULTI") is True  # nested: MULTI runs (and fails)
    assert shown(conn, "EXEC") is True  # EXECABORT: EXEC ran
    assert shown(conn, "EXEC") is True  # without MULTI: ran


def test_unauthenticated_commands_are_not_shown_but_auth_is(server, conn) -> None:  # type: ignore[no-untyped-def]
    server.config.requirepass = "pw"
    conn.client.authenticated = False
    assert shown(conn, "GET", "a") is False  # NOAUTH: refused
    assert shown(conn, "AUTH", "bad") is True
    assert shown(conn, "AUTH", "pw") is True
    assert shown(conn, "GET", "a") is True


def test_called_spec_and_keyspace_access() -> None:
    memory = TABLE.lookup(b"memory")
    assert memory is not None
    usage = called_spec(memory, b("MEMORY", "usage", "k"))
    assert usage is not None and usage.name == "memory|usage"
    assert called_spec(memory, b("MEMORY", "nosuch")) is None
    assert called_spec(memory, b("MEMORY")) is None
    get = TABLE.lookup(b"get")
    ping = TABLE.lookup(b"ping")
    assert get is not None and ping is not None
    assert touches_keyspace(get, b("GET", "k"))
    assert touches_keyspace(memory, b("MEMORY", "USAGE", "k"))
    assert not touches_keyspace(memory, b("MEMORY", "STATS"))
    assert not touches_keyspace(ping, b("PING"))


# -- AUTH / HELLO redaction ------------------------------------------------------------------------


def test_auth_redacts_its_arguments_even_when_it_fails(server, conn) -> None:  # type: ignore[no-untyped-def]
    args = b("AUTH", "secret")
    assert err(run(conn, args)) == E.AUTH_NOT_CONFIGURED  # redacted before this check
    assert args == [b"AUTH", REDACTED]
    args = b("AUTH", "u", "p")
    assert err(run(conn, args)) == E.WRONGPASS
    assert args == [b"AUTH", REDACTED, REDACTED]
    args = b("AUTH", "u", "p", "x")  # refused before redacting, as redis-server
    assert err(run(conn, args)) == E.SYNTAX
    assert args == b("AUTH", "u", "p", "x")
    server.config.requirepass = "pw"
    args = b("AUTH", "pw")
    assert run(conn, args) == OK
    assert args == [b"AUTH", REDACTED]


def test_hello_redacts_each_auth_option_it_reaches(conn) -> None:  # type: ignore[no-untyped-def]
    args = b("HELLO", "3", "AUTH", "a", "b", "FOO")
    assert err(run(conn, args)) == E.WRONGPASS
    assert args == [b"HELLO", b"3", b"AUTH", REDACTED, REDACTED, b"FOO"]
    args = b("HELLO", "2", "AUTH", "default", "x", "AUTH", "c", "d")
    assert err(run(conn, args)) == E.WRONGPASS
    assert args == [b"HELLO", b"2", b"AUTH", REDACTED, REDACTED, b"AUTH", REDACTED, REDACTED]
    args = b("HELLO", "4", "AUTH", "a", "b")  # refused before the options
    assert err(run(conn, args)) == E.NOPROTO
    assert args == b("HELLO", "4", "AUTH", "a", "b")
    args = b("HELLO", "3", "AUTH", "a")
    run(conn, args)
    assert args == b("HELLO", "3", "AUTH", "a")


# -- MONITOR, RESET: the requests to the node ----------------------------------------------------


def test_monitor_asks_the_node_and_a_second_monitor_gets_no_reply(server, conn) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("MONITOR")) == E.MONITOR_NO_NODE
    monitoring: set[int] = set()

    def start(client: Client) -> bool:
        if client.id in monitoring:
            return False
        monitoring.add(client.id)
        return True

    server.start_monitor = start
    server.stop_monitor = lambda client: monitoring.discard(client.id)
    assert conn("MONITOR") == OK
    assert conn("MONITOR") is NO_REPLY
    assert err(conn("MONITOR", "x")) == "ERR wrong number of arguments for 'monitor' command"
    assert str(conn("RESET")) == "RESET"
    assert monitoring == set()


def test_monitor_inside_exec_is_refused(server, conn) -> None:  # type: ignore[no-untyped-def]
    server.start_monitor = lambda client: True
    assert conn("MULTI") == OK
    assert conn("MONITOR") == QUEUED
    [reply] = conn("EXEC")  # type: ignore[misc]
    assert err(reply) == "ERR MONITOR isn't allowed for DENY BLOCKING client"


# -- ROLE ----------------------------------------------------------------------------------------


def test_role_is_a_master_without_replicas(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("ROLE")) == b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
    assert wire(conn("ROLE"), True) == b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
    assert err(conn("ROLE", "x")) == "ERR wrong number of arguments for 'role' command"


# -- WAIT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["WAIT", "x", "0"], "ERR value is not an integer or out of range"),
        (["WAIT", "01", "5"], "ERR value is not an integer or out of range"),
        (["WAIT", "9223372036854775808", "0"], "ERR value is not an integer or out of range"),
        (["WAIT", "0", "x"], "ERR timeout is not an integer or out of range"),
        (["WAIT", "0", "1.5"], "ERR timeout is not an integer or out of range"),
        (["WAIT", "1", "+5"], "ERR timeout is not an integer or out of range"),
        (["WAIT", "1", "9223372036854775808"], "ERR timeout is not an integer or out of range"),
        (["WAIT", "0", "-1"], "ERR timeout is negative"),
        (["WAIT", "1", "-1"], "ERR timeout is negative"),
        (["WAIT"], "ERR wrong number of arguments for 'wait' command"),
        (["WAIT", "1", "2", "3"], "ERR wrong number of arguments for 'wait' command"),
    ],
)
def test_wait_errors(conn, args: list[str], expected: str) -> None:  # type: ignore[no-untyped-def]
    assert err(conn(*args)) == expected


@pytest.mark.parametrize(
    # redis-server 7.0.15 answered these at once: the count is compared as a C int
    "numreplicas", ["0", "-1", "-5", "2147483648", "4294967296", "6442450944",
                    "9223372036854775807", "-4294967295"],
)
def test_wait_for_no_replica_answers_at_once(server, conn, numreplicas: str) -> None:  # type: ignore[no-untyped-def]
    server.block_client = lambda client, timeout: pytest.fail("must not block")
    assert conn("WAIT", numreplicas, "100") == 0


def test_wait_for_replicas_asks_the_node_to_block(server, conn) -> None:  # type: ignore[no-untyped-def]
    marker = Raw(b"")
    asked: list[tuple[int, int]] = []

    def block(client: Client, timeout: int) -> Raw:
        asked.append((client.id, timeout))
        return marker

    assert conn("WAIT", "1", "0") == 0  # no node: nobody to wait
    server.block_client = block
    assert conn("WAIT", "1", "0") is marker
    assert conn("WAIT", "4294967297", "250") is marker  # 1 as a C int
    assert asked == [(conn.client.id, 0), (conn.client.id, 250)]


def test_wait_inside_exec_never_blocks(server, conn) -> None:  # type: ignore[no-untyped-def]
    server.block_client = lambda client, timeout: pytest.fail("must not block")
    for args in (["MULTI"], ["WAIT", "1", "0"], ["WAIT", "0", "0"], ["WAIT", "x", "0"]):
        conn(*args)
    replies = conn("EXEC")
    assert wire(replies) == b"*3\r\n:0\r\n:0\r\n-ERR value is not an integer or out of range\r\n"


def test_wait_in_cluster_mode_is_an_error(server, conn) -> None:  # type: ignore[no-untyped-def]
    server.cluster = object()
    assert err(conn("WAIT", "0", "0")) == (
        "ERR WAIT is not supported in cluster mode: every write already waits for W replicas to "
        "acknowledge it (set W per connection with CONSISTENCY W <level>, or per command with a "
        "trailing W <level>)"
    )


def test_client_unblock_asks_the_node(server, conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    other = make_conn()
    calls: list[tuple[int, bool]] = []

    def unblock(target: Client, error: bool) -> bool:
        calls.append((target.id, error))
        return target.id == other.client.id

    assert conn("CLIENT", "UNBLOCK", str(other.client.id)) == 0  # no node
    server.unblock_client = unblock
    assert conn("CLIENT", "UNBLOCK", str(other.client.id)) == 1
    assert conn("CLIENT", "UNBLOCK", str(other.client.id), "error") == 1
    assert conn("CLIENT", "UNBLOCK", str(conn.client.id), "TIMEOUT") == 0
    assert conn("CLIENT", "UNBLOCK", "999") == 0  # no such client: not asked
    assert calls == [(other.client.id, False), (other.client.id, True), (conn.client.id, False)]


def test_blocked_clients_are_counted_and_flagged(conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    from respkv.commands.client import set_flag

    other = make_conn()
    set_flag(other.client, "b", True)
    info = conn("INFO", "clients")
    assert "blocked_clients:1\r\n" in str(info)
    line = str(conn("CLIENT", "LIST"))
    assert f"id={other.client.id} " in line and " flags=b " in line
    set_flag(other.client, "O", True)
    set_flag(other.client, "b", False)
    assert " flags=O " in str(conn("CLIENT", "LIST"))


# -- MEMORY --------------------------------------------------------------------------------------


def test_memory_usage_estimate(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("MEMORY", "USAGE", "nokey") is None
    assert wire(conn("MEMORY", "USAGE", "nokey"), True) == b"_\r\n"
    conn("SET", "key", "x" * 100)
    expected = 2 + 3 + 100 + MEMORY_USAGE_ENTRY_OVERHEAD  # db prefix, key, value, overhead
    assert conn("MEMORY", "USAGE", "key") == expected == memory_usage(5, 100)
    assert conn("MEMORY", "usage", "key", "SAMPLES", "0") == expected
    assert conn("MEMORY", "USAGE", "key", "samples", "1", "SAMPLES", "2") == expected


def test_memory_usage_overhead_is_the_storage_figure() -> None:
    from respkv.storage.lsm import ENTRY_OVERHEAD

    assert MEMORY_USAGE_ENTRY_OVERHEAD == ENTRY_OVERHEAD


@pytest.mark.parametrize(
    "args, expected",
    [
        (["MEMORY"], "ERR wrong number of arguments for 'memory' command"),
        (["MEMORY", "FOO"], "ERR unknown subcommand 'FOO'. Try MEMORY HELP."),
        (["MEMORY", "USAGE"], "ERR wrong number of arguments for 'memory|usage' command"),
        (["MEMORY", "USAGE", "a", "SAMPLES"], "ERR syntax error"),
        (["MEMORY", "USAGE", "a", "SAMPLES", "x"], "ERR value is not an integer or out of range"),
        (["MEMORY", "USAGE", "nokey", "SAMPLES", "x"],
         "ERR value is not an integer or out of range"),
        (["MEMORY", "USAGE", "a", "SAMPLES", "-1"], "ERR syntax error"),
        (["MEMORY", "USAGE", "a", "FOO", "1"], "ERR syntax error"),
        (["MEMORY", "DOCTOR", "x"], "ERR wrong number of arguments for 'memory|doctor' command"),
        (["MEMORY", "PURGE", "x"], "ERR wrong number of arguments for 'memory|purge' command"),
        (["MEMORY", "STATS", "x"], "ERR wrong number of arguments for 'memory|stats' command"),
        (["MEMORY", "HELP", "x"], "ERR wrong number of arguments for 'memory|help' command"),
        (["MEMORY", "MALLOC-STATS", "x"],
         "ERR wrong number of arguments for 'memory|malloc-stats' command"),
    ],
)
def test_memory_errors(conn, args: list[str], expected: str) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "1")
    assert err(conn(*args)) == expected


def test_memory_help_purge_malloc_stats(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("MEMORY", "HELP")) == (
        b"*14\r\n+MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+DOCTOR\r\n"
        b"+    Return memory problems reports.\r\n+MALLOC-STATS\r\n+    Return internal statistics"
        b" report from the memory allocator.\r\n+PURGE\r\n+    Attempt to purge dirty pages for "
        b"reclamation by the allocator.\r\n+STATS\r\n+    Return information about the memory "
        b"usage of the server.\r\n+USAGE <key> [SAMPLES <count>]\r\n+    Return memory in bytes "
        b"used by <key> and its value. Nested values are\r\n+    sampled up to <count> times "
        b"(default: 5, 0 means sample all).\r\n+HELP\r\n+    Prints this help.\r\n"
    )
    assert conn("MEMORY", "PURGE") == OK
    # redis-server built without jemalloc answers this bulk string
    assert conn("MEMORY", "MALLOC-STATS") == b"Stats not supported for the current allocator"


def _memory_provider(server: Any, used: int, peak: int) -> None:
    server.info_providers["memory"] = lambda: {"used_memory": used, "used_memory_rss": used,
                                               "used_memory_peak": peak}


def test_memory_stats_fields(server, conn) -> None:  # type: ignore[no-untyped-def]
    _memory_provider(server, 50 << 20, 60 << 20)
    server.memory_startup_bytes = 30 << 20
    conn("SET", "a", "1")
    conn("SET", "b", "2")
    stats = conn("MEMORY", "STATS")
    assert list(stats) == [
        b"peak.allocated", b"total.allocated", b"startup.allocated", b"replication.backlog",
        b"clients.slaves", b"clients.normal", b"lua.caches", b"functions.caches",
        b"overhead.total", b"keys.count", b"keys.bytes-per-key", b"dataset.bytes",
        b"dataset.percentage", b"peak.percentage",
    ]
    assert stats[b"peak.allocated"] == 60 << 20
    assert stats[b"total.allocated"] == 50 << 20
    assert stats[b"keys.count"] == 2
    assert stats[b"keys.bytes-per-key"] == (20 << 20) // 2
    assert stats[b"overhead.total"] == (30 << 20) + stats[b"clients.normal"]
    assert stats[b"peak.percentage"] == pytest.approx(100 * 50 / 60, rel=1e-6)
    # RESP3: a map with doubles; RESP2: a flat array, doubles as bulk strings (%.17g)
    assert wire(stats, True).startswith(b"%14\r\n$14\r\npeak.allocated\r\n:62914560\r\n")
    assert b"$15\r\npeak.percentage\r\n$18\r\n83.333335876464844\r\n" in wire(stats)


def test_memory_doctor(server, conn, make_conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("MEMORY", "DOCTOR") == Verbatim(MEMORY_DOCTOR_EMPTY)  # no memory provider
    _memory_provider(server, 50 << 20, 60 << 20)
    assert conn("MEMORY", "DOCTOR") == Verbatim(MEMORY_DOCTOR_FINE)
    _memory_provider(server, 50 << 20, 80 << 20)
    report = str(conn("MEMORY", "DOCTOR"))
    assert report.startswith("Sam, I detected a few issues") and MEMORY_DOCTOR_PEAK in report
    assert report.endswith("I'm here to keep you safe, Sam. I want to help you.\n")
    conn.client.obuf = 1 << 20
    assert MEMORY_DOCTOR_CLIENT_BUFFERS in str(conn("MEMORY", "DOCTOR"))
    assert wire(conn("MEMORY", "DOCTOR"), True).startswith(b"=")


# -- LATENCY -------------------------------------------------------------------------------------


def test_latency_events_are_always_empty(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("LATENCY", "LATEST")) == b"*0\r\n"
    assert wire(conn("LATENCY", "HISTORY", "command")) == b"*0\r\n"
    assert conn("LATENCY", "RESET") == 0
    assert conn("LATENCY", "RESET", "foo", "bar") == 0
    assert err(conn("LATENCY", "GRAPH", "command")) == "ERR No samples available for event 'command'"
    assert err(conn("LATENCY", "GRAPH", "a\x00b")) == "ERR No samples available for event 'a'"
    assert conn("LATENCY", "DOCTOR") == Verbatim(LATENCY_DOCTOR)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["LATENCY"], "ERR wrong number of arguments for 'latency' command"),
        (["LATENCY", "FOO"], "ERR unknown subcommand 'FOO'. Try LATENCY HELP."),
        (["LATENCY", "HISTORY"], "ERR wrong number of arguments for 'latency|history' command"),
        (["LATENCY", "GRAPH", "a", "b"],
         "ERR wrong number of arguments for 'latency|graph' command"),
        (["LATENCY", "LATEST", "x"], "ERR wrong number of arguments for 'latency|latest' command"),
        (["LATENCY", "DOCTOR", "x"], "ERR wrong number of arguments for 'latency|doctor' command"),
        (["LATENCY", "HELP", "x"], "ERR wrong number of arguments for 'latency|help' command"),
    ],
)
def test_latency_errors(conn, args: list[str], expected: str) -> None:  # type: ignore[no-untyped-def]
    assert err(conn(*args)) == expected


def test_latency_help(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("LATENCY", "HELP")) == (
        b"*17\r\n+LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+DOCTOR\r\n"
        b"+    Return a human readable latency analysis report.\r\n+GRAPH <event>\r\n+    Return "
        b"an ASCII latency graph for the <event> class.\r\n+HISTORY <event>\r\n+    Return "
        b"time-latency samples for the <event> class.\r\n+LATEST\r\n+    Return the latest "
        b"latency samples for all events.\r\n+RESET [<event> ...]\r\n+    Reset latency data of "
        b"one or more <event> classes.\r\n+    (default: reset all data for all event classes)"
        b"\r\n+HISTOGRAM [COMMAND ...]\r\n+    Return a cumulative distribution of latencies in "
        b"the format of a histogram for the specified command names.\r\n+    If no commands are "
        b"specified then all histograms are replied.\r\n+HELP\r\n+    Prints this help.\r\n"
    )


def test_latency_histogram(server, conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("LATENCY", "HISTOGRAM")) == b"*0\r\n"  # no node: no histograms
    server.command_latency = lambda: {
        "get": (1, [(8, 1)]),
        "set": (6, [(8, 4), (15, 5), (40, 6)]),
        "config": (2, [(100, 2)]),
    }
    # the shape redis-server 7.0.15 answered for LATENCY HISTOGRAM set (its buckets: 8 16 33)
    assert wire(conn("LATENCY", "HISTOGRAM", "set", "nosuch")) == (
        b"*2\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:6\r\n$14\r\nhistogram_usec\r\n"
        b"*6\r\n:8\r\n:4\r\n:15\r\n:5\r\n:40\r\n:6\r\n"
    )
    assert wire(conn("LATENCY", "HISTOGRAM", "SET"), True) == (
        b"%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:6\r\n$14\r\nhistogram_usec\r\n"
        b"%3\r\n:8\r\n:4\r\n:15\r\n:5\r\n:40\r\n:6\r\n"
    )
    assert list(conn("LATENCY", "HISTOGRAM")) == [b"get", b"set", b"config"]
    assert list(conn("LATENCY", "HISTOGRAM", "config|get", "config", "ping")) == [b"config"]


# -- ACL -----------------------------------------------------------------------------------------


def test_acl_user_queries(server, conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("ACL", "WHOAMI") == b"default"
    assert conn("ACL", "USERS") == [b"default"]
    assert conn("ACL", "LIST") == [b"user default on nopass ~* &* +@all"]
    assert wire(conn("ACL", "GETUSER", "default")) == (
        b"*12\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$6\r\nnopass\r\n$9\r\npasswords\r\n*0\r\n"
        b"$8\r\ncommands\r\n$5\r\n+@all\r\n$4\r\nkeys\r\n$2\r\n~*\r\n$8\r\nchannels\r\n$2\r\n&*"
        b"\r\n$9\r\nselectors\r\n*0\r\n"
    )
    conn.client.resp3 = True
    assert wire(conn("ACL", "GETUSER", "default"), True) == (
        b"%6\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$6\r\nnopass\r\n$9\r\npasswords\r\n*0\r\n"
        b"$8\r\ncommands\r\n$5\r\n+@all\r\n$4\r\nkeys\r\n$2\r\n~*\r\n$8\r\nchannels\r\n$2\r\n&*"
        b"\r\n$9\r\nselectors\r\n*0\r\n"
    )
    conn.client.resp3 = False
    assert conn("ACL", "GETUSER", "nosuch") is None
    # with a password (redis-server 7.0.15 --requirepass s3cret)
    server.config.requirepass = "s3cret"
    digest = b"1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
    assert conn("ACL", "LIST") == [b"user default on #" + digest + b" ~* &* +@all"]
    user = parsed(conn("ACL", "GETUSER", "default"))
    assert user[:4] == [b"flags", [b"on"], b"passwords", [digest]]


def test_acl_requires_authentication(server, conn) -> None:  # type: ignore[no-untyped-def]
    server.config.requirepass = "pw"
    conn.client.authenticated = False
    assert err(conn("ACL", "WHOAMI")) == E.NOAUTH
    assert err(conn("ACL", "CAT")) == E.NOAUTH


def test_acl_cat(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("ACL", "CAT") == [
        b"keyspace", b"read", b"write", b"set", b"sortedset", b"list", b"hash", b"string",
        b"bitmap", b"hyperloglog", b"geo", b"stream", b"pubsub", b"admin", b"fast", b"slow",
        b"blocking", b"dangerous", b"connection", b"transaction", b"scripting",
    ]
    strings = conn("ACL", "CAT", "STRING")
    assert {b"get", b"set", b"incr", b"append"} <= set(strings) and b"del" not in strings
    admin = set(conn("ACL", "CAT", "admin"))
    assert {b"monitor", b"client|list", b"config|get", b"latency|latest", b"acl|list"} <= admin
    assert b"role" in admin and b"client" not in admin and b"acl|whoami" not in admin
    connection = set(conn("ACL", "CAT", "connection"))
    assert {b"command", b"command|count", b"wait", b"echo"} <= connection
    assert err(conn("ACL", "CAT", "foo")) == "ERR Unknown category 'foo'"
    assert err(conn("ACL", "CAT", "")) == "ERR Unknown category ''"
    assert err(conn("ACL", "CAT", "a", "b")) == (
        "ERR unknown subcommand or wrong number of arguments for 'CAT'. Try ACL HELP.")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ACL"], "ERR wrong number of arguments for 'acl' command"),
        (["ACL", "FOO"], "ERR unknown subcommand 'FOO'. Try ACL HELP."),
        (["ACL", "WHOAMI", "x"], "ERR wrong number of arguments for 'acl|whoami' command"),
        (["ACL", "USERS", "x"], "ERR wrong number of arguments for 'acl|users' command"),
        (["ACL", "LIST", "x"], "ERR wrong number of arguments for 'acl|list' command"),
        (["ACL", "HELP", "x"], "ERR wrong number of arguments for 'acl|help' command"),
        (["ACL", "GETUSER"], "ERR wrong number of arguments for 'acl|getuser' command"),
        (["ACL", "SETUSER"], "ERR wrong number of arguments for 'acl|setuser' command"),
        (["ACL", "DELUSER"], "ERR wrong number of arguments for 'acl|deluser' command"),
        (["ACL", "DELUSER", "default"], "ERR The 'default' user cannot be removed"),
        (["ACL", "DELUSER", "x", "default"], "ERR The 'default' user cannot be removed"),
        (["ACL", "DRYRUN", "default", "get"], "ERR wrong number of arguments for 'get' command"),
        (["ACL", "DRYRUN", "default", "nosuch"], "ERR Command 'nosuch' not found"),
        (["ACL", "DRYRUN", "x", "get", "a"], "ERR User 'x' not found"),
        (["ACL", "DRYRUN", "default", "config", "foo"], "ERR Command 'config' not found"),
        (["ACL", "DRYRUN", "default", "client"],
         "ERR wrong number of arguments for 'client' command"),
        (["ACL", "GENPASS", "0"], E.ACL_GENPASS_BITS),
        (["ACL", "GENPASS", "-1"], E.ACL_GENPASS_BITS),
        (["ACL", "GENPASS", "4097"], E.ACL_GENPASS_BITS),
        (["ACL", "GENPASS", "x"], "ERR value is not an integer or out of range"),
        (["ACL", "GENPASS", "1", "2"],
         "ERR unknown subcommand or wrong number of arguments for 'GENPASS'. Try ACL HELP."),
        (["ACL", "LOG", "x"], "ERR value is not an integer or out of range"),
        (["ACL", "LOG", "1", "2"],
         "ERR unknown subcommand or wrong number of arguments for 'LOG'. Try ACL HELP."),
        (["ACL", "LOAD"], E.ACL_NO_FILE),
        (["ACL", "SAVE"], E.ACL_NO_FILE),
        # respkv's own: it has one user, and keeps no ACL log
        (["ACL", "SETUSER", "x", "on"], "ERR ACL SETUSER is not supported by respkv: respkv has "
         "one user, 'default', whose password is requirepass"),
        (["ACL", "LOG"], "ERR ACL LOG is not supported by respkv: denied commands and failed "
         "authentications are not recorded"),
    ],
)
def test_acl_errors(conn, args: list[str], expected: str) -> None:  # type: ignore[no-untyped-def]
    assert err(conn(*args)) == expected


def test_acl_deluser_dryrun_log_reset(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("ACL", "DELUSER", "nosuch", "other") == 0
    assert conn("ACL", "DRYRUN", "default", "get", "a") == OK
    assert conn("ACL", "DRYRUN", "default", "config", "get", "x") == OK
    assert conn("ACL", "LOG", "RESET") == OK


def test_acl_genpass(server, conn) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("ACL", "GENPASS")) == (
        "ERR ACL GENPASS is not supported by respkv: no secure random source here")
    server.nonce = lambda n: bytes(i % 256 for i in range(n))
    assert conn("ACL", "GENPASS") == bytes(range(32)).hex().encode()
    assert conn("ACL", "GENPASS", "1") == b"0"
    assert conn("ACL", "GENPASS", "5") == b"00"
    assert len(conn("ACL", "GENPASS", "4096")) == 1024


def test_acl_help(conn) -> None:  # type: ignore[no-untyped-def]
    lines = [s for s in conn("ACL", "HELP")]
    assert len(lines) == 29
    assert lines[0] == "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[10] == "GENPASS [<bits>]"
    assert lines[11] == "    Generate a secure 256-bit user password. The optional `bits` argument can"
    assert lines[-2:] == ["HELP", "    Prints this help."]


# -- COMMAND INFO of the new commands (as redis-server 7.0.15 reports them) ----------------------


@pytest.mark.parametrize(
    "name, info",
    [
        ("wait", [b"wait", 3, [b"noscript"], 0, 0, 0, [b"@slow", b"@connection"],
                  [b"request_policy:all_shards", b"response_policy:agg_min"], [], []]),
        ("role", [b"role", 1, [b"noscript", b"loading", b"stale", b"fast"], 0, 0, 0,
                  [b"@admin", b"@fast", b"@dangerous"], [], [], []]),
        ("monitor", [b"monitor", 1, [b"admin", b"noscript", b"loading", b"stale"], 0, 0, 0,
                     [b"@admin", b"@slow", b"@dangerous"], [], [], []]),
    ],
)
def test_command_info(conn, name: str, info: list[Any]) -> None:  # type: ignore[no-untyped-def]
    assert parsed(conn("COMMAND", "INFO", name)) == [info]


def test_command_info_of_containers(conn) -> None:  # type: ignore[no-untyped-def]
    [memory, latency, acl] = parsed(conn("COMMAND", "INFO", "memory", "latency", "acl"))
    assert memory[:7] == [b"memory", -2, [], 0, 0, 0, [b"@slow"]]
    subs = {s[0]: s for s in memory[9]}
    assert subs[b"memory|usage"][:8] == [
        b"memory|usage", -3, [b"readonly"], 2, 2, 1, [b"@read", b"@slow"], []]
    assert subs[b"memory|usage"][8][0][:2] == [b"flags", [b"RO"]]
    assert subs[b"memory|help"][2] == [b"loading", b"stale"]
    lat = {s[0]: s for s in latency[9]}
    assert lat[b"latency|histogram"][1:3] == [-2, [b"admin", b"noscript", b"loading", b"stale"]]
    assert lat[b"latency|help"][6] == [b"@slow"]
    acls = {s[0]: s for s in acl[9]}
    assert len(acls) == 13
    assert acls[b"acl|whoami"][2:7] == [[b"noscript", b"loading", b"stale"], 0, 0, 0, [b"@slow"]]
    assert acls[b"acl|list"][6] == [b"@admin", b"@slow", b"@dangerous"]
    assert conn("COMMAND", "GETKEYS", "MEMORY", "USAGE", "k") == [b"k"]
