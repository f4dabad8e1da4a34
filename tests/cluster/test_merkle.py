"""Specification of Merkle trees over token ranges (respkv.cluster.merkle)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.hashing import FULL_RING, MAX_TOKEN, TokenRange, token_of
from respkv.cluster.merkle import (
    InvalidMerkleDataError,
    MerkleTree,
    decode_hashes,
    decode_tree,
    diff,
    diff_leaves,
    divergent_children,
    encode_hashes,
    encode_tree,
    key_hash,
)

tokens = st.integers(0, MAX_TOKEN)
wide_ranges = st.tuples(tokens, st.integers(1 << 20, MAX_TOKEN)).map(
    lambda t: TokenRange(t[0], (t[0] + t[1]) & MAX_TOKEN)
)
depths = st.integers(0, 8)
stores = st.dictionaries(st.binary(min_size=1, max_size=8), st.integers(0, 2**64 - 1), max_size=40)


def build(store: dict[bytes, int], rng: TokenRange = FULL_RING, depth: int = 6) -> MerkleTree:
    return MerkleTree.build(
        ((token_of(k), key_hash(k, v)) for k, v in store.items() if rng.contains(token_of(k))),
        rng,
        depth,
    )


@given(wide_ranges, depths, st.lists(tokens, max_size=30))
def test_leaves_partition_the_range(rng: TokenRange, depth: int, probes: list[int]) -> None:
    tree = MerkleTree(rng, depth)
    leaves = [tree.leaf_range(i) for i in range(tree.leaf_count)]
    assert leaves[0].start == rng.start and leaves[-1].end == rng.end
    for a, b in zip(leaves, leaves[1:], strict=False):
        assert a.end == b.start
    assert sum(r.width for r in leaves) == rng.width
    for t in [*probes, rng.end, (rng.start + 1) & MAX_TOKEN]:
        if rng.contains(t):
            i = tree.leaf_of(t)
            assert leaves[i].contains(t)
    assert tree.node_range(0, 0) == rng or rng.start == rng.end


def test_token_outside_range_rejected() -> None:
    tree = MerkleTree(TokenRange(100, 2**40), 4)
    with pytest.raises(ValueError):
        tree.leaf_of(50)
    with pytest.raises(ValueError):
        MerkleTree(TokenRange(0, 8), 4)


@given(stores, stores, depths)
def test_diff_finds_exactly_the_divergent_leaves(a: dict, changes: dict, depth: int) -> None:
    b = dict(a)
    b.update(changes)
    for k in list(a)[::3]:
        b.pop(k, None)
    ta, tb = build(a, depth=depth), build(b, depth=depth)
    changed_keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    changed_leaves = {ta.leaf_of(token_of(k)) for k in changed_keys}
    found = diff_leaves(ta, tb)
    # XOR leaves could cancel only by a 2**-64 coincidence
    assert set(found) == changed_leaves
    assert found == [i for i in range(ta.leaf_count) if ta.leaves()[i] != tb.leaves()[i]]
    ranges = diff(ta, tb)
    for k in changed_keys:
        assert any(r.contains(token_of(k)) for r in ranges)
    assert (ta.root() == tb.root()) == (not changed_keys)


@given(stores, stores, depths)
def test_remote_descent_matches_local_diff(a: dict, b: dict, depth: int) -> None:
    ta, tb = build(a, depth=depth), build(b, depth=depth)
    indices, d = [0], 0
    while True:
        # one message each way: the hashes of the asked nodes, serialized
        mine = ta.hashes(d, indices)
        theirs = decode_hashes(encode_hashes(tb.hashes(d, indices)))
        nxt = divergent_children(d, indices, mine, theirs, depth)
        if d == depth or not nxt:
            break
        indices, d = nxt, d + 1
    assert nxt == diff_leaves(ta, tb)


@given(stores, st.lists(st.tuples(st.binary(min_size=1, max_size=8), st.integers(0, 2**64 - 1))))
def test_incremental_updates_equal_rebuild(store: dict, writes: list) -> None:
    rng = TokenRange(2**62, 2**63 + 2**61)
    tree = build(store, rng)
    root_before = tree.root()  # forces interior nodes, so updates must refresh them
    current = dict(store)
    for k, v in writes:
        t = token_of(k)
        if not rng.contains(t):
            continue
        old = key_hash(k, current[k]) if k in current else 0
        tree.update(t, old, key_hash(k, v))
        current[k] = v
    assert tree == build(current, rng)
    assert tree.root() == build(current, rng).root()
    if current == store:
        assert tree.root() == root_before


def test_removal_returns_to_empty() -> None:
    tree = MerkleTree(depth=4)
    empty_root = tree.root()
    tree.update(token_of(b"k"), 0, key_hash(b"k", 7))
    assert tree.root() != empty_root
    tree.update(token_of(b"k"), key_hash(b"k", 7), 0)
    assert tree.root() == empty_root


@given(stores, wide_ranges, depths)
def test_tree_serialization_round_trip(store: dict, rng: TokenRange, depth: int) -> None:
    tree = build(store, rng, depth)
    back = decode_tree(encode_tree(tree))
    assert back == tree and back.root() == tree.root() and back.range == rng


@given(stores, st.data())
def test_serialization_rejects_corruption(store: dict, data) -> None:
    raw = bytearray(encode_tree(build(store, depth=3)))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidMerkleDataError):
        decode_tree(bytes(raw))
    hashes = bytearray(encode_hashes([1, 2, 3]))
    hashes[data.draw(st.integers(0, len(hashes) - 1))] ^= 0x40
    with pytest.raises(InvalidMerkleDataError):
        decode_hashes(bytes(hashes))


def test_diff_rejects_mismatched_trees() -> None:
    with pytest.raises(ValueError):
        diff(MerkleTree(depth=3), MerkleTree(depth=4))
