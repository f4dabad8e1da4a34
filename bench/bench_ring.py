"""Ring quality: load balance by vnode count, weights honoured, keys moved on join.

Run: python bench/bench_ring.py [--keys 1000000]

Keys are b"key:<i>" for i < --keys, placed by their XXH3 token. Counting is done per token range
(bisect over the sorted key tokens), so the whole run takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import time

from respkv.cluster.hashing import TOKEN_SPACE, TokenRange, token_of
from respkv.cluster.ring import (
    NodeInfo,
    Ring,
    add_node,
    natural_replicas,
    transfer_plan,
)


def keys_in(sorted_tokens: list[int], rng: TokenRange) -> int:
    """Number of key tokens t with rng.start < t <= rng.end (wrapping)."""
    count = lambda lo, hi: bisect.bisect_right(sorted_tokens, hi) - bisect.bisect_right(  # noqa: E731
        sorted_tokens, lo
    )
    if rng.start < rng.end:
        return count(rng.start, rng.end)
    return len(sorted_tokens) - count(rng.end, rng.start)


def primary_load(ring: Ring, key_tokens: list[int]) -> tuple[dict[str, int], dict[str, float]]:
    """Keys and token-space share per node, by primary (first replica) ownership."""
    keys = dict.fromkeys(ring.nodes, 0)
    share = dict.fromkeys(ring.nodes, 0.0)
    for i, owner in enumerate(ring.owners):
        rng = ring.range_of_index(i)
        keys[owner] += keys_in(key_tokens, rng)
        share[owner] += rng.width / TOKEN_SPACE
    return keys, share


def replica_load(ring: Ring, key_tokens: list[int], n: int) -> dict[str, int]:
    """Keys stored per node with n replicas."""
    load = dict.fromkeys(ring.nodes, 0)
    for i in range(len(ring.tokens)):
        count = keys_in(key_tokens, ring.range_of_index(i))
        for node in natural_replicas(ring, ring.tokens[i], n):
            load[node] += count
    return load


def moved_fraction(old: Ring, new: Ring, key_tokens: list[int], n: int) -> float:
    """Fraction of replica placements (key, replica) that change from old to new."""
    boundaries = sorted(set(old.tokens) | set(new.tokens))
    moved = 0
    for k, t in enumerate(boundaries):
        before = set(natural_replicas(old, t, n))
        after = set(natural_replicas(new, t, n))
        if before != after:
            moved += len(after - before) * keys_in(key_tokens, TokenRange(boundaries[k - 1], t))
    return moved / (len(key_tokens) * min(n, len(new.nodes)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=10)
    args = ap.parse_args()
    started = time.perf_counter()
    key_tokens = sorted(token_of(b"key:%d" % i) for i in range(args.keys))
    nodes = [f"node{i:02d}" for i in range(args.nodes)]
    print(f"keys: {args.keys:,} (b'key:<i>', XXH3-64 tokens); nodes: {args.nodes}")

    print("\n== load balance by vnodes per node (primary ownership) ==")
    print(f"{'vnodes':>6} {'keys max/mean':>13} {'keys min/mean':>13} {'keys stdev%':>11} "
          f"{'space max%':>10} {'space min%':>10} {'N=3 max/mean':>12} (ideal space "
          f"{100 / args.nodes:.1f}%)")
    for vnodes in (16, 64, 256):
        ring = Ring.from_specs(((n, "dc1", "rack1", 1) for n in nodes), vnodes)
        keys, share = primary_load(ring, key_tokens)
        load3 = replica_load(ring, key_tokens, 3)
        mean = args.keys / args.nodes
        print(
            f"{vnodes:>6} {max(keys.values()) / mean:>13.3f} {min(keys.values()) / mean:>13.3f} "
            f"{100 * statistics.pstdev(keys.values()) / mean:>11.2f} "
            f"{100 * max(share.values()):>10.2f} {100 * min(share.values()):>10.2f} "
            f"{max(load3.values()) / (3 * mean):>12.3f}"
        )

    print("\n== weights honoured (3 nodes of weight 1, 2, 4; expected shares 1/7, 2/7, 4/7) ==")
    print(f"{'vnodes/weight':>13} {'node':>6} {'expected':>8} {'space':>7} {'keys':>7} "
          f"{'rel.err space':>13} {'rel.err keys':>12}")
    for vpw in (16, 64, 256):
        ring = Ring.from_specs([("w1", "dc1", "r", 1), ("w2", "dc1", "r", 2),
                                ("w4", "dc1", "r", 4)], vpw)
        keys, share = primary_load(ring, key_tokens)
        for node, w in (("w1", 1), ("w2", 2), ("w4", 4)):
            exp = w / 7
            kshare = keys[node] / args.keys
            print(f"{vpw:>13} {node:>6} {exp:>8.3f} {share[node]:>7.3f} {kshare:>7.3f} "
                  f"{100 * (share[node] - exp) / exp:>12.1f}% {100 * (kshare - exp) / exp:>11.1f}%")

    print("\n== keys moved when the k-th node joins (64 vnodes/node) ==")
    print(f"{'k':>3} {'ideal 1/k':>9} {'moved N=1':>9} {'moved N=3':>9} {'plan keys N=3':>13}")
    ring = Ring.from_specs([(nodes[0], "dc1", "rack1", 1)], 64)
    for k in range(2, args.nodes + 1):
        new = add_node(ring, NodeInfo.make(nodes[k - 1], vnodes_per_weight=64))
        m1 = moved_fraction(ring, new, key_tokens, 1)
        m3 = moved_fraction(ring, new, key_tokens, 3)
        plan = transfer_plan(ring, new, 3)
        plan_keys = sum(keys_in(key_tokens, tr.range) for tr in plan)
        placements = args.keys * min(3, k)
        print(f"{k:>3} {1 / k:>9.3f} {m1:>9.3f} {m3:>9.3f} {plan_keys / placements:>13.3f}")
        ring = new
    print("\n(moved N=3: changed (key, replica) placements / all placements; with fewer nodes than")
    print(" N every node holds everything, so k=2,3 add a full copy; 'plan keys' sums the")
    print(" transfer_plan ranges and must equal 'moved N=3')")
    print(f"\ntotal time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
