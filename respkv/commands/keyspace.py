"""Keyspace: one Redis database (SELECT n) as a view over a storage engine. No I/O of its own.

Contract:
* Every stored key is ``prefix + user_key``; the prefix (2 bytes, the db number big-endian) keeps
  databases apart in one engine, so a database is one contiguous key range (FLUSHDB is one
  ``delete_range``, SCAN one ordered scan). A Keyspace is one such range, its *physical* database
  ``db``; the database map (``load_db_map``, docs/formats/dbmap.md) says which Keyspace each
  SELECTable number uses: ``ServerState.dbs[n]``, exchanged by SWAPDB.
* Expiry as Redis does it: a key whose ``expire_at_ms`` is at or before ``now`` does not exist for
  any command (lazy expiry deletes it on access), and ``active_expire_cycle`` removes expired keys
  that nobody touches, walking the keys that have a TTL in bounded steps.
* The clock is the server's ``clock_ms`` callable, passed in; nothing here reads the time.
* Values are strings (bytes); TYPE answers "string" or "none".
* SCAN cursors are opaque 64-bit integers (see ``scan_page``) carrying the first six bytes of the
  next key to return and a 16-bit tag. When those six bytes already sort after the last key
  returned the tag is 0 and the cursor is stateless: the scan resumes at them. Otherwise (a page
  ending inside a run of keys sharing six bytes) a bounded registry maps the tagged cursor to the
  exact key to resume after; a cursor the registry has forgotten resumes at its six bytes, at or
  before its place. Either way keys present for the whole scan are never skipped (some may come
  twice, which SCAN allows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from respkv.storage.api import Engine, RandomSource, Record

SCAN_CURSORS_KEPT = 4096
"""How many SCAN cursors each database remembers exactly (oldest forgotten first)."""

RANDOM_KEY_TRIES = 16
RANDOM_KEY_LOOKAHEAD = 16
"""RANDOMKEY: samples to try, and live-or-expired keys to look at from each (see random_key)."""


def db_prefix(db: int) -> bytes:
    """The prefix of the stored keys of *physical* database ``db`` (a Keyspace's ``db``); which
    physical database a SELECTed number uses is the database map's business (below)."""
    return db.to_bytes(2, "big")


# -- the database map (docs/formats/dbmap.md) ---------------------------------------------------

DB_MAP_KEY = b"\xff\xffdbmap"
"""The engine key of the database map: under the reserved ``ff ff`` prefix, which no database
range reaches (databases <= 65535, so the highest database prefix is ``ff fe``)."""
DB_MAP_VERSION = 1


class DbMapError(ValueError):
    """A stored database map that breaks docs/formats/dbmap.md; the node refuses to open."""


def encode_db_map(physical: list[int]) -> bytes:
    """The record value of ``physical`` (entry i: the physical database of logical i), which
    must be a permutation of 0..len-1 with 1..65535 entries."""
    return (bytes((DB_MAP_VERSION,)) + len(physical).to_bytes(2, "big")
            + b"".join(p.to_bytes(2, "big") for p in physical))


def decode_db_map(value: bytes) -> list[int]:
    """The entries of a stored map value; DbMapError if it breaks the format's rules."""
    if len(value) < 3 or value[0] != DB_MAP_VERSION:
        raise DbMapError(f"database map {DB_MAP_KEY!r}: unknown version or truncated header")
    n = int.from_bytes(value[1:3], "big")
    if n == 0 or len(value) != 3 + 2 * n:
        raise DbMapError(f"database map {DB_MAP_KEY!r}: {len(value)} bytes for {n} entries")
    physical = [int.from_bytes(value[i:i + 2], "big") for i in range(3, 3 + 2 * n, 2)]
    if sorted(physical) != list(range(n)):
        raise DbMapError(f"database map {DB_MAP_KEY!r}: entries are not a permutation of 0..{n - 1}")
    return physical


def load_db_map(engine: Engine, databases: int) -> list[int]:
    """The database map as stored in ``engine`` (the identity when there is no record), extended
    with the identity up to ``databases`` entries. Entry i is the physical database of logical
    database i; entries past ``databases`` are kept for the next write (dbmap.md)."""
    rec = engine.get(DB_MAP_KEY)
    physical = decode_db_map(rec.value) if rec is not None else []
    return physical + list(range(len(physical), databases))


def key_successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no such key)."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


class Keyspace:
    __slots__ = (
        "engine", "db", "prefix", "clock_ms", "_expires", "_expire_cursor", "stats",
        "_scan_cursors", "_scan_tag", "watchers",
    )

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
        self._scan_cursors: dict[int, bytes] = {}  # cursor -> key to resume after (insertion order)
        self._scan_tag = 0
        # WATCHed keys: key -> the watch entries ([keyspace, key, expired when watched, client])
        # of the clients watching it. Every write below that changes a key touches it
        # (transactions.touch); empty (one falsy test per write) when nobody watches.
        self.watchers: dict[bytes, list[list[Any]]] = {}

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
        if self.watchers:
            touch(self, key)
        if expire_at_ms:
            self._expires[key] = expire_at_ms
        return self.engine.put(self.prefix + key, value, expire_at_ms)

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; True if it existed (and was not expired)."""
        if self.get(key) is None:
            return False
        if self.watchers:
            touch(self, key)
        self.engine.delete(self.prefix + key)
        self._expires.pop(key, None)
        return True

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def discard(self, key: bytes) -> None:
        """Delete ``key``, which the caller has just seen live (no second read)."""
        if self.watchers:
            touch(self, key)
        self.engine.delete(self.prefix + key)
        self._expires.pop(key, None)

    def set_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Write every (key, value), without TTL, as one atomic batch (MSET)."""
        p = self.prefix
        if self.watchers:
            for k, _ in pairs:
                touch(self, k)
        self.engine.write_batch([(p + k, Record(v)) for k, v in pairs])
        expires = self._expires
        if expires:
            for k, _ in pairs:
                expires.pop(k, None)

    def rename(self, src: bytes, dst: bytes, rec: Record) -> None:
        """Move ``src`` (whose live record is ``rec``) to ``dst``, value and TTL, atomically."""
        p = self.prefix
        if self.watchers:
            touch(self, src)
            touch(self, dst)
        self.engine.write_batch([(p + dst, Record(rec.value, rec.expire_at_ms)), (p + src, None)])
        self._expires.pop(src, None)
        if rec.expire_at_ms:
            self._expires[dst] = rec.expire_at_ms
        else:
            self._expires.pop(dst, None)

    def _expire(self, key: bytes) -> None:
        if self.watchers:
            touch(self, key, expired=True)
        self.engine.delete(self.prefix + key)
        self._expires.pop(key, None)
        self.stats["expired_keys"] += 1

    # -- whole-database operations --------------------------------------------------------------
    def items(
        self, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, Record]]:
        """Live (unexpired) keys in key order, from ``start`` (a user key) on, before ``stop``."""
        now = self.clock_ms()
        plen = len(self.prefix)
        end = db_prefix(self.db + 1) if stop is None else self.prefix + stop
        for skey, rec in self.engine.scan(self.prefix + start, end):
            if rec.expire_at_ms and rec.expire_at_ms <= now:
                continue
            yield skey[plen:], rec

    def keys(self) -> Iterator[bytes]:
        for k, _ in self.items():
            yield k

    def size(self) -> int:
        return sum(1 for _ in self.items())

    def random_key(self, rng: RandomSource | None) -> bytes | None:
        """RANDOMKEY: a live key picked at random, None when the database has none. The engine
        samples a stored key (``Engine.sample_key``: about uniform over stored entries; Redis's
        own pick is not uniform either) and the first live key from it is the answer, looking
        at most ``RANDOM_KEY_LOOKAHEAD`` keys on; after ``RANDOM_KEY_TRIES`` samples that find
        only expired keys, the database's first live key. A scan that reaches the end of the
        range with nothing live shrinks the range to below its sample, so in a database of
        dead entries (a FLUSHDB not yet compacted away) the scans cover it about once in all.
        No work grows with the database unless nearly all of it is dead. Without a random
        source (pure tests): the first key."""
        plen = len(self.prefix)
        now = self.clock_ms()
        engine = self.engine
        end = db_prefix(self.db + 1)
        if rng is not None:
            for _ in range(RANDOM_KEY_TRIES):
                sampled = engine.sample_key(self.prefix, end, rng)
                if sampled is None:
                    return None
                seen = 0
                for skey, rec in islice(engine.scan(sampled, end), RANDOM_KEY_LOOKAHEAD):
                    if not rec.expire_at_ms or rec.expire_at_ms > now:
                        return skey[plen:]
                    seen += 1
                if seen < RANDOM_KEY_LOOKAHEAD:  # reached ``end``: nothing live from sampled on
                    if sampled <= self.prefix:
                        return None
                    end = sampled
        for skey, rec in engine.scan(self.prefix, end):
            if not rec.expire_at_ms or rec.expire_at_ms > now:
                return skey[plen:]
        return None

    def expires_count(self) -> int:
        now = self.clock_ms()
        return sum(1 for _, r in self.items() if r.expire_at_ms and r.expire_at_ms > now)

    def flush(self) -> None:
        if self.watchers:
            for key in list(self.watchers):
                if self.engine.get(self.prefix + key) is not None:  # existed, even if expired
                    touch(self, key, expired=True)
        self.engine.delete_range(self.prefix, db_prefix(self.db + 1))
        self._expires.clear()
        self._expire_cursor = []

    # -- SCAN cursors ---------------------------------------------------------------------------
    def scan_page(self, cursor: int, count: int, prefix: bytes = b"") -> tuple[int, list[bytes]]:
        """One SCAN step: up to ``count`` live keys starting with ``prefix``, in key order, from
        the place ``cursor`` stands for (0: the beginning), and the cursor of the next step
        (0 when the scan is complete).

        Guarantee (Redis's): a key present from the first step to the last is returned by some
        step, whatever was written in between and whatever cursor registry evictions happened.
        """
        start = self._scan_start(cursor)
        stop = None
        if prefix:
            stop = key_successor(prefix)
            if start < prefix:
                start = prefix
        page = [k for k, _ in islice(self.items(start, stop), count + 1)]
        if len(page) <= count:
            return 0, page
        following = page.pop()
        return self._scan_cursor(page[-1], following), page

    def _scan_start(self, cursor: int) -> bytes:
        if cursor == 0:
            return b""
        after = self._scan_cursors.get(cursor)
        if after is not None:
            return after + b"\x00"  # the smallest key greater than ``after``
        # Stateless, forgotten or never handed out: resume at the six key bytes the cursor
        # carries, which sort at or before the next key to return.
        return ((cursor >> 16) & ((1 << 48) - 1)).to_bytes(6, "big").rstrip(b"\x00")

    def _scan_cursor(self, last: bytes, following: bytes) -> int:
        """The cursor of a page that ended with ``last``; ``following`` is the next live key."""
        start = following[:6].rstrip(b"\x00")
        high = int.from_bytes(start.ljust(6, b"\x00"), "big") << 16
        if start > last:
            return high  # tag 0: resuming at ``start`` neither skips nor repeats
        cursors = self._scan_cursors
        for _ in range(65535):
            self._scan_tag = self._scan_tag % 65535 + 1  # 1..65535: a cursor is never 0
            cursor = high | self._scan_tag
            if cursor not in cursors:
                break
        else:
            cursors.pop(cursor)
        cursors[cursor] = last
        if len(cursors) > SCAN_CURSORS_KEPT:
            del cursors[next(iter(cursors))]
        return cursor

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


def touch(ks: Keyspace, key: bytes, expired: bool = False) -> None:
    """``key`` of ``ks`` changes (redis-server's touchWatchedKey): every client watching it is
    marked dirty (its EXEC will fail) and stops watching anything, except that the deletion of
    a key that was already expired when watched (``expired``: the change is that deletion) is
    no change at all -- it only clears that watch's expired mark."""
    entries = ks.watchers.get(key)
    if not entries:
        return
    for w in list(entries):
        if w[2] and expired:
            w[2] = False
            continue
        client = w[3]
        client.dirty_cas = True
        unwatch_all(client)


def unwatch_all(client: Any) -> None:
    """Forget every key ``client`` watches (EXEC, DISCARD, UNWATCH, RESET, a dirty watch, the
    connection closing)."""
    for w in client.watched:
        ks, key = w[0], w[1]
        entries = ks.watchers.get(key)
        if entries is not None:
            try:
                entries.remove(w)
            except ValueError:
                pass
            if not entries:
                del ks.watchers[key]
    client.watched = []

