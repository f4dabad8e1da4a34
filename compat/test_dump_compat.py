"""DUMP/RESTORE between respkv and a real redis-server 7.0, both ways; OBJECT's rule on values
made by SET; LCS on strings of a few KB; and the redis-py calls of COPY, MOVE, DUMP/RESTORE,
OBJECT and LCS on both servers.

What may differ, and is checked as such: redis-server LZF-compresses a value longer than 20
bytes when that saves 4 bytes or more, respkv's DUMP never does (docs/formats/dump.md), so for
those values the payloads differ and each server must restore the other's to the same value.
Every other payload must be equal byte for byte.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis
from rawresp import COMPARED, RawConn

from respkv.protocol import rdb

_RNG = random.Random(20240607)


def _text(n: int) -> bytes:
    """Compressible but not trivial: words of a small vocabulary."""
    words = [b"alpha", b"beta", b"gamma", b"delta", b"key:", b"value", b"\x00\x01", b"1234"]
    out = bytearray()
    while len(out) < n:
        out += _RNG.choice(words) + b" "
    return bytes(out[:n])


VALUES: dict[str, bytes] = {
    "empty": b"",
    "int_0": b"0",
    "int_-1": b"-1",
    "int_127": b"127",
    "int_-128": b"-128",
    "int_128": b"128",
    "int_32767": b"32767",
    "int_-32769": b"-32769",
    "int_2147483647": b"2147483647",
    "int_-2147483648": b"-2147483648",
    "int_2147483648": b"2147483648",
    "int64_max": b"9223372036854775807",
    "int64_min": b"-9223372036854775808",
    "beyond_int64": b"9223372036854775808",
    "not_canonical": b"007",
    "minus_zero": b"-0",
    "float": b"3.14",
    "short": b"hello",
    "binary": b"\x00\xff\r\n\x80",
    "twenty": b"x" * 20,
    "twenty_one_compressible": b"x" * 21,
    "twenty_one_random": bytes(_RNG.randrange(256) for _ in range(21)),
    "compressible_100": b"a" * 100,
    "embstr_limit": b"ab" * 22,
    "raw_45": b"ab" * 22 + b"c",
    "random_1k": bytes(_RNG.randrange(256) for _ in range(1000)),
    "text_10k": _text(10_000),
    "repeat_100k": b"0123456789" * 10_000,
    "text_300k": _text(300_000),
    "zeros_1m": bytes(1 << 20),
    "random_200k": bytes(_RNG.randrange(256) for _ in range(200_000)),
}


def _dump(conn: RawConn, key: bytes) -> bytes:
    tree, raw = conn.call("DUMP", key)
    assert tree[0] == "$" and tree[1] is not None, raw[:200]
    return tree[1]


def _pttl(conn: RawConn, key: bytes) -> int:
    return conn.value("PTTL", key)


@pytest.mark.parametrize("ttl", [0, 50_000], ids=["no-ttl", "ttl"])
@pytest.mark.parametrize("name", list(VALUES))
def test_dump_restore_both_ways(both, name: str, ttl: int) -> None:
    respkv, redis_srv = both
    value = VALUES[name]
    with RawConn(respkv.port) as k, RawConn(redis_srv.port) as r:
        for c in (k, r):
            c.call("SET", "src", value)
            if ttl:
                c.call("PEXPIRE", "src", ttl)
        from_redis = _dump(r, b"src")
        from_respkv = _dump(k, b"src")
        # the payloads
        compressed = from_redis[1] == 0xC3
        if compressed:
            assert len(value) > 20 and from_respkv == rdb.dump_string(value)
        else:
            assert from_respkv == from_redis
        assert rdb.load_string(from_redis, 1 << 30) == value
        COMPARED["DUMP (cross-server)"] += 1
        # each server restores the other's payload (and its own)
        for c, payload in ((k, from_redis), (r, from_respkv), (k, from_respkv), (r, from_redis)):
            assert c.call("RESTORE", "dst", ttl, payload, "REPLACE")[0] == ("+", b"OK")
            assert c.value("GET", "dst") == value
            if ttl:
                assert ttl - 2000 <= _pttl(c, b"dst") <= ttl
            else:
                assert _pttl(c, b"dst") == -1
            COMPARED["RESTORE (cross-server)"] += 1
        # a server's own DUMP of a value it restored is its DUMP of the value
        assert _dump(k, b"dst") == from_respkv


def test_restore_absttl_and_expired_on_both(both) -> None:
    respkv, redis_srv = both
    payload = rdb.dump_string(b"v" * 30)
    with RawConn(respkv.port) as k, RawConn(redis_srv.port) as r:
        t = r.value("TIME")
        now_ms = int(t[0][1]) * 1000 + int(t[1][1]) // 1000
        for c in (k, r):
            c.call("SET", "old", "x")
            assert c.call("RESTORE", "old", now_ms - 1000, payload, "ABSTTL", "REPLACE")[0] == \
                ("+", b"OK")
            assert c.value("EXISTS", "old") == 0
            assert c.call("RESTORE", "at", now_ms + 100_000, payload, "ABSTTL")[0] == ("+", b"OK")
            assert c.value("PEXPIRETIME", "at") == now_ms + 100_000
            assert c.call("RESTORE", "wrap", "9223372036854775807", payload)[0] == ("+", b"OK")
            assert c.value("EXISTS", "wrap") == 0


def test_object_encoding_and_refcount_of_values_set_by_set(both) -> None:
    """Exact: for values stored by SET, respkv's rule is Redis's."""
    respkv, redis_srv = both
    values = [b"x" * n for n in range(0, 50)] + [
        b"0", b"9999", b"10000", b"-1", b"-9223372036854775808", b"9223372036854775807",
        b"9223372036854775808", b"12345678901234567890", b"007", b"-0", b"+1", b"1.5", b" 1",
        b"1" * 44, b"1" * 45]
    with RawConn(respkv.port) as k, RawConn(redis_srv.port) as r:
        for v in values:
            replies = []
            for c in (k, r):
                c.call("SET", "k", v)
                replies.append((c.call("OBJECT", "ENCODING", "k")[1],
                                c.call("OBJECT", "REFCOUNT", "k")[1]))
            assert replies[0] == replies[1], v
            COMPARED["OBJECT (values set by SET)"] += 2


def _lcs_strings(n: int, alphabet: bytes) -> tuple[bytes, bytes]:
    return (bytes(_RNG.choice(alphabet) for _ in range(n)),
            bytes(_RNG.choice(alphabet) for _ in range(n + n // 3)))


@pytest.mark.parametrize("n, alphabet", [(2000, b"ACGT"), (3000, b"ab"), (1500, bytes(range(256)))])
def test_lcs_on_kilobytes_is_byte_exact(both, n: int, alphabet: bytes) -> None:
    respkv, redis_srv = both
    a, b = _lcs_strings(n, alphabet)
    with RawConn(respkv.port) as k, RawConn(redis_srv.port) as r:
        for proto in (b"2", b"3"):
            raws = []
            for c in (k, r):
                c.call("HELLO", proto)
                c.call("MSET", "a", a, "b", b)
                raws.append([c.call("LCS", "a", "b", *opts)[1] for opts in (
                    (), ("LEN",), ("IDX",), ("IDX", "MINMATCHLEN", "3", "WITHMATCHLEN"))])
            assert raws[0] == raws[1]
            COMPARED["LCS (kilobytes)"] += 4


# -- redis-py --------------------------------------------------------------------------------------

def _scenario(r: redis.Redis, r2: redis.Redis) -> list[Any]:
    """Calls through redis-py's API; ``r2`` is the same server's database 2."""
    out: list[Any] = []
    r.flushall()
    r.set("a", "1")
    r.set("t", "v" * 40, ex=1000)
    out.append(r.copy("a", "b"))
    out.append(r.copy("a", "b"))
    out.append(r.copy("a", "b", replace=True))
    out.append(r.copy("t", "t2", destination_db=3))
    out.append(r.copy("nokey", "x"))
    out.append(r.move("b", 2))
    out.append(r.move("a", 2))  # b moved there first, a is still here: moves
    out.append(r.exists("a", "b"))
    out.append(sorted(r2.keys("*")))
    payload = r.dump("t")
    out.append(r.dump("nokey"))
    out.append(r.restore("t3", 0, payload))
    out.append(r.restore("t3", 5000, payload, replace=True))
    out.append(3000 < r.pttl("t3") <= 5000)
    out.append(r.restore("t4", 0, payload, replace=True, idletime=10))
    out.append(r.restore("t5", 0, payload, frequency=5))
    out.append(r.get("t5"))
    for sub in ("encoding", "refcount"):
        out.append(r.object(sub, "a") if r.exists("a") else r.object(sub, "t3"))
        out.append(r.object(sub, "nokey"))
    r.mset({"k1": "ohmytext", "k2": "mynewtext"})
    out.append(r.lcs("k1", "k2"))
    out.append(r.lcs("k1", "k2", len=True))
    out.append(r.lcs("k1", "k2", idx=True, minmatchlen=2, withmatchlen=True))
    return out


def _errors(r: redis.Redis) -> list[str]:
    out = []
    for call in (lambda: r.copy("k1", "k1"), lambda: r.move("k1", 0),
                 lambda: r.restore("k1", 0, b"junk"), lambda: r.object("freq", "k1"),
                 lambda: r.lcs("k1", "k2", len=True, idx=True)):
        with pytest.raises(redis.ResponseError) as info:
            call()
        out.append(str(info.value))
    return out


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "str"])
def test_redis_py_calls_match_redis(both, protocol: int, decode: bool) -> None:
    respkv, redis_srv = both
    results = []
    for port in (respkv.port, redis_srv.port):
        with redis.Redis(port=port, protocol=protocol, decode_responses=decode) as r, \
                redis.Redis(port=port, protocol=protocol, decode_responses=decode, db=2) as r2:
            results.append((_scenario(r, r2), _errors(r)))
    assert results[0] == results[1]
    COMPARED["redis-py COPY/MOVE/DUMP/RESTORE/OBJECT/LCS"] += len(results[0][0])


def test_redis_py_object_idletime_is_an_error_on_respkv(respkv_mem) -> None:
    with redis.Redis(port=respkv_mem.port) as r:
        r.set("k", "v")
        with pytest.raises(redis.ResponseError, match="access times are not tracked"):
            r.object("idletime", "k")
        assert r.object("idletime", "nokey") is None
