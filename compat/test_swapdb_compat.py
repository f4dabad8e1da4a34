"""SWAPDB against redis-server 7.0: directed scripts over three connections per server, every
reply compared byte for byte (RESP2 and RESP3) -- the errors, what each connection sees after a
swap (at once, in the database it had SELECTed), WATCH across a swap, FLUSHDB, MOVE and COPY
after swaps, SWAPDB inside MULTI. Random sequences with SWAPDB are in test_differential.py
(FORMS["SWAPDB"])."""

from __future__ import annotations

from typing import Any

import pytest
from rawresp import COMPARED, SLEEP, RawConn, run_script

from respkv.protocol import rdb

# (Every KEYS, SCAN and RANDOMKEY here matches one key at most: redis-server answers in hash
# order, which its random hash seed changes from one process to the next.)


def _fill(conn: int, db: int, *pairs: str) -> list[tuple[Any, ...]]:
    steps: list[tuple[Any, ...]] = [(conn, "SELECT", str(db))]
    steps += [(conn, "SET", pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
    return steps


def _watch_case(db0: list[str], db1: list[str], swap: tuple[str, str]) -> list[tuple[Any, ...]]:
    """Connection 0 WATCHes k in db 0 after db 0 and db 1 were given ``db0``/``db1`` (SET
    arguments after the key, or [] for no key), then connection 1 swaps ``swap``."""
    steps: list[tuple[Any, ...]] = [(1, "SELECT", "1")]
    if db0:
        steps.append((0, "SET", "k", *db0))
    if db1:
        steps.append((1, "SET", "k", *db1))
    steps += [(SLEEP, 0.05), (0, "WATCH", "k"), (1, "SWAPDB", *swap), (0, "MULTI"),
              (0, "PING"), (0, "EXEC"), (0, "EXISTS", "k"), (1, "EXISTS", "k")]
    return steps


LIVE, EXPIRED = ["v"], ["v", "PX", "20"]

SCRIPTS: dict[str, list[tuple[Any, ...]]] = {
    "errors": [
        (0, "SWAPDB"), (0, "SWAPDB", "0"), (0, "SWAPDB", "0", "1", "2"),
        (0, "SWAPDB", "x", "1"), (0, "SWAPDB", "0", "x"), (0, "SWAPDB", "x", "y"),
        (0, "SWAPDB", "", "0"), (0, "SWAPDB", "0", ""), (0, "SWAPDB", "01", "0"),
        (0, "SWAPDB", "0", "-0"), (0, "SWAPDB", " 1", "0"), (0, "SWAPDB", "1.0", "0"),
        (0, "SWAPDB", "0", "16"), (0, "SWAPDB", "16", "0"), (0, "SWAPDB", "-1", "0"),
        (0, "SWAPDB", "0", "-1"), (0, "SWAPDB", "16", "x"), (0, "SWAPDB", "2147483647", "0"),
        (0, "SWAPDB", "2147483648", "0"), (0, "SWAPDB", "0", "-2147483649"),
        (0, "SWAPDB", "9223372036854775808", "0"), (0, "swapdb", "15", "0"),
        (0, "SwapDb", "0", "15"), (0, "SWAPDB", "7", "7")],
    "every connection sees the swap at once": [
        *_fill(0, 0, "k", "zero", "only0", "a"), *_fill(1, 1, "k", "one"),
        *_fill(2, 2, "k", "two"),
        (2, "SWAPDB", "0", "1"),
        (0, "GET", "k"), (1, "GET", "k"), (2, "GET", "k"), (0, "DBSIZE"), (1, "DBSIZE"),
        (0, "KEYS", "*"), (1, "KEYS", "o*"), (1, "SCAN", "0", "MATCH", "on*"), (0, "RANDOMKEY"),
        (0, "EXISTS", "only0"), (1, "EXISTS", "only0"), (0, "SELECT", "1"), (0, "GET", "k"),
        (0, "SELECT", "0"), (0, "GET", "k"), (0, "INFO", "keyspace"),
        (1, "SWAPDB", "2", "0"), (0, "GET", "k"), (2, "GET", "k"), (1, "GET", "k"),
        (0, "INFO", "keyspace"),
        (0, "SWAPDB", "1", "0"), (0, "GET", "k"), (1, "GET", "k"), (2, "GET", "k"),
        (0, "SWAPDB", "0", "2"), (0, "GET", "k"), (1, "GET", "k"), (2, "GET", "k")],
    "writes after a swap land in the swapped database": [
        *_fill(0, 0, "a", "0"), *_fill(1, 1, "b", "1"),
        (0, "SWAPDB", "0", "1"), (0, "SET", "c", "new"), (0, "INCR", "b"), (1, "INCR", "a"),
        (0, "SWAPDB", "0", "1"), (0, "MGET", "a", "b", "c"), (1, "MGET", "a", "b", "c")],
    "ttls travel with the data": [
        (0, "SET", "t", "v", "EX", "1000"), (0, "SET", "p", "v", "PX", "300"),
        (1, "SELECT", "3"), (0, "SWAPDB", "3", "0"), (0, "TTL", "t"), (1, "TTL", "t"),
        (1, "EXISTS", "p"), (SLEEP, 0.35), (1, "EXISTS", "p"), (1, "DBSIZE"),
        (0, "EXPIRE", "t", "50"), (1, "TTL", "t"), (1, "PERSIST", "t"), (1, "TTL", "t")],
    "flushdb after a swap": [
        *_fill(0, 0, "x", "0"), *_fill(1, 1, "y", "1"),
        (0, "SWAPDB", "0", "1"), (0, "FLUSHDB"), (0, "DBSIZE"), (1, "DBSIZE"),
        (1, "GET", "x"), (0, "GET", "y"), (1, "SWAPDB", "1", "0"), (0, "GET", "x"),
        (1, "DBSIZE"), (1, "FLUSHDB"), (0, "DBSIZE"), (0, "SET", "z", "1"),
        (0, "SWAPDB", "0", "5"), (0, "FLUSHALL"), (0, "SELECT", "5"), (0, "DBSIZE")],
    "move and copy across swapped databases": [
        *_fill(0, 0, "m", "moved", "c", "copied", "taken", "0"), *_fill(1, 1, "taken", "1"),
        (0, "SWAPDB", "1", "2"), (0, "MOVE", "m", "1"), (0, "MOVE", "taken", "2"),
        (0, "COPY", "c", "c2", "DB", "1"), (1, "GET", "m"), (1, "GET", "c2"),
        (1, "SELECT", "2"), (1, "GET", "taken"), (1, "GET", "m"),
        (0, "SWAPDB", "0", "1"), (0, "GET", "m"), (0, "MOVE", "m", "1"), (0, "MOVE", "m", "0"),
        (0, "EXISTS", "m"), (0, "COPY", "c2", "c3", "DB", "0"), (0, "SELECT", "1"),
        (0, "GET", "m"), (0, "GET", "c"), (0, "MOVE", "c", "1"), (0, "MOVE", "taken", "2")],
    "dump and restore follow the swap": [
        (0, "SET", "d", "payload"), (0, "SWAPDB", "0", "4"), (0, "EXISTS", "d"),
        (1, "SELECT", "4"), (1, "DUMP", "d"), (1, "DEL", "d"), (0, "SWAPDB", "4", "0"),
        (0, "RESTORE", "d", "0", rdb.dump_string(b"payload")),
        (0, "GET", "d"), (1, "GET", "d")],
    "swapdb inside a transaction": [
        *_fill(0, 0, "k", "zero"), (1, "SELECT", "1"), (0, "MULTI"), (0, "SWAPDB", "0", "1"),
        (0, "GET", "k"), (0, "SWAPDB", "0", "99"), (0, "SWAPDB", "x", "1"), (0, "SELECT", "1"),
        (0, "GET", "k"), (0, "EXEC"), (1, "GET", "k"), (0, "MULTI"), (0, "SWAPDB", "0"),
        (0, "EXEC")],
    "watch, key in neither database": _watch_case([], [], ("0", "1")),
    "watch, key in the watched database": _watch_case(LIVE, [], ("0", "1")),
    "watch, key in the other database": _watch_case([], LIVE, ("0", "1")),
    "watch, key in the other database, swapped 1 0": _watch_case([], LIVE, ("1", "0")),
    "watch, key in both": _watch_case(LIVE, LIVE, ("1", "0")),
    "watch, an expired key comes in": _watch_case([], EXPIRED, ("0", "1")),
    "watch, an expired key goes": _watch_case(EXPIRED, [], ("0", "1")),
    "watch, expired on both sides": _watch_case(EXPIRED, EXPIRED, ("1", "0")),
    "watch, expired replaced by live": _watch_case(EXPIRED, LIVE, ("0", "1")),
    "watch, a swap of two other databases": _watch_case(LIVE, LIVE, ("2", "3")),
    "watch, a swap with itself": _watch_case(LIVE, LIVE, ("0", "0")),
    "watch stays with the database number": [
        (1, "SELECT", "1"), (0, "WATCH", "k"), (1, "SWAPDB", "0", "1"), (1, "SET", "k", "1"),
        (0, "MULTI"), (0, "PING"), (0, "EXEC"),
        (0, "WATCH", "k2"), (1, "SWAPDB", "0", "3"), (1, "SELECT", "0"), (1, "SET", "k2", "v"),
        (0, "MULTI"), (0, "PING"), (0, "EXEC"),
        (0, "WATCH", "k3"), (1, "SELECT", "2"), (1, "SWAPDB", "2", "0"), (1, "SET", "k3", "v"),
        (0, "MULTI"), (0, "PING"), (0, "EXEC")],
    "a watched key written in the database swapped in": [
        (2, "SELECT", "1"), (2, "SET", "other", "1"), (0, "WATCH", "w"),
        (1, "SWAPDB", "0", "1"), (1, "SET", "w", "now in 0"), (0, "MULTI"), (0, "GET", "w"),
        (0, "EXEC"), (0, "GET", "w")],
}


def run(port: int, script: list[tuple[Any, ...]], resp3: bool) -> list[bytes]:
    return run_script(port, script, resp3, connections=3)


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_swapdb_scripts(both, name: str, resp3: bool) -> None:
    respkv, redis_srv = both
    script = SCRIPTS[name]
    got = run(respkv.port, script, resp3)
    want = run(redis_srv.port, script, resp3)
    steps = [s for s in script if s[0] != SLEEP]
    for step, g, w in zip(steps, got, want, strict=True):
        COMPARED[str(step[1]).upper()] += 1
        assert g == w, f"{name}: {step}: respkv {g!r}, redis-server {w!r}"


def test_watch_cases_are_not_all_alike(redis_srv) -> None:
    """The WATCH scripts test something: redis-server runs some of those EXECs and not others
    (so a respkv that always or never aborted would differ)."""
    outcomes = set()
    for name, script in SCRIPTS.items():
        if name.startswith("watch,"):
            replies = run(redis_srv.port, script, False)
            outcomes.add(replies[-3])  # EXEC's
    assert outcomes == {b"*-1\r\n", b"*1\r\n+PONG\r\n"}


def test_command_info(both) -> None:
    """COMMAND INFO's arity, flags, keys and ACL categories as redis-server's."""
    respkv, redis_srv = both
    got, want = (RawConn(sp.port) for sp in both)
    try:
        assert got.call("COMMAND", "INFO", "swapdb")[1] == want.call("COMMAND", "INFO", "swapdb")[1]
        assert got.call("COMMAND", "COUNT")[0][0] == ":"
    finally:
        got.close()
        want.close()
