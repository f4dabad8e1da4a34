"""Keyspace: one Redis database (SELECT n) as a view over a storage engine. No I/O of its own.

Contract:
* Every stored key is ``prefix + user_key``; the prefix (2 bytes, the db number big-endian) keeps
  databases apart in one engine, so a database is one contiguous key range (FLUSHDB is one
  ``delete_range``, SCAN one ordered scan).
* Expiry as Redis does it: a key whose ``expire_at_ms`` is at or before ``now`` does not exist for
  any command (lazy expiry deletes it on access), and ``active_expire_cycle`` removes expired keys
  that nobody touches, walking the keys that have a TTL in bounded steps.
* The clock is the server's ``clock_ms`` callable, passed in; nothing here reads the time.
* Values are strings (bytes); TYPE answers "string" or "none".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from respkv.storage.api import Engine, Record


def db_prefix(db: int) -> bytes:
    return db.to_bytes(2, "big")


class Keyspace:
    __slots__ = ("engine", "db", "prefix", "clock_ms", "_expires", "_expire_cursor", "stats")

    def __init__(self, engine: Engine, db: int, clock_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.db = db
        self.prefix = db_prefix(db)
        self.clock_ms = clock_ms
        # Keys written with a TTL (user key -> expire_at_ms as written); a superset hint for the
        # active expiry cycle, checked against the engine before anything is deleted.
        self._expires: dict[bytes, int] = {}
        self._expire_cursor: list[bytes] = []
        self.stats = {"expired_keys": 0, "keyspace_hits": 0, "keyspace_misses": 0}

    # -- point access (the hot path) ------------------------------------------------------------
    def get(self, key: bytes) -> Record | None:
        """The live record of ``key`` or None; expired records are deleted on the way."""
        rec = self.engine.get(self.prefix + key)
        if rec is not None and rec.expire_at_ms and rec.expire_at_ms <= self.clock_ms():
            self._expire(key)
            return None
        return rec

    def lookup_read(self, key: bytes) -> Record | None:
        """``get`` that also counts a keyspace hit or miss (for commands that read a value)."""
        rec = self.get(key)
        self.stats["keyspace_hits" if rec is not None else "keyspace_misses"] += 1
        return rec

    def set(self, key: bytes, value: bytes, expire_at_ms: int = 0) -> int:
        if expire_at_ms:
            self._expires[key] = expire_at_ms
        return self.engine.put(self.prefix + key, value, expire_at_ms)

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; True if it existed (and was not expired)."""
        if self.get(key) is None:
            return False
        self.engine.delete(self.prefix + key)
        self._expires.pop(key, None)
        return True

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def _expire(self, key: bytes) -> None:
        self.engine.delete(self.prefix + key)
        self._expires.pop(key, None)
        self.stats["expired_keys"] += 1

    # -- whole-database operations --------------------------------------------------------------
    def items(self, start: bytes = b"") -> Iterator[tuple[bytes, Record]]:
        """Live (unexpired) keys in key order, from ``start`` (a user key) on."""
        now = self.clock_ms()
        plen = len(self.prefix)
        end = db_prefix(self.db + 1)
        for skey, rec in self.engine.scan(self.prefix + start, end):
            if rec.expire_at_ms and rec.expire_at_ms <= now:
                continue
            yield skey[plen:], rec

    def keys(self) -> Iterator[bytes]:
        for k, _ in self.items():
            yield k

    def size(self) -> int:
        return sum(1 for _ in self.items())

    def expires_count(self) -> int:
        now = self.clock_ms()
        return sum(1 for _, r in self.items() if r.expire_at_ms and r.expire_at_ms > now)

    def flush(self) -> None:
        self.engine.delete_range(self.prefix, db_prefix(self.db + 1))
        self._expires.clear()
        self._expire_cursor = []

    def note_ttl(self, key: bytes, expire_at_ms: int) -> None:
        """Record that ``key`` carries a TTL (used when recovering state from the engine)."""
        self._expires[key] = expire_at_ms

    def active_expire_cycle(self, budget: int = 20) -> int:
        """Check up to ``budget`` keys that were given a TTL; delete the expired ones.

        Returns how many were deleted. Like redis-server's activeExpireCycle the caller repeats
        while a large share of the checked keys expired.
        """
        if not self._expire_cursor:
            if not self._expires:
                return 0
            self._expire_cursor = list(self._expires)
        now = self.clock_ms()
        cursor = self._expire_cursor
        expires = self._expires
        deleted = 0
        for _ in range(min(budget, len(cursor))):
            key = cursor.pop()
            at = expires.get(key)
            if at is None:
                continue
            if at > now:
                continue
            rec = self.engine.get(self.prefix + key)
            if rec is None or not rec.expire_at_ms:
                expires.pop(key, None)  # deleted or persisted since
            elif rec.expire_at_ms <= now:
                self._expire(key)
                deleted += 1
            else:
                expires[key] = rec.expire_at_ms  # TTL was moved later
        return deleted
