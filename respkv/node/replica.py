"""This node's replica of the keys it holds: sibling sets in the local storage engine.

Storage layout (docs/cluster.md, "Cluster key layout"): key ``token_prefix(token_of(key)) +
db (2 bytes, big-endian) + key``, value ``encode_sibling_set(set)``, engine ``expire_at_ms`` 0
(expiry lives in each sibling: a replica must keep a key's clock after its value expired, or a
lagging replica's older write would come back). Tombstones are siblings with value None.

Contract: every method is synchronous and runs on the node's trio thread; a read-sync-write of
one key never awaits in between, so two writes coordinated here can never get the same dot.
Durability is the caller's: after a write, the node makes the engine's pending bytes durable
(``Node._durable``) before acknowledging to anyone.
"""

from __future__ import annotations

from collections.abc import Callable

from respkv.cluster import versions as V
from respkv.cluster.hashing import token_of, token_prefix
from respkv.cluster.versions import EMPTY, SiblingSet, VersionVector
from respkv.storage.api import Engine

# The default per generation (see LocalReplica._decoded). Small on purpose: on a write load spread over
# many keys the cache only misses, and every decoded set it keeps alive costs the garbage
# collector and the allocator more than a hit saves (bench/bench_versions.py: per write,
# 4096 entries cost about 5 us more than none, 64 entries about 0.5 us).
DECODED_CACHE_ENTRIES = 64


def cluster_storage_key(db: int, key: bytes) -> bytes:
    """``token_prefix(token_of(key)) + db (2 bytes BE) + key``: token order, then db, then key.
    The token is of the key alone, so a key lives on the same replicas in every database."""
    return token_prefix(token_of(key)) + db.to_bytes(2, "big") + key


class LocalReplica:
    """Reads, merges and coordinates writes on this node's copy of each key."""

    def __init__(self, engine: Engine, node_id: str, clock_ms: Callable[[], int],
                 decoded_cache_entries: int = DECODED_CACHE_ENTRIES, dot_floor: int = 0) -> None:
        self.engine = engine
        self.node_id = node_id
        self.clock_ms = clock_ms
        self.stats = {"replica_reads": 0, "replica_writes": 0, "replica_writes_unchanged": 0,
                      "coordinated_writes": 0}
        # storage key -> (encoded, decoded) of sets this replica recently stored or read: a hit
        # (the same bytes as the engine holds now) skips a decode, e.g. for the write of a key
        # just read, or of a hot key. Two generations of at most decoded_cache_entries each
        # (0: no cache): when the young one is full it becomes the old one and the previous old
        # one is dropped, so an entry stays findable for at least that many newer ones.
        self.decoded_cache_entries = decoded_cache_entries
        self._decoded: dict[bytes, tuple[bytes, SiblingSet]] = {}
        self._decoded_old: dict[bytes, tuple[bytes, SiblingSet]] = {}
        # Above every counter this node issued for a key it has since purged (and persisted
        # before any such key was removed: respkv/node/purge.py); every new dot is above it.
        self.dot_floor = dot_floor

    def _cached(self, skey: bytes, data: bytes) -> SiblingSet | None:
        """The decoded form of ``data``, the stored bytes of ``skey``, if it is remembered."""
        hit = self._decoded.get(skey) or self._decoded_old.get(skey)
        return hit[1] if hit is not None and hit[0] == data else None

    def _decode(self, skey: bytes, data: bytes) -> SiblingSet:
        s = self._cached(skey, data)
        if s is None:
            s = V.decode_sibling_set(data)
            self._remember(skey, data, s)
        return s

    def _remember(self, skey: bytes, data: bytes, s: SiblingSet) -> None:
        young = self._decoded
        if len(young) >= self.decoded_cache_entries:
            if not self.decoded_cache_entries:
                return
            self._decoded_old = young
            self._decoded = young = {}
        young[skey] = (data, s)

    def read_raw(self, db: int, key: bytes) -> bytes:
        """The stored encoded set (b"" when the key was never written here)."""
        self.stats["replica_reads"] += 1
        rec = self.engine.get(cluster_storage_key(db, key))
        return b"" if rec is None else rec.value

    def read(self, db: int, key: bytes) -> SiblingSet:
        skey = cluster_storage_key(db, key)
        self.stats["replica_reads"] += 1
        rec = self.engine.get(skey)
        return self._decode(skey, rec.value) if rec is not None and rec.value else EMPTY

    def apply(self, db: int, key: bytes, incoming: SiblingSet) -> SiblingSet:
        """Merge a replicated set into ours (``versions.sync``); store it if it changed."""
        skey = cluster_storage_key(db, key)
        rec = self.engine.get(skey)
        return self._merge(skey, None if rec is None else rec.value, incoming)

    def _merge(self, skey: bytes, stored_raw: bytes | None, incoming: SiblingSet) -> SiblingSet:
        """``apply``, given the bytes stored under ``skey`` (None: no record)."""
        self.stats["replica_writes"] += 1
        stored = EMPTY if stored_raw is None else self._decode(skey, stored_raw)
        merged = V.sync(stored, incoming)
        if merged == stored and stored_raw is not None:
            self.stats["replica_writes_unchanged"] += 1
            return stored
        data = V.encode_sibling_set(merged)
        self.engine.put(skey, data)
        self._remember(skey, data, merged)
        return merged

    def apply_raw(self, db: int, key: bytes, data: bytes) -> None:
        """``apply`` for bytes off the wire; identical bytes are a no-op without decoding.
        Raises ``InvalidSiblingSetError`` for corrupt bytes, ours or theirs (and then stores
        nothing)."""
        skey = cluster_storage_key(db, key)
        rec = self.engine.get(skey)
        stats = self.stats
        if rec is None:
            s = V.decode_sibling_set(data)  # validate before storing
            stats["replica_writes"] += 1
            self.engine.put(skey, data)
            self._remember(skey, data, s)
            return
        stored_raw = rec.value
        if stored_raw == data:
            stats["replica_writes"] += 1
            stats["replica_writes_unchanged"] += 1
            return
        incoming = V.decode_sibling_set(data)
        stored = self._cached(skey, stored_raw)
        if stored is not None:
            superseded = _supersedes(incoming, stored)
        else:
            # Usually decided from our clock alone (validated as a whole, siblings unbuilt);
            # otherwise decode ours in full and decide as above.
            superseded = _supersedes_clock(incoming, V.decode_sibling_set_clock(stored_raw))
            if not superseded:
                superseded = _supersedes(incoming, self._decode(skey, stored_raw))
        if superseded:
            # The usual case (a newer write of a key we hold): sync(stored, incoming) is exactly
            # ``incoming``, so its bytes are stored as they came, with no merge or re-encoding.
            stats["replica_writes"] += 1
            self.engine.put(skey, data)
            self._remember(skey, data, incoming)
            return
        self._merge(skey, stored_raw, incoming)

    def coordinate(
        self,
        db: int,
        key: bytes,
        value: bytes | None,
        expire_at_ms: int,
        context: VersionVector | None,
        seen: SiblingSet | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[SiblingSet, bytes]:
        """A write coordinated by this replica: a new dot ``(node_id, n)``; the new set is stored
        and returned with its encoding (what goes to the other replicas).

        * ``context`` given (``SET ... CONTEXT``, or the clock of a quorum read the command's
          result depends on): ``versions.update`` -- supersedes exactly what that context saw.
        * ``context`` None (a blind plain write): ``versions.overwrite`` -- supersedes what this
          replica holds; writes it has not received yet survive as siblings.
        ``seen``: the merged set of a quorum read, merged in first (a read repair of our copy).
        ``timestamp_ms``: the write's time for the winner rule (default: this node's clock; a
        ``CW`` passes the time its sender received the command).
        """
        stats = self.stats
        stats["coordinated_writes"] += 1
        stats["replica_reads"] += 1
        skey = cluster_storage_key(db, key)
        rec = self.engine.get(skey)
        raw = b"" if rec is None else rec.value
        now = self.clock_ms() if timestamp_ms is None else timestamp_ms
        if context is None and (seen is None or not seen.siblings):
            # A blind overwrite supersedes every sibling of our (valid) set, so it depends on
            # our clock only: overwrite(stored) == overwrite(SiblingSet(stored.clock, ())).
            stored = self._cached(skey, raw) if raw else EMPTY
            if stored is None:
                stored = SiblingSet(V.decode_sibling_set_clock(raw), ())
            new = V.overwrite(stored, self.node_id, value, timestamp_ms=now,
                              expire_at_ms=expire_at_ms, floor=self.dot_floor)
        else:
            stored = self._decode(skey, raw) if raw else EMPTY
            if seen is not None and seen.siblings:
                stored = V.sync(stored, seen)
            if context is None:
                new = V.overwrite(stored, self.node_id, value, timestamp_ms=now,
                                  expire_at_ms=expire_at_ms, floor=self.dot_floor)
            else:
                new = V.update(stored, context, self.node_id, value, timestamp_ms=now,
                               expire_at_ms=expire_at_ms, floor=self.dot_floor)
        data = V.encode_sibling_set(new)
        self.engine.put(skey, data)
        self._remember(skey, data, new)
        return new, data

    def purge(self, chosen: list[tuple[bytes, bytes]]) -> int:
        """Remove each ``(storage key, stored bytes)`` whose stored bytes are still those (a
        key written since stays). The caller has made ``dot_floor`` cover this node's counter
        on each of them, durably. Returns how many were removed."""
        engine = self.engine
        removed = 0
        for skey, data in chosen:
            rec = engine.get(skey)
            if rec is None or rec.value != data:
                continue
            engine.delete(skey)
            self._decoded.pop(skey, None)
            self._decoded_old.pop(skey, None)
            removed += 1
        return removed


def _supersedes(b: SiblingSet, a: SiblingSet) -> bool:
    """True when ``versions.sync(a, b) == b`` (short of pruning): b's clock already includes
    a's, counters and timestamps, so every sibling of a that b lacks is covered and dropped,
    and every sibling of b that a lacks is one a has not seen (kept)."""
    if not b.clock.includes(a.clock):
        return False
    a_clock = a.clock
    a_dots = None
    for s in b.siblings:
        if a_clock.covers(s.dot):
            if a_dots is None:
                a_dots = a.dots
            if s.dot not in a_dots:
                return False
    return True


def _supersedes_clock(b: SiblingSet, a_clock: VersionVector) -> bool:
    """A sufficient condition for ``_supersedes(b, a)`` that needs only a's clock: b's clock
    includes it and a has seen none of b's siblings. (When a has seen one, it depends on
    whether a still holds it: False here, and ``_supersedes`` decides.)"""
    if not b.clock.includes(a_clock):
        return False
    for s in b.siblings:
        if a_clock.covers(s.dot):
            return False
    return True
