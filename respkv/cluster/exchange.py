"""Pure pieces of anti-entropy and range streaming (Merkle 1987; DeCandia et al. 2007 §4.7;
riak_core's ``hashtree`` exchange; Cassandra's repair and streaming).

The node layer (``respkv/node/antientropy.py``, ``respkv/node/streaming.py``) owns the scans,
the sessions and the calls; this module owns what they compute and every byte they exchange
(specified in docs/formats/wire.md, "Anti-entropy and streaming"):

* :class:`LeafAccumulator`: the leaf hashes of one token range, fed one stored key at a time,
  kept at a fixed fine depth (:data:`BASE_DEPTH`) and folded to the exchange's depth at the end
  (leaves are XORs, so folding is exact). Memory: one dict entry per non-empty fine leaf.
* :func:`stored_key_hash`: a key's contribution computed from its *stored* bytes, with no
  decoding: ``merkle.key_hash(storage_key, xxh3_64(encoded_set))``, equal to
  ``key_hash(storage_key, version_digest(set))`` as the set encoding is canonical.
* :func:`choose_depth`: the exchange depth for a key count (about one key per leaf).
* :func:`range_scans` / :func:`resume_scans`: the ordered engine scans covering several
  token ranges, resumable after a storage key.
* encodings: range lists, leaf-index lists, key pages, build replies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xxhash

from respkv.cluster.codec import DecodeError, Reader, frame, put_bytes, put_uvarint, unframe
from respkv.cluster.hashing import (
    MAX_TOKEN,
    TOKEN_PREFIX_LEN,
    TOKEN_SPACE,
    TokenRange,
    token_of,
)
from respkv.cluster.merkle import MerkleTree, key_hash

BASE_DEPTH = 16  # leaves are accumulated at this depth (or the range's own limit), then folded
MAX_EXCHANGE_DEPTH = BASE_DEPTH
FORMAT_VERSION = 1
DB_LEN = 2  # bytes of the database number in a cluster storage key


class InvalidExchangeDataError(ValueError):
    """A range list, index list, key page or build reply that does not parse."""


# -- keys -----------------------------------------------------------------------------------------


def stored_key_hash(skey: bytes, encoded_set: bytes) -> int:
    """The Merkle contribution of one stored key (see the module docstring)."""
    return key_hash(skey, xxhash.xxh3_64_intdigest(encoded_set))


def value_digest(encoded_set: bytes) -> int:
    """``versions.version_digest`` computed from the stored bytes."""
    return xxhash.xxh3_64_intdigest(encoded_set)


def split_storage_key(skey: bytes) -> tuple[int, int, bytes]:
    """``(token, db, key)`` of a cluster storage key; ValueError unless the prefix is the key's
    token (so bytes from a peer cannot land outside their key's place on the ring)."""
    if len(skey) < TOKEN_PREFIX_LEN + DB_LEN:
        raise ValueError("storage key too short")
    token = int.from_bytes(skey[:TOKEN_PREFIX_LEN], "big")
    db = int.from_bytes(skey[TOKEN_PREFIX_LEN:TOKEN_PREFIX_LEN + DB_LEN], "big")
    key = skey[TOKEN_PREFIX_LEN + DB_LEN:]
    if token_of(key) != token:
        raise ValueError("storage key prefix is not the key's token")
    return token, db, key


def token_of_storage_key(skey: bytes) -> int:
    return int.from_bytes(skey[:TOKEN_PREFIX_LEN], "big")


# -- trees ----------------------------------------------------------------------------------------


def max_depth_for(rng: TokenRange) -> int:
    """The deepest tree ``rng`` allows (``MerkleTree`` needs a token per leaf), capped."""
    return min(MAX_EXCHANGE_DEPTH, rng.width.bit_length() - 1)


def choose_depth(keys: int, rng: TokenRange) -> int:
    """About one key per leaf: the smallest depth with ``2**depth >= keys``, capped by the range
    and :data:`MAX_EXCHANGE_DEPTH`. Deeper trees cost more hashes per divergent key (one more
    level, ~16 bytes); shallower ones stream more innocent keys along with each divergent one."""
    return min(max(keys - 1, 0).bit_length(), max_depth_for(rng))


class LeafAccumulator:
    """Leaf XORs of one range at depth ``base`` (:func:`max_depth_for`). Feed every key of the
    range once (:meth:`add`); :meth:`tree` folds to any depth ``<= base``. Memory: a list of
    ``2**base`` (at most 65,536) ints. Owned by one task or one session."""

    __slots__ = ("range", "base", "fine", "keys", "data_bytes")

    def __init__(self, rng: TokenRange) -> None:
        self.range = rng
        self.base = max_depth_for(rng)
        self.fine = [0] * (1 << self.base)
        self.keys = 0
        self.data_bytes = 0

    def add(self, skey: bytes, encoded_set: bytes) -> None:
        offset = (token_of_storage_key(skey) - self.range.start - 1) & MAX_TOKEN
        self.fine[(offset << self.base) // self.range.width] ^= stored_key_hash(skey, encoded_set)
        self.keys += 1
        self.data_bytes += len(skey) + len(encoded_set)

    def tree(self, depth: int) -> MerkleTree:
        """The tree at ``depth``: leaf ``j`` is the XOR of fine leaves ``j << s .. (j+1) << s``
        (``s = base - depth``), exact because ``floor(floor(x / 2**s)) == floor(x / 2**(base-d))``
        maps a token to the same leaf either way."""
        if not 0 <= depth <= self.base:
            raise ValueError(f"depth {depth} outside 0..{self.base}")
        shift = self.base - depth
        folded = [0] * (1 << depth)
        for i, h in enumerate(self.fine):
            if h:
                folded[i >> shift] ^= h
        tree = MerkleTree(self.range, depth)
        for j, h in enumerate(folded):
            if h:
                tree.update(tree.leaf_range(j).end, 0, h)
        return tree


# -- scans ----------------------------------------------------------------------------------------


def range_scans(ranges: Iterable[TokenRange]) -> list[tuple[bytes, bytes | None]]:
    """The ``[lo, hi)`` engine scans covering ``ranges`` (disjoint), in key order."""
    scans = [s for r in ranges for s in r.scan_bounds()]
    scans.sort(key=lambda s: s[0])
    return scans


def resume_scans(scans: Sequence[tuple[bytes, bytes | None]], after: bytes
                 ) -> list[tuple[bytes, bytes | None]]:
    """``scans`` restricted to keys strictly greater than ``after`` (b"": from the start)."""
    if not after:
        return list(scans)
    nxt = after + b"\x00"  # the smallest key greater than ``after``
    out = []
    for lo, hi in scans:
        if hi is not None and hi <= nxt:
            continue
        out.append((max(lo, nxt), hi))
    return out


def split_range(rng: TokenRange, max_width: int) -> list[TokenRange]:
    """``rng`` cut clockwise into pieces at most ``max_width`` tokens wide."""
    if max_width < 1:
        raise ValueError("max_width must be positive")
    width = rng.width
    pieces = -(-width // max_width)
    out = []
    for k in range(pieces):
        lo = (rng.start + (k * width) // pieces) % TOKEN_SPACE
        hi = (rng.start + ((k + 1) * width) // pieces) % TOKEN_SPACE
        out.append(TokenRange(lo, hi))
    return out


# -- encodings (docs/formats/wire.md, "Anti-entropy and streaming") ---------------------------------


def _unframe(data: bytes, what: str) -> Reader:
    try:
        return Reader(unframe(data, FORMAT_VERSION))
    except DecodeError as exc:
        raise InvalidExchangeDataError(f"invalid {what}: {exc}") from exc


def encode_ranges(ranges: Sequence[TokenRange]) -> bytes:
    """``framed(0x01, uvarint count || count * (u64 start || u64 end))``."""
    body = bytearray()
    put_uvarint(body, len(ranges))
    for r in ranges:
        body += r.start.to_bytes(8, "big") + r.end.to_bytes(8, "big")
    return frame(FORMAT_VERSION, body)


def decode_ranges(data: bytes) -> list[TokenRange]:
    r = _unframe(data, "range list")
    try:
        out = [TokenRange(r.u64(), r.u64()) for _ in range(r.uvarint())]
        r.expect_end()
    except DecodeError as exc:
        raise InvalidExchangeDataError(f"invalid range list: {exc}") from exc
    return out


def encode_indices(indices: Sequence[int]) -> bytes:
    """Strictly increasing node indices: ``framed(0x01, uvarint count || count * uvarint gap)``,
    gap = index - previous index - 1 (the first: the index itself)."""
    body = bytearray()
    put_uvarint(body, len(indices))
    prev = -1
    for i in indices:
        if i <= prev:
            raise ValueError("indices must be strictly increasing")
        put_uvarint(body, i - prev - 1)
        prev = i
    return frame(FORMAT_VERSION, body)


def decode_indices(data: bytes) -> list[int]:
    r = _unframe(data, "index list")
    try:
        out = []
        prev = -1
        for _ in range(r.uvarint()):
            prev += r.uvarint() + 1
            out.append(prev)
        r.expect_end()
    except DecodeError as exc:
        raise InvalidExchangeDataError(f"invalid index list: {exc}") from exc
    return out


def encode_page(items: Sequence[tuple[bytes, bytes]], after: bytes = b"") -> bytes:
    """A page of ``(storage key, bytes)`` pairs and the cursor to resume after (empty: no more
    pages): ``framed(0x01, bytes after || uvarint count || count * (bytes skey || bytes value))``
    where ``bytes x = uvarint len || x``."""
    body = bytearray()
    put_bytes(body, after)
    put_uvarint(body, len(items))
    for k, v in items:
        put_bytes(body, k)
        put_bytes(body, v)
    return frame(FORMAT_VERSION, body)


def decode_page(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    r = _unframe(data, "key page")
    try:
        after = r.bytes_()
        items = [(r.bytes_(), r.bytes_()) for _ in range(r.uvarint())]
        r.expect_end()
    except DecodeError as exc:
        raise InvalidExchangeDataError(f"invalid key page: {exc}") from exc
    return items, after


def encode_build_reply(done: bool, keys: int, data_bytes: int) -> bytes:
    """``framed(0x01, byte done (0/1) || uvarint keys || uvarint data_bytes)``."""
    body = bytearray([1 if done else 0])
    put_uvarint(body, keys)
    put_uvarint(body, data_bytes)
    return frame(FORMAT_VERSION, body)


def decode_build_reply(data: bytes) -> tuple[bool, int, int]:
    r = _unframe(data, "build reply")
    try:
        done = r.byte()
        keys, data_bytes = r.uvarint(), r.uvarint()
        r.expect_end()
        if done > 1:
            raise DecodeError("bad done flag")
    except DecodeError as exc:
        raise InvalidExchangeDataError(f"invalid build reply: {exc}") from exc
    return bool(done), keys, data_bytes


__all__ = [
    "BASE_DEPTH", "InvalidExchangeDataError", "LeafAccumulator", "choose_depth", "decode_build_reply",
    "decode_indices", "decode_page", "decode_ranges", "encode_build_reply", "encode_indices",
    "encode_page", "encode_ranges", "max_depth_for", "range_scans", "resume_scans",
    "split_range", "split_storage_key", "stored_key_hash", "value_digest",
]
