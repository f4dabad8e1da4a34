"""Merkle trees over token ranges, for anti-entropy (Merkle 1987; Dynamo §4.7; riak_core
``hashtree``; Cassandra's ``MerkleTree``).

A :class:`MerkleTree` covers one :class:`~respkv.cluster.hashing.TokenRange` (the whole ring by
default) with a complete binary tree of fixed ``depth``: ``2**depth`` leaves, leaf ``i`` covering
the ``i``-th of ``2**depth`` equal slices of the range.

Leaf hashes are order-independent so that updates are incremental:

* the hash of one key is :func:`key_hash` ``(key, digest) = xxh3_64(key || digest as 8 bytes BE)``
  where ``digest`` is :func:`respkv.cluster.versions.version_digest` of the key's sibling set;
* a leaf is the XOR of the hashes of the keys whose tokens fall in it (0 when empty); a write that
  changes a key's versions does ``leaf ^= key_hash(key, old) ^ key_hash(key, new)``
  (:meth:`MerkleTree.update`);
* an interior node is ``xxh3_64(left || right)`` (each 8 bytes BE), computed lazily.

Two replicas holding the same keys at the same versions have equal trees; :func:`diff` descends
only into differing subtrees and returns the token ranges of the differing leaves, which the
node then exchanges key by key. For trees held on different nodes the same descent runs one level
per message with :meth:`MerkleTree.hashes` and :func:`divergent_children`.

Ownership: a tree is mutable and owned by one task (the node's anti-entropy owner); hand
:meth:`MerkleTree.copy` to anyone else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xxhash

from respkv.cluster.codec import DecodeError, Reader, frame, put_uvarint, unframe
from respkv.cluster.hashing import FULL_RING, TOKEN_SPACE, TokenRange, merge_adjacent

DEFAULT_DEPTH = 10
MAX_DEPTH = 20
TREE_FORMAT_VERSION = 1
HASHES_FORMAT_VERSION = 1
_MASK = TOKEN_SPACE - 1


class InvalidMerkleDataError(ValueError):
    """Serialized tree or hash list that fails its checksum or does not parse."""


def key_hash(key: bytes, version_digest: int) -> int:
    """The contribution of one key at one version to its leaf."""
    return xxhash.xxh3_64_intdigest(key + version_digest.to_bytes(8, "big"))


def _combine(left: int, right: int) -> int:
    return xxhash.xxh3_64_intdigest(left.to_bytes(8, "big") + right.to_bytes(8, "big"))


class MerkleTree:
    __slots__ = ("range", "depth", "_levels", "_dirty")

    def __init__(self, rng: TokenRange = FULL_RING, depth: int = DEFAULT_DEPTH) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in 0..{MAX_DEPTH}, got {depth}")
        if rng.width < (1 << depth):
            raise ValueError("range too narrow for this depth")
        self.range = rng
        self.depth = depth
        # _levels[d] holds the 2**d node hashes of depth d; _levels[depth] are the leaves.
        empty = [0] * (1 << depth)
        self._levels: list[list[int]] = [[0] * (1 << d) for d in range(depth)] + [empty]
        self._dirty: set[int] = set(range(1 << depth))  # leaves whose ancestors are stale

    @classmethod
    def build(
        cls,
        items: Iterable[tuple[int, int]],
        rng: TokenRange = FULL_RING,
        depth: int = DEFAULT_DEPTH,
    ) -> MerkleTree:
        """A tree over ``(token, key_hash)`` pairs (e.g. from a storage scan of ``rng``)."""
        tree = cls(rng, depth)
        for token, h in items:
            tree.update(token, 0, h)
        return tree

    # -- geometry --
    @property
    def leaf_count(self) -> int:
        return 1 << self.depth

    def leaf_of(self, token: int) -> int:
        if not self.range.contains(token):
            raise ValueError(f"token {token} outside the tree's range {self.range}")
        offset = (token - self.range.start - 1) & _MASK
        return (offset << self.depth) // self.range.width

    def leaf_range(self, index: int) -> TokenRange:
        width = self.range.width
        lo = -((-index * width) >> self.depth)  # ceil(index * width / leaves)
        hi = -((-(index + 1) * width) >> self.depth)
        return TokenRange((self.range.start + lo) & _MASK, (self.range.start + hi) & _MASK)

    def node_range(self, depth: int, index: int) -> TokenRange:
        shift = self.depth - depth
        first = self.leaf_range(index << shift)
        last = self.leaf_range(((index + 1) << shift) - 1)
        return TokenRange(first.start, last.end)

    # -- updates --
    def update(self, token: int, old_hash: int, new_hash: int) -> None:
        """Replace one key's contribution: ``old_hash`` 0 for an insert, ``new_hash`` 0 for a
        removal. The caller passes the hash the key had in this tree, or the leaf goes wrong."""
        if old_hash == new_hash:
            return
        i = self.leaf_of(token)
        self._levels[self.depth][i] ^= old_hash ^ new_hash
        self._dirty.add(i)

    def _refresh(self) -> None:
        if not self._dirty:
            return
        indices = self._dirty
        for d in range(self.depth - 1, -1, -1):
            below = self._levels[d + 1]
            here = self._levels[d]
            parents = {i >> 1 for i in indices}
            for p in parents:
                here[p] = _combine(below[2 * p], below[2 * p + 1])
            indices = parents
        self._dirty = set()

    # -- reads --
    def root(self) -> int:
        self._refresh()
        return self._levels[0][0]

    def level(self, depth: int) -> tuple[int, ...]:
        self._refresh()
        return tuple(self._levels[depth])

    def leaves(self) -> tuple[int, ...]:
        return tuple(self._levels[self.depth])

    def hashes(self, depth: int, indices: Sequence[int]) -> list[int]:
        """The hashes of the given nodes of one level (what a peer asks for, level by level)."""
        self._refresh()
        lvl = self._levels[depth]
        return [lvl[i] for i in indices]

    def copy(self) -> MerkleTree:
        self._refresh()
        other = MerkleTree.__new__(MerkleTree)
        other.range = self.range
        other.depth = self.depth
        other._levels = [list(lvl) for lvl in self._levels]
        other._dirty = set()
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MerkleTree):
            return NotImplemented
        return (self.range, self.depth, self.leaves()) == (other.range, other.depth, other.leaves())

    __hash__ = None  # type: ignore[assignment]  # mutable


def divergent_children(
    depth: int, indices: Sequence[int], mine: Sequence[int], theirs: Sequence[int], max_depth: int
) -> list[int]:
    """One step of the remote descent: given the hashes of nodes ``indices`` at ``depth`` on both
    sides, the indices at ``depth + 1`` to compare next; at ``depth == max_depth`` the differing
    leaf indices themselves (the end of the descent)."""
    if not len(indices) == len(mine) == len(theirs):
        raise ValueError("hash lists do not match the indices")
    differing = [i for i, a, b in zip(indices, mine, theirs, strict=True) if a != b]
    if depth == max_depth:
        return differing
    return [c for i in differing for c in (2 * i, 2 * i + 1)]


def diff_leaves(a: MerkleTree, b: MerkleTree) -> list[int]:
    """Indices of the leaves that differ, found by descending only into differing subtrees."""
    if a.range != b.range or a.depth != b.depth:
        raise ValueError("trees cover different ranges or depths")
    indices = [0]
    for d in range(a.depth + 1):
        nxt = divergent_children(d, indices, a.hashes(d, indices), b.hashes(d, indices), a.depth)
        if d == a.depth or not nxt:
            return nxt
        indices = nxt
    return []


def diff(a: MerkleTree, b: MerkleTree) -> list[TokenRange]:
    """The token ranges (adjacent leaves merged) where the two trees' keys or versions differ."""
    return merge_adjacent([a.leaf_range(i) for i in diff_leaves(a, b)])


# -- serialization -------------------------------------------------------------------------------
#
# tree   = framed(0x01, u64 start || u64 end || uvarint depth || 2**depth * u64 leaf)
# hashes = framed(0x01, uvarint count || count * u64)
# (framed = version || body || xxh32, see respkv.cluster.codec)


def encode_tree(tree: MerkleTree) -> bytes:
    body = bytearray()
    body += tree.range.start.to_bytes(8, "big") + tree.range.end.to_bytes(8, "big")
    put_uvarint(body, tree.depth)
    for leaf in tree.leaves():
        body += leaf.to_bytes(8, "big")
    return frame(TREE_FORMAT_VERSION, body)


def decode_tree(data: bytes) -> MerkleTree:
    try:
        r = Reader(unframe(data, TREE_FORMAT_VERSION))
        rng = TokenRange(r.u64(), r.u64())
        depth = r.uvarint()
        if depth > MAX_DEPTH or rng.width < (1 << depth):
            raise DecodeError("bad depth")
        tree = MerkleTree(rng, depth)
        leaves = tree._levels[depth]
        for i in range(1 << depth):
            leaves[i] = r.u64()
        r.expect_end()
        return tree
    except DecodeError as exc:
        raise InvalidMerkleDataError(f"invalid merkle tree: {exc}") from exc


def encode_hashes(hashes: Sequence[int]) -> bytes:
    body = bytearray()
    put_uvarint(body, len(hashes))
    for h in hashes:
        body += h.to_bytes(8, "big")
    return frame(HASHES_FORMAT_VERSION, body)


def decode_hashes(data: bytes) -> list[int]:
    try:
        r = Reader(unframe(data, HASHES_FORMAT_VERSION))
        count = r.uvarint()
        out = [r.u64() for _ in range(count)]
        r.expect_end()
        return out
    except DecodeError as exc:
        raise InvalidMerkleDataError(f"invalid merkle hashes: {exc}") from exc
