"""SWAPDB on a real node process (docs/formats/dbmap.md): the map survives a clean restart and
a SIGKILL right after the reply, under every appendfsync policy (the reply is sent once the
map's record is as durable as a write), and a swap interleaved with writes recovers to exactly
what was acknowledged; TTLs found at start-up go to the database holding the key. In cluster
mode SWAPDB keeps its clear error and writes no map."""

from __future__ import annotations

import time
from pathlib import Path

import hiredis
import pytest
import redis

from respkv.commands.keyspace import DB_MAP_KEY, db_prefix, encode_db_map
from respkv.config import Config
from respkv.node.server import Node
from respkv.storage.memory import MemoryEngine
from respkv.testing.inproc import command, running_nodes
from respkv.testing.procs import start_respkv


def _dbs(r: redis.Redis, key: str, n: int = 4) -> list[bytes | None]:
    """``key``'s value in databases 0..n-1, as one pipeline on a connection of its own."""
    out = []
    for db in range(n):
        r.execute_command("SELECT", db)
        out.append(r.get(key))
    r.execute_command("SELECT", 0)
    return out


@pytest.mark.slow
def test_swaps_survive_a_restart(tmp_path: Path) -> None:
    srv = start_respkv(data_dir=str(tmp_path))
    try:
        r = redis.Redis(port=srv.port)
        for db in range(4):
            r.execute_command("SELECT", db)
            r.set("k", f"v{db}")
            r.set("t", f"ttl{db}", ex=1000)
            r.mset({f"x{i}": "v" for i in range(db + 1)})  # database n holds n + 3 keys
        r.execute_command("SELECT", 0)
        assert r.swapdb(0, 1) is True
        assert r.swapdb(1, 3) is True
        before = _dbs(r, "k")
        assert before == [b"v1", b"v3", b"v2", b"v0"]
        keyspace = {db: (v["keys"], v["expires"]) for db, v in r.info("keyspace").items()}
        assert keyspace == {"db0": (4, 1), "db1": (6, 1), "db2": (5, 1), "db3": (3, 1)}
        r.close()
        assert srv.stop() == 0
        srv = start_respkv(data_dir=str(tmp_path), port=srv.port)
        r = redis.Redis(port=srv.port)
        assert _dbs(r, "k") == before
        assert _dbs(r, "t") == [b"ttl1", b"ttl3", b"ttl2", b"ttl0"]
        r.execute_command("SELECT", 3)
        assert 990 <= r.ttl("t") <= 1000
        assert {db: (v["keys"], v["expires"]) for db, v in r.info("keyspace").items()} == keyspace
        r.close()
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["always", "everysec", "no"])
def test_a_swap_survives_sigkill_right_after_its_reply(policy: str, tmp_path: Path) -> None:
    srv = start_respkv("--appendfsync", policy, data_dir=str(tmp_path))
    r = redis.Redis(port=srv.port)
    r.set("k", "zero")
    r.execute_command("SELECT", 1)
    r.set("k", "one")
    assert r.swapdb(0, 1) is True
    srv.kill()  # SIGKILL as soon as the reply arrived
    r.close()
    srv = start_respkv("--appendfsync", policy, data_dir=str(tmp_path), port=srv.port)
    try:
        r = redis.Redis(port=srv.port)
        assert _dbs(r, "k", 2) == [b"one", b"zero"]
        r.close()
    finally:
        srv.stop()


@pytest.mark.slow
def test_swaps_interleaved_with_writes_recover_to_what_was_acknowledged(tmp_path: Path) -> None:
    """One pipeline of writes and swaps, SIGKILL after its replies: the recovered databases are
    the model's, key by key (a swap recovered without a write before it, or a write after it
    without the swap, would put a value under the wrong number)."""
    srv = start_respkv("--appendfsync", "always", "--memtable-bytes", "64kb",
                       data_dir=str(tmp_path))
    r = redis.Redis(port=srv.port)
    model: list[dict[bytes, bytes]] = [{} for _ in range(4)]
    p = r.pipeline(transaction=False)
    db = 0
    for i in range(400):
        if i % 37 == 5:
            a, b = i % 4, (i // 4) % 4
            p.swapdb(a, b)
            model[a], model[b] = model[b], model[a]
        elif i % 11 == 3:
            db = i % 4
            p.execute_command("SELECT", db)
        else:
            key, val = b"k%d" % (i % 50), b"v%d" % i
            p.set(key, val)
            model[db][key] = val
    assert all(reply is not False for reply in p.execute())
    srv.kill()
    r.close()
    srv = start_respkv("--appendfsync", "always", data_dir=str(tmp_path), port=srv.port)
    try:
        r = redis.Redis(port=srv.port)
        for n in range(4):
            r.execute_command("SELECT", n)
            got = {k: r.get(k) for k in r.keys("*")}
            assert got == model[n], n
        r.close()
    finally:
        srv.stop()


def test_ttls_found_at_start_up_go_to_the_database_holding_the_key() -> None:
    """discover_ttls walks the stored keys, whose prefixes are physical databases: a key with a
    TTL is handed to the Keyspace using its prefix, whatever number the map gives it, and the
    active expiry cycle then removes it."""
    engine = MemoryEngine()
    now = [1_000]
    engine.put(db_prefix(1) + b"t", b"v", 2_000)  # database 0's key after SWAPDB 0 1
    engine.put(db_prefix(0) + b"u", b"v", 2_000)
    engine.put(db_prefix(20) + b"w", b"v", 2_000)  # a prefix no database uses: nobody's
    engine.put(DB_MAP_KEY, encode_db_map([1, 0]))
    node = Node(Config(engine="memory", port=0), engine=engine, clock_ms=lambda: now[0],
                listen=False)
    assert node.discover_ttls(100) == 2
    assert node.state.dbs[0]._expires == {b"t": 2_000}
    assert node.state.dbs[1]._expires == {b"u": 2_000}
    now[0] = 2_000
    assert node.active_expire(deadline_ns=time.perf_counter_ns() + 10**9) == 2
    assert [k for k, _ in engine.scan()] == [db_prefix(20) + b"w", DB_MAP_KEY]


async def test_cluster_mode_keeps_its_error_and_writes_no_map(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (node,):
        err = await command(node, "SWAPDB", "0", "1")
        assert isinstance(err, hiredis.ReplyError)
        assert str(err) == ("ERR SWAPDB is not supported in cluster mode: databases cannot be "
                            "swapped across replicas")
        assert node.engine.get(DB_MAP_KEY) is None
        assert node.state.db_map == list(range(16))
