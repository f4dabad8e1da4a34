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

DECODED_CACHE_ENTRIES = 4096


def cluster_storage_key(db: int, key: bytes) -> bytes:
    """``token_prefix(token_of(key)) + db (2 bytes BE) + key``: token order, then db, then key.
    The token is of the key alone, so a key lives on the same replicas in every database."""
    return token_prefix(token_of(key)) + db.to_bytes(2, "big") + key


class LocalReplica:
    """Reads, merges and coordinates writes on this node's copy of each key."""

    def __init__(self, engine: Engine, node_id: str, clock_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.node_id = node_id
        self.clock_ms = clock_ms
        self.stats = {"replica_reads": 0, "replica_writes": 0, "replica_writes_unchanged": 0,
                      "coordinated_writes": 0}
        # storage key -> (encoded, decoded) of sets this replica recently stored or read: a hit
        # (same bytes as in the engine) skips a decode. Bounded; cleared when full.
        self._decoded: dict[bytes, tuple[bytes, SiblingSet]] = {}

    def _decode(self, skey: bytes, data: bytes) -> SiblingSet:
        hit = self._decoded.get(skey)
        if hit is not None and hit[0] == data:
            return hit[1]
        s = V.decode_sibling_set(data)
        self._remember(skey, data, s)
        return s

    def _remember(self, skey: bytes, data: bytes, s: SiblingSet) -> None:
        if len(self._decoded) >= DECODED_CACHE_ENTRIES:
            self._decoded.clear()
        self._decoded[skey] = (data, s)

    def read_raw(self, db: int, key: bytes) -> bytes:
        """The stored encoded set (b"" when the key was never written here)."""
        self.stats["replica_reads"] += 1
        rec = self.engine.get(cluster_storage_key(db, key))
        return b"" if rec is None else rec.value

    def read(self, db: int, key: bytes) -> SiblingSet:
        raw = self.read_raw(db, key)
        return self._decode(cluster_storage_key(db, key), raw) if raw else EMPTY

    def _store(self, db: int, key: bytes, s: SiblingSet) -> bytes:
        data = V.encode_sibling_set(s)
        skey = cluster_storage_key(db, key)
        self.engine.put(skey, data)
        self._remember(skey, data, s)
        return data

    def apply(self, db: int, key: bytes, incoming: SiblingSet) -> SiblingSet:
        """Merge a replicated set into ours (``versions.sync``); store it if it changed."""
        self.stats["replica_writes"] += 1
        skey = cluster_storage_key(db, key)
        rec = self.engine.get(skey)
        stored = self._decode(skey, rec.value) if rec is not None else EMPTY
        merged = V.sync(stored, incoming)
        if merged == stored and rec is not None:
            self.stats["replica_writes_unchanged"] += 1
            return stored
        data = V.encode_sibling_set(merged)
        self.engine.put(skey, data)
        self._remember(skey, data, merged)
        return merged

    def apply_raw(self, db: int, key: bytes, data: bytes) -> None:
        """``apply`` for bytes off the wire; identical bytes are a no-op without decoding.
        Raises ``InvalidSiblingSetError`` for corrupt bytes."""
        skey = cluster_storage_key(db, key)
        rec = self.engine.get(skey)
        if rec is None:
            s = V.decode_sibling_set(data)  # validate before storing
            self.stats["replica_writes"] += 1
            self.engine.put(skey, data)
            self._remember(skey, data, s)
            return
        if rec.value == data:
            self.stats["replica_writes"] += 1
            self.stats["replica_writes_unchanged"] += 1
            return
        incoming = V.decode_sibling_set(data)
        stored = self._decode(skey, rec.value)
        if _supersedes(incoming, stored):
            # The usual case (a newer write of a key we hold): sync(stored, incoming) is exactly
            # ``incoming``, so its bytes are stored as they came, with no merge or re-encoding.
            self.stats["replica_writes"] += 1
            self.engine.put(skey, data)
            self._remember(skey, data, incoming)
            return
        self.apply(db, key, incoming)

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
        self.stats["coordinated_writes"] += 1
        stored = self.read(db, key)
        if seen is not None and seen.siblings:
            stored = V.sync(stored, seen)
        now = self.clock_ms() if timestamp_ms is None else timestamp_ms
        if context is None:
            new = V.overwrite(stored, self.node_id, value, timestamp_ms=now,
                              expire_at_ms=expire_at_ms)
        else:
            new = V.update(stored, context, self.node_id, value, timestamp_ms=now,
                           expire_at_ms=expire_at_ms)
        return new, self._store(db, key, new)


def _supersedes(b: SiblingSet, a: SiblingSet) -> bool:
    """True when ``versions.sync(a, b) == b``: b's clock already includes a's (counters and
    timestamps), so every sibling of a that b lacks is covered and dropped, and every sibling of
    b that a lacks is one a has not seen (kept)."""
    if a.clock.merge(b.clock) != b.clock:
        return False
    a_dots = a.dots
    a_clock = a.clock
    return all(s.dot in a_dots or not a_clock.covers(s.dot) for s in b.siblings)
