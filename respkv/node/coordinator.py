"""Cluster mode: every node coordinates client commands across each key's N replicas.

Plan, then execute (STYLE.md; Cassandra's ReplicaPlan, Dynamo 2007 §4.5): per key the plan comes
from the pure cluster core -- ``preference_list(ring, key, n, up_nodes)`` then ``plan_read`` /
``plan_write`` at the request's level -- before any message is sent. The coordinator's own replica
is read and written in-process (``LocalReplica``); the others get ``RR`` / ``RW`` requests over
their ``PeerLink`` (docs/formats/wire.md), all in parallel; replies feed a ``QuorumTracker`` per
key, and the client is answered as soon as every key's tracker has succeeded (so latency is the
W-th / R-th fastest replica) or when one has failed, or at the deadline (``request_timeout_ms``).

How a keyed command runs (docs/cluster.md, "Commands in cluster mode"):

1. Trailing ``R level`` / ``W level`` options are stripped (only where the command's own grammar
   cannot use them, see :func:`strip_levels`), and ``CONTEXT ctx`` from SET.
2. Unless the command is a blind write (plain SET, SET EX/PX, SETEX, PSETEX, MSET), its keys are
   read at R; the merged sets go into a :class:`ClusterView`, a Keyspace look-alike whose
   ``get`` is the deterministic winner (``versions.live_value``).
3. The unchanged synchronous handler runs with ``client.db`` pointed at the view; its mutations
   (set/delete) are collected, not applied.
4. Each mutated key is written at W with a new dot from a replica of the key: this node when it
   is one (``versions.update`` with the read's context, ``versions.overwrite`` for blind writes,
   the client's context for ``SET ... CONTEXT``), else the first up replica (``CW``), which
   returns the new set for the coordinator to send to the others.

Ownership: one ``Cluster`` per node, owned by the node; its ``run`` task owns the peer server and
the links. ``execute`` runs in the client's connection task; the reply callbacks run in the
links' reader tasks and only touch the trackers of the operation they belong to.

Ring (static until membership gossip, issue 7): this node plus every peer identified by a
handshake in either direction (seed links, and nodes that dial in, which are dialled back at the
address they announce). A peer is up while its link is connected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from respkv.cluster import versions as V
from respkv.cluster import wire
from respkv.cluster.hashing import token_of
from respkv.cluster.membership import Membership, NodeState, NodeStatus, new_node_state, ring_of
from respkv.cluster.pbs import PbsEstimator, PbsLevel, pbs_info, standard_levels
from respkv.cluster.quorum import (
    ConsistencyLevel,
    InvalidLevelError,
    Level,
    Outcome,
    QuorumTracker,
    ReplicaPlan,
    format_level,
    parse_level,
    plan_read,
    plan_write,
    with_pending,
)
from respkv.cluster.ring import (
    NodeInfo,
    Ring,
    effective_replicas_per_dc,
    natural_replicas,
    preference_list,
)
from respkv.cluster.versions import EMPTY, SiblingSet, VersionVector
from respkv.commands import cluster_cmds
from respkv.commands import errors as E
from respkv.commands.core import Client, CommandSpec, execute
from respkv.commands.errors import CommandError
from respkv.config import Config, ConfigError
from respkv.node import streaming
from respkv.node.antientropy import AntiEntropy
from respkv.node.gossip import STATE_FILE, Gossiper, load_state, save_state
from respkv.node.keyscan import KeyScan
from respkv.node.metrics import observe_us
from respkv.node.peer import PeerIdentity, PeerLink, PeerServer, SendBatcher
from respkv.node.periodic import every
from respkv.node.purge import Purger, load_dot_floor
from respkv.node.replica import LocalReplica
from respkv.node.topology import Topology
from respkv.protocol.resp import OK, ErrorReply
from respkv.storage.api import Record

log = logging.getLogger("respkv.cluster")

PEER_PORT_OFFSET = 10000
UP_CACHE_NS = 20_000_000  # how long a computed up-set is reused (links changing void it)
PLAN_CACHE_MAX = 65536
# The PBS windows (respkv/cluster/pbs.py) hold the latest 2048 round trips of each kind; every
# 4th reply is plenty to follow the network and keeps the estimator off the per-reply path.
RTT_SAMPLE_MASK = 3

# Commands that need the whole keyspace, which no node holds: a clear error, not a partial lie.
# (KEYS, SCAN, DBSIZE and RANDOMKEY walk every node's keys: respkv/node/keyscan.py.)
KEYSPACE_WALKS = frozenset({"keys", "scan", "dbsize", "randomkey"})
WHOLE_KEYSPACE = {
    "flushdb": "a cluster-wide flush is not implemented",
    "flushall": "a cluster-wide flush is not implemented",
    "swapdb": "databases cannot be swapped across replicas",
    "multi": "a transaction cannot be atomic across replicas",
}
# Keyed commands whose Redis semantics (atomic across keys) cannot hold across replicas.
MULTI_KEY_ATOMIC = {
    "rename": "RENAME is not atomic across replicas",
    "renamenx": "RENAMENX is not atomic across replicas",
    "msetnx": "MSETNX is not atomic across replicas",
    "move": "keys cannot move between databases across replicas",
    "copy": "COPY is not atomic across replicas",
    "watch": "a transaction cannot be atomic across replicas",
}
BLIND_WRITES = frozenset({"mset", "setex", "psetex"})
_SET_READING_OPTIONS = frozenset({b"NX", b"XX", b"GET", b"KEEPTTL"})


def _row_dict(r: NodeState) -> dict[str, Any]:
    return {"node_id": r.node_id, "generation": r.generation, "version": r.version,
            "status": r.status.value, "dc": r.dc, "rack": r.rack, "weight": r.weight,
            "vnodes": r.vnodes, "address": r.address}


def _saved_peers(saved: dict[str, Any], own_id: str) -> list[NodeState]:
    """The peer rows of a ``cluster_state`` (``_row_dict``'s); rows that do not parse are
    skipped with a warning (gossip brings them back), never fatal."""
    out = []
    for d in saved.get("peers") or ():
        try:
            row = NodeState(str(d["node_id"]), int(d["generation"]), int(d["version"]),
                            NodeStatus(d["status"]), str(d["dc"]), str(d["rack"]),
                            float(d["weight"]), int(d["vnodes"]), str(d["address"]))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("event=cluster_state_peer_skipped row=%r error=%r", d, str(e))
            continue
        if row.node_id != own_id and row.status is not NodeStatus.LEFT and row.vnodes > 0:
            out.append(row)
    return out


# How long after a ring change (in gossip intervals: twice Topology.ring_delay_s) this node's
# writes also count the replicas of the ring before it (Cluster._moving_targets).
RING_TRANSITION_INTERVALS = 6


class PeerCallError(Exception):
    """A service call to a peer did not get an OK reply (why: the message)."""


# -- settings -----------------------------------------------------------------------------------


@dataclass
class ClusterSettings:
    node_id: str
    dc: str
    n: int
    read_level: Level
    write_level: Level
    timeout_ms: int
    seeds: list[tuple[str, int]]
    secret: bytes
    peer_port: int
    n_by_prefix: list[tuple[bytes, int]] = field(default_factory=list)  # longest prefix first
    replicas_per_dc: dict[str, int] | None = None  # placement per datacenter (dc1:3,dc2:2)

    def n_for(self, key: bytes) -> int:
        for prefix, n in self.n_by_prefix:
            if key.startswith(prefix):
                return n
        return self.n


def is_cluster_config(config: Config) -> bool:
    return bool(getattr(config, "node_id", "") or getattr(config, "seeds", ""))


def parse_seeds(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"'seeds': expected HOST:PEERPORT, got {item!r}")
        out.append((host.strip("[]"), int(port)))
    return out


def cluster_settings(config: Config) -> ClusterSettings:
    """Validate the cluster settings of ``config`` (ConfigError naming the key)."""
    if not config.node_id:
        raise ConfigError("'node_id' is required in cluster mode (seeds are set)")
    if any(c.isspace() for c in config.node_id) or len(config.node_id.encode()) > 128:
        raise ConfigError(f"'node_id' must be 1-128 bytes without spaces, got {config.node_id!r}")
    if not config.cluster_secret_file:
        raise ConfigError("'cluster_secret_file' is required in cluster mode")
    try:
        with open(config.cluster_secret_file, "rb") as f:
            secret = wire.check_secret(f.read())
    except OSError as e:
        raise ConfigError(f"'cluster_secret_file': cannot read {config.cluster_secret_file}: "
                          f"{e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"'cluster_secret_file': {e}") from None
    levels = []
    for key in ("read_consistency", "write_consistency"):
        try:
            levels.append(parse_level(getattr(config, key)))
        except InvalidLevelError as e:
            raise ConfigError(f"'{key}': {e}") from None
    table = config.extra.get("n_replicas_by_prefix", {})
    if not isinstance(table, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in table.values()
    ):
        raise ConfigError("'n_replicas_by_prefix' must map key prefixes to integers >= 1")
    by_prefix = sorted(((k.encode(), v) for k, v in table.items()), key=lambda kv: -len(kv[0]))
    per_dc = parse_replicas_per_dc(config.replicas_per_dc)
    n = config.n_replicas
    if per_dc is not None:
        if by_prefix:
            raise ConfigError("'n_replicas_by_prefix' cannot be combined with 'replicas_per_dc'")
        n = sum(per_dc.values())  # N is the sum of the per-datacenter counts
    peer_port = config.peer_port or (config.port + PEER_PORT_OFFSET if config.port else 0)
    return ClusterSettings(
        node_id=config.node_id, dc=config.dc, n=n, read_level=levels[0],
        write_level=levels[1], timeout_ms=config.request_timeout_ms,
        seeds=parse_seeds(config.seeds), secret=secret, peer_port=peer_port,
        n_by_prefix=by_prefix, replicas_per_dc=per_dc,
    )


def parse_replicas_per_dc(text: str) -> dict[str, int] | None:
    """'dc1:3,dc2:2' -> {'dc1': 3, 'dc2': 2}; '' -> None (N over the whole ring)."""
    if not text.strip():
        return None
    out: dict[str, int] = {}
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        dc, sep, count = item.partition(":")
        if not sep or not dc or not count.isdigit() or int(count) < 1 or dc in out:
            raise ConfigError(f"'replicas_per_dc': expected DC:COUNT,... with counts >= 1 and "
                              f"each datacenter once, got {item!r}")
        out[dc] = int(count)
    return out


# -- argument rewriting ---------------------------------------------------------------------------


def strip_levels(spec: CommandSpec, args: list[bytes]) -> tuple[list[bytes], Level | None,
                                                                  Level | None]:
    """Remove up to two trailing ``R level`` / ``W level`` pairs.

    A pair is taken only when its first word is R or W (any case), its second parses as a level,
    and the arguments left still satisfy the command's arity -- so for fixed-arity commands only
    arguments Redis would reject are taken. For variadic commands (MGET, DEL, EXISTS, MSET, ...) a
    trailing pair is always taken: a key named R or W in that place must be reordered or the
    levels set with CONSISTENCY (docs/cluster.md).
    """
    read = write = None
    arity = spec.arity
    original = args
    for _ in range(2):
        n = len(args)
        if n < 3:
            break
        word = args[-2].upper()
        if word != b"R" and word != b"W":
            break
        if n - 2 < abs(arity):
            break
        try:
            level = parse_level(args[-1])
        except InvalidLevelError:
            break
        if word == b"R":
            if read is not None:
                break
            read = level
        else:
            if write is not None:
                break
            write = level
        args = args[:-2]
    if arity > 0 and len(args) != arity:
        return original, None, None  # a fixed-arity command keeps its (wrong) arguments
    return args, read, write


def strip_context(args: list[bytes]) -> tuple[list[bytes], VersionVector | None]:
    """SET's ``CONTEXT ctx`` option (anywhere among the options); InvalidContextError."""
    for i in range(3, len(args) - 1):
        if args[i].upper() == b"CONTEXT":
            ctx = V.decode_context(args[i + 1])
            return args[:i] + args[i + 2:], ctx
    return args, None


def is_blind_write(spec: CommandSpec, args: list[bytes]) -> bool:
    """A write whose result does not depend on the key's current value."""
    if spec.name == "set":
        return not any(a.upper() in _SET_READING_OPTIONS for a in args[3:])
    return spec.name in BLIND_WRITES


# -- the view handlers run against -----------------------------------------------------------------


def command_failure(name: str, e: Exception) -> ErrorReply:
    """The reply to an exception escaping a cluster command (called from its ``except``): an
    invalid level is the client's error; anything else fails this one command, not the node
    (as ``respkv.commands.core.execute``), and is logged -- a corrupt stored set as such."""
    if isinstance(e, InvalidLevelError):
        return CommandError(E.INVALID_LEVEL % e)
    if isinstance(e, V.InvalidSiblingSetError):  # this replica's stored bytes are corrupt
        log.error("event=corrupt_sibling_set command=%s error=%r", name, str(e))
    else:
        log.exception("event=command_failed command=%s mode=cluster", name)
    return CommandError(E.INTERNAL % name)


class ClusterView:
    """A Keyspace look-alike over quorum-read sibling sets; records mutations instead of
    applying them. Owned by one command execution."""

    __slots__ = ("db", "clock_ms", "sets", "mutations", "stats")

    def __init__(self, db: int, clock_ms: Callable[[], int], sets: dict[bytes, SiblingSet],
                 stats: dict[str, int]) -> None:
        self.db = db
        self.clock_ms = clock_ms
        self.sets = sets
        self.mutations: dict[bytes, tuple[bytes | None, int]] = {}
        self.stats = stats

    def get(self, key: bytes) -> Record | None:
        m = self.mutations.get(key)
        now = self.clock_ms()
        if m is not None:
            value, expire = m
            if value is None or (expire and expire <= now):
                return None
            return Record(value, expire)
        s = self.sets.get(key)
        if s is None or not s.siblings:
            return None
        w = V.winner(s)
        if w is None or w.value is None or (w.expire_at_ms and w.expire_at_ms <= now):
            return None
        return Record(w.value, w.expire_at_ms)

    def lookup_read(self, key: bytes) -> Record | None:
        rec = self.get(key)
        self.stats["keyspace_hits" if rec is not None else "keyspace_misses"] += 1
        return rec

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def set(self, key: bytes, value: bytes, expire_at_ms: int = 0) -> int:
        self.mutations[key] = (value, expire_at_ms)
        return 0

    def set_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        for k, v in pairs:
            self.mutations[k] = (v, 0)

    def delete(self, key: bytes) -> bool:
        if self.get(key) is None:
            return False
        self.mutations[key] = (None, 0)
        return True

    def discard(self, key: bytes) -> None:
        self.mutations[key] = (None, 0)

    def sibling_set(self, key: bytes) -> SiblingSet:
        return self.sets.get(key, EMPTY)

    def _unsupported(self, *_: Any, **__: Any) -> Any:
        raise CommandError(E.CLUSTER_UNSUPPORTED % ("this command", "it needs the whole keyspace"))

    rename = items = keys = size = flush = scan_page = expires_count = _unsupported


# -- one operation's bookkeeping ---------------------------------------------------------------------


class _KeyOp:
    __slots__ = ("key", "tracker", "resolved", "repaired", "spares", "outstanding", "returned",
                 "level")

    def __init__(self, key: bytes, tracker: QuorumTracker) -> None:
        self.returned: SiblingSet | None = None  # what a read answered (PBS: late replies)
        self.level = ""
        self.key = key
        self.tracker = tracker
        self.resolved = False
        self.repaired = False
        self.spares: list[str] = []  # read contacts not asked yet (asked on a failure or late)
        self.outstanding = 0  # requests sent and not yet answered


class _Op:
    """Every key of one read or write phase; ``event`` is set once each key's tracker is no
    longer pending, or by :class:`Deadlines` when the deadline passed first."""

    __slots__ = ("keys", "open", "event", "sent", "local_hints", "failed")

    def __init__(self) -> None:
        self.local_hints = False  # this node stored a hint for the operation (sync it first)
        self.keys: list[_KeyOp] = []
        self.open = 0
        self.event = trio.Event()
        self.sent: list[tuple[PeerLink, int]] = []
        self.failed: _KeyOp | None = None  # the first key whose tracker failed

    def add(self, k: _KeyOp) -> None:
        self.keys.append(k)
        self.open += 1

    def check(self, k: _KeyOp) -> None:
        if not k.resolved:
            outcome = k.tracker.outcome()
            if outcome is Outcome.PENDING:
                return
            k.resolved = True
            if outcome is Outcome.FAILED and self.failed is None:
                self.failed = k
            self.open -= 1
            if self.open == 0:
                self.event.set()


ALIVE_INTERVAL_MS = 600_000
"""How often a member refreshes ``alive_ms`` in its cluster_state (the gc_grace_seconds check
at start-up: a node down longer than gc_grace_seconds refuses to start)."""


class Deadlines:
    """The deadline of every operation in flight, fired by one task (``run``): at its deadline an
    operation's ``event`` is set, so the task waiting on it wakes while keys are still pending
    and fails them. One task for all operations instead of a cancel scope per operation: on
    this path a scope cost more than the rest of the operation's bookkeeping.

    Every operation added has the same timeout, so deadlines arrive in order and the oldest
    entry of the (insertion-ordered) dict is the next to fire. Times are trio's clock
    (``trio.current_time``: the simulation's mock clock too). The waiting task removes its
    operation when it wakes for any reason, cancellation included (``discard``).
    """

    __slots__ = ("timeout_s", "_ops", "_wake", "_idle", "running", "fired")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._ops: dict[_Op, float] = {}
        self._wake = trio.Event()
        self._idle = False  # the task waits on _wake for the next operation
        self.running = False  # False: callers keep their own timeout (run not started)
        self.fired = 0

    def add(self, op: _Op) -> None:
        self._ops[op] = trio.current_time() + self.timeout_s
        if self._idle:
            self._idle = False
            self._wake.set()

    def discard(self, op: _Op) -> None:
        self._ops.pop(op, None)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        task_status.started()
        try:
            ops = self._ops
            while True:
                if not ops:
                    self._wake = trio.Event()
                    self._idle = True
                    await self._wake.wait()
                    continue
                op, deadline = next(iter(ops.items()))
                if deadline > trio.current_time():
                    await trio.sleep_until(deadline)
                    continue
                del ops[op]
                self.fired += 1
                op.event.set()
        finally:
            self.running = False


async def _wait_op(op: _Op, deadlines: Deadlines) -> None:
    """Wait until ``op`` resolves or ``deadlines`` fires it (the task running ``deadlines``
    must be started)."""
    deadlines.add(op)
    try:
        await op.event.wait()
    finally:
        deadlines.discard(op)


def _replica_write(sender: str, timeout_ms: int, db: int, key: bytes, data: bytes
                   ) -> Callable[[int], bytes]:
    """A link request builder: ``RW`` of ``data`` for ``key`` (the request id comes later)."""
    return lambda rid: wire.encode_request(wire.ReplicaWrite(rid, sender, timeout_ms, db, key,
                                                             data))


def _service_call(sender: str, timeout_ms: int, service: bytes, args: tuple[bytes, ...]
                  ) -> Callable[[int], bytes]:
    """A link request builder: the service call ``C service args``."""
    return lambda rid: wire.encode_request(wire.ServiceCall(rid, sender, timeout_ms, service,
                                                            args))


class Cluster:
    """The cluster side of one node: ring view, peer server, links, coordination."""

    stream_service: streaming.StreamService  # set by streaming.register_services (AntiEntropy)

    def __init__(self, node: Any, settings: ClusterSettings | None = None,
                 nonce: Callable[[int], bytes] | None = None) -> None:
        self.node = node
        self.network = node.network
        self.config: Config = node.config
        self.settings = settings if settings is not None else cluster_settings(node.config)
        s = self.settings
        self.node_id = s.node_id
        self.dc = s.dc
        # Membership (gossiped; respkv/node/gossip.py) and the views derived from it: ``ring``
        # (NORMAL and LEAVING members), ``pending_ring`` (the ring once JOINING members are in
        # and LEAVING ones out; None when equal): writes also go to a key's pending replicas.
        self.state_dir = node.config.dir
        self.persist_state = node.config.engine != "memory"
        try:
            floor = load_dot_floor(self.state_dir) if self.persist_state else 0
        except ValueError as e:
            raise ConfigError(f"'dir': {e}") from None
        self.replica = LocalReplica(node.engine, s.node_id, node.clock_ms, dot_floor=floor)
        saved = load_state(self.state_dir) if self.persist_state else None
        if saved is not None and saved.get("node_id", s.node_id) != s.node_id:
            raise ConfigError(f"'node_id': the data in {self.state_dir} belongs to node "
                              f"{saved['node_id']!r}, not {s.node_id!r}")
        if saved is not None and saved["status"] == NodeStatus.LEFT.value:
            raise ConfigError(f"node {s.node_id!r} left the cluster (decommissioned, or removed "
                              "by removenode); remove "
                              f"{os.path.join(self.state_dir, STATE_FILE)} and its data to "
                              "start it as a new member")
        alive_ms = saved.get("alive_ms") if saved is not None else None
        grace_ms = node.config.gc_grace_seconds * 1000
        if (isinstance(alive_ms, int) and grace_ms and not node.config.allow_stale_rejoin
                and node.clock_ms() - alive_ms > grace_ms):
            days = (node.clock_ms() - alive_ms) / 86_400_000
            raise ConfigError(
                f"node {s.node_id!r} was last up {days:.1f} days ago, longer than "
                f"gc_grace_seconds ({node.config.gc_grace_seconds}): deletes purged elsewhere "
                "meanwhile would come back from its copy. Wipe "
                f"{self.state_dir} to start it as a new member (it bootstraps), or start it "
                "once with allow_stale_rejoin = true if nothing was deleted meanwhile")
        self.restarted = saved is not None
        generation = max(node.clock_ms() // 1000, (saved["generation"] + 1) if saved else 0)
        # A member that was NORMAL (or was leaving when it stopped) comes back NORMAL; a new
        # node starts JOINING and becomes NORMAL alone or after bootstrapping (Cluster.run).
        status = NodeStatus.NORMAL if saved is not None else NodeStatus.JOINING
        own = new_node_state(s.node_id, generation, "", s.dc, node.config.rack, status=status)
        self.gossip = Gossiper(
            own, node.config.gossip_interval_ms, node.config.phi_threshold,
            lambda: node.perf_ns() / 1e6, node.rng, self.call, self._link_connected,
            self._linked, self._on_membership)
        self.ring: Ring = Ring.build(())
        self._ring_shape: tuple[Any, ...] = ()
        # (ring index, n, level, write) -> plan, valid for self.ring and self._up
        self._plan_cache: dict[tuple[Any, ...], ReplicaPlan] = {}
        self._up: frozenset[str] = frozenset()
        self._up_deadline = 0
        self._links_version = 0  # bumped when a link connects or breaks
        self._up_links_version = -1
        # A restarted member starts from the rows it last knew (Cassandra's system.peers):
        # without them its ring would be itself alone until its first gossip exchange, and it
        # would coordinate meanwhile as a one-node cluster (N capped at 1; found by the
        # simulation with membership changes). Newer gossip replaces them row by row.
        peers = _saved_peers(saved, s.node_id) if saved is not None else []
        if peers:
            self.gossip.membership = Membership([own, *peers])
            self._derive_rings(self.gossip.membership)
        self.topology = Topology(self)
        self._rtt_count = 0  # replica replies; one in RTT_SAMPLE_MASK + 1 feeds the PBS windows
        self.pbs = PbsEstimator(node.rng, clock_ms=lambda: node.perf_ns() / 1e6)  # staleness estimates (respkv/cluster/pbs.py)
        self.rr_stats = {"read_repairs": 0, "read_repair_chance_reads": 0}
        self.handoff: Any = None  # HintedHandoff when hinted_handoff is on (opened in run)
        # Set by the streaming service: pulls this node's future ranges while it is JOINING.
        self.bootstrap: Callable[[], Any] | None = lambda: streaming.bootstrap(self)
        self.bootstrap_figures: dict[str, Any] = {}
        self.pending_ring: Ring | None = None
        # The ring before the last change, counted by writes until ``previous_until_ns``
        # (perf_ns): see _moving_targets.
        self.previous_ring: Ring | None = None
        self.previous_until_ns = 0
        self._derive_rings(self.gossip.membership)
        self._persist_own()
        self.links: dict[str, PeerLink] = {}  # node id -> its link (once identified)
        self._all_links: list[PeerLink] = []
        self._batcher: SendBatcher | None = None  # set by run()
        self._nursery: trio.Nursery | None = None
        self.peer_port: int | None = None
        self.identity: PeerIdentity | None = None
        self._nonce = nonce if nonce is not None else node.nonce
        self.server: PeerServer | None = None
        self.timeout_s = s.timeout_ms / 1000
        self._timeout_ms = s.timeout_ms
        self._sender = s.node_id.encode()  # the sender field of this node's requests
        # Reads ask just enough replicas (R, counting this node's own copy), and the others
        # only when one fails or nothing is back after this long (Cassandra's speculative retry).
        self.speculative_s = max(0.005, self.timeout_s / 10)
        # Deadlines, each fired by one task (in run): an operation's, the speculative retry
        # of reads, and a read's remaining time once it asked its spare replicas.
        self.deadlines = Deadlines(self.timeout_s)
        self.speculation = Deadlines(self.speculative_s)
        self.after_speculation = Deadlines(self.timeout_s - self.speculative_s)
        # (kind, level) -> [calls, failures, total usec]
        self.level_stats: dict[tuple[str, str], list[int]] = {}
        self._stat_keys: dict[tuple[str, Level], tuple[str, str]] = {}
        self.level_hists: dict[tuple[str, str], list[int]] = {}  # latency histograms (metrics)
        # Services callable by peers with ``C`` (wire.md, "Service calls"): name -> handler
        # taking the ServiceCall and returning (ok, payload); synchronous and bounded.
        self.services: dict[bytes, Callable[[wire.ServiceCall], tuple[bool, bytes]]] = {}
        self.services[b"gossip"] = lambda call: self.gossip.handle(call.args)
        # Told (old, new) of every membership change, after the rings were rebuilt.
        self.ring_listeners: list[Callable[[Membership, Membership], None]] = []
        self.ring_listeners.append(self.topology.on_membership)  # removenode's refills
        self.gossip.left_ttl_ms = node.config.left_row_ttl_s * 1000
        if saved is not None:  # a restarted member: was it removed while it was down?
            self.gossip.previous_generation = int(saved["generation"])
            self.gossip.on_removed = self.topology.removed_while_down
        # Merkle anti-entropy and range streaming (respkv/node/antientropy.py, streaming.py):
        # registers the ae_* and stream/fetch services.
        self.antientropy = AntiEntropy(self)
        self.purger = Purger(self)  # removes keys dead for gc_grace_seconds (respkv/node/purge.py)
        self.keyscan = KeyScan(self)  # KEYS, SCAN, DBSIZE, RANDOMKEY across the cluster
        node.state.cluster = self
        node.state.table = node.state.table.copy()  # this node's own table, plus:
        cluster_cmds.register(node.state.table)
        node.state.info_providers["cluster"] = self.info
        node.state.info_providers["hints"] = self._hints_info
        node.state.info_providers["repair"] = self._repair_info
        node.state.info_providers["staleness"] = lambda: pbs_info(self.pbs, self.pbs_levels())

    # -- membership (gossiped) --
    def _link_connected(self, node_id: str) -> bool:
        link = self.links.get(node_id)
        return link is not None and link.connected

    def _linked(self) -> list[str]:
        return [nid for nid, link in self.links.items() if link.connected]

    def _derive_rings(self, m: Membership) -> bool:
        """Recompute ``ring`` and ``pending_ring`` from ``m``; True if their shape changed."""
        # Heartbeats change rows every round; the rings only depend on these fields.
        shape = tuple(sorted((r.node_id, r.status.value, r.dc, r.rack, r.weight, r.vnodes)
                             for r in m.rows()))
        if shape == self._ring_shape:
            return False
        self._ring_shape = shape
        ring = ring_of(m)
        future = Ring.build(
            NodeInfo(r.node_id, r.dc, r.rack, r.weight, r.tokens()) for r in m.rows()
            if r.status in (NodeStatus.NORMAL, NodeStatus.JOINING))
        if ring != self.ring:
            log.info("event=ring_changed nodes=%d members=%s", len(ring), ",".join(
                sorted(ring.nodes)))
            if len(self.ring):
                self.previous_ring = self.ring
                self.previous_until_ns = self.node.perf_ns() + int(
                    RING_TRANSITION_INTERVALS * self.config.gossip_interval_ms * 1e6)
        self.ring = ring
        self._plan_cache.clear()
        self.pending_ring = None if future == ring else future
        return True

    def _retire_links(self, node_id: str, address: str) -> None:
        """The member ``node_id`` left (or its row was dropped): stop dialing it, once the
        requests already sent to it have had ``request_timeout_ms`` to finish (a leaving node
        still answers for a while after it announces LEFT; cutting its link at once failed
        writes it had applied)."""
        for link in list(self._all_links):
            if link.peer_id == node_id or (address and link.address == address
                                           and link.peer_id in (None, node_id)):
                self._all_links.remove(link)
                if self._nursery is not None:
                    self._nursery.start_soon(self._retire_later, link, node_id)
                else:
                    link.retire()

    async def _retire_later(self, link: PeerLink, node_id: str) -> None:
        await trio.sleep(self.timeout_s)
        link.retire()
        if self.links.get(node_id) is link:
            del self.links[node_id]
        self._links_version += 1
        log.info("event=peer_link_retired node=%s address=%s", node_id, link.address)

    def _on_membership(self, old: Membership, new: Membership) -> None:
        shape_changed = self._derive_rings(new)
        for row in old.rows():
            if row.node_id != self.node_id and row.status is not NodeStatus.LEFT and (
                    row.node_id not in new or new[row.node_id].status is NodeStatus.LEFT):
                self._retire_links(row.node_id, row.address)
        for row in new.rows():
            if row.node_id == self.node_id or not row.address:
                continue
            if row.status is NodeStatus.LEFT:
                continue
            prev = old.get(row.node_id)
            link = self.links.get(row.node_id)
            if (prev is None or prev.address != row.address or link is None) and \
                    self._nursery is not None:
                host, _, port = row.address.rpartition(":")
                if port.isdigit():
                    self._add_link(host, int(port))
        own_old, own_new = old.get(self.node_id), new[self.node_id]
        if own_old is None or own_old.status is not own_new.status or shape_changed:
            self._persist_own()
        for listener in self.ring_listeners:
            listener(old, new)

    def _persist_own(self) -> None:
        if not self.persist_state:
            return
        own = self.gossip.own
        try:
            # alive_ms: when this member was last known up (refreshed every ALIVE_INTERVAL_MS),
            # for the gc_grace_seconds check at its next start.
            # peers: the other members' rows as this node knows them (not LEFT ones), loaded
            # at the next start (_saved_peers).
            peers = [_row_dict(r) for r in self.gossip.membership.rows()
                     if r.node_id != self.node_id and r.status is not NodeStatus.LEFT]
            save_state(self.state_dir, {"node_id": self.node_id, "generation": own.generation,
                                        "status": own.status.value,
                                        "alive_ms": self.node.clock_ms(), "peers": peers})
        except OSError as e:
            log.error("event=cluster_state_write_failed error=%r", str(e))

    async def _persist_alive(self) -> None:
        await self.node.sync_worker(self._persist_own)

    @property
    def membership(self) -> Membership:
        return self.gossip.membership

    def up_nodes(self) -> frozenset[str]:
        """Members that are up (gossip.is_up). Recomputed at most every ``UP_CACHE_NS``, and
        at once when a link's state changed (phi needs math per member; requests are many)."""
        now = self.node.perf_ns()
        if now < self._up_deadline and self._links_version == self._up_links_version:
            return self._up
        is_up = self.gossip.is_up
        up = frozenset(nid for nid in self.gossip.membership if is_up(nid))
        if up != self._up:
            self._up = up
            self._plan_cache.clear()
        self._up_deadline = now + UP_CACHE_NS
        self._up_links_version = self._links_version
        return up

    def effective_n(self, key: bytes | None = None) -> int:
        per_dc = self.settings.replicas_per_dc
        if per_dc is not None:
            return sum(effective_replicas_per_dc(self.ring, per_dc).values()) if len(
                self.ring) else 0
        n = self.settings.n if key is None else self.settings.n_for(key)
        return min(n, len(self.ring))

    # -- lifecycle --
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        self._open_handoff()
        listeners, self.peer_port = await self.network.listen(cfg.bind, self.settings.peer_port)
        # Announced so that nodes we dial can dial back; a wildcard bind has no address to
        # announce (such a node must then be in the others' seeds).
        # ``peer_advertise`` overrides it (NAT, or a proxy in front of the peer port).
        advertise = cfg.peer_advertise or (
            "" if cfg.bind in ("0.0.0.0", "::", "") else f"{cfg.bind}:{self.peer_port}")
        self.identity = PeerIdentity(self.node_id, self.dc, self.settings.secret, advertise,
                                     self._nonce)
        self.server = PeerServer(self.identity, self.handle_request, lambda: self.node.engine.last_seq,
                                 self._durable, self._on_inbound_peer,
                                 lambda: self.handoff is not None and self.handoff.unsynced > 0)
        # Peer requests made during a scheduler pass go out when it ends (see SendBatcher).
        self._batcher = SendBatcher()
        trio.lowlevel.add_instrument(self._batcher)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.server.run, listeners)
                for d in (self.deadlines, self.speculation, self.after_speculation):
                    await nursery.start(d.run)
                for host, port in self.settings.seeds:
                    self._add_link(host, port)
                for row in self.gossip.membership.rows():  # the saved peers of a restart
                    peer_host, _, peer_port = row.address.rpartition(":")
                    if row.node_id != self.node_id and peer_port.isdigit():
                        self._add_link(peer_host, int(peer_port))
                log.info("event=cluster_ready node=%s dc=%s peer_port=%d seeds=%d", self.node_id,
                         self.dc, self.peer_port, len(self.settings.seeds))
                # Announce the peer address in our row, then settle this node's status.
                self.gossip._adopt(self.gossip.membership.with_row(replace(
                    self.gossip.own, address=advertise, version=self.gossip.own.version + 1)))
                await nursery.start(self.gossip.run)
                if self.handoff is not None:
                    await nursery.start(self.handoff.run)
                await nursery.start(self.antientropy.run)
                await nursery.start(self.purger.run)
                await nursery.start(self.topology.run_refills)
                await self._persist_alive()
                nursery.start_soon(every, ALIVE_INTERVAL_MS, self.node.rng, self._persist_alive)
                task_status.started(self.peer_port)
                if self.gossip.own.status is NodeStatus.JOINING:
                    await self._settle_new_member()
        finally:
            try:
                trio.lowlevel.remove_instrument(self._batcher)
            except KeyError:
                pass  # trio drops an instrument that raised (flush_held never should)

    async def _settle_new_member(self, seeded: bool = False) -> None:
        """A new node: alone (no seeds, or no NORMAL member heard of) it founds the ring;
        otherwise it bootstraps -- it announces JOINING, waits for the announcement to spread
        (writes then reach it as a pending replica), pulls its future ranges from their current
        replicas, and turns NORMAL (Cassandra's bootstrap, Dynamo §4.9)."""
        g = self.gossip
        interval = self.config.gossip_interval_ms / 1000
        if self.settings.seeds or seeded:
            with trio.move_on_after(max(10 * interval, 2.0)):
                await g.first_exchange.wait()
            await trio.sleep(2 * interval)  # one more round: hear of the other members
        others = [r for r in g.membership.rows()
                  if r.node_id != self.node_id and r.status is NodeStatus.NORMAL]
        if others and self.bootstrap is not None:
            log.info("event=bootstrap_start node=%s members=%d", self.node_id, len(others))
            await trio.sleep(3 * interval)  # RING_DELAY: every coordinator sees us JOINING
            self.bootstrap_figures = dict(await self.bootstrap())
            log.info("event=bootstrap_done node=%s", self.node_id)
        g.set_status(NodeStatus.NORMAL)
        log.info("event=member_normal node=%s ring_nodes=%d", self.node_id, len(self.ring))

    async def _durable(self, seq_before: int) -> None:
        await self.node._durable(seq_before)
        if self.handoff is not None:
            await self.handoff.sync_pending()

    # -- hints (respkv/node/handoff.py) --
    def _open_handoff(self) -> None:
        if not self.config.hinted_handoff:
            return
        from respkv.node.handoff import HintedHandoff, hints_dir
        from respkv.storage.hints import HintStore

        fs = getattr(self.node, "fs", None)  # None: the real file system
        path = hints_dir(self.config.dir)
        self.handoff = HintedHandoff(self, HintStore.open(path, fs))

    def _add_hint(self, target: str, db: int, key: bytes, data: bytes) -> None:
        assert self.handoff is not None
        self.handoff.add(target, db, key, data)

    async def _sync_hints(self) -> None:
        assert self.handoff is not None
        await self.handoff.sync_pending()

    def _add_link(self, host: str, port: int) -> None:
        assert self._nursery is not None and self.identity is not None
        for link in self._all_links:
            if link.host == host and link.port == port:
                return
        link = PeerLink(host, port, self.identity, self._on_identified, self.network,
                        self._on_link_down)
        link.batcher = self._batcher
        self._all_links.append(link)
        self._nursery.start_soon(link.run)

    def _on_link_down(self, _link: PeerLink) -> None:
        self._links_version += 1

    def _on_identified(self, link: PeerLink) -> None:
        assert link.peer_id is not None
        self._links_version += 1
        current = self.links.get(link.peer_id)
        if current is None or not current.connected:
            self.links[link.peer_id] = link

    def _on_inbound_peer(self, node_id: str, dc: str, addr: str) -> None:
        if node_id not in self.links and addr and self._nursery is not None:
            host, _, port = addr.rpartition(":")
            if port.isdigit():
                self._add_link(host, int(port))

    # -- service calls to peers (wire.md, "Service calls") --
    async def call(self, node_id: str, service: bytes, args: tuple[bytes, ...] = (),
                   timeout_s: float | None = None) -> bytes:
        """Call ``service`` on peer ``node_id`` and return its OK payload. Raises
        :class:`PeerCallError` when the peer is not connected, the connection breaks, the
        deadline passes (default ``request_timeout_ms``) or the service answers ERR."""
        link = self.links.get(node_id)
        if link is None or not link.connected:
            raise PeerCallError(f"{node_id}: not connected")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        done = trio.Event()
        box: list[wire.Reply | None] = []

        def callback(reply: wire.Reply | None) -> None:
            box.append(reply)
            done.set()

        req_id = link.send(_service_call(self.node_id, int(timeout * 1000), service, args),
                           callback)
        if not req_id:
            raise PeerCallError(f"{node_id}: not connected or overloaded")
        with trio.move_on_after(timeout):
            await done.wait()
        if not box:
            link.forget(req_id)
            raise PeerCallError(f"{node_id}: no reply within {timeout:.3f}s")
        reply = box[0]
        if reply is None:
            raise PeerCallError(f"{node_id}: connection lost")
        if not reply.ok:
            raise PeerCallError(f"{node_id}: {reply.payload.decode('utf-8', 'replace')}")
        return reply.payload

    # -- replica side (requests from peers) --
    def handle_request(self, req: wire.Request) -> tuple[bool, bytes]:
        rep = self.replica
        try:
            if type(req) is wire.ReplicaRead:
                if self.topology.refilling and self.topology.is_refilling(req.key):
                    return False, b"range not ready: refilling it after a removenode"
                return True, rep.read_raw(req.db, req.key)
            if type(req) is wire.ReplicaWrite:
                rep.apply_raw(req.db, req.key, req.sibling_set)
                return True, b""
            if type(req) is wire.CoordinateWrite:
                ctx = V.decode_context(req.context) if req.context else None
                _, data = rep.coordinate(req.db, req.key, req.value, req.expire_at_ms, ctx,
                                         timestamp_ms=req.timestamp_ms or None)
                return True, data
            if type(req) is wire.ServiceCall:
                service = self.services.get(req.service)
                if service is None:
                    return False, b"unknown service " + req.service[:32]
                return service(req)
            if type(req) is wire.Ping:
                return True, b""
        except ValueError as e:  # corrupt set or context from the peer
            log.warning("event=peer_request_failed sender=%s error=%r", req.sender, str(e))
            return False, str(e).encode()
        except Exception:  # a bug must cost one request, not the peer connection or the node
            log.exception("event=peer_request_failed sender=%s", req.sender)
            return False, b"internal error (logged)"
        return False, b"unknown request kind"

    # -- coordination --
    async def execute(self, spec: CommandSpec | None, client: Client, args: list[bytes]) -> Any:
        if spec is None or not client.authenticated:
            return execute(spec, client, args)
        name = spec.name
        if name == "get" and len(args) == 2:  # plain GET key: the commonest read
            return await self._plain_get(client, args[1])
        if name == "set" and len(args) == 3:
            # Plain SET key value, the commonest write: no options, no trailing levels (a pair
            # would leave too few arguments), a blind write answering OK -- what the general
            # path below computes, without the view and the handler.
            return await self._write_or_error(client.dbnum, {args[1]: (args[2], 0)},
                                              client.write_level or self.settings.write_level,
                                              name, OK)
        if name in KEYSPACE_WALKS:
            args, read_level, _ = strip_levels(spec, args)
            if not spec.arity_ok(len(args)):
                return execute(spec, client, args)
            try:
                return await self.keyscan.execute(
                    spec, client, args, read_level or client.read_level or self.settings.read_level)
            except Exception as e:
                return command_failure(name, e)
        if spec.first_key == 0:
            reason = WHOLE_KEYSPACE.get(name)
            if reason is not None:
                return CommandError(E.CLUSTER_UNSUPPORTED % (name.upper(), reason))
            return execute(spec, client, args)
        reason = MULTI_KEY_ATOMIC.get(name)
        if reason is not None:
            return CommandError(E.CLUSTER_UNSUPPORTED % (name.upper(), reason))
        args, read_level, write_level = strip_levels(spec, args)
        context = None
        if name == "set":
            try:
                args, context = strip_context(args)
            except V.InvalidContextError:
                return CommandError(E.INVALID_CONTEXT)
        if not spec.arity_ok(len(args)):
            return execute(spec, client, args)
        keys = list(dict.fromkeys(args[i] for i in spec.key_positions(len(args))))
        read_level = read_level or client.read_level or self.settings.read_level
        write_level = write_level or client.write_level or self.settings.write_level
        db = client.dbnum
        sets: dict[bytes, SiblingSet] = {}
        blind = spec.is_write and is_blind_write(spec, args)
        try:
            if not blind:
                err = await self._quorum_read(db, keys, read_level, sets)
                if err is not None:
                    return err
            view = ClusterView(db, self.node.clock_ms, sets, client.server.dbs[db].stats)
            saved = client.db
            client.db = view  # type: ignore[assignment]
            try:
                reply = execute(spec, client, args)
            finally:
                client.db = saved
            if isinstance(reply, ErrorReply) or not view.mutations:
                return reply
            err = await self._quorum_write(db, view.mutations, write_level, context,
                                           None if blind else sets)
        except Exception as e:
            return command_failure(name, e)
        return reply if err is None else err

    async def _plain_get(self, client: Client, key: bytes) -> Any:
        """GET key as the general path runs it (a quorum read at the connection's or the
        server's level, then the GET handler's lookup against the view), without the option
        stripping and the handler call."""
        db = client.dbnum
        sets: dict[bytes, SiblingSet] = {}
        try:
            err = await self._quorum_read(db, [key], client.read_level or self.settings.read_level,
                                          sets)
        except Exception as e:
            return command_failure("get", e)
        if err is not None:
            return err
        rec = ClusterView(db, self.node.clock_ms, sets, client.server.dbs[db].stats).lookup_read(key)
        return None if rec is None else rec.value

    async def _write_or_error(self, db: int, mutations: dict[bytes, tuple[bytes | None, int]],
                              level: Level, name: str, reply: Any) -> Any:
        """``_quorum_write`` of blind ``mutations``; ``reply`` on success, else the error (the
        failures are those of ``execute``'s general path: ``command_failure``)."""
        try:
            err = await self._quorum_write(db, mutations, level, None, None)
        except Exception as e:
            return command_failure(name, e)
        return reply if err is None else err

    def _plans(self, keys: Any, level: Level, write: bool) -> list[ReplicaPlan] | ErrorReply:
        """One plan per key. Plans depend only on the key's ring range, N, the level, the kind
        and who is up, so they are cached per ring range (cleared when the ring or the up-set
        changes)."""
        ring = self.ring
        if not len(ring):
            return CommandError(E.NOREPLICAS_UP % (1, 0))
        up = self.up_nodes()
        cache = self._plan_cache
        plans = []
        make = plan_write if write else plan_read
        per_dc = self.settings.replicas_per_dc
        sloppy = self.handoff is not None
        n_for = self.settings.n_for
        index_of = ring.index_of
        for key in keys:
            n = n_for(key)
            token = token_of(key)
            ck = (index_of(token), n, level, write)
            p = cache.get(ck)
            if p is None:
                pref = preference_list(ring, token, n, up, per_dc)
                p = make(pref, level, self.node_id, self.dc, sloppy=write and sloppy)
                if len(cache) >= PLAN_CACHE_MAX:
                    cache.clear()
                cache[ck] = p
            if p.unavailable is not None:
                return CommandError(E.NOREPLICAS_UP % (p.unavailable.needed, p.unavailable.have))
            plans.append(p)
        return plans

    async def _wait(self, op: _Op, kind: str, level: Level,
                    speculate: int | None = None) -> _KeyOp | None:
        """Wait for ``op`` to resolve or the deadline; the first failed key, or None.
        ``speculate`` (reads, the db): once ``speculative_s`` has passed, also ask every read
        contact not asked yet (a slow or silent replica must not cost the read)."""
        t0 = self.node.perf_ns()
        deadlines = self.deadlines
        if op.open and speculate is not None and any(k.spares for k in op.keys):
            if self.speculation.running:
                await _wait_op(op, self.speculation)
            else:
                with trio.move_on_after(self.speculative_s):
                    await op.event.wait()
            if op.open:
                op.event = trio.Event()  # the speculation deadline may have set it
                for k in op.keys:
                    while k.spares and not k.resolved:
                        self._read_from(op, k, k.spares.pop(), speculate)
                deadlines = self.after_speculation
        if op.open:
            if deadlines.running:
                await _wait_op(op, deadlines)
            else:
                remaining = self.timeout_s - (self.node.perf_ns() - t0) / 1e9
                with trio.move_on_after(max(0.0, remaining)):
                    await op.event.wait()
        if op.open:  # the deadline passed: stop listening for this operation's replies
            for link, req_id in op.sent:
                link.forget(req_id)
            for k in op.keys:
                if not k.resolved:
                    k.tracker.timeout()
                    op.check(k)
        # A key that failed before the deadline was recorded by op.check, in key order only
        # among those; report the first in key order, as a client reading errors would expect.
        failed = None
        if op.failed is not None:
            failed = next(k for k in op.keys if k.tracker.outcome() is Outcome.FAILED)
        key = self._stat_keys.get((kind, level))
        if key is None:
            key = self._stat_keys[(kind, level)] = (kind, format_level(level))
        st = self.level_stats.get(key)
        if st is None:
            st = self.level_stats[key] = [0, 0, 0]
        us = (self.node.perf_ns() - t0) // 1000
        st[0] += 1
        st[1] += failed is not None
        st[2] += us
        observe_us(self.level_hists, key, us)
        return failed

    async def _quorum_read(self, db: int, keys: list[bytes], level: Level,
                           out: dict[bytes, SiblingSet]) -> ErrorReply | None:
        plans = self._plans(keys, level, write=False)
        if isinstance(plans, ErrorReply):
            return plans
        op = _Op()
        chance = self.config.read_repair_chance
        for key, p in zip(keys, plans, strict=True):
            k = _KeyOp(key, QuorumTracker(p))
            op.add(k)
            remote = [node for node in p.contacts if node != self.node_id]
            local = p.local_replica is not None
            if local:
                if self.topology.refilling and self.topology.is_refilling(key):
                    k.tracker.error(self.node_id, "refilling")  # ask another replica instead
                    local = False
                else:
                    k.tracker.ok(self.node_id, self.replica.read(db, key))
            if p.required_per_dc or (chance and self.node.rng.random() < chance):
                # per-datacenter levels, or a probabilistic read repair (read_repair_chance):
                # ask every replica; those that lag are repaired once all have answered
                ask = len(remote)
                if not p.required_per_dc:
                    self.rr_stats["read_repair_chance_reads"] += 1
            else:
                ask = max(0, p.required - (1 if local else 0))
            k.spares = remote[ask:][::-1]  # popped from the end: preference order
            for node in remote[:ask]:
                self._read_from(op, k, node, db)
            op.check(k)
        failed = await self._wait(op, "read", level, speculate=db)
        if failed is not None:
            f = failed.tracker.failure()
            assert f is not None
            return CommandError(E.NOREPLICAS_READ % (f.needed, f.got))
        mode = self.config.read_repair
        blocking: list[tuple[str, bytes, bytes]] = []  # (node, key, merged set)
        level_name = format_level(level).lower()
        for k in op.keys:
            out[k.key] = k.tracker.merged()
            self.pbs.read_answered(level_name)
            if k.outstanding:
                k.returned, k.level = out[k.key], level_name
            if mode == "blocking" and k.outstanding:
                # Repair those that answered stale before replying (monotonic quorum reads);
                # the replicas still out are repaired in the background when they answer.
                rr = k.tracker.read_repair()
                if rr is not None:
                    data = V.encode_sibling_set(rr.merged)
                    for node in rr.stale:
                        blocking.append((node, k.key, data))
            elif mode == "blocking":
                rr = k.tracker.read_repair()
                k.repaired = True
                if rr is not None:
                    data = V.encode_sibling_set(rr.merged)
                    for node in rr.stale:
                        blocking.append((node, k.key, data))
            elif mode == "background":
                self._maybe_repair(k, db)
        if blocking:
            await self._repair_blocking(db, blocking)
        return None

    async def _repair_blocking(self, db: int, repairs: list[tuple[str, bytes, bytes]]) -> None:
        """Write each merged set to its stale replica and wait for the acks (or the deadline;
        a failed repair does not fail the read, which already has its quorum)."""
        done = trio.Event()
        waiting = [0]
        timeout_ms = int(self.timeout_s * 1000)

        def callback(_reply: wire.Reply | None) -> None:
            waiting[0] -= 1
            if waiting[0] == 0:
                done.set()

        for node, key, data in repairs:
            self.rr_stats["read_repairs"] += 1
            if node == self.node_id:
                self.replica.apply_raw(db, key, data)
                continue
            link = self.links.get(node)
            if link is not None and link.send(
                    _replica_write(self.node_id, timeout_ms, db, key, data), callback):
                waiting[0] += 1
        if waiting[0]:
            with trio.move_on_after(self.timeout_s):
                await done.wait()

    def _read_from(self, op: _Op, k: _KeyOp, node: str, db: int) -> None:
        key = k.key
        while not self._send(op, k, node, lambda rid: wire.encode_read(
                rid, self._sender, self._timeout_ms, db, key),
                read=True, db=db):
            if not k.spares:  # could not send: ask the next replica instead, if any
                return
            node = k.spares.pop()

    def _ask_spare(self, op: _Op, k: _KeyOp, db: int) -> None:
        """A read contact failed: ask the next one not asked yet (keeps R reachable)."""
        if k.spares and not k.resolved:
            self._read_from(op, k, k.spares.pop(), db)

    def _send(self, op: _Op, k: _KeyOp, node: str, build: Callable[[int], bytes], *,
              read: bool, db: int, on_ok: Callable[[bytes], None] | None = None) -> bool:
        """Send one request for ``k`` to ``node``; its reply (or failure) goes to the tracker.
        False (and ``node`` counted as failed) when ``node``'s link is not connected."""
        link = self.links.get(node)
        tracker = k.tracker
        perf = self.node.perf_ns
        sent_ns = perf()

        def callback(reply: wire.Reply | None) -> None:
            k.outstanding -= 1
            if reply is not None and reply.ok:
                self._rtt_count += 1
                if not self._rtt_count & RTT_SAMPLE_MASK:
                    rtt_ms = (perf() - sent_ns) / 1e6
                    if read:
                        self.pbs.record_read_round_trip(rtt_ms)
                    else:
                        self.pbs.record_write_round_trip(rtt_ms)
            if reply is None or not reply.ok:
                why = "connection lost" if reply is None else reply.payload.decode("utf-8",
                                                                                    "replace")
                tracker.error(node, why)
                if read:
                    self._ask_spare(op, k, db)
            elif read:
                try:
                    s = V.decode_sibling_set(reply.payload) if reply.payload else EMPTY
                except V.InvalidSiblingSetError as e:
                    tracker.error(node, str(e))
                    self._ask_spare(op, k, db)
                else:
                    tracker.ok(node, s)
                    if k.outstanding == 0 and k.resolved:
                        if k.returned is not None:  # every asked replica is in: was it stale?
                            self.pbs.late_replies(k.level, k.returned, tracker.merged())
                            k.returned = None
                        self._maybe_repair(k, db)
            elif on_ok is not None:
                on_ok(reply.payload)
            else:
                tracker.ok(node)
            op.check(k)

        req_id = link.send(build, callback) if link is not None else 0
        if req_id:
            op.sent.append((link, req_id))  # type: ignore[arg-type]
            k.outstanding += 1
            return True
        tracker.error(node, "not connected")
        return False

    def _maybe_repair(self, k: _KeyOp, db: int) -> None:
        """Read repair (Dynamo §4.7 light): once every replica asked has answered, send the merged
        set to those whose answer lacked part of it."""
        if k.repaired or k.outstanding or k.tracker.outcome() is not Outcome.SUCCEEDED:
            return
        k.repaired = True
        if self.config.read_repair == "none":
            return
        rr = k.tracker.read_repair()
        if rr is None:
            return
        data = V.encode_sibling_set(rr.merged)
        for node in rr.stale:
            self.rr_stats["read_repairs"] += 1
            if node == self.node_id:
                self.replica.apply(db, k.key, rr.merged)
                continue
            link = self.links.get(node)
            if link is not None:
                link.send(_replica_write(self.node_id, int(self.timeout_s * 1000), db, k.key,
                                         data), lambda _reply: None)

    async def _quorum_write(
        self, db: int, mutations: dict[bytes, tuple[bytes | None, int]], level: Level,
        client_context: VersionVector | None, read_sets: dict[bytes, SiblingSet] | None,
    ) -> ErrorReply | None:
        keys = list(mutations)
        plans = self._plans(keys, level, write=True)
        if isinstance(plans, ErrorReply):
            return plans
        pending = self.pending_ring
        previous = self.previous_ring
        if previous is not None and self.node.perf_ns() >= self.previous_until_ns:
            previous = self.previous_ring = None
        if pending is not None or previous is not None:
            # a range is moving, or just moved: those replicas count too (with_pending)
            up = self.up_nodes()
            moving = []
            for key, p in zip(keys, plans, strict=True):
                extra = self._moving_targets(pending, previous, key, p, up)
                if extra:
                    p = with_pending(p, list(extra), extra, up)
                    if p.unavailable is not None:
                        return CommandError(E.NOREPLICAS_UP % (p.unavailable.needed,
                                                               p.unavailable.have))
                moving.append(p)
            plans = moving
        op = _Op()
        timeout_ms = int(self.timeout_s * 1000)
        for key, p in zip(keys, plans, strict=True):
            value, expire = mutations[key]
            seen = read_sets.get(key) if read_sets is not None else None
            context = client_context
            if context is None and seen is not None:
                context = V.join(seen)
            k = _KeyOp(key, QuorumTracker(p))
            op.add(k)
            hints = p.hints
            if p.local_replica is not None and self.node_id not in hints:
                _, data = self.replica.coordinate(db, key, value, expire, context, seen)
                k.tracker.ok(self.node_id)
                self._replicate(op, k, p.contacts[1:], db, key, data, timeout_ms, hints)
            else:
                first = next((c for c in p.contacts if c not in hints and c != self.node_id),
                             None)
                if first is not None:
                    self._forward(op, k, p, first, db, key, value, expire, context, timeout_ms)
                else:
                    # Every natural replica is down: the dot is made here and every copy is a
                    # hint (Dynamo §4.6); the replicas get it by hinted handoff. The dot comes
                    # from this node's own stored copy of the key (kept although it is not a
                    # replica), so two such writes never reuse a dot -- a reused dot makes
                    # replicas keep one write and drop the other (found by the simulation,
                    # seed 98).
                    _, data = self.replica.coordinate(db, key, value, expire, context, seen)
                    self._replicate(op, k, p.contacts, db, key, data, timeout_ms, hints)
            op.check(k)
        failed = await self._wait(op, "write", level)
        if op.local_hints:  # hints this node took count toward W once durable: before the reply
            try:
                await self._sync_hints()
            except OSError as e:
                log.error("event=hint_sync_failed error=%r", str(e))
                return CommandError(E.HINT_FAILED % (e.strerror or e))
        if failed is not None:
            f = failed.tracker.failure()
            assert f is not None
            return CommandError(E.NOREPLICAS_WRITE % (f.needed, f.got))
        return None

    def _moving_targets(self, pending: Ring | None, previous: Ring | None, key: bytes,
                        p: ReplicaPlan, up: Container[str]) -> dict[str, str]:
        """Replicas of ``key`` (node -> datacenter) that are not natural replicas in this
        node's ring but count for its writes (``quorum.with_pending``):

        * in ``pending`` (the ring once JOINING/LEAVING members settle): the replicas it will
          have, so nothing acknowledged during a range move is missing from the new owners
          (Cassandra's pending ranges);
        * in ``previous`` (the ring before this node's last ring change, for
          RING_TRANSITION_INTERVALS gossip intervals after it): the replicas it had. Until the
          change has reached every coordinator, some still read the old replicas; a write
          acknowledged by W old ones as well is seen by their reads (found by the simulation,
          seeds 1164 and 3226: a joiner turned NORMAL, a leaver turned LEFT, and a write made
          through one view was missed by an R=1 or R=2 read made through the other). Only
          those up: a down one serves no read either (a decommissioned node has stopped), and
          reads through the old view then meet W - 1 of the write's acks among the replicas
          both rings share, enough with R + W > N; counting it failed every write for a while
          after a decommission."""
        n = self.settings.n_for(key)
        per_dc = self.settings.replicas_per_dc
        now = natural_replicas(self.ring, key, n, per_dc)
        out: dict[str, str] = {}
        for ring in (pending, previous):
            if ring is None:
                continue
            # Not "not a contact": a natural replica that is down is not pending, and counting
            # it would ask one more ack than the move needs (sim seed 1164).
            for node in natural_replicas(ring, key, n, per_dc):
                if node not in now and node not in p.contacts and node not in out and (
                        ring is pending or node in up):
                    out[node] = ring.dc_of(node)
        return out

    def _replicate(self, op: _Op, k: _KeyOp, nodes: Any, db: int, key: bytes, data: bytes,
                   timeout_ms: int, hints: Any = None) -> None:
        """Send the coordinated set ``data`` to ``nodes``: ``RW`` to replicas (this node's own
        copy, when it is a pending replica another node coordinated for, is merged here), a
        ``hint`` call to fallbacks (``hints``: fallback -> the down replica it stands in for)."""
        for node in nodes:
            target = hints.get(node) if hints else None
            if target is None and node == self.node_id:
                self.replica.apply_raw(db, key, data)
                k.tracker.ok(node)
            elif target is None:
                self._send(op, k, node, lambda rid: wire.encode_write(
                    rid, self._sender, timeout_ms, db, key, data),
                    read=False, db=db)
            elif node == self.node_id:
                self._add_hint(target, db, key, data)
                op.local_hints = True
                k.tracker.ok(node)
            else:
                args = (target.encode(), b"%d" % db, key, data)
                self._send(op, k, node, _service_call(self.node_id, timeout_ms, b"hint", args),
                           read=False, db=db)

    def _forward(self, op: _Op, k: _KeyOp, p: ReplicaPlan, first: str, db: int, key: bytes,
                 value: bytes | None, expire: int, context: VersionVector | None,
                 timeout_ms: int) -> None:
        """Not a replica of ``key`` (or standing in for one): ``first``, a natural replica,
        coordinates (CW) and returns the new set, which then goes to the other contacts. If it
        fails, the write is not made at all."""
        rest = [c for c in p.contacts if c != first]
        ctx = V.encode_context(context).encode() if context is not None else b""
        ts = self.node.clock_ms()

        def coordinated(payload: bytes) -> None:
            k.tracker.ok(first)
            self._replicate(op, k, rest, db, key, payload, timeout_ms, p.hints)

        def build(rid: int) -> bytes:
            return wire.encode_coordinate(rid, self._sender, timeout_ms, db, key, ctx, value,
                                          expire, ts)

        if not self._send(op, k, first, build, read=False, db=db, on_ok=coordinated):
            for node in rest:  # nobody will make the write: the others cannot ack it
                k.tracker.error(node, "coordinator unreachable")

    def pbs_levels(self) -> list[PbsLevel]:
        """The (R, W) pairs INFO staleness and the metrics estimate, at the effective N."""
        n = max(1, self.effective_n())

        def count(level: Level) -> int:
            return level if isinstance(level, int) else {
                "one": 1, "two": 2, "three": 3, "all": n, "local_one": 1}.get(
                format_level(level).lower(), n // 2 + 1)

        return standard_levels(n, count(self.settings.read_level),
                               count(self.settings.write_level))

    def _hints_info(self) -> dict[str, Any]:
        h = self.topology.hints()
        out: dict[str, Any] = {"hinted_handoff": 1 if h["enabled"] else 0,
                               "hints_pending": h["total_pending"]}
        for target, count in sorted(h["pending"].items()):
            out[f"hints_for_{target}"] = count
        out.update({k: v for k, v in h.items() if k.startswith("hints_")
                    and isinstance(v, int)})
        return out

    def _repair_info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for op in (self.topology.repair_op, self.topology.decommission_op,
                   self.topology.removenode_op):
            v = op.view()
            out[f"{op.name}_state"] = v["state"]
            out[f"{op.name}_progress"] = f"{v['done']}/{v['total']}"
            for k, val in v["result"].items():
                if isinstance(val, (int, float, str)):
                    out[f"{op.name}_last_{k}"] = val
        ae = getattr(self, "antientropy", None)
        if ae is not None and hasattr(ae, "statistics"):
            out.update(ae.statistics())
        out.update(self.rr_stats)
        for k, val in self.bootstrap_figures.items():
            out[f"bootstrap_{k}"] = val
        out.update(self.topology.refill_figures)
        out["refilling_ranges"] = len(self.topology.refilling)
        out.update(self.stream_service.stats)
        return out

    async def stream_ranges(self, plan: Any, progress: Any = None) -> dict[str, Any]:
        return await streaming.stream_ranges(self, plan, progress)

    async def fetch_ranges(self, plan: Any, progress: Any = None) -> dict[str, Any]:
        return await streaming.fetch_ranges(self, plan, progress)

    # -- admin (respkv/node/topology.py; the RESPKV command, docs/admin.md) --
    def admin_status(self) -> dict[str, Any]:
        return self.topology.status()

    def admin_ring(self) -> list[dict[str, Any]]:
        return self.topology.ring()

    def admin_hints(self) -> dict[str, Any]:
        return self.topology.hints()

    def admin_repair(self, action: str = "start") -> dict[str, Any]:
        return self.topology.repair(action.lower())

    def admin_purge(self, action: str = "start") -> dict[str, Any]:
        return self.topology.purge(action.lower())

    def admin_decommission(self, action: str = "start") -> dict[str, Any]:
        return self.topology.decommission(action.lower())

    def admin_join(self, seed: str) -> dict[str, Any]:
        return self.topology.join(seed)

    def admin_removenode(self, action: str = "status", node_id: str = "") -> dict[str, Any]:
        return self.topology.removenode(action.lower(), node_id)

    # -- levels, INFO, statistics --
    def statistics(self) -> dict[str, Any]:
        """Counters of this cluster member: the INFO cluster fields (a fresh dict)."""
        return self.info()

    def check_level(self, level: Level) -> Level:
        n = self.effective_n()
        if isinstance(level, int) and level > n:
            raise InvalidLevelError(f"consistency level {level} exceeds the replication factor {n}")
        return level

    def describe_levels(self, client: Client) -> dict[str, Any]:
        def show(level: Level | None, default: Level) -> str:
            return format_level(level) if level is not None else f"{format_level(default)} (default)"
        return {"read": show(client.read_level, self.settings.read_level),
                "write": show(client.write_level, self.settings.write_level),
                "n": self.effective_n()}

    def info(self) -> dict[str, Any]:
        s = self.settings
        n_eff = self.effective_n()
        up = self.up_nodes()
        out: dict[str, Any] = {
            "cluster_enabled": 0,  # Redis Cluster's protocol is not spoken; respkv's is below
            "respkv_cluster": 1,
            "node_id": self.node_id,
            "dc": self.dc,
            "peer_port": self.peer_port or 0,
            "ring_nodes": len(self.ring),
            "up_nodes": len(up),
            "n_replicas": s.n,
            "n_effective": n_eff,
            "n_capped": (f"yes: {s.n} capped at {n_eff} as the cluster has {len(self.ring)} "
                         f"node{'s' if len(self.ring) != 1 else ''}") if n_eff < s.n else "no",
            "read_consistency": format_level(s.read_level),
            "write_consistency": format_level(s.write_level),
            "request_timeout_ms": s.timeout_ms,
        }
        out.update(self.gossip.statistics())
        for row in sorted(self.membership.rows(), key=lambda r: r.node_id):
            if row.node_id == self.node_id:
                continue
            out[f"member_{row.node_id}"] = (
                f"status={row.status.value},state={'up' if self.gossip.is_up(row.node_id) else 'down'},"
                f"phi={self.gossip.phi(row.node_id):.2f},dc={row.dc},address={row.address}")
        for link in self._all_links:
            st = link.statistics()
            name = st["node"] or st["address"]
            out[f"peer_{name}"] = (
                f"address={st['address']},state={'up' if st['connected'] else 'down'},"
                f"outstanding={st['outstanding']},sent={st['requests_sent']},sends={st['sends']},"
                f"refused={st['requests_refused']},connects={st['connects']}")
        for (kind, level), (calls, fails, usec) in sorted(self.level_stats.items()):
            out[f"{kind}_{level.lower()}"] = (
                f"calls={calls},failed={fails},usec={usec},"
                f"usec_per_call={usec / calls if calls else 0:.2f}")
        if self.server is not None:
            out.update(self.server.stats)
        out.update(self.replica.stats)
        out.update(self.purger.stats)
        out["dot_floor"] = self.replica.dot_floor
        out["gc_grace_seconds"] = self.config.gc_grace_seconds
        out.update(self.rr_stats)
        out["read_repair"] = self.config.read_repair
        out["read_repair_chance"] = self.config.read_repair_chance
        if self.handoff is not None:
            out.update(self.handoff.stats)
            out["hints_pending"] = sum(self.handoff.summary()["pending"].values())
        else:
            out["hinted_handoff"] = "off"
        return out


def natural_nodes(cluster: Cluster, key: bytes) -> tuple[str, ...]:
    """The natural replicas of ``key`` (for tests and tools)."""
    return natural_replicas(cluster.ring, key, cluster.settings.n_for(key),
                            cluster.settings.replicas_per_dc)


__all__ = ["Cluster", "ClusterSettings", "ClusterView", "ConsistencyLevel", "cluster_settings",
           "is_cluster_config", "strip_context", "strip_levels"]
