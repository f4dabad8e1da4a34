"""Transactions, sans I/O (respkv/commands/transactions.py): the bookkeeping compat/ cannot see
-- watches are forgotten when they should be (no client stays referenced by a keyspace), an
expired watched key, and the cost on the write path when nobody watches. The replies themselves
are compared with redis-server in compat/test_transactions.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from respkv.commands.core import ServerState
from respkv.protocol.resp import NULL_ARRAY, OK, PONG

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply
FakeClock = Any


def watchers(server: ServerState) -> int:
    return sum(len(v) for db in server.dbs for v in db.watchers.values())


def test_watches_are_forgotten_by_exec_discard_unwatch_reset_touch_and_close(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    a, b = make_conn(), make_conn()
    for end in (("EXEC",), ("DISCARD",)):
        assert a("WATCH", "k", "j") is OK
        assert watchers(server) == 2
        a("MULTI")
        a(*end)
        assert watchers(server) == 0 and a.client.watched == []
    a("WATCH", "k")
    a("UNWATCH")
    assert watchers(server) == 0
    a("WATCH", "k")
    a("RESET")
    assert watchers(server) == 0
    a("WATCH", "k", "j")
    b("SET", "j", "v")  # a touched watch drops all of that client's watches
    assert watchers(server) == 0 and a.client.dirty_cas
    a("MULTI")
    assert a("EXEC") is NULL_ARRAY
    assert not a.client.dirty_cas
    a("WATCH", "k")
    server.drop_client(a.client)
    assert watchers(server) == 0


def test_the_same_key_twice_is_one_watch(server: ServerState, conn: Conn) -> None:
    a = conn
    a("WATCH", "k", "k")
    a("WATCH", "k")
    assert watchers(server) == 1


def test_lazy_expiry_of_a_key_expired_when_watched_is_no_change(
        server: ServerState, clock: FakeClock, make_conn: Callable[[], Conn]) -> None:
    a, b = make_conn(), make_conn()
    b("SET", "e", "v", "PX", "10")
    clock.advance(20)
    a("WATCH", "e")  # already expired: watching it deletes nothing
    assert server.dbs[0].engine.get(b"\x00\x00e") is not None
    assert b("GET", "e") is None  # lazy expiry deletes it now: not a change for a
    a("MULTI")
    a("PING")
    assert a("EXEC") == [PONG]


def test_a_live_watched_key_that_expires_aborts(conn: Conn, clock: FakeClock) -> None:
    a = conn
    a("SET", "e", "v", "PX", "10")
    a("WATCH", "e")
    clock.advance(20)
    a("MULTI")
    a("PING")
    assert a("EXEC") is NULL_ARRAY
