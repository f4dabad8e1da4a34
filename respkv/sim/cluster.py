"""Several unchanged respkv nodes in one trio run, on the simulated network and file systems.

:func:`run_plan` runs one :class:`~respkv.sim.workload.Plan` inside ``trio.run`` with a
``MockClock`` (autojump): it starts the nodes, waits for the ring, runs the clients and the fault
schedule, heals, lets the cluster repair, reads every replica, and returns a :class:`SimResult`
(the history, the trace, the verdict). Each node is a real ``respkv.node.server.Node`` given:

* ``network``: its host's view of the :class:`~respkv.sim.network.SimNetwork`;
* ``clock_ms``/``perf_ns``: trio's (mock) clock; ``rng``/``nonce``: seeded per node and
  incarnation;
* an ``LSMEngine`` on the node's own ``FaultFileSystem`` (``appendfsync always``: an
  acknowledged write is on "disk"), and ``sync_worker`` running fsync/flush/compaction inline;
* ``listen=False``: clients are in-process and speak RESP to ``Node.serve_client`` over memory
  streams (the real per-connection loop, durability step included).

A crash cancels the node's tasks at once (nothing reaches its disk after the crash instant and
the engine is not closed), then the file system either keeps the bytes written (``process``: the
OS still had them) or loses everything not fsynced, with torn tails and directory operations
that independently survive or not (``power``). A restart opens a new engine on the same file
system and a new Node with the same data directory (its ``cluster_state`` is kept).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hiredis
import trio
import trio.testing

from respkv.cluster import versions as V
from respkv.cluster.membership import NodeStatus
from respkv.config import Config
from respkv.node.coordinator import natural_nodes
from respkv.node.server import Node
from respkv.sim.network import SimNetwork
from respkv.sim.workload import Fault, Plan, PlannedOp
from respkv.storage.faultfs import FaultFileSystem, SimulatedCrash
from respkv.storage.lsm import LSMEngine
from respkv.testing.history import History, Op, Violation, check

EPOCH_MS = 1_700_000_000_000  # the mock clock's zero as wall time
PEER_PORT = 17000
SECRET = b"respkv simulation cluster secret\n"
FORM_DEADLINE_S = 60.0
HEAL_DEADLINE_S = 60.0
CLIENT_SLACK_S = 1.0  # a client gives up this long after the node's request timeout
ANTI_ENTROPY_INTERVAL_MS = 1000
# After the heal: how long hinted handoff (and anti-entropy, on nodes that run it) get to make
# the replicas converge on their own before the R=ALL reads repair what is left.
PASSIVE_S = 3.0
PASSIVE_ANTI_ENTROPY_S = 8.0
# The purge phase (after the check): nodes purge keys dead for this long, then every key is
# written again -- the write must survive on every replica (no reused dot: Riak's kv679).
PURGE_GRACE_S = 5


class NodeCrashed(OSError):
    """Raised by a crashed node's sync worker: its engine must not be synced or closed."""


@dataclass
class SimResult:
    plan: Plan
    history: History
    trace: list[str]
    violations: list[Violation]
    harness_errors: list[str] = field(default_factory=list)
    node_errors: list[str] = field(default_factory=list)
    net_stats: dict[str, int] = field(default_factory=dict)
    virtual_s: float = 0.0
    digest: str = ""
    inline_thread_calls: int = 0
    passive: bool = False  # converged by hinted handoff / anti-entropy alone (no R=ALL reads)
    purged: int = 0  # keys the purge phase removed (on the nodes that swept)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.harness_errors

    def fault_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.plan.faults:
            out[f.kind] = out.get(f.kind, 0) + 1
        for k in ("resets", "duplicates", "held"):
            if self.net_stats.get(k):
                out["net_" + k] = self.net_stats[k]
        return out


class SimNode:
    def __init__(self, sim: Sim, name: str) -> None:
        self.sim = sim
        self.name = name
        self.dir = os.path.join(sim.root, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fs = FaultFileSystem(rng=random.Random(f"fs/{sim.plan.seed}/{name}"))
        self.node: Node | None = None
        self.nursery: trio.Nursery | None = None
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.incarnation = 0
        self.crashing = False
        self.up = False
        # The nodes it is told of: the plan's first nodes; a joining node, the members then.
        self.seeds = [o for o in sim.plan.nodes if o != name]

    def config(self) -> Config:
        p = self.sim.plan
        seeds = ",".join(f"{o}:{PEER_PORT}" for o in self.seeds)
        return Config(
            bind=self.name, port=0, dir=self.dir, engine="lsm", appendfsync="always",
            protected_mode=False, memtable_bytes=32 * 1024, node_id=self.name, seeds=seeds,
            cluster_secret_file=self.sim.secret_file, peer_port=PEER_PORT, n_replicas=p.n,
            read_consistency=str(p.r), write_consistency=str(p.w),
            request_timeout_ms=self.sim.request_timeout_ms, gossip_interval_ms=500,
            hinted_handoff=p.sloppy, hint_replay_per_second=1000,
            anti_entropy_interval_ms=ANTI_ENTROPY_INTERVAL_MS, gc_grace_seconds=PURGE_GRACE_S,
            # Nodes purge only in the final purge phase (purge_interval_ms=0), with every node
            # up: an outage longer than the 5 s grace before it is safe, so restarts after
            # one are allowed (a real node down longer than gc_grace_seconds refuses to start).
            purge_interval_ms=0, allow_stale_rejoin=True)

    async def _sync_worker(self, fn: Callable[[], Any]) -> Any:
        """The engine's blocking work, inline on the trio thread (deterministic)."""
        if self.crashing:
            raise NodeCrashed("node crashed")
        await trio.lowlevel.checkpoint()
        if self.crashing:
            raise NodeCrashed("node crashed")
        return fn()

    def start(self) -> None:
        seed = self.sim.plan.seed
        self.incarnation += 1
        inc = self.incarnation
        sim = self.sim
        engine = LSMEngine.open(f"/data/{self.name}", fs=self.fs, now_ms=sim.clock_ms,
                                memtable_bytes=32 * 1024)
        rng = random.Random(f"node/{seed}/{self.name}/{inc}")
        nonce_rng = random.Random(f"nonce/{seed}/{self.name}/{inc}")
        node = Node(self.config(), engine=engine, clock_ms=sim.clock_ms, perf_ns=sim.perf_ns,
                    network=sim.net.host(self.name), rng=rng, nonce=nonce_rng.randbytes,
                    sync_worker=self._sync_worker, listen=False)
        node.fs = self.fs  # type: ignore[attr-defined]  # the hint store's file system
        self.node = node
        self.crashing = False
        self.done = trio.Event()
        self.up = True
        sim.root_nursery.start_soon(self._incarnation, node)

    async def _incarnation(self, node: Node) -> None:
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    await nursery.start(node.run)
                    await trio.sleep_forever()
        except BaseException as e:  # a crash cancels mid-flight; anything else is a finding
            if self.crashing:
                return
            real = _not_cancelled(e)
            if not real:
                raise
            self.sim.harness_errors.append(f"node {self.name} died: {real[0]!r}")
            self.sim.trace_event("node-died", f"{self.name}: {real[0]!r}")
        finally:
            self.nursery = None
            self.up = False
            self.done.set()

    async def crash(self, mode: str) -> None:
        if not self.up:
            return
        self.crashing = True
        if mode == "power":
            self.fs.crash_after(1)  # nothing more reaches the disk
        assert self.scope is not None
        self.scope.cancel()
        await self.done.wait()
        if mode == "power":
            self.fs.crash(tear=True, partial_dir_ops=True)
        else:
            self.fs.kill_process()
        self.node = None

    def replica_set(self, key: bytes) -> V.SiblingSet:
        assert self.node is not None and self.node.cluster is not None
        return self.node.cluster.replica.read(0, key)


class SimClient:
    """One client: RESP over a memory stream to a node's ``serve_client``."""

    def __init__(self, sim: Sim, cid: int) -> None:
        self.sim = sim
        self.name = f"c{cid}"
        self.rng = random.Random(f"client/{sim.plan.seed}/{cid}")
        self.stream: Any = None
        self.node: SimNode | None = None
        self.reader = hiredis.Reader()

    def _connect(self) -> bool:
        up = [n for n in self.sim.nodes.values()
              if n.up and n.nursery is not None and not n.crashing]
        if not up:
            return False
        target = self.rng.choice(up)
        node = target.node
        assert node is not None and target.nursery is not None
        mine, theirs = trio.testing.memory_stream_pair()
        client = node.state.new_client(f"{self.name}:1", f"{target.name}:6379")
        target.nursery.start_soon(_serve, node, theirs, client)
        self.stream, self.node, self.reader = mine, target, hiredis.Reader()
        return True

    async def _close(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)
        self.stream = self.node = None

    async def call(self, *args: bytes) -> tuple[str, Any]:
        """("reply", value) / ("error", text) / ("lost", why): the connection died or no reply
        came in time (the command may or may not have run) / ("nonode", "")."""
        if self.stream is None and not self._connect():
            await trio.sleep(0.05)
            return "nonode", ""
        req = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        timeout = self.sim.request_timeout_ms / 1000 * 2 + CLIENT_SLACK_S
        with trio.move_on_after(timeout):
            try:
                await self.stream.send_all(req)
                while True:
                    got = self.reader.gets()
                    if got is not False:
                        if isinstance(got, hiredis.ReplyError):
                            return "error", str(got)
                        return "reply", got
                    data = await self.stream.receive_some(65536)
                    if not data:
                        break
                    self.reader.feed(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await self._close()
            return "lost", "connection closed"
        await self._close()
        return "lost", "no reply in time"


async def _serve(node: Node, stream: Any, client: Any) -> None:
    try:
        await node.serve_client(stream, client)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        node.state.drop_client(client)
        await trio.aclose_forcefully(stream)


def classify(kind: str, status: str, payload: Any) -> str:
    """The history outcome of a client call (see respkv.testing.history, "Outcomes")."""
    if status == "reply":
        return "ok"
    if kind == "get" or status == "nonode":
        return "fail"
    if status == "error" and str(payload).startswith("NOREPLICAS Not enough replicas up"):
        return "fail"  # the plan could not be met: nothing was sent
    return "unknown"


class Sim:
    """One run of one plan. Use :func:`run_plan`."""

    def __init__(self, plan: Plan, root: str) -> None:
        self.plan = plan
        self.root = root
        self.secret_file = os.path.join(root, "secret")
        with open(self.secret_file, "wb") as f:
            f.write(SECRET)
        self.request_timeout_ms = 1000
        self.trace: list[str] = []
        self.history = History()
        self.harness_errors: list[str] = []
        self.net = SimNetwork(random.Random(f"net/{plan.seed}"), plan.net, self.trace_event)
        self.nodes: dict[str, SimNode] = {}
        self.root_nursery: trio.Nursery = None  # type: ignore[assignment]
        self.final_digest = ""
        self.end_s = 0.0
        self.passive = False
        self.purge_violations: list[Violation] = []
        self.purged = 0
        # The ring members the schedule has made (joins added, decommissioned and removed
        # nodes taken out); ``leaving``: nodes told to decommission; ``removed``: node -> the
        # member told to remove it. Both are finished (an operator's retry) at the heal.
        self.members: list[str] = list(plan.nodes)
        self.leaving: set[str] = set()
        self.removed: dict[str, str] = {}

    # -- clocks (trio's MockClock) --
    @staticmethod
    def clock_ms() -> int:
        return EPOCH_MS + int(trio.current_time() * 1000)

    @staticmethod
    def perf_ns() -> int:
        return int(trio.current_time() * 1e9)

    @staticmethod
    def now_ms() -> float:
        return round(trio.current_time() * 1000, 3)

    def trace_event(self, kind: str, text: str) -> None:
        self.trace.append(f"{self.now_ms():10.3f} {kind:<9} {text}")

    # -- phases --
    async def main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.root_nursery = nursery
            await nursery.start(self.net.run)
            for name in self.plan.nodes:
                self.nodes[name] = SimNode(self, name)
            for n in self.nodes.values():
                n.start()
            if not await self._wait_formed(FORM_DEADLINE_S):
                self.harness_errors.append("the ring did not form: " + self._ring_state())
                nursery.cancel_scope.cancel()
                return
            t0 = trio.current_time()
            self.trace_event("start", f"ring formed; {self.plan.describe()}")
            async with trio.open_nursery() as work:
                for c in range(self.plan.clients):
                    ops = [o for o in self.plan.ops if o.client == c]
                    work.start_soon(self._client, SimClient(self, c), ops, t0)
                work.start_soon(self._faults, self.plan.faults, t0)
            await self._heal_and_check()
            self.final_digest = self.digest()
            if not self.harness_errors:
                await self._purge_and_rewrite()
            self.end_s = trio.current_time()
            nursery.cancel_scope.cancel()

    async def _wait_formed(self, deadline_s: float) -> bool:
        names = set(self.members)
        with trio.move_on_after(deadline_s):
            while True:
                if all(self._formed(self.nodes[m], names) for m in names):
                    return True
                await trio.sleep(0.1)
        return False

    def _ring_state(self) -> str:
        out = []
        for n in self.nodes.values():
            c = n.node.cluster if n.node is not None else None
            if c is None:
                out.append(f"{n.name}: down")
            else:
                out.append(f"{n.name}: ring={sorted(c.ring.nodes)} up={sorted(c.up_nodes())} "
                           f"status={c.gossip.own.status.value}")
        return "; ".join(out)

    @staticmethod
    def _formed(n: SimNode, names: set[str]) -> bool:
        if not n.up or n.node is None or n.node.cluster is None:
            return False
        c = n.node.cluster
        return (set(c.ring.nodes) == names and c.up_nodes() == names
                and c.gossip.own.status is NodeStatus.NORMAL)

    async def _client(self, client: SimClient, ops: list[PlannedOp], t0: float) -> None:
        h = self.history
        for p in ops:
            start = t0 + p.at_ms / 1000
            if trio.current_time() < start:
                await trio.sleep_until(start)
            key = p.key.encode()
            if p.kind == "set":
                op = h.invoke(client.name, "set", key, p.value.encode(), at_ms=self.now_ms())
                status, payload = await client.call(b"SET", key, p.value.encode())
            elif p.kind == "del":
                op = h.invoke(client.name, "del", key, at_ms=self.now_ms())
                status, payload = await client.call(b"DEL", key)
            else:
                op = h.invoke(client.name, "get", key, at_ms=self.now_ms())
                status, payload = await client.call(b"GET", key)
            self._record(op, status, payload, client)

    def _record(self, op: Op, status: str, payload: Any, client: SimClient) -> None:
        h = self.history
        outcome = classify(op.kind, status, payload)
        at = self.now_ms()
        if outcome == "ok":
            if op.kind == "get":
                h.ok(op, at_ms=at, values=[payload])
            else:
                h.ok(op, at_ms=at, noop=op.kind == "del" and payload == 0)
        elif outcome == "fail":
            h.fail(op, at_ms=at)
        else:
            h.unknown(op)
        via = client.node.name if client.node is not None else "-"
        extra = "" if status == "reply" else f" ({status}: {payload})"
        self.trace.append(f"{at:10.3f} op        {op.describe()} via {via}{extra}")

    async def _faults(self, faults: list[Fault], t0: float) -> None:
        for f in faults:
            start = t0 + f.at_ms / 1000
            if trio.current_time() < start:
                await trio.sleep_until(start)
            await self.apply_fault(f)

    async def apply_fault(self, f: Fault) -> None:
        self.trace_event("fault", f.describe())
        if f.kind == "partition":
            self.net.partition([list(g) for g in f.nodes])
        elif f.kind == "heal":
            self.net.heal()
        elif f.kind == "crash":
            n = self.nodes[f.nodes[0][0]]
            reset = f.mode == "process"
            await n.crash(f.mode)
            self.net.host_down(n.name, reset=reset)
        elif f.kind == "restart":
            n = self.nodes[f.nodes[0][0]]
            if not n.up:
                await n.done.wait()
                self.net.host_up(n.name)
                n.start()
        elif f.kind == "resets":
            self.net.reset_some(f.fraction)
        elif f.kind == "join":
            name = f.nodes[0][0]
            n = SimNode(self, name)
            n.seeds = list(self.members)
            self.nodes[name] = n
            self.members.append(name)
            n.start()
        elif f.kind == "decommission":
            name = f.nodes[0][0]
            self.members.remove(name)
            self.leaving.add(name)
            self._membership_op(name, "decommission")
        elif f.kind == "removenode":
            gone, by = f.nodes[0][0], f.nodes[1][0]
            self.members.remove(gone)
            self.removed[gone] = by
            self._membership_op(by, "removenode", gone)

    def _membership_op(self, name: str, op: str, *args: str) -> bool:
        """Start an admin operation on node ``name`` (``Topology.decommission`` / ``removenode``)
        as ``respkv admin`` would; False, traced, if the node is down or refuses it now."""
        n = self.nodes[name]
        if not n.up or n.node is None or n.node.cluster is None:
            self.trace_event("refused", f"{op} on {name}: the node is down")
            return False
        try:
            getattr(n.node.cluster.topology, op)("start", *args)
        except RuntimeError as e:
            self.trace_event("refused", f"{op} on {name}: {e}")
            return False
        return True

    def _op_state(self, name: str, op: str) -> str:
        n = self.nodes[name]
        if n.node is None or n.node.cluster is None:
            return "down"
        return str(getattr(n.node.cluster.topology, op + "_op").state)

    async def _finish_membership(self, deadline_s: float) -> None:
        """At the heal, as an operator would: see every decommission and removenode of the
        schedule through, starting again the ones that failed or were refused, and stop each
        decommissioned node once it is done (it asked to shut down)."""
        with trio.move_on_after(deadline_s):
            for gone, by in sorted(self.removed.items()):
                n = self.nodes[gone]
                if n.up:  # removed while the schedule had it crashed: it is down for good
                    await n.crash("process")
                self.net.host_down(gone, reset=True)
                while not self._removed_everywhere(gone):
                    if self._op_state(by, "removenode") in ("idle", "failed", "done"):
                        self._membership_op(by, "removenode", gone)
                    await trio.sleep(0.5)
            for name in sorted(self.leaving):
                while self._op_state(name, "decommission") != "done":
                    if self._op_state(name, "decommission") in ("idle", "failed"):
                        self._membership_op(name, "decommission")
                    await trio.sleep(0.5)
                n = self.nodes[name]
                await n.crash("process")
                self.net.host_down(name, reset=True)
                self.trace_event("left", f"{name} decommissioned and stopped")
            return
        self.harness_errors.append("membership changes did not finish after the heal: "
                                   + self._ring_state())

    def _removed_everywhere(self, gone: str) -> bool:
        for name in self.members:
            node = self.nodes[name].node
            c = node.cluster if node is not None else None
            if c is None or gone in c.ring.nodes:
                return False
        return True

    async def _heal_and_check(self) -> None:
        self.net.heal()
        self.net.params = self.plan.net.calm()
        for n in self.nodes.values():
            if not n.up and n.name not in self.removed:
                await n.done.wait()
                self.net.host_up(n.name)
                n.start()
        if self.leaving or self.removed:
            await self._finish_membership(HEAL_DEADLINE_S)
        heal = trio.current_time()
        self.trace_event("heal", "all nodes up, network calm")
        if not await self._wait_formed(HEAL_DEADLINE_S):
            self.harness_errors.append("the ring did not re-form after the heal: "
                                       + self._ring_state())
            return
        keys = [k.encode() for k in self.plan.keys]
        converged: float | None = None
        # Passive: hinted handoff, anti-entropy and the read repair of earlier reads.
        passive = False
        ae = any(getattr(n.node.cluster, "antientropy", None) is not None
                 for n in self.nodes.values() if n.node is not None)
        with trio.move_on_after(PASSIVE_ANTI_ENTROPY_S if ae else PASSIVE_S):
            while True:
                if self._hints_pending() == 0 and not self._divergent(keys):
                    converged = trio.current_time()
                    passive = True
                    break
                await trio.sleep(0.1)
        # Active: read every key at ALL (blocking read repair brings every replica to the merge).
        if converged is None:
            repairer = SimClient(self, 99)
            with trio.move_on_after(HEAL_DEADLINE_S):
                for key in keys:
                    while True:
                        op = self.history.invoke("repair", "get", key, at_ms=self.now_ms())
                        status, payload = await repairer.call(b"GET", key, b"R", b"ALL")
                        self._record(op, status, payload, repairer)
                        if status == "reply":
                            break
                        await trio.sleep(0.2)
            if not self._divergent(keys):
                converged = trio.current_time()
        detail = self._divergent(keys)
        self.history.set_convergence(heal_ms=heal * 1000, equal=not detail, detail=detail,
                                     converged_ms=None if converged is None else converged * 1000)
        for key in keys:
            holder = self._replicas(key)[0]
            self.history.set_final(key, [s.value for s in holder.replica_set(key).siblings])
        self.passive = passive
        self.trace_event("converged" if not detail else "diverged",
                         f"{(converged - heal) * 1000:.0f} ms after the heal"
                         f"{'' if passive else ' (after R=ALL reads)'}"
                         if converged is not None else detail)

    async def _purge_and_rewrite(self) -> None:
        """Once converged: delete every key at W=ALL, let ``PURGE_GRACE_S`` pass, have some
        nodes (not always all) purge the keys dead since, then write every key again at W=ALL.
        Each write that succeeds must be the live value on every replica: a coordinator that
        purged a key and reused one of its old dots would see a replica that did not purge keep
        the old history and drop the new write (docs/cluster.md, "Purging dead keys")."""
        rng = random.Random(f"purge/{self.plan.seed}")
        writer = SimClient(self, 98)
        await self._all_up()
        for key in self.plan.keys:
            if not await self._call_ok(writer, b"DEL", key.encode(), b"W", b"ALL"):
                return
        await trio.sleep(PURGE_GRACE_S + 1)
        names = sorted(self.members)
        sweepers = rng.sample(names, rng.randint(1, len(names)))
        for name in sweepers:
            node = self.nodes[name].node
            assert node is not None
            self.purged += (await node.cluster.purger.sweep())["removed"]
        self.trace_event("purge", f"{','.join(sweepers)} removed {self.purged} dead keys")
        for key in self.plan.keys:
            k = key.encode()
            value = b"after-purge-" + k
            if not await self._call_ok(writer, b"SET", k, value, b"W", b"ALL"):
                return
            now = self.clock_ms()
            for n in self._replicas(k):
                got = V.live_value(n.replica_set(k), now)
                if got != value:
                    self.purge_violations.append(Violation(
                        "purge-rewrite", k, f"{n.name} holds {got!r} after SET {value!r} W ALL "
                        f"succeeded (purged on {','.join(sweepers)})"))

    async def _all_up(self, limit_s: float = 60.0, steady_s: float = 3.0) -> None:
        """Wait (up to ``limit_s`` of virtual time) until every node has seen every other up
        for ``steady_s``: data converged at the heal does not mean links are back (a reset at
        the heal breaks links a moment later), and the purge phase writes at W=ALL (seed
        5036)."""
        names = set(self.members)
        now = trio.current_time()
        deadline, since = now + limit_s, now
        while trio.current_time() < deadline:
            nodes = [self.nodes[m].node for m in names]
            if not all(n is not None and n.cluster is not None
                       and set(n.cluster.up_nodes()) >= names for n in nodes):
                since = trio.current_time()
            elif trio.current_time() - since >= steady_s:
                return
            await trio.sleep(0.1)

    async def _call_ok(self, client: SimClient, *args: bytes) -> bool:
        """``args`` through ``client`` until a reply (5 tries, a second apart; NOREPLICAS, a
        link still coming back, is tried again); False (a harness error) if none came or it
        was another error."""
        for _ in range(5):
            status, payload = await client.call(*args)
            if status == "reply":
                return True
            if status == "error" and not str(payload).startswith("NOREPLICAS"):
                break
            await trio.sleep(1.0)
        self.harness_errors.append(f"purge phase: {b' '.join(args).decode()}: {status} {payload}")
        return False

    def _replicas(self, key: bytes) -> list[SimNode]:
        any_node = next(n for n in self.nodes.values() if n.node is not None)
        assert any_node.node is not None
        return [self.nodes[name] for name in natural_nodes(any_node.node.cluster, key)]

    def _divergent(self, keys: list[bytes]) -> str:
        for key in keys:
            sets = {n.name: V.encode_sibling_set(n.replica_set(key)) for n in self._replicas(key)}
            if len(set(sets.values())) > 1:
                return f"{key.decode()}: " + "; ".join(
                    f"{name}={sorted(_vals(V.decode_sibling_set(d)))}" for name, d in sets.items())
        return ""

    def _hints_pending(self) -> int:
        total = 0
        for n in self.nodes.values():
            c = n.node.cluster if n.node is not None else None
            if c is not None and c.handoff is not None:
                total += sum(c.handoff.summary()["pending"].values())
        return total

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for name, n in sorted(self.nodes.items()):
            for key in self.plan.keys:
                if n.node is not None:
                    h.update(name.encode() + key.encode()
                             + V.encode_sibling_set(n.replica_set(key.encode())))
        return h.hexdigest()[:16]


def _not_cancelled(e: BaseException) -> list[BaseException]:
    """The exceptions in ``e`` (a group or not) other than trio.Cancelled."""
    if isinstance(e, BaseExceptionGroup):
        return [x for sub in e.exceptions for x in _not_cancelled(sub)]
    return [] if isinstance(e, trio.Cancelled) else [e]


def _vals(s: V.SiblingSet) -> list[str]:
    return ["nil" if x.value is None else x.value.decode() for x in s.siblings]


class _ErrorLog(logging.Handler):
    """Collects the nodes' ERROR records (a bug signal), except those a crash causes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (SimulatedCrash, NodeCrashed)) or "SimulatedCrash" in record.getMessage():
            return
        self.records.append(f"{record.name}: {record.getMessage()}"
                            + (f" ({exc!r})" if exc is not None else ""))


def run_plan(plan: Plan, *, check_stale: bool | None = None) -> SimResult:
    """Run ``plan`` to completion (blocking; one ``trio.run`` on a MockClock) and judge it."""
    import trio._core._run as trio_run  # noqa: PLC0415  (the scheduler's private random source)

    root = tempfile.mkdtemp(prefix=f"respkv-sim-{plan.seed}-",
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    logger = logging.getLogger("respkv")
    handler = _ErrorLog()
    saved_log = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    # trio shuffles each scheduler batch with a module-level Random: seed it so that the order
    # in which runnable tasks run is a function of the seed too.
    # With the flag, each batch is first sorted by task creation order (trio otherwise keeps the
    # order tasks were woken in, which for equal deadlines follows id() -- memory addresses).
    saved_sched = trio_run._r.getstate(), trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    trio_run._r.seed(f"sched/{plan.seed}")
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    sim = Sim(plan, root)
    calls = [0]
    orig_to_thread = trio.to_thread.run_sync

    async def inline_to_thread(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        # A guard for node code that calls trio.to_thread directly instead of node.sync_worker
        # (none today): run it inline, so that no thread races the mock clock; counted.
        calls[0] += 1
        await trio.lowlevel.checkpoint()
        return fn(*args)

    trio.to_thread.run_sync = inline_to_thread  # type: ignore[assignment]
    try:
        trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        trio.to_thread.run_sync = orig_to_thread  # type: ignore[assignment]
        trio_run._r.setstate(saved_sched[0])
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = saved_sched[1]  # type: ignore[misc]
        logger.removeHandler(handler)
        logger.setLevel(saved_log[0])
        logger.propagate = saved_log[1]
        shutil.rmtree(root, ignore_errors=True)
    stale = (not plan.sloppy) if check_stale is None else check_stale
    violations = check(sim.history, stale_reads=stale) if not sim.harness_errors else []
    violations += sim.purge_violations
    return SimResult(plan, sim.history, sim.trace, violations, sim.harness_errors,
                     handler.records, sim.net.statistics(), sim.end_s, sim.final_digest,
                     calls[0], sim.passive, sim.purged)
