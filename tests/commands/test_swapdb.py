"""SWAPDB and the database map, sans I/O (respkv/commands/databases.py, docs/formats/dbmap.md).

The map's format (encode/decode/load), what every command that names a database sees after a
swap, WATCH as redis-server 7.0's touchAllWatchedKeysInDb, and the map surviving a reopen of the
engine -- a MemoryEngine for the state, the LSM engine on the fault-injecting file system for a
power loss. The replies themselves are compared with redis-server in compat/test_swapdb_compat.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from respkv.commands.core import TABLE, ServerState, dispatch
from respkv.commands.keyspace import (
    DB_MAP_KEY,
    DbMapError,
    db_prefix,
    decode_db_map,
    encode_db_map,
    load_db_map,
)
from respkv.config import Config
from respkv.protocol.resp import NULL_ARRAY, OK, PONG
from respkv.storage.faultfs import FaultFileSystem
from respkv.storage.lsm import LSMEngine
from respkv.storage.memory import MemoryEngine
from respkv.testing.resp import err, parsed

Conn = Any  # tests/commands/conftest.py: conn("SET", "k", "v") -> reply
FakeClock = Any


def reopen(server: ServerState, **config: Any) -> ServerState:
    """A new server state over the same engine (a restart, as far as the commands can tell)."""
    return ServerState(Config(engine="memory", **config), server.engine, server.clock_ms)


# -- the format ---------------------------------------------------------------------------------

def test_encode_is_the_documented_layout() -> None:
    assert encode_db_map([1, 0, 2]) == b"\x01\x00\x03\x00\x01\x00\x00\x00\x02"
    assert DB_MAP_KEY == b"\xff\xffdbmap"


def test_the_map_key_is_in_no_database_range() -> None:
    assert db_prefix(65534) + b"\xff" * 10 < DB_MAP_KEY  # the highest database (databases=65535)
    assert DB_MAP_KEY.startswith(db_prefix(65535))  # the range end of that database


@pytest.mark.parametrize("physical", [[0], [1, 0], list(range(16))[::-1],
                                      random.Random(5).sample(range(300), 300)])
def test_decode_inverts_encode(physical: list[int]) -> None:
    assert decode_db_map(encode_db_map(physical)) == physical


@pytest.mark.parametrize("value", [
    b"", b"\x01\x00", b"\x02\x00\x01\x00\x00",  # short header, unknown version
    b"\x01\x00\x00",  # no entries
    b"\x01\x00\x02\x00\x01", b"\x01\x00\x01\x00\x00\x00",  # length does not match n
    b"\x01\x00\x02\x00\x01\x00\x01", b"\x01\x00\x02\x00\x00\x00\x02",  # not a permutation
])
def test_decode_refuses_what_breaks_the_rules(value: bytes) -> None:
    with pytest.raises(DbMapError):
        decode_db_map(value)


def test_load_without_a_record_is_the_identity() -> None:
    assert load_db_map(MemoryEngine(), 16) == list(range(16))


def test_load_extends_a_shorter_map_and_keeps_a_longer_one() -> None:
    e = MemoryEngine()
    e.put(DB_MAP_KEY, encode_db_map([3, 1, 2, 0]))
    assert load_db_map(e, 6) == [3, 1, 2, 0, 4, 5]
    assert load_db_map(e, 2) == [3, 1, 2, 0]


def test_a_damaged_map_stops_the_server_opening(server: ServerState) -> None:
    server.engine.put(DB_MAP_KEY, b"\x01\x00\x02\x00\x00\x00\x00")
    with pytest.raises(DbMapError, match="permutation"):
        reopen(server)


def test_a_cluster_state_neither_reads_nor_needs_the_map(server: ServerState) -> None:
    server.engine.put(DB_MAP_KEY, b"garbage")
    state = ServerState(Config(engine="memory"), server.engine, server.clock_ms, db_map=False)
    assert [ks.db for ks in state.dbs] == list(range(16))


# -- the command --------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "error"), [
    (("x", "1"), "ERR invalid first DB index"),
    (("0", "x"), "ERR invalid second DB index"),
    (("x", "y"), "ERR invalid first DB index"),
    (("99999999999", "0"), "ERR invalid first DB index"),  # not a C int
    (("0", "99999999999"), "ERR invalid second DB index"),
    (("01", "0"), "ERR invalid first DB index"),  # string2ll: no leading zeros, no spaces
    ((" 1", "0"), "ERR invalid first DB index"),
    (("0", "-0"), "ERR invalid second DB index"),
    (("0", "16"), "ERR DB index is out of range"),
    (("-1", "0"), "ERR DB index is out of range"),
    (("16", "x"), "ERR invalid second DB index"),  # both parsed before the range check
    (("0",), "ERR wrong number of arguments for 'swapdb' command"),
    (("0", "1", "2"), "ERR wrong number of arguments for 'swapdb' command"),
])
def test_errors_as_redis(server: ServerState, conn: Conn, args: tuple[str, ...],
                         error: str) -> None:
    conn("SET", "k", "v")
    assert err(conn("SWAPDB", *args)) == error
    assert server.db_map == list(range(16)) and server.engine.get(DB_MAP_KEY) is None


def test_a_swap_moves_no_key_and_clients_see_it_at_once(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    a, b, other = make_conn(), make_conn(), make_conn()
    a("SET", "k", "zero")
    b("SELECT", "1")
    b("SET", "k", "one")
    other("SELECT", "2")
    other("SET", "k", "two")
    stored = dict(server.engine.scan(b"", db_prefix(16)))
    assert other("SWAPDB", "0", "1") is OK
    assert dict(server.engine.scan(b"", db_prefix(16))) == stored  # no key copied or moved
    assert a("GET", "k") == b"one" and b("GET", "k") == b"zero" and other("GET", "k") == b"two"
    assert server.db_map[:3] == [1, 0, 2]
    a("SET", "n", "new")  # written to physical database 1
    assert server.engine.get(db_prefix(1) + b"n") is not None
    assert a("SWAPDB", "1", "0") is OK  # and back
    assert a("GET", "k") == b"zero" and a("GET", "n") is None
    assert b("GET", "n") == b"new"
    assert server.db_map == list(range(16))


def test_swapping_a_database_with_itself_changes_and_writes_nothing(
        server: ServerState, conn: Conn) -> None:
    conn("SET", "k", "v")
    seq = server.engine.last_seq
    assert conn("SWAPDB", "3", "3") is OK
    assert server.engine.last_seq == seq and server.engine.get(DB_MAP_KEY) is None


def test_select_after_a_swap_follows_the_map(conn: Conn) -> None:
    conn("SELECT", "5")
    conn("SET", "k", "five")
    conn("SWAPDB", "5", "9")
    assert conn("GET", "k") is None
    conn("SELECT", "9")
    assert conn("GET", "k") == b"five"


def test_keyspace_walks_follow_the_map(server: ServerState, conn: Conn) -> None:
    for i in range(5):
        conn("SET", f"a{i}", "v")
    conn("SELECT", "1")
    conn("SET", "b", "v")
    conn("SWAPDB", "0", "1")
    assert conn("DBSIZE") == 5
    assert sorted(conn("KEYS", "*")) == [b"a%d" % i for i in range(5)]
    cursor, keys = parsed(conn("SCAN", "0", "COUNT", "100"))
    assert cursor == b"0" and sorted(keys) == [b"a%d" % i for i in range(5)]
    assert conn("RANDOMKEY").startswith(b"a")
    conn("SELECT", "0")
    assert conn("KEYS", "*") == [b"b"] and conn("DBSIZE") == 1 and conn("RANDOMKEY") == b"b"
    info = conn("INFO", "keyspace")
    assert "db0:keys=1," in info and "db1:keys=5," in info


def test_flushdb_after_a_swap_empties_the_database_selected(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    a, b = make_conn(), make_conn()
    a("SET", "x", "0")
    b("SELECT", "1")
    b("SET", "y", "1")
    a("SWAPDB", "0", "1")
    assert a("FLUSHDB") is OK  # empties what db 0 now is: the keys written in db 1
    assert a("DBSIZE") == 0 and b("GET", "x") == b"0"
    assert server.engine.get(db_prefix(0) + b"x") is not None  # the other range is untouched
    assert a("FLUSHALL") is OK and b("DBSIZE") == 0
    assert server.engine.get(DB_MAP_KEY) is not None  # FLUSHALL keeps the map
    assert reopen(server).db_map[:2] == [1, 0]


def test_move_and_copy_name_databases_by_number(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    a, b = make_conn(), make_conn()
    b("SELECT", "1")
    a("SET", "m", "moved")
    a("SET", "c", "copied")
    a("SWAPDB", "1", "2")
    assert a("MOVE", "m", "1") == 1
    assert a("COPY", "c", "c2", "DB", "1") == 1
    assert b("GET", "m") == b"moved" and b("GET", "c2") == b"copied"
    assert server.engine.get(db_prefix(2) + b"m") is not None  # physical 2 is database 1 now
    a("SWAPDB", "0", "1")  # the source is now what was database 1
    assert a("GET", "m") == b"moved" and a("MOVE", "m", "1") == 1 and b("GET", "m") == b"moved"


def test_dump_and_restore_follow_the_map(conn: Conn) -> None:
    conn("SET", "k", "v")
    payload = conn("DUMP", "k")
    conn("SWAPDB", "0", "1")
    assert conn("DUMP", "k") is None
    assert conn("RESTORE", "k", "0", payload) is OK
    conn("SELECT", "1")
    assert conn("DUMP", "k") == payload


def test_active_expiry_follows_the_data(server: ServerState, conn: Conn,
                                        clock: FakeClock) -> None:
    conn("SELECT", "1")
    for i in range(10):
        conn("SET", f"t{i}", "v", "PX", "100")
    conn("SWAPDB", "1", "0")
    conn("SELECT", "0")
    assert conn("PTTL", "t0") == 100
    clock.advance(100)
    assert server.dbs[0].active_expire_cycle(20) == 10
    assert conn("DBSIZE") == 0 and not list(server.engine.scan(db_prefix(1), db_prefix(2)))


def test_swapdb_runs_in_a_transaction(conn: Conn) -> None:
    conn("SET", "k", "zero")
    conn("MULTI")
    conn("SWAPDB", "0", "1")
    conn("GET", "k")
    conn("SELECT", "1")
    conn("GET", "k")
    assert conn("EXEC") == [OK, None, OK, b"zero"]


# -- WATCH ----------------------------------------------------------------------------------------
# Each row checked against redis-server 7.0.15: what db 0 and db 1 hold of the watched key when
# the client WATCHes it in db 0 ("live"; "expired": stored, its TTL passed before WATCH; None),
# and whether EXEC after SWAPDB 0 1 (or 1 0) runs.

WATCH_CASES = [
    # db0, db1, exec runs
    (None, None, True),
    ("live", None, False),
    (None, "live", False),
    ("live", "live", False),
    (None, "expired", True),  # nothing replaced by an expired key
    ("expired", None, True),  # an expired key gone: no change
    ("expired", "expired", True),  # expired, still expired
    ("expired", "live", False),
]


def _put(conn: Conn, key: str, state: str | None) -> None:
    if state == "live":
        conn("SET", key, "v")
    elif state == "expired":
        conn("SET", key, "v", "PX", "10")


@pytest.mark.parametrize("order", [("0", "1"), ("1", "0")])  # the watched db first, second
@pytest.mark.parametrize(("db0", "db1", "runs"), WATCH_CASES)
def test_watch_as_touch_all_watched_keys_in_db(
        server: ServerState, make_conn: Callable[[], Conn], clock: FakeClock,
        db0: str | None, db1: str | None, runs: bool, order: tuple[str, str]) -> None:
    w, other = make_conn(), make_conn()
    _put(w, "k", db0)
    other("SELECT", "1")
    _put(other, "k", db1)
    clock.advance(20)
    w("WATCH", "k")
    other("SWAPDB", *order)
    w("MULTI")
    w("PING")
    assert w("EXEC") == ([PONG] if runs else NULL_ARRAY)
    assert sum(len(v) for ks in server.dbs for v in ks.watchers.values()) == 0


def test_watch_stays_with_the_database_number(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    """Redis keeps watched_keys per database number: after a swap that touched nothing, a
    write under the watched number aborts EXEC and one under the other number does not."""
    w, other = make_conn(), make_conn()
    other("SELECT", "1")
    w("WATCH", "k")  # k exists nowhere: the swap touches nothing
    other("SWAPDB", "0", "1")
    other("SET", "k", "v")  # db 1: not what w watches
    w("MULTI")
    w("PING")
    assert w("EXEC") == [PONG]
    other("FLUSHALL")
    w("WATCH", "z")
    other("SWAPDB", "0", "3")
    other("SELECT", "0")
    other("SET", "z", "1")  # written in db 0, the number w watches
    w("MULTI")
    w("PING")
    assert w("EXEC") == NULL_ARRAY
    w("WATCH", "y")
    other("SELECT", "2")
    other("SWAPDB", "0", "2")
    other("SET", "y", "1")  # db 2 holds what db 0 held when w watched: not db 0
    w("MULTI")
    w("PING")
    assert w("EXEC") == [PONG]
    assert sum(len(v) for ks in server.dbs for v in ks.watchers.values()) == 0


def test_unwatch_after_swaps_leaves_no_watch_behind(
        server: ServerState, make_conn: Callable[[], Conn]) -> None:
    w, other = make_conn(), make_conn()
    w("WATCH", "a", "b")
    other("SWAPDB", "0", "1")
    other("SWAPDB", "1", "2")
    other("SWAPDB", "2", "0")
    assert all(entry[0] is server.dbs[0] for entry in w.client.watched)
    assert w("UNWATCH") is OK
    assert sum(len(v) for ks in server.dbs for v in ks.watchers.values()) == 0


# -- durability -----------------------------------------------------------------------------------

def test_a_data_directory_without_a_map_opens_with_the_identity(server: ServerState,
                                                                 conn: Conn) -> None:
    conn("SET", "k", "zero")
    state = reopen(server)
    assert state.db_map == list(range(16)) and [ks.db for ks in state.dbs] == list(range(16))


def test_the_map_survives_a_reopen(server: ServerState, conn: Conn) -> None:
    conn("SET", "k", "zero")
    conn("SWAPDB", "0", "7")
    conn("SWAPDB", "7", "3")
    state = reopen(server)
    assert state.db_map == server.db_map and state.db_map[:8] == [7, 1, 2, 0, 4, 5, 6, 3]
    c = type(conn)(state)
    c("SELECT", "3")
    assert c("GET", "k") == b"zero"


def test_a_reopen_with_fewer_databases_keeps_the_rest_of_the_map(
        server: ServerState, conn: Conn) -> None:
    conn("SELECT", "12")
    conn("SET", "k", "twelve")
    conn("SWAPDB", "12", "1")
    small = reopen(server, databases=4)
    c = type(conn)(small)
    c("SELECT", "1")
    assert c("GET", "k") == b"twelve"  # physical 12 is still reachable as database 1
    c("SWAPDB", "1", "2")
    assert reopen(server).db_map == [0, 2, 12, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 13, 14, 15]


def _lsm(fs: FaultFileSystem, now: Callable[[], int]) -> LSMEngine:
    return LSMEngine.open("/db", fs=fs, now_ms=now, inline_background=True,
                          memtable_bytes=16 << 10)


def test_a_power_loss_keeps_a_synced_swap_and_a_consistent_prefix(clock: FakeClock) -> None:
    """SWAPDB acknowledged (its record synced, as appendfsync always does before the reply)
    survives losing power; an unsynced one is lost together with the writes after it, never
    without them."""
    fs = FaultFileSystem(random.Random(11))
    engine = _lsm(fs, clock)
    state = ServerState(Config(), engine, clock)
    c = state.new_client()
    def run(*args: str) -> Any:
        return dispatch(TABLE, c, [a.encode() for a in args])

    for i in range(300):  # enough to flush a memtable or two into tables
        run("SET", f"k{i}", "zero")
    run("SELECT", "1")
    run("SET", "k0", "one")
    assert run("SWAPDB", "0", "1") is OK
    engine.sync()  # the acknowledgement point
    run("SWAPDB", "1", "2")  # not synced
    run("SET", "after", "x")  # db 1 -> physical 0 now: the same log, later
    fs.crash()
    state2 = ServerState(Config(), _lsm(fs, clock), clock)
    assert state2.db_map[:3] == [1, 0, 2]
    c2 = state2.new_client()
    assert dispatch(TABLE, c2, [b"GET", b"k0"]) == b"one"
    dispatch(TABLE, c2, [b"SELECT", b"1"])
    assert dispatch(TABLE, c2, [b"GET", b"k0"]) == b"zero"
    assert dispatch(TABLE, c2, [b"GET", b"after"]) is None
    assert dispatch(TABLE, c2, [b"DBSIZE"]) == 300
    state2.engine.close()


def test_a_torn_log_never_keeps_writes_after_a_lost_swap(clock: FakeClock) -> None:
    """Without a sync, whatever prefix of the log survives is consistent: a key written after
    the swap (into the range database 0 then used) is there only if the swap is."""
    for seed in range(20):
        fs = FaultFileSystem(random.Random(seed))
        engine = _lsm(fs, clock)
        state = ServerState(Config(), engine, clock)
        c = state.new_client()
        dispatch(TABLE, c, [b"SET", b"before", b"v"])
        engine.sync()
        dispatch(TABLE, c, [b"SWAPDB", b"0", b"1"])
        dispatch(TABLE, c, [b"SET", b"after", b"v"])
        engine.write_pending()
        fs.crash(tear=True)
        state2 = ServerState(Config(), _lsm(fs, clock), clock)
        swapped = state2.db_map[:2] == [1, 0]
        after = state2.engine.get(db_prefix(1) + b"after") is not None
        assert swapped or not after, seed
        c2 = state2.new_client()
        assert dispatch(TABLE, c2, [b"GET", b"before"]) == (None if swapped else b"v")
        state2.engine.close()
