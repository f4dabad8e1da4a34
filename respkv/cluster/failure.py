"""The phi accrual failure detector (Hayashibara, Défago, Yared, Katayama 2004, *The φ Accrual
Failure Detector*), in the form Akka and Cassandra use.

Instead of a yes/no verdict the detector outputs ``phi = -log10(P(a heartbeat arrives later than
now))``, assuming inter-arrival times are normally distributed with the mean and standard
deviation of a sliding window of recent intervals. ``phi = 8`` means a 1e-8 chance that a node
this late is still alive. The normal CDF is approximated with the logistic function
``1 / (1 + exp(-y * (1.5976 + 0.070566 * y**2)))`` (error < 1.4e-4), as Akka does.

Time is injected: every method takes ``now_ms`` (any monotonic millisecond clock, the same one for
all calls on one detector). No clock is read here.

Parameters (defaults suit heartbeats that arrive about once a second through gossip):

* ``window_size`` (1000): intervals kept.
* ``min_std_dev_ms`` (200): floor on the standard deviation, so perfectly regular heartbeats do
  not make the detector hair-triggered.
* ``acceptable_pause_ms`` (1000): added to the mean: a pause this long beyond the usual interval
  costs little phi (GC pauses, a gossip round that skipped this node).
* ``first_heartbeat_estimate_ms`` (1000): the window is seeded with ``estimate ± estimate/4``
  so phi is meaningful after the first heartbeat.

Once the window holds ``min_samples`` (10) observed intervals, an interval that ends while the
node was already considered unavailable (phi >= ``threshold``) is not added, so one long outage
does not teach the detector to tolerate the next. The first ``min_samples`` intervals are always
learned, so a wrong first estimate is corrected.

Ownership: one detector per monitored peer, owned by the node's gossip task; mutable.
"""

from __future__ import annotations

import math
from collections import deque

DEFAULT_THRESHOLD = 8.0


class PhiAccrualDetector:
    __slots__ = (
        "window_size",
        "min_std_dev_ms",
        "acceptable_pause_ms",
        "threshold",
        "_intervals",
        "_sum",
        "_sum_sq",
        "_last_ms",
        "_observed",
        "min_samples",
    )

    def __init__(
        self,
        window_size: int = 1000,
        min_std_dev_ms: float = 200.0,
        acceptable_pause_ms: float = 1000.0,
        first_heartbeat_estimate_ms: float = 1000.0,
        threshold: float = DEFAULT_THRESHOLD,
        min_samples: int = 10,
    ) -> None:
        if window_size < 2 or min_std_dev_ms <= 0 or first_heartbeat_estimate_ms <= 0:
            raise ValueError("invalid phi detector parameters")
        self.window_size = window_size
        self.min_std_dev_ms = min_std_dev_ms
        self.acceptable_pause_ms = acceptable_pause_ms
        self.threshold = threshold
        self.min_samples = min_samples
        self._observed = 0  # intervals learned from real heartbeats
        self._intervals: deque[float] = deque()
        self._sum = 0.0
        self._sum_sq = 0.0
        self._last_ms: float | None = None
        spread = first_heartbeat_estimate_ms / 4
        self._add(first_heartbeat_estimate_ms - spread)
        self._add(first_heartbeat_estimate_ms + spread)

    def _add(self, interval: float) -> None:
        if len(self._intervals) >= self.window_size:
            old = self._intervals.popleft()
            self._sum -= old
            self._sum_sq -= old * old
        self._intervals.append(interval)
        self._sum += interval
        self._sum_sq += interval * interval

    @property
    def is_monitoring(self) -> bool:
        """False until the first heartbeat."""
        return self._last_ms is not None

    @property
    def last_heartbeat_ms(self) -> float | None:
        return self._last_ms

    def mean_ms(self) -> float:
        return self._sum / len(self._intervals)

    def std_dev_ms(self) -> float:
        mean = self.mean_ms()
        variance = max(0.0, self._sum_sq / len(self._intervals) - mean * mean)
        return max(math.sqrt(variance), self.min_std_dev_ms)

    def heartbeat(self, now_ms: float) -> None:
        """Record that the peer was heard from at ``now_ms``."""
        last = self._last_ms
        if last is not None:
            interval = now_ms - last
            learning = self._observed < self.min_samples
            if interval >= 0 and (learning or self.phi(now_ms) < self.threshold):
                self._add(interval)
                self._observed += 1
        if last is None or now_ms >= last:
            self._last_ms = now_ms

    def phi(self, now_ms: float) -> float:
        """Suspicion level at ``now_ms``: >= 0, 0.0 before the first heartbeat; finite (the
        logistic tail is clamped, so phi tops out near 304)."""
        if self._last_ms is None:
            return 0.0
        elapsed = now_ms - self._last_ms
        mean = self.mean_ms() + self.acceptable_pause_ms
        y = (elapsed - mean) / self.std_dev_ms()
        exponent = max(-700.0, min(700.0, -y * (1.5976 + 0.070566 * y * y)))
        e = math.exp(exponent)
        if elapsed > mean:
            p_later = e / (1.0 + e)
        else:
            p_later = 1.0 - 1.0 / (1.0 + e)
        return max(0.0, -math.log10(p_later))

    def is_available(self, now_ms: float, threshold: float | None = None) -> bool:
        """``phi(now_ms) < threshold`` (default: the detector's). True before any heartbeat."""
        return self.phi(now_ms) < (self.threshold if threshold is None else threshold)
