"""Tokens: where a key lives on the consistent-hashing ring (Karger et al. 1997).

The token space is the integers ``[0, 2**64)``, arranged clockwise in a circle. The token of a key
is ``xxhash.xxh3_64_intdigest(key)`` (XXH3, 64-bit, seed 0). This choice is part of the on-disk and
on-the-wire format: every node must agree on it, and the storage layer stores each key under
``token_prefix(token_of(key)) + key`` so that a token range is one (or, when it wraps, two) ordered
scans. Never change it without a data migration.

A :class:`TokenRange` ``(start, end]`` is half-open on the left, as in Cassandra: it holds the
tokens ``t`` with ``start < t <= end`` walking clockwise, wrapping past ``2**64 - 1`` to ``0`` when
``start >= end``. ``start == end`` denotes the whole ring (the only way a single-vnode ring owns
everything).
"""

from __future__ import annotations

from typing import NamedTuple

import xxhash

TOKEN_BITS = 64
TOKEN_SPACE = 1 << TOKEN_BITS  # number of distinct tokens
MAX_TOKEN = TOKEN_SPACE - 1
TOKEN_PREFIX_LEN = 8  # bytes of the big-endian token prefix in storage keys


def token_of(key: bytes) -> int:
    """The ring position of ``key``: XXH3-64 of the raw key bytes, seed 0."""
    return xxhash.xxh3_64_intdigest(key)


def token_prefix(token: int) -> bytes:
    """The 8-byte big-endian encoding of ``token``; byte order equals token order."""
    return token.to_bytes(TOKEN_PREFIX_LEN, "big")


def storage_key(key: bytes) -> bytes:
    """The key as the storage layer keeps it: ``token_prefix(token_of(key)) + key``."""
    return token_prefix(token_of(key)) + key


def token_from_storage_key(skey: bytes) -> int:
    """Inverse of the prefix part of :func:`storage_key`."""
    return int.from_bytes(skey[:TOKEN_PREFIX_LEN], "big")


def vnode_token(node_id: str, index: int) -> int:
    """The token of virtual node ``index`` of ``node_id``: ``xxh3_64(f"{node_id}/{index}")``.

    Deterministic from the node id alone, so every node computes the same ring from the same
    membership without coordination. Vnode ``i`` of a node keeps its token when the node's weight
    changes, so reweighting moves only the ranges of the added or removed vnodes.
    """
    return xxhash.xxh3_64_intdigest(f"{node_id}/{index}".encode())


class TokenRange(NamedTuple):
    """Tokens ``t`` with ``start < t <= end`` clockwise; ``start == end`` is the whole ring."""

    start: int
    end: int

    @property
    def width(self) -> int:
        """Number of tokens in the range (``TOKEN_SPACE`` for the whole ring)."""
        w = (self.end - self.start) % TOKEN_SPACE
        return w if w else TOKEN_SPACE

    @property
    def wraps(self) -> bool:
        """True when the range crosses the top of the token space (or is the whole ring)."""
        return self.start >= self.end

    def contains(self, token: int) -> bool:
        if self.start < self.end:
            return self.start < token <= self.end
        return token > self.start or token <= self.end

    def scan_bounds(self) -> list[tuple[bytes, bytes | None]]:
        """Storage scans ``[lo, hi)`` (``hi`` None: unbounded) covering exactly this range's keys
        when keys are stored under :func:`storage_key`. One scan, or two when the range wraps."""
        if self.start == self.end:
            return [(b"", None)]
        lo_first = token_prefix(self.start + 1) if self.start < MAX_TOKEN else None
        hi_last = token_prefix(self.end + 1) if self.end < MAX_TOKEN else None
        if self.start < self.end:
            assert lo_first is not None
            return [(lo_first, hi_last)]
        scans: list[tuple[bytes, bytes | None]] = []
        if lo_first is not None:
            scans.append((lo_first, None))
        scans.append((b"", hi_last))
        return scans


FULL_RING = TokenRange(0, 0)


def merge_adjacent(ranges: list[TokenRange]) -> list[TokenRange]:
    """Coalesce ranges given in clockwise order where one's end is the next one's start.

    Also joins the last range to the first when they meet across the wrap point. A set of ranges
    that covers the whole ring becomes ``[FULL_RING]``-like ``(x, x]``.
    """
    out: list[TokenRange] = []
    for r in ranges:
        if out and out[-1].end == r.start and out[-1].start != out[-1].end:
            prev = out[-1]
            out[-1] = TokenRange(prev.start, r.end)
        else:
            out.append(r)
    if len(out) > 1 and out[-1].end == out[0].start:
        last = out.pop()
        out[0] = TokenRange(last.start, out[0].end)
    return out
