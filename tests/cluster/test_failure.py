"""Specification of the phi accrual failure detector (respkv.cluster.failure)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.failure import PhiAccrualDetector


def regular(interval_ms: float = 1000.0, count: int = 50, jitter_ms: float = 0.0, seed: int = 1):
    rng = random.Random(seed)
    d = PhiAccrualDetector()
    now = 0.0
    for _ in range(count):
        now += interval_ms + rng.uniform(-jitter_ms, jitter_ms)
        d.heartbeat(now)
    return d, now


def test_unknown_peer_is_not_suspected() -> None:
    d = PhiAccrualDetector()
    assert not d.is_monitoring and d.phi(1e9) == 0.0 and d.is_available(1e9)


def test_low_for_regular_heartbeats() -> None:
    d, now = regular(jitter_ms=100)
    assert d.phi(now) < 0.1
    assert d.phi(now + 1000) < 1
    assert d.is_available(now + 1500)


def test_rises_over_silence() -> None:
    d, now = regular()
    values = [d.phi(now + dt) for dt in range(0, 20_000, 250)]
    assert values == sorted(values)  # monotone in silence
    assert not d.is_available(now + 5000)
    assert d.phi(now + 10_000) > 100
    assert 300 < d.phi(now + 1e7) < math.inf


def test_first_heartbeat_uses_the_estimate() -> None:
    d = PhiAccrualDetector(first_heartbeat_estimate_ms=1000)
    d.heartbeat(0)
    assert d.is_available(1500) and not d.is_available(6000)


def test_adapts_to_slower_heartbeats() -> None:
    fast, now_f = regular(interval_ms=1000)
    slow, now_s = regular(interval_ms=5000)
    assert fast.phi(now_f + 6000) > slow.phi(now_s + 6000)
    assert slow.is_available(now_s + 6000)


def test_corrects_a_wrong_first_estimate() -> None:
    d = PhiAccrualDetector(first_heartbeat_estimate_ms=1000)
    now = 0.0
    for _ in range(30):
        now += 5000
        d.heartbeat(now)
    assert d.is_available(now + 5500) and not d.is_available(now + 30_000)


def test_long_outage_does_not_poison_the_window() -> None:
    d, now = regular()
    mean_before = d.mean_ms()
    d.heartbeat(now + 60_000)  # back after a minute of silence
    assert d.mean_ms() == mean_before


def test_window_is_bounded() -> None:
    d = PhiAccrualDetector(window_size=10)
    for i in range(100):
        d.heartbeat(i * 100.0)
    assert d.mean_ms() == pytest.approx(100.0)


@given(st.lists(st.floats(1, 10_000), min_size=1, max_size=50), st.floats(0, 1e6))
def test_phi_is_finite_or_inf_and_non_negative(intervals, silence) -> None:
    d = PhiAccrualDetector()
    now = 0.0
    for i in intervals:
        now += i
        d.heartbeat(now)
    p = d.phi(now + silence)
    assert 0 <= p < math.inf
