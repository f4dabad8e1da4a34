"""Whole-keyspace commands in cluster mode: KEYS, SCAN, DBSIZE, RANDOMKEY.

No node holds every key, but every key is held by N replicas and the keys of all nodes, in
token order, are the keyspace. A keyspace walk is therefore a merge by token of every up node's
local keys (the ``kscan`` service, docs/formats/wire.md), cut at the smallest token every node
has reached, with each candidate confirmed by a quorum read at the request's R (a replica that
missed a DEL still lists the key; the quorum read does not return it when W + R > N).

SCAN's cursor is a ring position: ``0`` starts at token 0, and the next cursor is one past the
last token every node had covered (``0`` when the walk wrapped). A key present for the whole
walk is returned by some step, as Redis guarantees; COUNT is the per-node page size, a hint
as in Redis. KEYS and DBSIZE walk everything (O(keys), as KEYS is in Redis; DBSIZE too here);
RANDOMKEY walks from a random ring position to the first live key. The walk needs, for every
range, one up replica: with N or more ring members down it fails with NOREPLICAS rather than
return a partial answer.

How the standard handlers are reused (so argument errors stay redis-server's): the handler
first runs against a :class:`Probe` that records what it asks of the keyspace; the cluster
gathers exactly that; the handler runs again against a :class:`Filled` view that answers it.
"""

from __future__ import annotations

from typing import Any

from respkv.cluster import versions as V
from respkv.cluster.codec import DecodeError, Reader, put_bytes, put_uvarint
from respkv.cluster.hashing import MAX_TOKEN, TOKEN_PREFIX_LEN, token_of, token_prefix
from respkv.cluster.wire import WireError, parse_uint
from respkv.commands import errors as E
from respkv.commands.core import Client, CommandSpec, execute
from respkv.commands.errors import CommandError
from respkv.protocol.resp import ErrorReply

SERVICE = b"kscan"
PAGE = 1000  # candidate keys per node per step of KEYS/DBSIZE
RANDOM_PAGE = 4  # candidate keys per node per step of RANDOMKEY
SCAN_FACTOR = 8  # a step scans at most this many stored entries per key it may return


class Probe:
    """Records the one keyspace question a handler asks; answers it with nothing."""

    def __init__(self) -> None:
        self.ask: tuple[Any, ...] | None = None

    def keys(self) -> list[bytes]:
        self.ask = ("all", b"")
        return []

    def items(self, start: bytes = b"", stop: bytes | None = None) -> list[Any]:
        self.ask = ("all", start)
        return []

    def size(self) -> int:
        self.ask = ("all", b"")
        return 0

    def scan_page(self, cursor: int, count: int, prefix: bytes = b"") -> tuple[int, list[bytes]]:
        self.ask = ("page", cursor, count, prefix)
        return 0, []

    def random_key(self, rng: Any) -> bytes | None:
        self.ask = ("random", rng)
        return None


class Filled:
    """Answers the handler's question with what the cluster gathered."""

    def __init__(self, keys: list[bytes], next_cursor: int = 0) -> None:
        self._keys = keys
        self._next = next_cursor

    def keys(self) -> list[bytes]:
        return list(self._keys)

    def items(self, start: bytes = b"", stop: bytes | None = None) -> list[tuple[bytes, None]]:
        return [(k, None) for k in self._keys]

    def size(self) -> int:
        return len(self._keys)

    def scan_page(self, cursor: int, count: int, prefix: bytes = b"") -> tuple[int, list[bytes]]:
        return self._next, list(self._keys)

    def random_key(self, rng: Any) -> bytes | None:
        return self._keys[0] if self._keys else None


# -- the kscan service (replica side) ---------------------------------------------------------


def encode_page(reached: int, keys: list[bytes]) -> bytes:
    out = bytearray()
    put_uvarint(out, reached)
    put_uvarint(out, len(keys))
    for k in keys:
        put_bytes(out, k)
    return bytes(out)


def decode_page(data: bytes) -> tuple[int, list[bytes]]:
    try:
        rd = Reader(data)
        reached = rd.uvarint()
        keys = [rd.bytes_() for _ in range(rd.uvarint())]
        rd.expect_end()
    except DecodeError as e:
        raise ValueError(f"bad kscan page: {e}") from None
    return reached, keys


def local_page(engine: Any, now_ms: int, db: int, start_token: int, limit: int,
               prefix: bytes) -> tuple[int, list[bytes]]:
    """This node's live keys of ``db`` starting with ``prefix``, token >= ``start_token``, in
    token order: at most ``limit`` of them, scanning at most ``limit * SCAN_FACTOR + 64``
    entries. ``reached``: every local key with a token <= it was considered (MAX_TOKEN: all)."""
    dbb = db.to_bytes(2, "big")
    budget = limit * SCAN_FACTOR + 64
    keys: list[bytes] = []
    last_token = -1
    for skey, rec in engine.scan(token_prefix(start_token)):
        token = int.from_bytes(skey[:TOKEN_PREFIX_LEN], "big")
        if (len(keys) >= limit or budget <= 0) and token != last_token:
            return last_token, keys  # stop between tokens: "reached" stays exact
        budget -= 1
        last_token = token
        if skey[TOKEN_PREFIX_LEN:TOKEN_PREFIX_LEN + 2] != dbb:
            continue
        key = skey[TOKEN_PREFIX_LEN + 2:]
        if prefix and not key.startswith(prefix):
            continue
        try:
            s = V.decode_sibling_set(rec.value)
        except V.InvalidSiblingSetError:
            continue
        if V.live_value(s, now_ms) is not None:
            keys.append(key)
    return MAX_TOKEN, keys


class KeyScan:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        cluster.services[SERVICE] = self.handle

    def handle(self, call: Any) -> tuple[bool, bytes]:
        if len(call.args) != 4:
            return False, b"kscan takes db, start_token, limit, prefix"
        try:
            db, start, limit = (parse_uint(a) for a in call.args[:3])
        except WireError as e:
            return False, str(e).encode()
        if start > MAX_TOKEN or not 1 <= limit <= 100_000:
            return False, b"kscan: token or limit out of range"
        c = self.cluster
        reached, keys = local_page(c.node.engine, c.node.clock_ms(), db, start, limit,
                                   call.args[3])
        return True, encode_page(reached, keys)

    # -- coordinator side --
    async def step(self, db: int, start: int, limit: int, prefix: bytes, level: Any
                   ) -> tuple[int, list[bytes]] | ErrorReply:
        """One merged step of the walk from ``start``: (cutoff token, confirmed live keys in
        token order)."""
        c = self.cluster
        ring = c.ring
        up = c.up_nodes()
        members = [n for n in ring.nodes if n in up]
        down = len(ring) - len(members)
        n_eff = c.effective_n()
        if not len(ring) or down >= n_eff:
            return CommandError(E.NOREPLICAS_UP % (max(1, len(ring) - n_eff + 1),
                                                   len(members)))
        pages: list[tuple[int, list[bytes]]] = []
        args = (b"%d" % db, b"%d" % start, b"%d" % limit, prefix)
        for node in members:
            if node == c.node_id:
                pages.append(local_page(c.node.engine, c.node.clock_ms(), db, start, limit,
                                        prefix))
                continue
            try:
                pages.append(decode_page(await c.call(node, SERVICE, args)))
            except Exception as e:  # a node we counted up did not answer: no partial answer
                return CommandError(E.NOREPLICAS_READ % (len(members), len(pages))
                                    + f" (keyspace walk: {node}: {e})")
        cutoff = min(p[0] for p in pages)
        candidates = sorted({k for _, ks in pages for k in ks if token_of(k) <= cutoff},
                            key=lambda k: (token_of(k), k))
        if not candidates:
            return cutoff, []
        sets: dict[bytes, Any] = {}
        err = await c._quorum_read(db, candidates, level, sets)
        if err is not None:
            return err
        now = c.node.clock_ms()
        return cutoff, [k for k in candidates if V.live_value(sets[k], now) is not None]

    async def random_key(self, db: int, rng: Any, level: Any) -> bytes | ErrorReply | None:
        """RANDOMKEY: the first confirmed live key at or after a random ring position (keys'
        tokens are hashes, so that is a key picked about uniformly), walking on -- and round
        past the top of the ring to the position again -- only while steps find none."""
        origin = rng.randrange(MAX_TOKEN + 1) if rng is not None else 0
        start, wrapped = origin, False
        while True:
            got = await self.step(db, start, RANDOM_PAGE, b"", level)
            if isinstance(got, ErrorReply):
                return got
            cutoff, keys = got
            if wrapped:
                keys = [k for k in keys if token_of(k) < origin]
            if keys:
                return keys[0]
            if wrapped and cutoff >= origin - 1:
                return None
            if cutoff >= MAX_TOKEN:
                if wrapped or origin == 0:
                    return None
                start, wrapped = 0, True
            else:
                start = cutoff + 1

    async def execute(self, spec: CommandSpec, client: Client, args: list[bytes],
                      level: Any) -> Any:
        probe = Probe()
        saved = client.db
        client.db = probe  # type: ignore[assignment]
        try:
            reply = execute(spec, client, args)
        finally:
            client.db = saved
        if isinstance(reply, ErrorReply) or probe.ask is None:
            return reply
        db = client.dbnum
        if probe.ask[0] == "random":
            picked = await self.random_key(db, probe.ask[1], level)
            if isinstance(picked, ErrorReply):
                return picked
            filled = Filled([picked] if picked is not None else [])
        elif probe.ask[0] == "page":
            _, cursor, count, prefix = probe.ask
            if cursor > MAX_TOKEN:
                cursor = 0
            got = await self.step(db, cursor, max(1, min(count, 100_000)), prefix, level)
            if isinstance(got, ErrorReply):
                return got
            cutoff, keys = got
            filled = Filled(keys, 0 if cutoff >= MAX_TOKEN else cutoff + 1)
        else:
            prefix = probe.ask[1]
            keys, start = [], 0
            while True:
                got = await self.step(db, start, PAGE, prefix, level)
                if isinstance(got, ErrorReply):
                    return got
                cutoff, page = got
                keys += page
                if cutoff >= MAX_TOKEN:
                    break
                start = cutoff + 1
            filled = Filled(keys)
        client.db = filled  # type: ignore[assignment]
        try:
            return execute(spec, client, args)
        finally:
            client.db = saved
