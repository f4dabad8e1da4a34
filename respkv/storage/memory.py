"""MemoryEngine: the in-memory engine behind ``respkv.storage.api.Engine``.

A dict for point access plus a lazily rebuilt sorted key list for ordered scans. Nothing is
durable: ``sync`` and ``write_pending`` only report the sequence number. Used as the test double
for the node and as ``--engine memory``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from respkv.storage.api import (
    SCAN_WINDOW_FIRST,
    SCAN_WINDOW_MAX,
    Mutation,
    RandomSource,
    Record,
    windowed_scan,
)


class MemoryEngine:
    def __init__(self) -> None:
        self._data: dict[bytes, Record] = {}
        self._sorted: list[bytes] | None = []  # None: must be rebuilt before the next scan
        self._seq = 0

    def get(self, key: bytes) -> Record | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes, expire_at_ms: int = 0, meta: bytes = b"") -> int:
        data = self._data
        if key not in data:
            self._sorted = None
        data[key] = Record(value, expire_at_ms, meta)
        self._seq += 1
        return self._seq

    def delete(self, key: bytes) -> int:
        if self._data.pop(key, None) is not None:
            self._sorted = None
        self._seq += 1
        return self._seq

    def write_batch(self, mutations: list[Mutation]) -> int:
        for key, rec in mutations:
            if rec is None:
                self.delete(key)
            else:
                self.put(key, rec.value, rec.expire_at_ms, rec.meta)
        return self._seq

    def delete_range(self, start: bytes, end: bytes | None) -> int:
        for key in [k for k, _ in self.scan(start, end)]:
            del self._data[key]
        self._sorted = None
        self._seq += 1
        return self._seq

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, Record]]:
        """Records with start <= key < end in key order, in windows as ``LSMEngine.scan``: each
        window's records are copied when the iteration reaches it (the first one now), so a
        scan that stops early copies little."""
        return windowed_scan(self._window, start, end, SCAN_WINDOW_FIRST, SCAN_WINDOW_MAX)

    def _window(self, start: bytes, end: bytes | None, size: int
                ) -> tuple[list[tuple[bytes, Record]], bytes | None]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        lo = bisect.bisect_left(keys, start)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end)
        cut = None
        if hi - lo > size:
            hi = lo + size
            cut = keys[hi]
        data = self._data
        return [(k, data[k]) for k in keys[lo:hi] if k in data], cut

    def sample_key(self, start: bytes, end: bytes | None, rng: RandomSource) -> bytes | None:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        lo = bisect.bisect_left(keys, start)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end)
        return keys[lo + rng.randrange(hi - lo)] if hi > lo else None

    def write_pending(self) -> int:
        return self._seq

    def sync(self) -> int:
        return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    def background_work_pending(self) -> bool:
        return False

    def do_background_work(self) -> bool:
        return False

    def write_stalled(self) -> bool:
        return False

    def stats(self) -> dict[str, int | float | str]:
        return {"engine": "memory", "keys": len(self._data)}

    def close(self) -> None:
        pass
