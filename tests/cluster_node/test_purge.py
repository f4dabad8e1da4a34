"""Purging dead keys on in-process nodes over real loopback TCP (respkv/node/purge.py;
docs/cluster.md, "Purging dead keys"). The nodes share a wall clock the test moves forward
(days, not seconds): gossip and deadlines run on the monotonic clock and are not affected."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import trio

from respkv import admin
from respkv.cluster import versions as V
from respkv.config import Config, ConfigError
from respkv.node.purge import DOT_FLOOR_FILE, load_dot_floor, save_dot_floor
from respkv.node.replica import cluster_storage_key
from respkv.node.server import Node
from respkv.testing import inproc
from respkv.testing.inproc import SECRET
from respkv.testing.inproc import command as cmd

DAY_MS = 86_400_000
GRACE_S = 3600


class WallClock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def running_nodes(tmp_path: Path, count: int, clock: WallClock) -> Any:
    return inproc.running_nodes(tmp_path, count, clock, gc_grace_seconds=GRACE_S,
                                purge_interval_ms=0)


def stored(node: Node, key: bytes) -> V.SiblingSet | None:
    rec = node.engine.get(cluster_storage_key(0, key))
    return None if rec is None else V.decode_sibling_set(rec.value)


async def test_sweeps_remove_deleted_and_expired_keys_after_the_grace_only(tmp_path: Path
                                                                           ) -> None:
    clock = WallClock()
    async with running_nodes(tmp_path, 3, clock) as nodes:
        a = nodes[0]
        assert await cmd(a, "SET", "gone", "v", "W", "ALL") == b"OK"
        assert await cmd(a, "DEL", "gone", "W", "ALL") == 1
        assert await cmd(a, "SET", "ttl", "v", "PX", 1000, "W", "ALL") == b"OK"
        assert await cmd(a, "SET", "kept", "v", "W", "ALL") == b"OK"
        clock.ms += 2000  # ttl expired, gone deleted: both dead, neither past the grace
        for n in nodes:
            fig = await n.cluster.purger.sweep()
            assert fig == {"checked": 3, "removed": 0, "skipped": 0}
            assert stored(n, b"gone") is not None and stored(n, b"ttl") is not None
        clock.ms += GRACE_S * 1000
        for n in nodes:
            fig = await n.cluster.purger.sweep()
            assert fig["removed"] == 2
            assert stored(n, b"gone") is None and stored(n, b"ttl") is None
            assert stored(n, b"kept") is not None
            info = n.cluster.info()
            assert info["purge_keys_removed"] == 2 and info["purge_sweeps"] == 2
        # a's floor covers its counter on the purged keys: one write each, dots 1 and 2
        assert a.cluster.replica.dot_floor == 2
        assert await cmd(a, "GET", "kept", "R", "ALL") == b"v"
        assert await cmd(a, "EXISTS", "gone", "ttl", "R", "ALL") == 0


async def test_a_key_written_again_after_a_purge_on_its_coordinator_only_survives(
        tmp_path: Path) -> None:
    """kv679 end to end: n0 purges the key, n1 and n2 still hold its history (their sweep has
    not run); n0 coordinates a new write of the key. Its dot is above n0's floor, so the
    replicas keep it -- with a counter restarting at 1 they would take it for the first write
    (test_purge_rules shows that case) and W=ALL would still answer OK."""
    clock = WallClock()
    async with running_nodes(tmp_path, 3, clock) as nodes:
        a, b, c = nodes
        for v in ("v1", "v2", "v3"):
            assert await cmd(a, "SET", "k", v, "W", "ALL") == b"OK"
        assert await cmd(a, "DEL", "k", "W", "ALL") == 1
        clock.ms += GRACE_S * 1000 + 1
        assert (await a.cluster.purger.sweep())["removed"] == 1
        assert stored(a, b"k") is None and stored(b, b"k") is not None
        assert a.cluster.replica.dot_floor == 4
        assert await cmd(a, "SET", "k", "again", "W", "ALL") == b"OK"
        for n in (b, c):
            s = stored(n, b"k")
            assert s is not None and V.live_value(s, clock.ms) == b"again"
            assert [sib.dot.counter for sib in s.siblings] == [5]
        assert await cmd(b, "GET", "k", "R", "1") == b"again"


async def test_a_key_written_during_the_sweep_is_not_removed(tmp_path: Path) -> None:
    clock = WallClock()
    async with running_nodes(tmp_path, 1, clock) as (a,):
        assert await cmd(a, "SET", "k", "v") == b"OK"
        assert await cmd(a, "DEL", "k") == 1
        clock.ms += GRACE_S * 1000 + 1
        skey = cluster_storage_key(0, b"k")
        old = a.engine.get(skey)
        assert old is not None
        assert await cmd(a, "SET", "k", "new") == b"OK"  # after the page was read
        assert a.cluster.replica.purge([(skey, old.value)]) == 0
        assert await cmd(a, "GET", "k") == b"new"


def test_the_dot_floor_file_round_trips_and_a_corrupt_one_stops_the_node(tmp_path: Path
                                                                         ) -> None:
    assert load_dot_floor(str(tmp_path)) == 0
    save_dot_floor(str(tmp_path), 12345)
    assert load_dot_floor(str(tmp_path)) == 12345
    assert (tmp_path / DOT_FLOOR_FILE).read_bytes() == b"12345\n"
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    cfg = Config(engine="lsm", port=0, node_id="n0", dir=str(tmp_path),
                 cluster_secret_file=str(secret), appendfsync="no")
    node = Node(cfg)
    assert node.cluster.replica.dot_floor == 12345
    node.engine.close()
    (tmp_path / DOT_FLOOR_FILE).write_bytes(b"12x\n")
    with pytest.raises(ConfigError, match="dot_floor"):
        Node(cfg)


async def test_the_floor_is_persisted_before_keys_are_removed(tmp_path: Path) -> None:
    """LSM node: after a sweep that removed keys, <dir>/dot_floor holds the raised floor, and a
    node started again on the directory issues dots above it."""
    clock = WallClock()
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    cfg = Config(engine="lsm", port=0, node_id="n0", dir=str(tmp_path / "n0"),
                 cluster_secret_file=str(secret), appendfsync="no", gc_grace_seconds=GRACE_S,
                 purge_interval_ms=0, anti_entropy_interval_ms=0, hinted_handoff=False)
    node = Node(cfg, clock_ms=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for _ in range(3):
            assert await cmd(node, "SET", "k", "v") == b"OK"
        assert await cmd(node, "DEL", "k") == 1
        clock.ms += GRACE_S * 1000
        assert (await node.cluster.purger.sweep())["removed"] == 1
        node.request_shutdown()
    assert load_dot_floor(cfg.dir) == 4
    again = Node(cfg, clock_ms=clock)
    try:
        s, _ = again.cluster.replica.coordinate(0, b"k", b"v", 0, None)
        assert s.siblings[0].dot.counter == 5
    finally:
        again.engine.close()


async def test_respkv_purge_start_runs_a_sweep_and_status_reports_it(tmp_path: Path) -> None:
    """The admin path (``respkv admin purge start`` sends these): START returns at once with
    the operation running; STATUS reports it done with the sweep's figures."""
    clock = WallClock()
    async with running_nodes(tmp_path, 1, clock) as (a,):
        assert await cmd(a, "SET", "k", "v") == b"OK"
        assert await cmd(a, "DEL", "k") == 1
        clock.ms += GRACE_S * 1000
        started = await cmd(a, "RESPKV", "PURGE", "START")
        assert dict(zip(started[::2], started[1::2], strict=True))[b"state"] == b"running"
        with trio.fail_after(10):
            while True:
                reply = await cmd(a, "RESPKV", "PURGE", "STATUS")
                st = dict(zip(reply[::2], reply[1::2], strict=True))
                if st[b"state"] != b"running":
                    break
                await trio.sleep(0.01)
        assert st[b"state"] == b"done" and st[b"done"] == 1
        result = dict(zip(st[b"result"][::2], st[b"result"][1::2], strict=True))
        assert result == {b"checked": 1, b"removed": 1, b"skipped": 0}
        assert stored(a, b"k") is None


def test_the_admin_cli_knows_purge() -> None:
    p = argparse.ArgumentParser()
    admin.add_admin_parser(p.add_subparsers(dest="command"))
    ns = p.parse_args(["admin", "purge", "start", "--no-wait"])
    assert (ns.admin_command, ns.action, ns.no_wait) == ("purge", "start", True)
