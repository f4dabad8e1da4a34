"""Gossip convergence: rounds until dissemination, median and max over seeds.

Run: python bench/gossip_sim.py [--nodes 10 100 200] [--seeds 20]

Uses the pure simulation in respkv.cluster.sim (each round every node runs SYN/ACK/ACK2 with
one random peer it knows); the randomness is random.Random(seed) for seed in 0..seeds-1.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time

from respkv.cluster.sim import (
    rounds_to_converge_from_neighbour,
    rounds_to_converge_from_seeds,
    rounds_to_spread,
)

SCENARIOS = [
    ("one row change spreads (all know all)", rounds_to_spread),
    ("cold start, 1 seed known to all", rounds_to_converge_from_seeds),
    ("cold start, node i knows only i+1", rounds_to_converge_from_neighbour),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 200])
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    started = time.perf_counter()
    print(f"{'scenario':<40} {'nodes':>5} {'median':>6} {'max':>4} {'log2(n)':>7}")
    for name, fn in SCENARIOS:
        for n in args.nodes:
            rounds = [fn(n, random.Random(seed)) for seed in range(args.seeds)]
            print(f"{name:<40} {n:>5} {statistics.median(rounds):>6} {max(rounds):>4} "
                  f"{math.log2(n):>7.1f}")
    print(f"\n{args.seeds} seeds each; total time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
