"""DUMP, RESTORE, OBJECT and LCS in cluster mode: single-key (or read-only two-key) commands on
the coordinator's general path -- a quorum read into a view, the handler, a quorum write of what
it changed -- so RESTORE's TTL, REPLACE and BUSYKEY hold cluster-wide; COPY and MOVE say they
are not supported (they would need an atomic write across keys or databases).

Three real `respkv server` processes, N=3 (conftest.py); each call goes to a different node from
the one that wrote, so every answer comes from the quorum, not from a local copy.
"""

from __future__ import annotations

import pytest
import redis

from respkv.protocol import rdb
from respkv.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.slow

# redis-server 7.0.15's DUMP of 100 x "a" (LZF-compressed)
REDIS_LZF_PAYLOAD = bytes.fromhex("00c3094064016161e057000161610a00e8a3b507b06df271")


def test_dump_and_restore_ttl_replace_busykey(cluster3: LocalCluster) -> None:
    c0, c1, c2 = (cluster3.client(i) for i in range(3))
    assert c0.set("src", "hello", px=600_000)
    payload = c1.dump("src")
    assert payload == rdb.dump_string(b"hello")
    assert c2.dump("nokey") is None

    # a TTL: the key is written with its expiry, every node sees it, and it expires
    assert c2.restore("dst", 1500, payload) == b"OK"
    assert c0.get("dst") == b"hello"
    assert 0 < c1.pttl("dst") <= 1500
    wait_until(lambda: c0.get("dst") is None, 10, "the restored key to expire")

    # BUSYKEY from any node once the key exists
    assert c0.restore("k", 0, payload) == b"OK"
    with pytest.raises(redis.ResponseError, match="BUSYKEY Target key name already exists."):
        c1.restore("k", 0, payload)
    # REPLACE, another value, a TTL then none
    assert c2.restore("k", 600_000, REDIS_LZF_PAYLOAD, replace=True) == b"OK"
    assert c0.get("k") == b"a" * 100 and 0 < c1.pttl("k") <= 600_000
    assert c1.restore("k", 0, payload, replace=True) == b"OK"
    assert c2.get("k") == b"hello" and c0.pttl("k") == -1
    # REPLACE with a TTL already past: the old key is deleted everywhere, nothing restored
    past = int(c0.time()[0]) * 1000 - 60_000
    assert c2.restore("k", past, payload, replace=True, absttl=True) == b"OK"
    for c in (c0, c1, c2):
        assert c.exists("k") == 0
    # errors of the payload, from the handler, through the cluster path
    with pytest.raises(redis.ResponseError, match="DUMP payload version or checksum are wrong"):
        c0.restore("bad", 0, payload[:-1] + b"\x00")
    with pytest.raises(redis.ResponseError, match="respkv stores strings only"):
        c0.restore("bad", 0, rdb.with_footer(b"\x02\x01\x01a"))
    assert c1.exists("bad") == 0


def test_object_and_lcs_read_through_the_quorum(cluster3: LocalCluster) -> None:
    c0, c1, c2 = (cluster3.client(i) for i in range(3))
    c0.mset({"int": "123", "str": "x" * 44, "long": "x" * 45, "k1": "ohmytext", "k2": "mynewtext"})
    assert c1.object("encoding", "int") == b"int"
    assert c2.object("encoding", "str") == b"embstr"
    assert c1.object("encoding", "long") == b"raw"
    assert c2.object("refcount", "int") == 2147483647
    assert c0.object("encoding", "nokey") is None
    with pytest.raises(redis.ResponseError, match="access frequency not tracked"):
        c1.object("freq", "int")
    with pytest.raises(redis.ResponseError, match="access times are not tracked"):
        c2.object("idletime", "int")
    assert c0.execute_command("OBJECT", "HELP")[0].startswith(b"OBJECT <subcommand>")
    assert c2.lcs("k1", "k2") == b"mytext"
    assert c1.lcs("k1", "k2", len=True) == 6
    assert c0.lcs("k1", "k2", idx=True, withmatchlen=True) == [
        b"matches", [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]], b"len", 6]


def test_copy_and_move_are_refused(cluster3: LocalCluster) -> None:
    c = cluster3.client(1)
    c.set("a", "v")
    with pytest.raises(redis.ResponseError, match="COPY is not supported in cluster mode"):
        c.copy("a", "b")
    with pytest.raises(redis.ResponseError, match="MOVE is not supported in cluster mode"):
        c.move("a", 1)
    assert c.get("a") == b"v" and c.exists("b") == 0
