"""Specification of the pure pieces of anti-entropy and streaming (respkv.cluster.exchange)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster.exchange import (
    InvalidExchangeDataError,
    LeafAccumulator,
    choose_depth,
    decode_build_reply,
    decode_indices,
    decode_page,
    decode_ranges,
    encode_build_reply,
    encode_indices,
    encode_page,
    encode_ranges,
    max_depth_for,
    range_scans,
    resume_scans,
    split_range,
    split_storage_key,
    stored_key_hash,
)
from respkv.cluster.hashing import FULL_RING, MAX_TOKEN, TokenRange, token_of, token_prefix
from respkv.cluster.merkle import MerkleTree, key_hash
from respkv.cluster.versions import EMPTY, encode_sibling_set, overwrite, version_digest

tokens = st.integers(0, MAX_TOKEN)
ranges = st.tuples(tokens, st.integers(1, MAX_TOKEN)).map(
    lambda t: TokenRange(t[0], (t[0] + t[1]) & MAX_TOKEN))
keys = st.binary(min_size=1, max_size=6)


def skey(k: bytes, db: int = 0) -> bytes:
    return token_prefix(token_of(k)) + db.to_bytes(2, "big") + k


def test_stored_key_hash_is_the_key_hash_of_the_version_digest() -> None:
    s = overwrite(EMPTY, "n1", b"v", timestamp_ms=5)
    data = encode_sibling_set(s)
    assert stored_key_hash(b"sk", data) == key_hash(b"sk", version_digest(s))


@given(ranges, st.lists(keys, max_size=60), st.data())
def test_folded_accumulator_is_the_tree_built_directly(rng: TokenRange, ks: list[bytes],
                                                      data: st.DataObject) -> None:
    acc = LeafAccumulator(rng)
    items = []
    for k in dict.fromkeys(ks):
        if rng.contains(token_of(k)):
            acc.add(skey(k), b"val" + k)
            items.append((token_of(k), stored_key_hash(skey(k), b"val" + k)))
    depth = data.draw(st.integers(0, acc.base))
    assert acc.tree(depth) == MerkleTree.build(items, rng, depth)
    assert acc.keys == len(items)


def test_depth_choice() -> None:
    assert [choose_depth(k, FULL_RING) for k in (0, 1, 2, 3, 1000, 100_000)] == [
        0, 0, 1, 2, 10, 16]
    assert max_depth_for(TokenRange(0, 100)) == 6 and choose_depth(10**6, TokenRange(0, 100)) == 6


@given(st.lists(ranges, max_size=4), st.lists(keys, max_size=80), keys)
def test_scans_cover_exactly_the_ranges_and_resume(rs: list[TokenRange], ks: list[bytes],
                                                  after_key: bytes) -> None:
    # disjoint ranges: cut the ring at the sorted starts of the drawn ranges
    cuts = sorted({r.start for r in rs})
    disjoint = [TokenRange(cuts[i], cuts[(i + 1) % len(cuts)]) for i in range(0, len(cuts), 2)
                ] if len(cuts) > 1 else [r for r in rs[:1]]
    scans = range_scans(disjoint)
    stored = sorted(skey(k) for k in set(ks))

    def scanned(sc: list[tuple[bytes, bytes | None]]) -> list[bytes]:
        return [s for s in stored if any(lo <= s and (hi is None or s < hi) for lo, hi in sc)]

    want = [s for s in stored if any(r.contains(token_of(s[10:])) for r in disjoint)]
    assert scanned(scans) == want
    after = skey(after_key)
    assert scanned(resume_scans(scans, after)) == [s for s in want if s > after]
    assert [lo for lo, _ in scans] == sorted(lo for lo, _ in scans)


@given(ranges, st.integers(1, 2**64))
def test_split_range_partitions(rng: TokenRange, width: int) -> None:
    pieces = split_range(rng, max(width, rng.width // 1000 + 1))
    assert pieces[0].start == rng.start and pieces[-1].end == rng.end
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))
    assert sum(p.width for p in pieces) == rng.width


def test_encodings_round_trip_and_reject_garbage() -> None:
    rs = [TokenRange(1, 2), TokenRange(MAX_TOKEN, 5)]
    assert decode_ranges(encode_ranges(rs)) == rs
    assert decode_indices(encode_indices([0, 1, 7, 1000])) == [0, 1, 7, 1000]
    with pytest.raises(ValueError):
        encode_indices([3, 3])
    page = [(b"k1", b"v1"), (b"k2", b"")]
    assert decode_page(encode_page(page, b"k2")) == (page, b"k2")
    assert decode_page(encode_page([])) == ([], b"")
    assert decode_build_reply(encode_build_reply(True, 7, 99)) == (True, 7, 99)
    for decode in (decode_ranges, decode_indices, decode_page, decode_build_reply):
        with pytest.raises(InvalidExchangeDataError):
            decode(b"\x01garbage")
        with pytest.raises(InvalidExchangeDataError):
            decode(encode_page([(b"a", b"b")])[:-1] + b"\x00")


def test_split_storage_key_checks_the_token() -> None:
    assert split_storage_key(skey(b"abc", 3)) == (token_of(b"abc"), 3, b"abc")
    with pytest.raises(ValueError):
        split_storage_key(token_prefix(5) + b"\x00\x00abc")
    with pytest.raises(ValueError):
        split_storage_key(b"short")
