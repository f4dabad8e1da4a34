"""The storage engine interface: the one seam between the node and the bytes on disk.

Two implementations honour it: ``respkv.storage.memory.MemoryEngine`` (a dict; the test double
and the ``--engine memory`` mode) and ``respkv.storage.lsm.LSMEngine`` (the hand-written LSM).

Contracts every engine keeps:

* Keys and values are ``bytes``. Keys are ordered bytewise; ``scan`` yields in that order.
* ``get``/``put``/``delete``/``write_batch``/``scan`` are synchronous, never block on I/O beyond
  a buffered append (the LSM's commit-log append goes to an in-memory buffer), and are only ever
  called from the node's one trio thread.
* Expiry is data, not behaviour, on the read path: records are returned even when their
  ``expire_at_ms`` lies in the past; the caller (the keyspace layer, which owns the clock) decides
  they are gone. Compaction may drop records that expired before the ``now_ms`` it is given.
* ``meta`` is opaque: the cluster layer stores its version vectors there; a single node leaves it
  empty.
* Durability: a mutation is in the OS after ``write_pending()`` and on disk after ``sync()``.
  ``sync()`` may run in a worker thread while the trio thread goes on calling ``put``; it makes
  durable at least everything appended before it was called and returns the highest sequence
  number that is now durable. The node acknowledges a write under ``appendfsync always`` only
  after a ``sync()`` that returned a sequence >= the write's.
* Background work (memtable flush, compaction) is done by ``do_background_work()``, called from a
  worker thread while the trio thread goes on serving; it must leave the engine consistent at every
  step, so a crash anywhere in it recovers to a state holding every synced write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

# Scan windows (Engine.scan): the first copies this many entries of the mutable state, each next
# one twice as many, up to SCAN_WINDOW_MAX.
SCAN_WINDOW_FIRST = 64
SCAN_WINDOW_MAX = 8192


class Record(NamedTuple):
    """A live value as the engine returns it. Tombstones are never returned."""

    value: bytes
    expire_at_ms: int = 0  # absolute unix time in ms; 0 means no expiry
    meta: bytes = b""


# One mutation of a batch: (key, record) for a put, (key, None) for a delete.
Mutation = tuple[bytes, "Record | None"]


class RandomSource(Protocol):
    """What ``sample_key`` needs of a random generator (``random.Random`` has it)."""

    def random(self) -> float: ...

    def randrange(self, n: int, /) -> int: ...


class Engine(Protocol):
    def get(self, key: bytes) -> Record | None:
        """The newest live record of ``key``, or None if absent or deleted."""
        ...

    def put(self, key: bytes, value: bytes, expire_at_ms: int = 0, meta: bytes = b"") -> int:
        """Write ``key``; returns the mutation's sequence number."""
        ...

    def delete(self, key: bytes) -> int:
        """Delete ``key`` (a tombstone in an LSM); returns the sequence number."""
        ...

    def write_batch(self, mutations: list[Mutation]) -> int:
        """Apply all mutations atomically (all or none survive a crash); returns the last seq."""
        ...

    def delete_range(self, start: bytes, end: bytes | None) -> int:
        """Delete every key k with start <= k < end (end None: no upper bound)."""
        ...

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, Record]]:
        """Live records with start <= key < end, in key order, each key once. Read in windows
        of consecutive keys (``SCAN_WINDOW_FIRST`` entries, doubling up to
        ``SCAN_WINDOW_MAX``): each window is a consistent snapshot taken when the iteration
        reaches it, the first one when the iterator is created. So a mutation made while
        iterating is not seen in the windows already taken, and is seen in the later ones
        (a key written ahead of the iteration shows its new state); a caller that stops early
        copies little."""
        ...

    def sample_key(self, start: bytes, end: bytes | None, rng: RandomSource) -> bytes | None:
        """A stored key with start <= key < end, picked at random so that each stored entry is
        about equally likely (RANDOMKEY): O(sources + log n), a few block reads at most. The key
        may be one with no live record (a tombstone's, or one a newer source deleted): the
        caller looks from it for a live key. None when nothing is stored in the range."""
        ...

    # -- durability -------------------------------------------------------------------------
    def write_pending(self) -> int:
        """Hand buffered commit-log bytes to the OS (no fsync); returns the last seq written."""
        ...

    def sync(self) -> int:
        """write_pending() then fsync; returns the highest seq now durable. Thread-safe."""
        ...

    @property
    def last_seq(self) -> int: ...

    # -- background work --------------------------------------------------------------------
    def background_work_pending(self) -> bool:
        """True when a flush or compaction is due. Cheap; called from the trio thread."""
        ...

    def do_background_work(self) -> bool:
        """Do one unit of flush/compaction (blocking; runs in a worker thread). True if it did
        something."""
        ...

    def write_stalled(self) -> bool:
        """True when writers must wait for background work (too many frozen memtables)."""
        ...

    def stats(self) -> dict[str, int | float | str]:
        """Figures for INFO persistence (names are snake_case INFO field names)."""
        ...

    def close(self) -> None:
        """Sync and release files. The engine is unusable afterwards."""
        ...


Window = Callable[[bytes, "bytes | None", int], "tuple[Iterable[tuple[bytes, Record]], bytes | None]"]
"""An engine's ``window(start, end, size)``: the records of a consistent snapshot of
``start <= key < cut`` holding at most ``size`` entries of its mutable state, and ``cut`` (None:
the snapshot reaches ``end``)."""


def windowed_scan(window: Window, start: bytes, end: bytes | None, first: int = SCAN_WINDOW_FIRST,
                  most: int = SCAN_WINDOW_MAX) -> Iterator[tuple[bytes, Record]]:
    """``Engine.scan`` from an engine's ``window``: the first window taken now, each next one
    (twice as large, up to ``most``) when the iteration reaches it."""
    return _follow(window, window(start, end, first), end, first, most)


def _follow(window: Window, taken: tuple[Iterable[tuple[bytes, Record]], bytes | None],
            end: bytes | None, size: int, most: int) -> Iterator[tuple[bytes, Record]]:
    items, cut = taken
    while True:
        yield from items
        if cut is None:
            return
        size = min(size * 2, most)
        items, cut = window(cut, end, size)

