"""Anti-entropy: bytes sent vs data size when 1% of keys diverge (issue 7's figure), in one run.

Two cluster nodes in this process (real loopback TCP, N = 2, so both replicate every key) hold
the same ``--keys`` keys; then ``--diverge`` of them are changed on one side only, written
straight into that replica as a lost replica write would leave it. ``repair`` on node a then
makes both agree; the table shows what crossed the wire (every payload of every service call:
tree hashes, digests, pushed and returned sets) against the data size (storage keys + stored
sets on a) and against the ideal (the stored sets of the divergent keys, sent once).

Scenarios: a newer on a (a pushes), a newer on b (a pushes, b answers with its newer ones),
keys missing on b, concurrent writes on both (siblings), and no divergence (the cost of
finding nothing). Also the cost per key of the scan-and-hash that rebuilds a range's tree,
which is why trees are rebuilt per exchange rather than maintained on every write.

    python bench/bench_antientropy.py [--keys 100000] [--diverge 0.01] [--value-bytes 100]
                                      [--engine lsm|memory]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio.lowlevel

from respkv.cluster.exchange import LeafAccumulator, range_scans  # noqa: E402
from respkv.cluster.hashing import FULL_RING  # noqa: E402
from respkv.config import Config  # noqa: E402
from respkv.node.antientropy import AntiEntropy  # noqa: E402
from respkv.node.replica import cluster_storage_key  # noqa: E402
from respkv.node.server import Node  # noqa: E402
from respkv.node.streaming import read_page  # noqa: E402
from respkv.testing.procs import free_port  # noqa: E402


async def settled(nodes: list[Node]) -> None:
    ids = {n.cluster.node_id for n in nodes}
    with trio.fail_after(30):
        while not all(set(n.cluster.ring.nodes) == ids and n.cluster.up_nodes() >= ids  # noqa: ASYNC110
                      for n in nodes):
            await trio.sleep(0.02)


def stored(node: Node) -> dict[bytes, bytes]:
    return {k: r.value for k, r in node.engine.scan()}


async def chunked(items: list[Any], fn: Any) -> None:
    """Apply ``fn`` to every item, yielding to the event loop (heartbeats) every 500."""
    for i, x in enumerate(items):
        fn(x)
        if i % 500 == 499:
            await trio.lowlevel.checkpoint()


async def scenario(name: str, a: Node, b: Node, keys: list[bytes], diverged: list[bytes],
                   value: bytes, rng: random.Random) -> dict[str, Any]:
    ra, rb = a.cluster.replica, b.cluster.replica
    db = 0
    ideal_keys: list[bytes] = []
    if name == "a newer":
        await chunked(diverged, lambda k: ra.coordinate(db, k, value[::-1], 0, None))
        ideal_keys = diverged
    elif name == "b newer":
        await chunked(diverged, lambda k: rb.coordinate(db, k, value[::-1], 0, None))
        ideal_keys = diverged
    elif name == "missing on b":
        await chunked(diverged, lambda k: b.engine.delete(cluster_storage_key(db, k)))
        ideal_keys = diverged
    elif name == "concurrent":
        await chunked(diverged, lambda k: ra.coordinate(db, k, b"A" + value, 0, None))
        await chunked(diverged, lambda k: rb.coordinate(db, k, b"B" + value, 0, None))
        ideal_keys = diverged  # one merged set each way, at best
    sa = stored(a)
    await settled([a, b])
    ideal = sum(len(sa[_skey(k)]) + len(_skey(k)) for k in ideal_keys)
    t0 = time.perf_counter()
    fig = await a.cluster.antientropy.repair()
    secs = time.perf_counter() - t0
    if stored(a) != stored(b):
        sa, sb = stored(a), stored(b)
        bad = [k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)]
        raise AssertionError(f"{name}: not converged: {len(bad)} keys differ; {fig}")
    fig.update(name=name, ideal=ideal, secs=secs, diverged=len(ideal_keys))
    return fig


def _skey(k: bytes) -> bytes:
    return cluster_storage_key(0, k)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    root = Path(tempfile.mkdtemp(prefix="respkv-bench-ae-"))
    (root / "secret").write_text("a cluster secret for the bench, 32b\n")
    ports = [free_port(), free_port()]
    nodes = []
    for i in range(2):
        cfg = Config(engine="memory", port=0, appendfsync="no", node_id=f"n{i}",
                     seeds=f"127.0.0.1:{ports[1 - i]}", peer_port=ports[i],
                     cluster_secret_file=str(root / "secret"), dir=str(root / f"n{i}"),
                     gossip_interval_ms=200, request_timeout_ms=5000, hinted_handoff=False,
                     anti_entropy_interval_ms=0, n_replicas=2)
        cfg.engine = args.engine
        node = Node(cfg, rng=random.Random(i))
        if getattr(node.cluster, "antientropy", None) is None:  # not wired by the Cluster
            node.cluster.antientropy = AntiEntropy(node.cluster)
        nodes.append(node)
    a, b = nodes
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.run)
        await settled(nodes)
        keys = [b"user:%08d" % i for i in range(args.keys)]
        value = bytes(rng.randrange(256) for _ in range(args.value_bytes))
        count = max(1, int(len(keys) * args.diverge))

        def both(k: bytes) -> None:
            _, data = a.cluster.replica.coordinate(0, k, value, 0, None)
            b.cluster.replica.apply_raw(0, k, data)

        t0 = time.perf_counter()
        await chunked(keys, both)
        print(f"loaded {len(keys):,} keys x {args.value_bytes} B values on both replicas ({args.engine}) "
              f"in {time.perf_counter() - t0:.1f}s")
        # The cost of rebuilding a tree: scan + hash of the stored bytes, per key.
        t0 = time.perf_counter()
        acc = LeafAccumulator(FULL_RING)
        after = b""
        scans = range_scans([FULL_RING])
        while True:
            items, after = read_page(a.engine, scans, after, 8192, 1 << 62)
            for k, v in items:
                acc.add(k, v)
            if not after:
                break
        per_key_us = (time.perf_counter() - t0) / acc.keys * 1e6
        sample = [(k, r.value) for k, r in a.engine.scan()][:20000]
        t1 = time.perf_counter()
        hash_only = LeafAccumulator(FULL_RING)
        for k, v in sample:
            hash_only.add(k, v)
        hash_us = (time.perf_counter() - t1) / max(1, len(sample)) * 1e6
        t1 = time.perf_counter()
        acc.tree(16).root()
        fold_ms = (time.perf_counter() - t1) * 1000
        print(f"tree rebuild: scan + hash {per_key_us:.2f} us/key (of which hashing "
              f"{hash_us:.2f}; {acc.keys:,} keys, {acc.data_bytes / 1e6:.1f} MB), "
              f"fold to 2^16 leaves + root {fold_ms:.0f} ms")
        print()
        header = (f"{'scenario':<13} {'diverged':>8} {'data MB':>8} {'sent KB':>8} "
                  f"{'recv KB':>8} {'tree KB':>8} {'total/data':>10} {'ideal KB':>8} "
                  f"{'total/ideal':>11} {'keys s/r':>11} {'ranges d/c':>10} {'secs':>5}")
        print(header)
        print("-" * len(header))
        rows = ["none", "a newer", "b newer", "missing on b", "concurrent"]
        for name in rows:
            pool = keys[:]
            rng.shuffle(pool)
            diverged = [] if name == "none" else pool[:count]
            fig = await scenario(name, a, b, keys, diverged, value, rng)
            total = fig["bytes_sent"] + fig["bytes_received"]
            ideal = fig["ideal"]
            print(f"{name:<13} {fig['diverged']:>8,} {fig['data_bytes'] / 1e6:>8.2f} "
                  f"{fig['bytes_sent'] / 1e3:>8.1f} {fig['bytes_received'] / 1e3:>8.1f} "
                  f"{fig['tree_bytes'] / 1e3:>8.1f} {total / fig['data_bytes']:>10.2%} "
                  f"{ideal / 1e3:>8.1f} "
                  f"{(f'{total / ideal:.2f}x' if ideal else '-'):>11} "
                  f"{fig['keys_sent']:>5}/{fig['keys_received']:<5} "
                  f"{fig['ranges_divergent']:>4}/{fig['ranges_compared']:<5} {fig['secs']:>5.1f}")
        for n in nodes:
            n.request_shutdown()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--diverge", type=float, default=0.01, help="fraction of keys that diverge")
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--engine", choices=("lsm", "memory"), default="lsm")
    trio.run(main, p.parse_args())
