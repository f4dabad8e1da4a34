"""CLIENT subcommands; replies and errors as redis-server 7.0.15 gives them (SETINFO and NO-TOUCH
as 7.2 has them)."""

from __future__ import annotations

import re

import pytest

from respkv.commands import errors as E
from respkv.commands.client import client_info_line
from respkv.protocol.resp import OK, Verbatim, encode_reply
from respkv.testing.resp import err

# The field names of a redis-server 7.0.15 CLIENT LIST line, in order; respkv appends 7.2's two.
REDIS_70_FIELDS = (
    "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem "
    "multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp"
).split()


def fields(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split(" "))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["CLIENT"], "ERR wrong number of arguments for 'client' command"),
        (["CLIENT", "FOO"], "ERR unknown subcommand 'FOO'. Try CLIENT HELP."),
        (["CLIENT", "ID", "x"], "ERR wrong number of arguments for 'client|id' command"),
        (["CLIENT", "SETNAME"], "ERR wrong number of arguments for 'client|setname' command"),
        (["CLIENT", "SETNAME", "a", "b"],
         "ERR wrong number of arguments for 'client|setname' command"),
        (["CLIENT", "GETNAME", "x"], "ERR wrong number of arguments for 'client|getname' command"),
        (["CLIENT", "INFO", "x"], "ERR wrong number of arguments for 'client|info' command"),
        (["CLIENT", "NO-EVICT"], "ERR wrong number of arguments for 'client|no-evict' command"),
        (["CLIENT", "REPLY"], "ERR wrong number of arguments for 'client|reply' command"),
        (["CLIENT", "PAUSE"], "ERR wrong number of arguments for 'client|pause' command"),
        (["CLIENT", "SETNAME", "a b"],
         "ERR Client names cannot contain spaces, newlines or special characters."),
        (["CLIENT", "LIST", "TYPE", "foo"], "ERR Unknown client type 'foo'"),
        (["CLIENT", "LIST", "ID", "abc"], "ERR Invalid client ID"),
        (["CLIENT", "LIST", "x"], "ERR syntax error"),
        (["CLIENT", "LIST", "ID"], "ERR syntax error"),
        (["CLIENT", "LIST", "TYPE", "normal", "ID", "3"], "ERR syntax error"),
        (["CLIENT", "KILL", "1.2.3.4:5"], "ERR No such client"),
        (["CLIENT", "KILL", "ID"], "ERR No such client"),
        (["CLIENT", "KILL", "ID", "abc"], "ERR client-id should be greater than 0"),
        (["CLIENT", "KILL", "ID", "0"], "ERR client-id should be greater than 0"),
        (["CLIENT", "KILL", "ID", "-3"], "ERR client-id should be greater than 0"),
        (["CLIENT", "KILL", "FOO", "bar"], "ERR syntax error"),
        (["CLIENT", "KILL", "SKIPME", "maybe"], "ERR syntax error"),
        (["CLIENT", "KILL", "ADDR", "1.1.1.1:1", "SKIPME"], "ERR syntax error"),
        (["CLIENT", "KILL", "MAXAGE", "10"], "ERR syntax error"),
        (["CLIENT", "KILL", "TYPE", "foo"], "ERR Unknown client type 'foo'"),
        (["CLIENT", "KILL", "USER", "nobody"], "ERR No such user 'nobody'"),
        (["CLIENT", "NO-EVICT", "maybe"], "ERR syntax error"),
        (["CLIENT", "NO-TOUCH", "maybe"], "ERR syntax error"),
        (["CLIENT", "REPLY", "maybe"], "ERR syntax error"),
        (["CLIENT", "PAUSE", "abc"], "ERR timeout is not an integer or out of range"),
        (["CLIENT", "UNBLOCK", "abc"], "ERR value is not an integer or out of range"),
        (["CLIENT", "UNBLOCK", "5", "foo"], "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
        (["CLIENT", "CACHING", "yes"], E.CACHING_WITHOUT_TRACKING),
        (["CLIENT", "SETINFO", "lib-name"],
         "ERR wrong number of arguments for 'client|setinfo' command"),
        (["CLIENT", "SETINFO", "foo", "x"], "ERR Unrecognized option 'foo'"),
        (["CLIENT", "SETINFO", "LIB-NAME", "a b"],
         "ERR LIB-NAME cannot contain spaces, newlines or special characters."),
    ],
)
def test_errors_match_redis(conn, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert err(conn(*args)) == expected


def test_id_setname_getname(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("CLIENT", "ID") == conn.client.id
    assert conn("CLIENT", "GETNAME") is None
    assert conn("CLIENT", "SETNAME", "foo") is OK
    assert conn("CLIENT", "GETNAME") == b"foo"
    assert conn("CLIENT", "SETNAME", "") is OK
    assert conn("CLIENT", "GETNAME") is None
    assert encode_reply(conn("CLIENT", "GETNAME")) == b"$-1\r\n"


def test_client_list_line_has_redis_fields_in_order(conn, clock) -> None:  # type: ignore[no-untyped-def]
    conn("CLIENT", "SETNAME", "me")
    conn("SELECT", "2")
    clock.advance(3000)
    reply = conn("CLIENT", "LIST")
    assert isinstance(reply, Verbatim)
    assert reply.endswith("\n") and reply.count("\n") == 1
    line = reply[:-1]
    names = [kv.split("=", 1)[0] for kv in line.split(" ")]
    assert names == REDIS_70_FIELDS
    f = fields(line)
    assert f["id"] == str(conn.client.id)
    assert f["addr"] == "127.0.0.1:50000" and f["laddr"] == "127.0.0.1:6379"
    assert f["name"] == "me" and f["db"] == "2" and f["age"] == "3"
    assert f["flags"] == "N" and f["multi"] == "-1" and f["redir"] == "-1"
    assert f["cmd"] == "client|list" and f["user"] == "default" and f["resp"] == "2"


def test_client_info_and_resp3_verbatim(conn) -> None:  # type: ignore[no-untyped-def]
    conn.client.resp3 = True
    reply = conn("CLIENT", "INFO")
    assert fields(reply[:-1])["cmd"] == "client|info"
    assert fields(reply[:-1])["resp"] == "3"
    wire = encode_reply(reply, True)
    assert re.fullmatch(rb"=\d+\r\ntxt:id=1 .*\n\r\n", wire, re.S)


def test_client_list_filters(conn, server) -> None:  # type: ignore[no-untyped-def]
    other = type(conn)(server)
    ids = lambda reply: [int(fields(line)["id"]) for line in reply.splitlines()]  # noqa: E731
    assert ids(conn("CLIENT", "LIST")) == [conn.client.id, other.client.id]
    assert ids(conn("CLIENT", "LIST", "TYPE", "normal")) == [conn.client.id, other.client.id]
    assert ids(conn("CLIENT", "LIST", "TYPE", "PUBSUB")) == []
    assert ids(conn("CLIENT", "LIST", "ID", str(other.client.id), "99", "0")) == [other.client.id]
    assert encode_reply(conn("CLIENT", "LIST", "ID", "99")) == b"$0\r\n\r\n"
    # Other clients show their last command, not this one.
    assert fields(conn("CLIENT", "LIST", "ID", str(other.client.id)).strip())["cmd"] == "NULL"


def test_client_line_idle_and_buffers(server, clock) -> None:  # type: ignore[no-untyped-def]
    c = server.new_client("10.0.0.1:1234", "10.0.0.2:6379")
    c.qbuf, c.obuf = 10, 20
    clock.advance(65_000)
    f = fields(client_info_line(c, clock()))
    assert f["idle"] == "65" and f["age"] == "65"
    assert f["qbuf"] == "10" and f["obl"] == "20" and f["tot-mem"] == "30"


def test_kill_old_form(conn, server) -> None:  # type: ignore[no-untyped-def]
    killed = []
    server.kill_client = killed.append
    other = type(conn)(server)
    other.client.peer = "10.1.1.1:4000"
    assert conn("CLIENT", "KILL", "10.1.1.1:4000") is OK
    assert killed == [other.client]
    # Killing oneself: the reply is sent, then the connection closes.
    assert conn("CLIENT", "KILL", "127.0.0.1:50000") is OK
    assert conn.client.close_after_reply and killed == [other.client]


def test_kill_new_form_filters_and_skipme(conn, server) -> None:  # type: ignore[no-untyped-def]
    killed = []
    server.kill_client = killed.append
    a, b = type(conn)(server), type(conn)(server)
    b.client.laddr = "127.0.0.1:7000"
    assert conn("CLIENT", "KILL", "ID", "999") == 0
    assert conn("CLIENT", "KILL", "ID", str(a.client.id)) == 1
    assert killed == [a.client]
    assert conn("CLIENT", "KILL", "LADDR", "127.0.0.1:7000") == 1
    assert killed[-1] is b.client
    assert conn("CLIENT", "KILL", "TYPE", "master") == 0
    killed.clear()
    assert conn("CLIENT", "KILL", "TYPE", "normal", "USER", "default") == 2  # skips the caller
    assert conn.client not in killed and not conn.client.close_after_reply
    assert conn("CLIENT", "KILL", "ID", str(conn.client.id), "SKIPME", "no") == 1
    assert conn.client.close_after_reply


def test_kill_without_a_node_marks_the_target(conn, server) -> None:  # type: ignore[no-untyped-def]
    other = type(conn)(server)
    assert conn("CLIENT", "KILL", "ID", str(other.client.id)) == 1
    assert other.client.killed


def test_no_evict_no_touch_flags(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("CLIENT", "NO-EVICT", "on") is OK
    assert fields(conn("CLIENT", "INFO").strip())["flags"] == "e"
    assert conn("CLIENT", "NO-TOUCH", "ON") is OK
    assert fields(conn("CLIENT", "INFO").strip())["flags"] == "eT"
    conn("CLIENT", "NO-EVICT", "off")
    conn("CLIENT", "NO-TOUCH", "off")
    assert fields(conn("CLIENT", "INFO").strip())["flags"] == "N"


def test_setinfo(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("CLIENT", "SETINFO", "LIB-NAME", "redis-py") is OK
    assert conn("CLIENT", "SETINFO", "lib-ver", "5.0.1") is OK
    # Stored (respkv reports redis_version 7.0.15, whose CLIENT INFO has no lib fields).
    assert conn.client.lib_name == b"redis-py" and conn.client.lib_ver == b"5.0.1"


def test_reply_pause_tracking_are_honest(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("CLIENT", "REPLY", "ON") is OK
    assert err(conn("CLIENT", "REPLY", "OFF")).startswith("ERR CLIENT REPLY OFF is not supported")
    assert err(conn("CLIENT", "REPLY", "skip")).startswith("ERR CLIENT REPLY SKIP is not supported")
    assert err(conn("CLIENT", "PAUSE", "-1")) == "ERR timeout is negative"
    assert err(conn("CLIENT", "PAUSE", "x", "x")) == "ERR CLIENT PAUSE mode must be WRITE or ALL"
    assert err(conn("CLIENT", "PAUSE", "10", "all", "x")) == (
        "ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.")
    assert err(conn("CLIENT", "UNBLOCK", "x", "x")) == E.UNBLOCK_REASON
    assert err(conn("CLIENT", "PAUSE", "10")).startswith("ERR CLIENT PAUSE is not supported")
    assert conn("CLIENT", "UNPAUSE") is OK
    assert err(conn("CLIENT", "TRACKING", "on")).startswith("ERR CLIENT TRACKING is not supported")
    assert conn("CLIENT", "GETREDIR") == -1
    assert conn("CLIENT", "UNBLOCK", "5") == 0
    assert conn("CLIENT", "UNBLOCK", "5", "error") == 0


def test_trackinginfo(conn) -> None:  # type: ignore[no-untyped-def]
    assert encode_reply(conn("CLIENT", "TRACKINGINFO")) == (
        b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n")
    conn.client.resp3 = True
    assert encode_reply(conn("CLIENT", "TRACKINGINFO"), True).startswith(
        b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n")


def test_help_is_redis_70s(conn) -> None:  # type: ignore[no-untyped-def]
    lines = conn("CLIENT", "HELP")
    assert len(lines) == 48
    assert lines[0] == "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == ["HELP", "    Prints this help."]
