"""redis-py against respkv, as applications use it: sync and asyncio, RESP2 and RESP3
(``protocol=3``: redis-py 8 sends HELLO 3 only then; by default it speaks RESP2 with no HELLO),
decode_responses on and off, pipelines (transaction=False) and shared connection pools. redis-py
also sends CLIENT SETINFO on every connect (and ignores an error reply to it).

One scenario -- typical calls of every command of the issue's list through redis-py's API --
runs on respkv and on redis-server with the same client settings, and the results must be equal
(TTL-like numbers within a tolerance, KEYS sorted, ids by type only). ``test_expected_values``
checks the core answers by hand, so it runs even without a redis-server.

Calls of commands respkv does not implement yet are left out of the scenario (see
``implemented``); ``test_client_and_config_via_redis_py`` is an xfail until they land.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

import respkv.commands  # noqa: F401
from respkv.commands.core import TABLE

CONFIGS = [
    pytest.param({"protocol": 2, "decode_responses": False}, id="resp2-bytes"),
    pytest.param({"protocol": 2, "decode_responses": True}, id="resp2-str"),
    pytest.param({"protocol": 3, "decode_responses": False}, id="resp3-bytes"),
    pytest.param({"protocol": 3, "decode_responses": True}, id="resp3-str"),
]


def implemented(name: str) -> bool:
    return TABLE.lookup(name.lower().encode()) is not None


def scenario(now: int) -> list[tuple[str, str, tuple, dict]]:
    """(command name for the TABLE check, redis-py method, args, kwargs)."""
    return [
        ("SET", "set", ("a", "1"), {}),
        ("SET", "set", ("a", "2"), {"nx": True}),
        ("SET", "set", ("a", "3"), {"xx": True, "get": True}),
        ("SET", "set", ("b", "v"), {"ex": 100}),
        ("SET", "set", ("c", b"\x00\xff bin"), {"px": 100_000}),
        ("SET", "set", ("c", "w"), {"keepttl": True}),
        ("SET", "set", ("d", "v"), {"exat": now + 1000}),
        ("SET", "set", ("d2", "v"), {"pxat": (now + 1000) * 1000}),
        ("SET", "set", ("e0", "v"), {"ex": 100, "nx": True, "get": True}),
        ("GET", "get", ("c",), {}),
        ("GET", "get", ("nokey",), {}),
        ("SETNX", "setnx", ("a", "x"), {}),
        ("SETEX", "setex", ("e", 100, "v"), {}),
        ("PSETEX", "psetex", ("f", 100_000, "v"), {}),
        ("GETSET", "getset", ("a", "4"), {}),
        ("GETDEL", "getdel", ("f",), {}),
        ("GETEX", "getex", ("b",), {"ex": 200}),
        ("GETEX", "getex", ("b",), {"persist": True}),
        ("GETEX", "getex", ("c",), {"px": 300_000}),
        ("GETEX", "getex", ("c",), {"exat": now + 5000}),
        ("GETEX", "getex", ("c",), {"pxat": (now + 6000) * 1000}),
        ("MGET", "mget", (["a", "b", "nokey"],), {}),
        ("MSET", "mset", ({"m1": "1", "m2": "2"},), {}),
        ("MSETNX", "msetnx", ({"m1": "x", "m3": "3"},), {}),
        ("MSETNX", "msetnx", ({"m4": "x", "m5": "3"},), {}),
        ("INCR", "incr", ("n",), {}),
        ("DECR", "decr", ("n",), {}),
        ("INCRBY", "incrby", ("n", 10), {}),
        ("DECRBY", "decrby", ("n", 3), {}),
        ("INCRBYFLOAT", "incrbyfloat", ("fl", 1.5), {}),
        ("INCRBYFLOAT", "incrbyfloat", ("fl", "0.25"), {}),
        ("INCR", "incr", ("a0", 5), {}),
        ("APPEND", "append", ("s", "abc"), {}),
        ("STRLEN", "strlen", ("s",), {}),
        ("GETRANGE", "getrange", ("s", 0, 1), {}),
        ("SETRANGE", "setrange", ("s", 5, "xy"), {}),
        ("SUBSTR", "substr", ("s", 0, -1), {}),
        ("INCR", "incr", ("s",), {}),  # an error: not an integer
        ("DEL", "delete", ("a", "nokey"), {}),
        ("UNLINK", "unlink", ("b",), {}),
        ("EXISTS", "exists", ("c", "d", "c", "nokey"), {}),
        ("TOUCH", "touch", ("c", "nokey"), {}),
        ("EXPIRE", "expire", ("c", 100), {}),
        ("EXPIRE", "expire", ("c", 50), {"nx": True}),
        ("EXPIRE", "expire", ("c", 500), {"gt": True}),
        ("EXPIRE", "expire", ("c", 10), {"lt": True}),
        ("EXPIRE", "expire", ("nokey", 10), {"xx": True}),
        ("PEXPIRE", "pexpire", ("c", 900_000), {}),
        ("EXPIREAT", "expireat", ("c", now + 2000), {}),
        ("PEXPIREAT", "pexpireat", ("c", (now + 3000) * 1000), {}),
        ("EXPIRETIME", "expiretime", ("c",), {}),
        ("PEXPIRETIME", "pexpiretime", ("c",), {}),
        ("TTL", "ttl", ("c",), {}),
        ("PTTL", "pttl", ("c",), {}),
        ("PERSIST", "persist", ("c",), {}),
        ("TTL", "ttl", ("c",), {}),
        ("TTL", "ttl", ("nokey",), {}),
        ("TYPE", "type", ("c",), {}),
        ("TYPE", "type", ("nokey",), {}),
        ("RENAME", "rename", ("c", "c2"), {}),
        ("RENAMENX", "renamenx", ("c2", "m1"), {}),
        ("RENAME", "rename", ("nokey", "x"), {}),
        ("KEYS", "keys", ("m*",), {}),
        ("RANDOMKEY", "randomkey", (), {}),
        ("DBSIZE", "dbsize", (), {}),
        ("PING", "ping", (), {}),
        ("ECHO", "echo", ("hi",), {}),
        ("FLUSHDB", "flushdb", (), {}),
        ("DBSIZE", "dbsize", (), {}),
        ("SET", "set", ("z", "1"), {}),
        ("FLUSHALL", "flushall", (), {}),
        ("EXISTS", "exists", ("z",), {}),
    ]


NEAR = {"ttl": 1, "expiretime": 1, "pttl": 1000, "pexpiretime": 1000}


def normalise(method: str, result: Any) -> Any:
    if isinstance(result, Exception):
        return (type(result).__name__, str(result))
    if method in NEAR and isinstance(result, int) and result >= 0:
        return ("near", result, NEAR[method])
    if method == "keys":
        return sorted(result)
    if method == "randomkey":
        return result is not None
    return result


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, tuple) and x and x[0] == "near" and isinstance(y, tuple) and y and y[0] == "near":
            if abs(x[1] - y[1]) > x[2]:
                return False
        elif x != y:
            return False
    return True


def run_sync(r: redis.Redis, calls: list) -> list:
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="Call to deprecated")
        for _, method, args, kwargs in calls:
            try:
                out.append(normalise(method, getattr(r, method)(*args, **kwargs)))
            except redis.ResponseError as e:
                out.append(normalise(method, e))
    return out


def run_pipeline(r: redis.Redis, calls: list) -> list:
    pipe = r.pipeline(transaction=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="Call to deprecated")
        for _, method, args, kwargs in calls:
            getattr(pipe, method)(*args, **kwargs)
    results = pipe.execute(raise_on_error=False)
    return [normalise(c[1], res) for c, res in zip(calls, results, strict=True)]


async def run_async(r: aioredis.Redis, calls: list) -> list:
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message="Call to deprecated")
        for _, method, args, kwargs in calls:
            try:
                out.append(normalise(method, await getattr(r, method)(*args, **kwargs)))
            except redis.ResponseError as e:
                out.append(normalise(method, e))
    return out


def present_calls(now: int) -> list:
    return [c for c in scenario(now) if implemented(c[0])]


def diff_report(calls: list, got: list, want: list) -> str:
    lines = []
    for c, g, w in zip(calls, got, want, strict=False):
        mark = "  " if same([g], [w]) else "!!"
        lines.append(f"{mark} {c[1]}{c[2]}{c[3] or ''}: respkv={g!r} redis={w!r}")
    return "\n".join(lines)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("mode", ["sync", "pipeline", "asyncio"])
def test_scenario_matches_redis(respkv_mem, redis_srv, cfg: dict, mode: str) -> None:
    now = int(time.time())
    calls = present_calls(now)
    results = []
    for sp in (respkv_mem, redis_srv):
        if mode == "asyncio":
            async def go(port: int = sp.port) -> list:
                r = aioredis.Redis(port=port, **cfg)
                try:
                    return await run_async(r, calls)
                finally:
                    await r.aclose()

            results.append(asyncio.run(go()))
        else:
            with redis.Redis(port=sp.port, **cfg) as r:
                results.append(run_sync(r, calls) if mode == "sync" else run_pipeline(r, calls))
    got, want = results
    assert same(got, want), "\n" + diff_report(calls, got, want)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_scenario_on_the_lsm_engine(respkv_lsm, redis_srv, cfg: dict) -> None:
    now = int(time.time())
    calls = present_calls(now)
    with redis.Redis(port=respkv_lsm.port, **cfg) as r1, redis.Redis(port=redis_srv.port, **cfg) as r2:
        got, want = run_sync(r1, calls), run_sync(r2, calls)
    assert same(got, want), "\n" + diff_report(calls, got, want)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_expected_values(respkv_mem, cfg: dict) -> None:
    """The core answers, by hand (no redis-server needed)."""
    dec = cfg["decode_responses"]

    def v(s: str) -> Any:
        return s if dec else s.encode()

    with redis.Redis(port=respkv_mem.port, **cfg) as r:
        assert r.ping() is True
        assert r.set("k", "v") is True
        assert r.get("k") == v("v")
        assert r.set("k", "w", nx=True) is None
        assert r.set("k", "w", xx=True, get=True) == v("v")
        assert r.set("k2", "x", ex=100) is True
        assert 99 <= r.ttl("k2") <= 100
        assert r.get("nokey") is None
        assert r.incr("n") == 1 and r.incrby("n", 41) == 42 and r.decr("n") == 41
        assert r.mget(["k", "nokey", "n"]) == [v("w"), None, v("41")]
        assert r.append("k", "zz") == 3 and r.strlen("k") == 3
        assert r.exists("k", "k", "nokey") == 2
        if implemented("GETEX"):
            assert r.getex("k2", persist=True) == v("x") and r.ttl("k2") == -1
        if implemented("EXPIRE"):
            assert r.expire("k", 100, nx=True) is True and r.expire("k", 100, nx=True) is False
        if implemented("DEL"):
            assert r.delete("k", "nokey") == 1
        with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
            r.incrby("n", "x")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            r.execute_command("SET", "k", "v", "NX", "XX")


def test_resp3_handshake_metadata(respkv_mem) -> None:
    """protocol=3 sends HELLO 3; the map it gets back says proto 3 and carries the version."""
    require("HELLO")
    with redis.Redis(port=respkv_mem.port, protocol=3) as r:
        r.ping()
        conn = r.connection_pool.get_connection()
        try:
            meta = conn.handshake_metadata
        finally:
            r.connection_pool.release(conn)
    assert meta[b"proto"] == 3 and meta[b"server"] == b"redis" and meta[b"version"] == b"7.0.15"


def require(name: str) -> None:
    if not implemented(name):
        pytest.xfail(f"{name} is not implemented in respkv yet (not in respkv.commands TABLE)")


@pytest.mark.parametrize("cfg", CONFIGS)
def test_client_and_config_via_redis_py(respkv_mem, redis_srv, cfg: dict) -> None:
    require("CLIENT")
    require("CONFIG")
    out = []
    for sp in (respkv_mem, redis_srv):
        with redis.Redis(port=sp.port, **cfg) as r:
            res: list[Any] = [isinstance(r.client_id(), int), r.client_setname("app-1"),
                              r.client_getname()]
            info = r.client_info()
            res.append({k: info.get(k) for k in ("name", "db", "resp", "user", "cmd")})
            res.append(r.config_get("databases"))
            res.append(r.config_get("no-such-parameter"))
            out.append(res)
    assert out[0] == out[1]


def test_connection_pool_shared_by_threads(respkv_mem) -> None:
    pool = redis.BlockingConnectionPool(port=respkv_mem.port, max_connections=4, timeout=20)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            r = redis.Redis(connection_pool=pool)
            for _ in range(200):
                r.incr("counter")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert redis.Redis(connection_pool=pool).get("counter") == b"1600"
    finally:
        pool.disconnect()


@pytest.mark.parametrize("protocol", [2, 3])
def test_asyncio_pool_concurrency(respkv_mem, protocol: int) -> None:
    async def go() -> None:
        pool = aioredis.BlockingConnectionPool(port=respkv_mem.port, max_connections=5, protocol=protocol,
                                              timeout=20)
        r = aioredis.Redis(connection_pool=pool)
        try:
            await asyncio.gather(*(r.incr("acounter") for _ in range(300)))
            await asyncio.gather(*(r.set(f"k{i}", i, ex=100) for i in range(100)))
            vals = await r.mget([f"k{i}" for i in range(100)])
            assert vals == [str(i).encode() for i in range(100)]
            assert await r.get("acounter") == b"300"
            pipe = r.pipeline(transaction=False)
            for _ in range(100):
                pipe.incr("p")
            assert (await pipe.execute())[-1] == 100
        finally:
            await r.aclose()
            await pool.disconnect()

    asyncio.run(go())


def test_big_values_and_binary_keys(respkv_mem) -> None:
    with redis.Redis(port=respkv_mem.port) as r:
        big = bytes(range(256)) * 4096  # 1 MB, every byte value
        assert r.set(b"\x00key\xff\r\n", big) is True
        assert r.get(b"\x00key\xff\r\n") == big
        pipe = r.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"pk{i}", b"v" * 100)
        assert all(pipe.execute())
        assert r.mget([f"pk{i}" for i in range(1000)]) == [b"v" * 100] * 1000
