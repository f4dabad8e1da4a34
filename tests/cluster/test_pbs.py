"""PBS (Bailis et al. 2012): the WARS Monte Carlo estimate against what must hold and against a
closed form, the observed counters, and the INFO fields."""

from __future__ import annotations

import math
import random

import pytest

from respkv.admin import parse_info
from respkv.cluster import versions as V
from respkv.cluster.pbs import (
    LatencyWindow,
    PbsEstimator,
    PbsLevel,
    WarsSamples,
    missed_newer,
    pbs_info,
    simulate,
    standard_levels,
)


def samples_from(rng: random.Random, w, a, r, s, k: int = 2000) -> WarsSamples:  # type: ignore[no-untyped-def]
    out = WarsSamples(capacity=k)
    for _ in range(k):
        out.record_write(w(rng), a(rng))
        out.record_read(r(rng), s(rng))
    return out


def slow_writes(rng: random.Random) -> WarsSamples:
    """Write delivery exponential with a 10 ms mean; everything else ~0.1-0.3 ms."""
    return samples_from(rng, lambda g: g.expovariate(0.1), lambda g: g.uniform(0.1, 0.3),
                        lambda g: g.uniform(0.1, 0.3), lambda g: g.uniform(0.1, 0.3))


def test_window_keeps_the_most_recent_samples() -> None:
    w = LatencyWindow(3)
    for x in (1, 2, 3, 4, 5):
        w.add(x)
    assert sorted(w.samples) == [3.0, 4.0, 5.0] and w.added == 5 and len(w) == 3
    w.add(-1)  # clocks can step back: a negative latency counts as 0
    assert 0.0 in w.samples
    with pytest.raises(ValueError):
        LatencyWindow(0)


@pytest.mark.parametrize("n, r, w", [(3, 2, 2), (3, 1, 3), (3, 3, 1), (5, 3, 3), (2, 2, 1)])
def test_intersecting_quorums_are_always_consistent(n: int, r: int, w: int) -> None:
    s = slow_writes(random.Random(1))
    exact = simulate(s, n, r, w, random.Random(2))
    assert exact.p_consistent(0) == 1.0 and exact.t_visible() == 0.0
    # and the model itself agrees (no shortcut): every threshold is <= 0
    modelled = simulate(s, n, r, w, random.Random(2), trials=2000, shortcut=False)
    assert modelled.taus and max(modelled.taus) <= 0
    assert modelled.p_consistent(0) == 1.0 and modelled.t_visible() == 0.0


def test_partial_quorum_with_slow_write_delivery_is_stale_at_first_and_converges() -> None:
    s = slow_writes(random.Random(3))
    est = simulate(s, 3, 1, 1, random.Random(4), trials=4000)
    ps = [est.p_consistent(t) for t in (0, 1, 5, 10, 20, 50, 100)]
    assert ps[0] < 0.6
    assert all(a <= b for a, b in zip(ps, ps[1:], strict=False)) and ps[-1] > 0.99
    t = est.t_visible(0.999)
    assert est.p_consistent(t) >= 0.999 and est.p_consistent(t - 0.5) < 0.999
    # R=1, W=2 (still partial) is better than R=W=1 at every t
    better = simulate(s, 3, 1, 2, random.Random(4), trials=4000)
    assert all(better.p_consistent(t) >= est.p_consistent(t) - 0.02 for t in (0, 1, 5, 10))
    assert better.p_consistent(0) > est.p_consistent(0) + 0.1


@pytest.mark.parametrize("n", [2, 3, 5])
def test_matches_the_closed_form(n: int) -> None:
    """A = R = S = 0 and W ~ Exp(lam), R = W = 1: the write commits when the first replica has
    it, the read asks one replica, which is the first with probability 1/n and otherwise lags
    the first by Exp(lam) (memorylessness): P(t) = 1 - (n-1)/n * exp(-lam t)."""
    lam = 0.2
    zero = lambda g: 0.0  # noqa: E731
    s = samples_from(random.Random(5), lambda g: g.expovariate(lam), zero, zero, zero, k=20000)
    est = simulate(s, n, 1, 1, random.Random(6), trials=20000)
    for t in (0, 1, 2, 5, 10, 20):
        expected = 1 - (n - 1) / n * math.exp(-lam * t)
        assert est.p_consistent(t) == pytest.approx(expected, abs=0.015), t
    t999 = math.log(1000 * (n - 1) / n) / lam
    assert est.t_visible(0.999) == pytest.approx(t999, rel=0.15)


def test_simulation_is_deterministic_for_a_seed_and_checks_its_arguments() -> None:
    s = slow_writes(random.Random(7))
    a = simulate(s, 3, 1, 1, random.Random(8), trials=500)
    b = simulate(s, 3, 1, 1, random.Random(8), trials=500)
    assert a.taus == b.taus
    with pytest.raises(ValueError):
        simulate(s, 3, 4, 1, random.Random(8))
    with pytest.raises(ValueError):
        simulate(WarsSamples(), 3, 1, 1, random.Random(8))  # nothing sampled at all


def test_a_kind_never_sampled_borrows_the_other_direction() -> None:
    s = WarsSamples()
    assert not s.ready()
    for x in (1.0, 9.0):
        s.record_write_round_trip(x)
    assert s.ready()
    w, a, r, s_ = s.windows()
    assert r is s.w and s_ is s.a  # reads borrow the writes' round trips
    est = simulate(s, 3, 1, 1, random.Random(1), trials=500)
    assert 0 < est.p_consistent(0) < 1
    only_reads = WarsSamples()
    only_reads.record_read_round_trip(2.0)
    assert only_reads.windows()[0] is only_reads.r


def test_round_trips_are_split_evenly() -> None:
    s = WarsSamples()
    s.record_write_round_trip(4.0)
    s.record_read_round_trip(1.0)
    assert s.w.samples == [2.0] and s.a.samples == [2.0]
    assert s.r.samples == [0.5] and s.s.samples == [0.5]


def test_missed_newer_compares_causal_histories() -> None:
    old = V.overwrite(V.EMPTY, "n1", b"a", timestamp_ms=1)
    new = V.overwrite(old, "n1", b"b", timestamp_ms=2)
    other = V.update(old, V.EMPTY_CLOCK, "n2", b"c", timestamp_ms=3)  # concurrent
    assert missed_newer(old, new) and not missed_newer(new, new) and not missed_newer(new, old)
    assert missed_newer(new, V.sync(new, other))
    assert not missed_newer(V.sync(new, other), new)


def test_estimator_caches_counts_and_reports() -> None:
    est = PbsEstimator(random.Random(9), capacity=512, trials=500, refresh_every=100)
    levels = standard_levels(3, 2, 2)
    assert [lv.name for lv in levels] == ["one", "quorum", "all"]
    assert standard_levels(3, 1, 2)[-1] == PbsLevel("default", 3, 1, 2)
    assert est.estimate(3, 1, 1) is None  # no samples yet
    assert est.estimate(3, 2, 2) is not None  # strict: exact without samples
    info = pbs_info(est, levels)
    assert info["staleness_one"] == "n=3,r=1,w=1,estimate=none"
    g = random.Random(10)
    for _ in range(300):
        est.record_write_round_trip(g.expovariate(0.2))
        est.record_read_round_trip(0.4)
    first = est.estimate(3, 1, 1)
    assert first is not None and est.estimate(3, 1, 1) is first  # cached
    for _ in range(100):
        est.record_write_round_trip(1.0)
    assert est.estimate(3, 1, 1) is not first  # refreshed after refresh_every samples
    now = [0.0]
    timed = PbsEstimator(random.Random(9), trials=200, refresh_every=10, clock_ms=lambda: now[0])
    for _ in range(20):
        timed.record_write_round_trip(g.expovariate(0.2))
    one = timed.estimate(3, 1, 1)
    for _ in range(20):
        timed.record_write_round_trip(g.expovariate(0.2))
    now[0] = 999.0
    assert timed.estimate(3, 1, 1) is one  # enough new samples, but younger than a second
    now[0] = 1000.0
    assert timed.estimate(3, 1, 1) is not one
    old = V.overwrite(V.EMPTY, "n1", b"a", timestamp_ms=1)
    new = V.overwrite(old, "n1", b"b", timestamp_ms=2)
    for _ in range(4):
        est.read_answered("one")
    assert est.late_replies("one", old, new) is True
    assert est.late_replies("one", new, new) is False
    info = pbs_info(est, levels)
    text = "# Staleness\r\n" + "".join(f"{k}:{v}\r\n" for k, v in info.items())
    parsed = parse_info(text)["staleness"]
    one = parsed["staleness_one"]
    assert (one["n"], one["r"], one["w"]) == (3, 1, 1)
    assert 0 < one["p_0ms"] < 1 and one["p_0ms"] <= one["p_10ms"] <= one["p_100ms"]
    assert one["t_visible_ms"] > 0 and one["trials"] == 500
    assert parsed["staleness_quorum"]["p_0ms"] == 1.0
    assert parsed["staleness_quorum"]["t_visible_ms"] == 0
    assert parsed["staleness_observed_one"] == {"reads": 4, "checked": 2, "newer_missed": 1,
                                                "rate": 0.5}
    assert parsed["staleness_samples"]["w"] == 400


def test_metrics_exposition() -> None:
    from respkv.node.metrics import _coordinator_metrics, _Out

    est = PbsEstimator(random.Random(11), trials=300)
    g = random.Random(12)
    for _ in range(50):
        est.record_write_round_trip(g.expovariate(0.1))
        est.record_read_round_trip(0.2)
    est.read_answered("one")

    class FakeCluster:
        level_stats: dict = {}  # type: ignore[type-arg]
        pbs = est

        def pbs_levels(self) -> list[PbsLevel]:
            return standard_levels(3, 2, 2)

    o = _Out()
    _coordinator_metrics(o, FakeCluster())
    text = "\n".join(o.lines)
    assert ('respkv_pbs_consistent_read_probability{level="quorum",n="3",r="2",w="2",t_ms="0"} 1.0'
            in text)
    assert 'respkv_pbs_visibility_seconds{level="all",n="3",r="3",w="3"} 0.0' in text
    assert 'respkv_pbs_latency_samples{kind="w"} 50' in text
    assert 'respkv_pbs_reads_total{level="one"} 1' in text
    assert 'respkv_pbs_stale_reads_total{level="one"} 0' in text
    line = next(ln for ln in o.lines if ln.startswith(
        'respkv_pbs_consistent_read_probability{level="one",n="3",r="1",w="1",t_ms="0"}'))
    assert 0 < float(line.split()[-1]) < 1
