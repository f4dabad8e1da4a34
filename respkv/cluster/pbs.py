"""Probabilistically bounded staleness: how often a partial-quorum read misses the newest
acknowledged write, and how long a write takes to become visible (Bailis, Venkataraman,
Franklin, Hellerstein, Stoica 2012, "Probabilistically Bounded Staleness for Practical Partial
Quorums", VLDB; the WARS model of its section 4).

The WARS model. A write goes to N replicas; replica i receives it after ``W_i`` and its ack
takes ``A_i`` back to the coordinator; the write *commits* (the client is acknowledged) at the
W-th smallest ``W_i + A_i``. A read issued ``t`` ms after the commit reaches replica i after
``R_i`` and its response takes ``S_i`` back; the read returns once the R fastest responses
(smallest ``R_i + S_i``) are in. Replica i answers with the write iff the write reached it
before the read did: ``W_i <= commit + t + R_i``. So for one draw of the 4N latencies the read
is consistent exactly when ``t >= tau`` with

    tau = min over the R first responders i of (W_i - R_i - commit)

and one Monte Carlo run (``trials`` draws) gives the whole curve ``P(consistent at t)`` (the
fraction of draws with ``tau <= t``) and the time to visibility at probability p (the p-quantile
of tau, at least 0). Each latency is drawn independently, uniformly from the recent samples of
its kind (the paper's i.i.d.-per-replica assumption). When ``R + W > N`` every read quorum
intersects the write quorum, whose replicas held the write before the commit; the estimate is
then exactly 1.0 at t = 0 and no simulation is run.

The samples are fed by the coordinator (respkv/node/coordinator.py): the latency of each replica
request it sends. It sees round trips only, so a write's round trip is split evenly into W and A
and a read's into R and S (``record_*_round_trip``); the model's answer depends on W - R and on
the sums W + A and R + S, so the split matters only through its asymmetry, which is invisible to
a single clock anyway. The coordinator's own in-process replica is not sampled (its latencies
are ~0 and would only make the estimate optimistic for reads that cannot be served locally).
While only writes (or only reads) have been sampled -- reads at R=1 on a replica never go
remote -- the missing kind borrows the other's samples: a round trip over the same links.

Observed staleness complements the model: when a read asked more replicas than it waited for
(speculative retry, ``read_repair_chance``, per-datacenter levels) the replies that arrive after
the client was answered show whether a replica held a version the read did not return
(``newer_missed``). Those reads are the only ones that can be checked, so the observed rate is
measured on ``checked`` reads, not all of them.

Pure (tests/cluster/test_purity.py): randomness is the ``random()`` of an object passed in
(``random.Random`` fits), times are numbers (milliseconds) passed in. Ownership: one
``PbsEstimator`` per node, written by the coordinator's task and callbacks (one trio thread).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from respkv.cluster.versions import SiblingSet, descends


class UniformSource(Protocol):
    """The randomness passed in (``random.Random`` fits): uniform floats in [0, 1)."""

    def random(self) -> float: ...


DEFAULT_CAPACITY = 2048
DEFAULT_TRIALS = 4000
REFRESH_EVERY = 256  # samples added before a cached estimate is recomputed
MIN_REFRESH_MS = 1000.0  # and, when the estimator has a clock, its least age
INFO_T_MS = (0, 1, 5, 10, 100)  # the t (ms after commit) INFO and the metrics report
VISIBILITY_P = 0.999


class LatencyWindow:
    """The most recent ``capacity`` samples (ms) of one latency: a bounded window, so the
    estimate follows the current network rather than its whole history."""

    __slots__ = ("capacity", "samples", "added", "_next")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.samples: list[float] = []
        self.added = 0  # ever
        self._next = 0

    def add(self, ms: float) -> None:
        ms = max(0.0, float(ms))
        if len(self.samples) < self.capacity:
            self.samples.append(ms)
        else:
            self.samples[self._next] = ms
            self._next = (self._next + 1) % self.capacity
        self.added += 1

    def __len__(self) -> int:
        return len(self.samples)


class WarsSamples:
    """The four latency windows of the WARS model."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.w = LatencyWindow(capacity)  # coordinator -> replica, a write
        self.a = LatencyWindow(capacity)  # replica -> coordinator, the write's ack
        self.r = LatencyWindow(capacity)  # coordinator -> replica, a read request
        self.s = LatencyWindow(capacity)  # replica -> coordinator, the read's response

    def record_write(self, w_ms: float, a_ms: float) -> None:
        self.w.add(w_ms)
        self.a.add(a_ms)

    def record_read(self, r_ms: float, s_ms: float) -> None:
        self.r.add(r_ms)
        self.s.add(s_ms)

    def record_write_round_trip(self, rtt_ms: float) -> None:
        """A replica write's round trip, split evenly (W = A = rtt / 2)."""
        self.record_write(rtt_ms / 2, rtt_ms / 2)

    def record_read_round_trip(self, rtt_ms: float) -> None:
        """A replica read's round trip, split evenly (R = S = rtt / 2)."""
        self.record_read(rtt_ms / 2, rtt_ms / 2)

    def ready(self) -> bool:
        """Some round trips were sampled (reads or writes: see :meth:`windows`)."""
        return bool(len(self.w) or len(self.r))

    def windows(self) -> tuple[LatencyWindow, LatencyWindow, LatencyWindow, LatencyWindow]:
        """(W, A, R, S) to draw from. A kind never sampled borrows the other direction's
        windows -- a round trip on the same links: reads at R=1 served by the coordinator's own
        replica never go remote, and must not leave the estimate empty."""
        w, a, r, s = self.w, self.a, self.r, self.s
        if not len(r) or not len(s):
            r, s = w, a
        if not len(w) or not len(a):
            w, a = r, s
        return w, a, r, s

    @property
    def generation(self) -> int:
        return self.w.added + self.r.added

    def counts(self) -> dict[str, int]:
        return {"w": len(self.w), "a": len(self.a), "r": len(self.r), "s": len(self.s)}


@dataclass(frozen=True)
class Estimate:
    """The outcome of one simulation for (n, r, w): ``taus`` are the sorted per-trial
    thresholds (ms after commit from which the read is consistent); empty when ``r + w > n``
    (every read consistent)."""

    n: int
    r: int
    w: int
    trials: int
    taus: tuple[float, ...] = field(repr=False, default=())

    @property
    def strict(self) -> bool:
        return self.r + self.w > self.n and not self.taus

    def p_consistent(self, t_ms: float) -> float:
        """P(a read issued ``t_ms`` after the commit returns the write or a newer one)."""
        if self.strict or not self.taus:
            return 1.0
        return bisect_right(self.taus, t_ms) / len(self.taus)

    def t_visible(self, p: float = VISIBILITY_P) -> float:
        """The least t (ms after commit) with P(consistent at t) >= p (0 when already so)."""
        if self.strict or not self.taus:
            return 0.0
        k = len(self.taus)
        idx = min(k - 1, max(0, math.ceil(p * k - 1e-9) - 1))
        return max(0.0, self.taus[idx])


def _draws(window: LatencyWindow, rng: UniformSource, count: int) -> list[float]:
    """``count`` samples drawn uniformly (with replacement) from ``window``."""
    s = window.samples
    k = len(s)
    rand = rng.random
    return [s[int(rand() * k)] for _ in range(count)]


def simulate(samples: WarsSamples, n: int, r: int, w: int, rng: UniformSource,
             trials: int = DEFAULT_TRIALS, *, shortcut: bool = True) -> Estimate:
    """Monte Carlo over the WARS model (module docstring). Needs ``samples.ready()`` unless
    ``r + w > n`` (then exact, unless ``shortcut`` is False: tests check the model agrees);
    ``1 <= r, w <= n``. Cost: about 4 us per trial at n = 3 (14 ms for the default 4000
    trials, CPython), synchronous: callers cache (:class:`PbsEstimator`)."""
    if not (1 <= r <= n and 1 <= w <= n):
        raise ValueError(f"need 1 <= r, w <= n, got n={n} r={r} w={w}")
    if r + w > n and shortcut:
        return Estimate(n, r, w, trials)
    if not samples.ready():
        raise ValueError("no latency samples yet")
    total = trials * n
    W, A, R, S = (_draws(x, rng, total) for x in samples.windows())
    taus = []
    idx = range(n)
    for base in range(0, total, n):
        ws = W[base:base + n]
        rs = R[base:base + n]
        commit = sorted([x + y for x, y in zip(ws, A[base:base + n], strict=True)])[w - 1]
        if r == 1:
            first = min(idx, key=lambda i: rs[i] + S[base + i])
            taus.append(ws[first] - rs[first] - commit)
        else:
            resp = sorted(idx, key=lambda i: rs[i] + S[base + i])[:r]
            taus.append(min(ws[i] - rs[i] - commit for i in resp))
    taus.sort()
    return Estimate(n, r, w, trials, tuple(taus))


def missed_newer(returned: SiblingSet, complete: SiblingSet) -> bool:
    """True when ``complete`` (the merge of every reply, late ones included) holds a write the
    ``returned`` set (what the client got) had not seen: the read returned an older version."""
    return not descends(returned.clock, complete.clock)


class PbsLevel(NamedTuple):
    """A (read, write) consistency pair to estimate, as counts against replication ``n``."""

    name: str
    n: int
    r: int
    w: int


def standard_levels(n: int, read_r: int, write_w: int) -> list[PbsLevel]:
    """ONE, QUORUM and ALL (read and write at the same level) and the configured defaults
    (``default``), for replication ``n``."""
    q = n // 2 + 1
    out = [PbsLevel("one", n, 1, 1), PbsLevel("quorum", n, q, q), PbsLevel("all", n, n, n)]
    read_r, write_w = min(max(1, read_r), n), min(max(1, write_w), n)
    if (read_r, write_w) not in {(x.r, x.w) for x in out}:
        out.append(PbsLevel("default", n, read_r, write_w))
    return out


class PbsEstimator:
    """Live PBS for one node: the WARS samples, estimates cached per (n, r, w) and refreshed
    once ``refresh_every`` samples were added, and the observed per-read-level counters."""

    def __init__(self, rng: UniformSource, capacity: int = DEFAULT_CAPACITY,
                 trials: int = DEFAULT_TRIALS, refresh_every: int = REFRESH_EVERY,
                 clock_ms: Callable[[], float] | None = None,
                 min_refresh_ms: float = MIN_REFRESH_MS) -> None:
        """``clock_ms`` (optional, monotonic): with it, an estimate is also kept at least
        ``min_refresh_ms``, so a busy node polled often simulates at most that often."""
        self.rng = rng
        self.samples = WarsSamples(capacity)
        self.trials = trials
        self.refresh_every = refresh_every
        self.clock_ms = clock_ms
        self.min_refresh_ms = min_refresh_ms
        # (n, r, w) -> (samples generation, clock ms, estimate) when it was computed
        self._cache: dict[tuple[int, int, int], tuple[int, float, Estimate]] = {}
        # read level name -> [reads answered, reads checked by late replies, newer missed]
        self.observed: dict[str, list[int]] = {}

    # -- fed by the coordinator --
    def record_write_round_trip(self, rtt_ms: float) -> None:
        self.samples.record_write_round_trip(rtt_ms)

    def record_read_round_trip(self, rtt_ms: float) -> None:
        self.samples.record_read_round_trip(rtt_ms)

    def read_answered(self, level: str) -> None:
        """One key's read was answered to the client at read level ``level``."""
        self.observed.setdefault(level, [0, 0, 0])[0] += 1

    def late_replies(self, level: str, returned: SiblingSet, complete: SiblingSet) -> bool:
        """Every replica asked by an answered read has replied, some after the answer:
        ``returned`` is what the client got, ``complete`` the merge of all replies. Counts the
        read as checked, and as stale when a replica held a newer version; returns that."""
        st = self.observed.setdefault(level, [0, 0, 0])
        st[1] += 1
        stale = missed_newer(returned, complete)
        st[2] += stale
        return stale

    # -- read by INFO and the metrics --
    def estimate(self, n: int, r: int, w: int) -> Estimate | None:
        """The estimate for (n, r, w), or None while there are no samples (and r + w <= n)."""
        if r + w > n:
            return Estimate(n, r, w, 0)
        if not self.samples.ready():
            return None
        gen = self.samples.generation
        now = self.clock_ms() if self.clock_ms is not None else 0.0
        cached = self._cache.get((n, r, w))
        young = self.clock_ms is not None and cached is not None and \
            now - cached[1] < self.min_refresh_ms
        if cached is not None and (gen - cached[0] < self.refresh_every or young):
            return cached[2]
        est = simulate(self.samples, n, r, w, self.rng, self.trials)
        self._cache[(n, r, w)] = (gen, now, est)
        return est


def _f(x: float) -> str:
    return f"{x:.4f}"


def pbs_info(estimator: PbsEstimator, levels: Iterable[PbsLevel],
             t_ms: Sequence[float] = INFO_T_MS) -> dict[str, Any]:
    """The INFO ``staleness`` fields: per level the estimate (``p_<t>ms`` = P(consistent read
    t ms after commit), ``t_visible_ms`` = t for 99.9%), the sample counts, and per read level
    the observed counters."""
    counts = estimator.samples.counts()
    out: dict[str, Any] = {
        "staleness_samples": ",".join(f"{k}={v}" for k, v in counts.items()),
        "staleness_method": "pbs_wars_monte_carlo",
    }
    for lv in levels:
        head = f"n={lv.n},r={lv.r},w={lv.w}"
        est = estimator.estimate(lv.n, lv.r, lv.w)
        if est is None:
            out[f"staleness_{lv.name}"] = head + ",estimate=none"
            continue
        ps = ",".join(f"p_{t:g}ms={_f(est.p_consistent(t))}" for t in t_ms)
        out[f"staleness_{lv.name}"] = (f"{head},{ps},t_visible_ms={est.t_visible():.3f},"
                                       f"trials={est.trials}")
    for level, (reads, checked, stale) in sorted(estimator.observed.items()):
        rate = stale / checked if checked else 0.0
        out[f"staleness_observed_{level}"] = (f"reads={reads},checked={checked},"
                                              f"newer_missed={stale},rate={_f(rate)}")
    return out
