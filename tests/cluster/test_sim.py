"""Gossip dissemination converges in O(log n) rounds (respkv.cluster.sim)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from respkv.cluster.sim import (
    rounds_to_converge_from_neighbour,
    rounds_to_converge_from_seeds,
    rounds_to_spread,
)


def bound(n: int) -> int:
    return 3 * math.ceil(math.log2(n))


@pytest.mark.parametrize("n", [8, 32, 64])
def test_rumor_spreads_in_log_rounds(n: int) -> None:
    rounds = [rounds_to_spread(n, random.Random(seed)) for seed in range(5)]
    assert max(rounds) <= bound(n), rounds


@pytest.mark.parametrize("n", [8, 32, 64])
def test_sparse_cold_start_converges_in_log_rounds(n: int) -> None:
    rounds = [rounds_to_converge_from_neighbour(n, random.Random(seed)) for seed in range(5)]
    assert max(rounds) <= bound(n), rounds


def test_seeded_cold_start() -> None:
    assert rounds_to_converge_from_seeds(32, random.Random(0)) <= bound(32)


def test_simulation_is_deterministic_per_seed() -> None:
    a = [rounds_to_spread(32, random.Random(s)) for s in range(3)]
    b = [rounds_to_spread(32, random.Random(s)) for s in range(3)]
    assert a == b


@pytest.mark.slow
def test_hundred_nodes_median_over_twenty_seeds() -> None:
    spread = [rounds_to_spread(100, random.Random(s)) for s in range(20)]
    sparse = [rounds_to_converge_from_neighbour(100, random.Random(s)) for s in range(20)]
    assert statistics.median(spread) <= bound(100)
    assert max(sparse) <= bound(100)
