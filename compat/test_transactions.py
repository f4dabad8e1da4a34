"""MULTI/EXEC/DISCARD/WATCH/UNWATCH against redis-server: directed scripts over two connections
per server (a WATCH broken by another client), compared byte for byte in RESP2 and RESP3; and
redis-py's default pipeline (a transaction) on respkv. Random single-connection sequences that
mix transactions with every other command are in test_differential.py (FORMS)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from rawresp import COMPARED, RawConn, run_script

# A script: steps (connection index, command...). Every reply must be the same bytes on both.
SCRIPTS: dict[str, list[tuple[Any, ...]]] = {
    "queue and exec": [(0, "MULTI"), (0, "SET", "k", "1"), (0, "INCR", "k"), (0, "GET", "k"),
                       (0, "EXEC"), (0, "GET", "k")],
    "empty exec": [(0, "MULTI"), (0, "EXEC")],
    "runtime error does not stop the rest": [
        (0, "SET", "s", "abc"), (0, "MULTI"), (0, "INCR", "s"), (0, "SET", "t", "1"),
        (0, "EXEC"), (0, "GET", "t")],
    "queue-time error aborts": [
        (0, "MULTI"), (0, "SET", "k", "1"), (0, "NOSUCHCMD", "x"), (0, "GET"), (0, "EXEC"),
        (0, "EXISTS", "k")],
    "nesting and misuse": [
        (0, "EXEC"), (0, "DISCARD"), (0, "MULTI"), (0, "MULTI"), (0, "WATCH", "k"),
        (0, "SET", "k", "v"), (0, "EXEC"), (0, "GET", "k")],
    "discard": [(0, "MULTI"), (0, "SET", "k", "v"), (0, "DISCARD"), (0, "EXISTS", "k"),
                (0, "EXEC")],
    "not allowed in a transaction": [(0, "MULTI"), (0, "SAVE"), (0, "SET", "k", "v"),
                                     (0, "EXEC"), (0, "EXISTS", "k")],
    "watch untouched": [(0, "SET", "w", "1"), (0, "WATCH", "w"), (0, "MULTI"),
                        (0, "INCR", "w"), (0, "EXEC")],
    "watch broken by another client": [
        (0, "SET", "w", "1"), (0, "WATCH", "w"), (1, "SET", "w", "2"), (0, "MULTI"),
        (0, "INCR", "w"), (0, "EXEC"), (0, "GET", "w")],
    "watch broken by the same client": [
        (0, "WATCH", "w"), (0, "SET", "w", "x"), (0, "MULTI"), (0, "GET", "w"), (0, "EXEC")],
    "watch a missing key, another client creates it": [
        (0, "WATCH", "nokey"), (1, "SET", "nokey", "1"), (0, "MULTI"), (0, "PING"),
        (0, "EXEC")],
    "delete of a missing key touches nothing": [
        (0, "WATCH", "nokey"), (1, "DEL", "nokey"), (0, "MULTI"), (0, "PING"), (0, "EXEC")],
    "unwatch": [(0, "WATCH", "w"), (1, "SET", "w", "3"), (0, "UNWATCH"), (0, "MULTI"),
                (0, "GET", "w"), (0, "EXEC")],
    "exec forgets the watches": [
        (0, "WATCH", "w"), (0, "MULTI"), (0, "PING"), (0, "EXEC"), (1, "SET", "w", "4"),
        (0, "MULTI"), (0, "PING"), (0, "EXEC")],
    "discard forgets the watches": [
        (0, "WATCH", "w"), (0, "MULTI"), (0, "DISCARD"), (1, "SET", "w", "5"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC")],
    "flushdb touches a watched key that existed": [
        (0, "SET", "w", "1"), (0, "WATCH", "w", "nokey"), (1, "FLUSHDB"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC")],
    "flushdb leaves a watched missing key alone": [
        (0, "WATCH", "nokey"), (1, "FLUSHALL"), (0, "MULTI"), (0, "PING"), (0, "EXEC")],
    "expire and persist touch, a no-op persist does not": [
        (0, "SET", "w", "1"), (0, "WATCH", "w"), (1, "PERSIST", "w"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC"), (0, "WATCH", "w"), (1, "EXPIRE", "w", "100"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC")],
    "rename touches both keys": [
        (0, "SET", "a", "1"), (0, "WATCH", "b"), (1, "RENAME", "a", "b"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC")],
    "a watch is per database": [
        (0, "WATCH", "w"), (1, "SELECT", "1"), (1, "SET", "w", "other db"), (0, "MULTI"),
        (0, "PING"), (0, "EXEC")],
    "select inside a transaction": [
        (0, "MULTI"), (0, "SELECT", "1"), (0, "SET", "k", "in 1"), (0, "EXEC"),
        (0, "GET", "k"), (0, "SELECT", "0"), (0, "EXISTS", "k")],
    "reset leaves the transaction": [(0, "MULTI"), (0, "SET", "k", "v"), (0, "RESET"),
                                     (0, "EXEC"), (0, "EXISTS", "k")],
    "watch wrong arity and exec with arguments": [
        (0, "WATCH"), (0, "MULTI"), (0, "EXEC", "x"), (0, "EXEC")],
    "client setname inside a transaction": [
        (0, "MULTI"), (0, "CLIENT", "SETNAME", "tx"), (0, "CLIENT", "GETNAME"), (0, "EXEC"),
        (0, "CLIENT", "GETNAME")],
}


def run(port: int, script: list[tuple[Any, ...]], resp3: bool) -> list[bytes]:
    return run_script(port, script, resp3, connections=2)


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_transaction_scripts(both, name: str, resp3: bool) -> None:
    respkv, redis_srv = both
    script = SCRIPTS[name]
    got = run(respkv.port, script, resp3)
    want = run(redis_srv.port, script, resp3)
    for step, g, w in zip(script, got, want, strict=True):
        COMPARED[str(step[1]).upper()] += 1
        assert g == w, f"{name}: {step}: respkv {g!r}, redis-server {w!r}"


def test_client_info_flags_and_multi_in_transactions(both) -> None:
    """CLIENT INFO's flags and multi fields: d once a watched key changed, x (and the queued
    count) while EXEC runs the commands."""
    def fields(raw: bytes) -> list[tuple[str, str]]:
        text = raw.decode("latin-1")
        return [tuple(f.split("=", 1)) for f in text.split() if f.split("=", 1)[0] in  # type: ignore[misc]
                ("flags", "multi", "cmd")]

    results = []
    for sp in both:
        a, b = RawConn(sp.port), RawConn(sp.port)
        try:
            a.call("FLUSHALL")
            a.call("WATCH", "w")
            b.call("SET", "w", "1")
            out = [fields(a.value("CLIENT", "INFO"))]
            a.call("UNWATCH")
            a.call("MULTI")
            a.call("CLIENT", "INFO")
            a.call("PING")
            out.append(fields(a.value("EXEC")[0][1]))
            out.append(fields(a.value("CLIENT", "INFO")))
            results.append(out)
        finally:
            a.close()
            b.close()
    assert results[0] == results[1]
    assert results[0][0][0] == ("flags", "d") and results[0][1][0] == ("flags", "x")


def test_watch_of_a_key_that_expires_before_exec(both) -> None:
    """A key live when watched and expired at EXEC aborts the transaction (7.0's
    isWatchedKeyExpired); one already expired when watched does not."""
    results = []
    for sp in both:
        c = RawConn(sp.port)
        try:
            c.call("FLUSHALL")
            c.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # respkv: unknown; redis: lazy only
            steps = [("SET", "e", "1", "PX", "100"), ("WATCH", "e")]
            out = [c.call(*s)[1] for s in steps]
            time.sleep(0.2)
            out += [c.call(*s)[1] for s in (("MULTI",), ("PING",), ("EXEC",))]
            out += [c.call(*s)[1] for s in (("SET", "f", "1", "PX", "50"),)]
            time.sleep(0.1)
            out += [c.call(*s)[1] for s in (("WATCH", "f"), ("MULTI",), ("PING",), ("EXEC",))]
            c.call("DEBUG", "SET-ACTIVE-EXPIRE", "1")
            results.append(out)
        finally:
            c.close()
    assert results[0] == results[1]


def test_redis_py_default_pipeline_and_optimistic_locking(respkv_mem) -> None:
    """What users write: ``r.pipeline()`` (MULTI/EXEC by default) and the WATCH retry loop."""
    r = redis.Redis(port=respkv_mem.port)
    pipe = r.pipeline()
    pipe.set("counter", 1).incr("counter").get("counter")
    assert pipe.execute() == [True, 2, b"2"]

    def add_one(p: redis.client.Pipeline) -> None:
        value = int(p.get("counter"))
        p.multi()
        p.set("counter", value + 1)

    assert r.transaction(add_one, "counter") == [True]
    assert r.get("counter") == b"3"
    with r.pipeline() as p:
        p.watch("counter")
        r.set("counter", 100)  # another client
        p.multi()
        p.set("counter", 0)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("counter") == b"100"
