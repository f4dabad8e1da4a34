"""Anti-entropy: replicas compare Merkle trees of the token ranges they share and exchange only
the keys that differ (Merkle 1987; DeCandia et al. 2007 §4.7; riak_core's active anti-entropy;
Cassandra's repair). Byte layouts: docs/formats/wire.md, "Anti-entropy and streaming"; the
design: docs/cluster.md, "Anti-entropy and range streaming".

One exchange, of range ``R`` between this node (the initiator) and replica ``P``:

1. **Trees.** Both sides scan ``R`` (one ordered engine scan: keys are stored under their
   token) in pages and accumulate leaf hashes at a fine depth (``exchange.LeafAccumulator``);
   the peer does it in a *session* over ``ae_build`` calls while this node does its own, both at
   once. A key's contribution is computed from its stored bytes (no decoding). The exchange
   depth is chosen from the larger key count (about one key per leaf, at most 2**16 leaves) and
   both sides fold to it.
2. **Descent.** Level by level from the root, this node asks ``ae_hashes`` for the children of
   the nodes that differed (``merkle.divergent_children``); equal subtrees are never visited.
3. **Keys.** For the differing leaves (merged into ranges, 256 at a time): the peer's 8-byte
   digests of its keys there (``fetch ... digests``); this node pushes each of its keys whose
   digest differs or that the peer lacks (``stream``), and the peer merges (``versions.sync``,
   never an overwrite) and answers with the keys whose merged set differs from what was pushed,
   which this node merges in turn; keys only the peer has are pulled (``fetch_keys``). After
   one exchange both replicas hold the sync of both versions of every key of ``R``.

Trees are **rebuilt per exchange from a scan**, not kept incrementally. Measured
(``bench/bench_antientropy.py``, LSM engine, 100k keys): the scan-and-hash costs ~10-13 us per
key (hashing 2-4 us of it, the rest the engine's scan), ~1 s per 100k keys on each side, paid per
exchange in pages with checkpoints; at the default interval (one range, about 1/16 of what two
nodes share, per minute) that is ~1% of a core for a node holding a million keys. An
incremental tree would move ~2-4 us to every replica write (the hot path: the old version's
digest, the token's leaf), hold the trees of every range this node replicates in memory at all
times (~5 MB each at 2**16 leaves), and be invalidated by every ring change. Hence no
``on_local_write`` hook is needed. Memory per exchange: the local accumulator and tree
(~1 MB of pointers at most) and the peer digests of at most 256 divergent leaves; per peer
session on the serving side the same, at most ``MAX_SESSIONS`` sessions (least recently used
evicted, idle ones dropped after ``SESSION_IDLE_MS``).

The periodic task (:meth:`AntiEntropy.run`) runs one exchange every ``anti_entropy_interval_ms``
(jittered; 0: off), cycling through every (range, up replica) pair this node shares;
:meth:`AntiEntropy.repair` (``respkv admin repair``) runs them all and returns figures.
Exchanges on one node never overlap (one lock).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio

from respkv.cluster import wire
from respkv.cluster.exchange import (
    LeafAccumulator,
    choose_depth,
    decode_build_reply,
    decode_indices,
    decode_page,
    encode_build_reply,
    encode_indices,
    encode_page,
    encode_ranges,
    range_scans,
    split_range,
    value_digest,
)
from respkv.cluster.hashing import TOKEN_SPACE, TokenRange, merge_adjacent
from respkv.cluster.merkle import (
    MerkleTree,
    decode_hashes,
    divergent_children,
    encode_hashes,
)
from respkv.cluster.ring import replica_ranges
from respkv.cluster.wire import WireError, parse_uint
from respkv.node.periodic import every
from respkv.node.streaming import (
    MAX_KEYS_PER_FETCH,
    SCAN_KEYS_PER_CALL,
    KeyFilter,
    apply_pairs,
    page_timeout,
    read_page,
    register_services,
    replica_filter,
)

log = logging.getLogger("respkv.antientropy")

MAX_RANGE_WIDTH = TOKEN_SPACE // 16  # shared ranges are exchanged in pieces at most this wide
BUILD_KEYS_PER_CALL = SCAN_KEYS_PER_CALL
MAX_HASHES_PER_CALL = 8192
LEAF_RANGES_PER_ROUND = 256
MAX_SESSIONS = 4
SESSION_IDLE_MS = 60_000
MAX_SESSION_ID = 32

Progress = Callable[[int, int], None]
FIGURES = ("ranges_compared", "ranges_divergent", "leaves_divergent", "keys_sent",
           "keys_received", "bytes_sent", "bytes_received", "tree_bytes", "data_bytes", "keys",
           "failures")


class _Session:
    """The serving side of one exchange: the peer's tree of one range, built over calls."""

    __slots__ = ("acc", "scans", "after", "done", "tree", "used_ms")

    def __init__(self, rng: TokenRange, now_ms: int) -> None:
        self.acc: LeafAccumulator | None = LeafAccumulator(rng)
        self.scans = range_scans([rng])
        self.after = b""
        self.done = False
        self.tree: MerkleTree | None = None
        self.used_ms = now_ms


class _Figures(dict[str, int]):
    def __init__(self) -> None:
        super().__init__((k, 0) for k in FIGURES)


class AntiEntropy:
    """This node's anti-entropy owner: the ``ae_*`` services and the exchanges it initiates.
    Construct once per Cluster (registers the services, and streaming's); ``run`` is started in
    the cluster's nursery."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.sessions: OrderedDict[tuple[str, bytes], _Session] = OrderedDict()
        self.stats: dict[str, int] = {"ae_exchanges": 0, "ae_exchange_failures": 0,
                                      "ae_ranges_divergent": 0, "ae_keys_sent": 0,
                                      "ae_keys_received": 0, "ae_bytes_sent": 0,
                                      "ae_bytes_received": 0, "ae_sessions_served": 0}
        self._lock = trio.Lock()
        self._cursor = 0
        cluster.services[b"ae_build"] = self.handle_build
        cluster.services[b"ae_hashes"] = self.handle_hashes
        cluster.services[b"ae_end"] = self.handle_end
        register_services(cluster)

    # -- what to compare -------------------------------------------------------------------------
    def _n(self) -> int:
        s = self.cluster.settings
        return max([s.n, *(n for _, n in s.n_by_prefix)])

    def exchange_targets(self, up_only: bool = True) -> list[tuple[TokenRange, str]]:
        """Every (range, peer) this node shares with another replica: per peer, the vnode
        ranges both naturally replicate, merged, cut into pieces at most ``MAX_RANGE_WIDTH``
        wide. Peers in ring order; unless ``up_only`` is false, only peers that are up or whose
        link is connected (a peer whose heartbeats are late is still worth a try: each call has
        its deadline)."""
        c = self.cluster
        ring = c.ring
        me = c.node_id
        if me not in ring.nodes:
            return []
        placed = [(r, set(reps)) for r, reps in replica_ranges(ring, self._n(),
                                                               c.settings.replicas_per_dc)]
        if up_only:
            up = c.up_nodes() | {p for p, link in c.links.items() if link.connected}
        else:
            up = set(ring.nodes)
        out = []
        for peer in ring.nodes:
            if peer == me or peer not in up:
                continue
            shared = merge_adjacent([r for r, reps in placed if me in reps and peer in reps])
            out += [(piece, peer) for r in shared for piece in split_range(r, MAX_RANGE_WIDTH)]
        return out

    # -- the periodic task -------------------------------------------------------------------------
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Every ``anti_entropy_interval_ms`` (x0.5-1.5 jitter from the node's random source),
        one exchange with the next (range, up peer) pair; never returns unless the interval is
        0 (off). A failed exchange is logged and counted; the next pair is tried next time."""
        await every(self.cluster.config.anti_entropy_interval_ms, self.cluster.node.rng,
                    self._next_exchange, task_status)

    async def _next_exchange(self) -> None:
        targets = self.exchange_targets()
        if not targets:
            return
        r, peer = targets[self._cursor % len(targets)]
        self._cursor += 1
        fig = _Figures()
        try:
            await self.exchange(r, peer, fig)
        except Exception as e:  # a peer going away must not stop the task
            self.stats["ae_exchange_failures"] += 1
            log.warning("event=ae_exchange_failed peer=%s error=%r", peer, str(e))

    async def repair(self, progress: Progress | None = None) -> dict[str, int]:
        """Exchange every range this node replicates with every up replica that shares it
        (``respkv admin repair``). ``progress(done, total)`` after each (range, peer). Returns
        ``ranges_compared``, ``ranges_divergent``, ``leaves_divergent``, ``keys_sent``,
        ``keys_received``, ``bytes_sent``, ``bytes_received`` (every payload of every call,
        trees included), ``tree_bytes`` (of those, the tree calls), ``data_bytes`` and
        ``keys`` (what this node holds in the compared ranges, summed over peers),
        ``failures`` (exchanges that failed: peer gone, deadline), ``peers`` (compared with)
        and ``peers_down`` (replicas sharing ranges with this node that were not up: not
        compared; run repair again once they are)."""
        targets = self.exchange_targets()
        fig = _Figures()
        total = len(targets)
        if progress is not None:
            progress(0, total)
        for done, (r, peer) in enumerate(targets, 1):
            try:
                await self.exchange(r, peer, fig)
            except Exception as e:
                fig["failures"] += 1
                self.stats["ae_exchange_failures"] += 1
                log.warning("event=ae_exchange_failed peer=%s error=%r", peer, str(e))
            if progress is not None:
                progress(done, total)
        out = dict(fig)
        out["peers"] = len({p for _, p in targets})
        out["peers_down"] = len({p for _, p in self.exchange_targets(up_only=False)}) - out[
            "peers"]
        log.info("event=repair_done " + " ".join(f"{k}={v}" for k, v in out.items()))
        return out

    # -- one exchange ------------------------------------------------------------------------------
    async def _call(self, peer: str, service: bytes, args: tuple[bytes, ...],
                    fig: dict[str, int], tree: bool = False) -> bytes:
        payload: bytes = await self.cluster.call(peer, service, args,
                                                 timeout_s=page_timeout(self.cluster))
        sent = sum(len(a) for a in args) + len(service)
        fig["bytes_sent"] += sent
        fig["bytes_received"] += len(payload)
        if tree:
            fig["tree_bytes"] += sent + len(payload)
        return payload

    async def exchange(self, rng: TokenRange, peer: str, fig: dict[str, int] | None = None
                       ) -> dict[str, int]:
        """Compare ``rng`` with ``peer`` and exchange the keys that differ (module docstring).
        Adds to ``fig`` (returned). Raises ``PeerCallError`` when the peer fails a call."""
        fig = fig if fig is not None else _Figures()
        before = dict(fig)
        async with self._lock:
            try:
                await self._exchange(rng, peer, fig)
            finally:
                st = self.stats
                st["ae_exchanges"] += 1
                st["ae_keys_sent"] += fig["keys_sent"] - before["keys_sent"]
                st["ae_keys_received"] += fig["keys_received"] - before["keys_received"]
                st["ae_bytes_sent"] += fig["bytes_sent"] - before["bytes_sent"]
                st["ae_bytes_received"] += fig["bytes_received"] - before["bytes_received"]
                st["ae_ranges_divergent"] += (fig["ranges_divergent"]
                                              - before["ranges_divergent"])
        return fig

    async def _exchange(self, rng: TokenRange, peer: str, fig: dict[str, int]) -> None:
        c = self.cluster
        session = b"%016x" % c.node.rng.getrandbits(64)
        include = replica_filter(c, [c.node_id, peer], [c.ring])
        acc = LeafAccumulator(rng)
        remote_keys = [0]
        bounds = (b"%d" % rng.start, b"%d" % rng.end)

        async def build_remote() -> None:
            while True:
                done, keys, _ = decode_build_reply(await self._call(
                    peer, b"ae_build", (session, *bounds), fig, tree=True))
                remote_keys[0] = keys
                if done:
                    return

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(build_remote)
                await self._build_local(acc, include)
            fig["ranges_compared"] += 1
            fig["keys"] += acc.keys
            fig["data_bytes"] += acc.data_bytes
            depth = choose_depth(max(acc.keys, remote_keys[0]), rng)
            tree = acc.tree(depth)
            del acc
            leaves = await self._descend(peer, session, tree, fig)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await c.call(peer, b"ae_end", (session,), timeout_s=1)
                except Exception:  # the session expires on its own
                    pass
        if not leaves:
            return
        fig["ranges_divergent"] += 1
        fig["leaves_divergent"] += len(leaves)
        ranges = merge_adjacent([tree.leaf_range(i) for i in leaves])
        log.info("event=ae_divergent peer=%s leaves=%d ranges=%d", peer, len(leaves),
                 len(ranges))
        seq_before = c.node.engine.last_seq
        for k in range(0, len(ranges), LEAF_RANGES_PER_ROUND):
            await self._reconcile(peer, ranges[k:k + LEAF_RANGES_PER_ROUND], include, fig)
        await c.node._durable(seq_before)

    async def _build_local(self, acc: LeafAccumulator, include: KeyFilter) -> None:
        engine = self.cluster.node.engine
        scans = range_scans([acc.range])
        after = b""
        while True:
            items, after = read_page(engine, scans, after, BUILD_KEYS_PER_CALL, 1 << 62,
                                     include)
            for skey, value in items:
                acc.add(skey, value)
            await trio.lowlevel.checkpoint()
            if not after:
                return

    async def _descend(self, peer: str, session: bytes, tree: MerkleTree,
                       fig: dict[str, int]) -> list[int]:
        """The differing leaves, asking for one level per round (children of differing
        nodes only)."""
        depth = tree.depth
        indices = [0]
        for d in range(depth + 1):
            theirs: list[int] = []
            for k in range(0, len(indices), MAX_HASHES_PER_CALL):
                chunk = indices[k:k + MAX_HASHES_PER_CALL]
                payload = await self._call(peer, b"ae_hashes", (
                    session, b"%d" % depth, b"%d" % d, encode_indices(chunk)), fig, tree=True)
                theirs += decode_hashes(payload)
            nxt = divergent_children(d, indices, tree.hashes(d, indices), theirs, depth)
            if d == depth or not nxt:
                return nxt
            indices = nxt
        return []

    async def _reconcile(self, peer: str, ranges: list[TokenRange], include: KeyFilter,
                         fig: dict[str, int]) -> None:
        """Make this node and ``peer`` agree on every key of ``ranges`` (module docstring,
        step 3)."""
        c = self.cluster
        page_bytes = c.config.stream_page_bytes
        encoded_ranges = encode_ranges(ranges)
        theirs: dict[bytes, int] = {}
        after = b""
        while True:
            items, after = decode_page(await self._call(
                peer, b"fetch", (encoded_ranges, after, b"digests", b"%d" % page_bytes), fig))
            for skey, digest in items:
                theirs[skey] = int.from_bytes(digest, "big")
            if not after:
                break
        scans = range_scans(ranges)
        after = b""
        push: list[tuple[bytes, bytes]] = []
        push_size = 0
        while True:
            items, after = read_page(c.node.engine, scans, after, SCAN_KEYS_PER_CALL,
                                     page_bytes, include)
            for skey, value in items:
                d = theirs.pop(skey, None)
                if d is not None and d == value_digest(value):
                    continue
                push.append((skey, value))
                push_size += len(skey) + len(value)
                if push_size >= page_bytes:
                    await self._push(peer, push, fig)
                    push, push_size = [], 0
            await trio.lowlevel.checkpoint()
            if not after:
                break
        if push:
            await self._push(peer, push, fig)
        only_theirs = list(theirs)
        for k in range(0, len(only_theirs), MAX_KEYS_PER_FETCH):
            wanted = encode_page([(skey, b"") for skey in only_theirs[k:k + MAX_KEYS_PER_FETCH]])
            items, _ = decode_page(await self._call(peer, b"fetch_keys", (wanted,), fig))
            fig["keys_received"] += apply_pairs(c, items)

    async def _push(self, peer: str, items: list[tuple[bytes, bytes]], fig: dict[str, int]
                    ) -> None:
        """Send ``items`` for the peer to merge; merge what it answers it holds instead."""
        payload = await self._call(peer, b"stream", (encode_page(items), b"1"), fig)
        fig["keys_sent"] += len(items)
        back, _ = decode_page(payload)
        fig["keys_received"] += apply_pairs(self.cluster, back)

    # -- services (the serving side; synchronous, bounded) -------------------------------------------
    def _session(self, call: wire.ServiceCall) -> _Session | None:
        s = self.sessions.get((call.sender, call.args[0]))
        if s is not None:
            s.used_ms = self.cluster.node.clock_ms()
            self.sessions.move_to_end((call.sender, call.args[0]))
        return s

    def handle_build(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        """``ae_build(session, start, end)``: scan the next page of the range into the session's
        tree (the first call opens the session)."""
        args = call.args
        if len(args) != 3 or not 0 < len(args[0]) <= MAX_SESSION_ID:
            return False, b"ae_build takes session, start, end"
        try:
            rng = TokenRange(parse_uint(args[1]), parse_uint(args[2]))
        except WireError as e:
            return False, str(e).encode()
        if rng.start >= TOKEN_SPACE or rng.end >= TOKEN_SPACE:
            return False, b"token out of range"
        s = self._session(call)
        now = self.cluster.node.clock_ms()
        if s is None:
            for key, old in list(self.sessions.items()):
                if now - old.used_ms > SESSION_IDLE_MS:
                    del self.sessions[key]
            while len(self.sessions) >= MAX_SESSIONS:
                self.sessions.popitem(last=False)
            s = self.sessions[(call.sender, args[0])] = _Session(rng, now)
            self.stats["ae_sessions_served"] += 1
        acc = s.acc
        if acc is None or acc.range != rng:
            return False, b"session is for another range or already compared"
        if not s.done:
            c = self.cluster
            include = replica_filter(c, [c.node_id, call.sender], [c.ring])
            items, s.after = read_page(c.node.engine, s.scans, s.after, BUILD_KEYS_PER_CALL,
                                       1 << 62, include)
            for skey, value in items:
                acc.add(skey, value)
            s.done = not s.after
        return True, encode_build_reply(s.done, acc.keys, acc.data_bytes)

    def handle_hashes(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        """``ae_hashes(session, depth, level, indices)``: the hashes of those nodes of the
        session's tree folded to ``depth``."""
        args = call.args
        if len(args) != 4:
            return False, b"ae_hashes takes session, depth, level, indices"
        s = self._session(call)
        if s is None:
            return False, b"unknown session"
        if not s.done:
            return False, b"session tree not built"
        try:
            depth, level = parse_uint(args[1]), parse_uint(args[2])
            indices = decode_indices(args[3])
        except (WireError, ValueError) as e:
            return False, str(e).encode()
        if s.tree is None:
            assert s.acc is not None
            if depth > s.acc.base:
                return False, b"depth too large"
            s.tree = s.acc.tree(depth)
            s.acc = None
        if s.tree.depth != depth or level > depth or len(indices) > MAX_HASHES_PER_CALL or (
                indices and indices[-1] >= 1 << level):
            return False, b"bad depth, level or indices"
        return True, encode_hashes(s.tree.hashes(level, indices))

    def handle_end(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        """``ae_end(session)``: drop the session (idempotent)."""
        if len(call.args) != 1:
            return False, b"ae_end takes session"
        self.sessions.pop((call.sender, call.args[0]), None)
        return True, b""

    def statistics(self) -> dict[str, int]:
        return {**self.stats, "ae_sessions": len(self.sessions)}
