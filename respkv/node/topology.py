"""Topology work of one node: the admin views (status, ring, hints) and the long operations
(repair, decommission, join) that ``respkv admin`` starts and then polls.

Contract with the ``RESPKV`` command (respkv/commands/admin_cmds.py, docs/admin.md): every
``admin_*`` method is synchronous and returns plain data (dicts, lists, str, int, float); a long
operation is started in the cluster's nursery and its state is polled:

``{"operation": ..., "state": "idle"|"running"|"done"|"failed", "done": int, "total": int,
"started_ms": int, "finished_ms": int, "error": str, "result": {...}}``.

Decommission (Cassandra's ``nodetool decommission``): announce LEAVING, wait for the
announcement to spread (``ring_delay``: coordinators then also write to the new owners), stream
every range this node replicates to the node that gains it (``ring.transfer_plan`` from the ring
with this node to the ring without it: only ranges that change owner move), announce LEFT, wait
for that to spread, and shut the node down. Join: a node started with seeds bootstraps by itself
(Cluster.run); ``admin_join(seed)`` lets a running lone node that holds no data dial a seed and
bootstrap into that cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from respkv.cluster.hashing import TOKEN_SPACE, TokenRange, token_of
from respkv.cluster.membership import NodeStatus, remove_member, ring_of
from respkv.cluster.quorum import format_level
from respkv.cluster.ring import Ring, Transfer, owned_ranges

log = logging.getLogger("respkv.topology")


def plan_sends(*args: Any) -> Any:
    from respkv.node.streaming import plan_sends as impl  # streaming imports the cluster layer

    return impl(*args)


def plan_fetches(*args: Any) -> Any:
    from respkv.node.streaming import plan_fetches as impl

    return impl(*args)


class Operation:
    """One long admin operation's pollable state."""

    def __init__(self, name: str, clock_ms: Callable[[], int]) -> None:
        self.name = name
        self.clock_ms = clock_ms
        self.state = "idle"
        self.done = 0
        self.total = 0
        self.started_ms = 0
        self.finished_ms = 0
        self.error = ""
        self.result: dict[str, Any] = {}

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def view(self) -> dict[str, Any]:
        return {"operation": self.name, "state": self.state, "done": self.done,
                "total": self.total, "started_ms": self.started_ms,
                "finished_ms": self.finished_ms, "error": self.error, "result": self.result}

    async def run(self, work: Callable[[Operation], Awaitable[dict[str, Any]]]) -> None:
        self.state, self.done, self.total, self.error, self.result = "running", 0, 0, "", {}
        self.started_ms = self.clock_ms()
        self.finished_ms = 0
        try:
            self.result = await work(self)
            self.state = "done"
        except Exception as e:  # reported to the operator, never fatal to the node
            log.exception("event=%s_failed", self.name)
            self.state, self.error = "failed", str(e) or repr(e)
        self.finished_ms = self.clock_ms()


def ownership(ring: Ring) -> dict[str, float]:
    """Each node's share of the token space as primary owner (sums to 1)."""
    share: dict[str, int] = {n: 0 for n in ring.nodes}
    toks = ring.tokens
    for i, owner in enumerate(ring.owners):
        share[owner] += (toks[i] - toks[i - 1]) % TOKEN_SPACE or TOKEN_SPACE
    return {n: v / TOKEN_SPACE for n, v in share.items()}


class Topology:
    """Owned by the Cluster; ``cluster.admin_*`` delegate here."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        clock = cluster.node.clock_ms
        self.repair_op = Operation("repair", clock)
        self.decommission_op = Operation("decommission", clock)
        self.purge_op = Operation("purge", clock)
        self.join_op = Operation("join", clock)
        self.removenode_op = Operation("removenode", clock)
        # Refills queued by removals, in order: (removed node, the transfers still to pull).
        self._refills: list[tuple[str, list[Transfer]]] = []
        # Ranges this node gained by a removal and has not refilled yet, once per transfer
        # still to pull: its copy of them is not read from (it answers replica reads "not
        # ready" and coordinates reads from the others), or a read at R=1 would find nothing
        # where a W=3 write was acknowledged (found by the membership simulation, seed 2099).
        # Writes still land here.
        self.refilling: list[TokenRange] = []
        self._refill_wake = trio.Event()
        self.refill_figures: dict[str, int] = {"refills": 0, "refill_transfers": 0,
                                               "refill_keys": 0, "refill_failed": 0}
        self.refill_running = False  # run_refills is pulling a queued removal's ranges
        self._announcing_removal = False  # removed_while_down: our own LEFT is on purpose

    def is_refilling(self, key: bytes) -> bool:
        """``key`` is in a range this node is refilling (see ``refilling``)."""
        token = token_of(key)
        return any(r.contains(token) for r in self.refilling)

    @property
    def ring_delay_s(self) -> float:
        return 3 * self.cluster.config.gossip_interval_ms / 1000

    # -- views --
    def status(self) -> dict[str, Any]:
        c = self.cluster
        own = c.gossip.own
        up = c.up_nodes()
        return {"node_id": c.node_id, "dc": c.dc, "rack": own.rack, "status": own.status.value,
                "generation": own.generation, "peer_address": own.address,
                "ring_nodes": len(c.ring), "members": len(c.membership), "up_nodes": len(up),
                "n_replicas": c.settings.n, "n_effective": c.effective_n(),
                "read_consistency": format_level(c.settings.read_level),
                "write_consistency": format_level(c.settings.write_level),
                "hints_pending": self.hints()["total_pending"],
                "repair": self.repair_op.state, "decommission": self.decommission_op.state}

    def ring(self) -> list[dict[str, Any]]:
        c = self.cluster
        ring = c.ring
        share = ownership(ring) if len(ring) else {}
        n = c.effective_n()
        per_dc = c.settings.replicas_per_dc
        rows = []
        for row in sorted(c.membership.rows(), key=lambda r: (r.dc, r.node_id)):
            in_ring = row.node_id in ring.nodes
            replicated = 0.0
            if in_ring:
                replicated = sum(r.width for r in owned_ranges(ring, row.node_id, n, per_dc)
                                 ) / TOKEN_SPACE
            rows.append({
                "node": row.node_id, "dc": row.dc, "rack": row.rack,
                "status": row.status.value,
                "state": "up" if c.gossip.is_up(row.node_id) else "down",
                "phi": round(c.gossip.phi(row.node_id), 2), "address": row.address,
                "vnodes": row.vnodes, "ownership": round(share.get(row.node_id, 0.0), 4),
                "replicated": round(replicated, 4), "self": row.node_id == c.node_id,
            })
        return rows

    def hints(self) -> dict[str, Any]:
        h = self.cluster.handoff
        if h is None:
            return {"enabled": False, "pending": {}, "total_pending": 0}
        s = h.summary()
        return {"enabled": True, **s, "total_pending": sum(s["pending"].values())}

    # -- long operations --
    def _start(self, op: Operation, work: Callable[[Operation], Awaitable[dict[str, Any]]]
               ) -> dict[str, Any]:
        if op.state != "running":
            nursery = self.cluster._nursery
            if nursery is None:
                raise RuntimeError("the cluster is not running")
            op.state = "running"  # at once, so a second START right after sees it
            nursery.start_soon(op.run, work)
        return op.view()

    def repair(self, action: str) -> dict[str, Any]:
        ae = getattr(self.cluster, "antientropy", None)
        if action == "status":
            return self.repair_op.view()
        if ae is None:
            raise RuntimeError("anti-entropy is not available on this node")

        async def work(op: Operation) -> dict[str, Any]:
            return dict(await ae.repair(progress=op.progress))

        return self._start(self.repair_op, work)

    def purge(self, action: str) -> dict[str, Any]:
        """One sweep of keys dead for gc_grace_seconds (respkv/node/purge.py); ``done`` counts
        the keys checked (the total is not known ahead)."""
        if action == "status":
            return self.purge_op.view()
        purger = self.cluster.purger

        async def work(op: Operation) -> dict[str, Any]:
            return dict(await purger.sweep(progress=op.progress))

        return self._start(self.purge_op, work)

    def decommission(self, action: str) -> dict[str, Any]:
        if action == "status":
            return self.decommission_op.view()
        c = self.cluster
        if self.decommission_op.state == "running":
            return self.decommission_op.view()
        status = c.gossip.own.status
        # LEAVING: an earlier decommission failed (a page could not be delivered) or the node
        # restarted while leaving; starting again streams every range again (the receivers
        # merge, so repeats are harmless), as Cassandra's resumable decommission does.
        if status not in (NodeStatus.NORMAL, NodeStatus.LEAVING):
            raise RuntimeError(f"this node is {status.value}, not normal")
        if len(c.ring) < 2:
            raise RuntimeError("the only member of the ring cannot leave it")
        return self._start(self.decommission_op, self._decommission)

    async def _decommission(self, op: Operation) -> dict[str, Any]:
        c = self.cluster
        old = c.ring
        if c.gossip.own.status is not NodeStatus.LEAVING:
            c.gossip.set_status(NodeStatus.LEAVING)
        log.info("event=decommission_start node=%s", c.node_id)
        await trio.sleep(self.ring_delay_s)
        new = c.pending_ring if c.pending_ring is not None else old
        plan = plan_sends(old, new, c.node_id, c.settings)  # every N in use (per prefix too)
        stream = getattr(c, "stream_ranges", None)
        if stream is None:
            raise RuntimeError("range streaming is not available on this node")
        figures = dict(await stream(plan, op.progress))
        c.gossip.set_status(NodeStatus.LEFT)
        log.info("event=decommission_streamed node=%s transfers=%d keys=%d bytes=%d", c.node_id,
                 len(plan), figures.get("keys", 0), figures.get("bytes", 0))
        mark = c.gossip.exchanges_ok
        await trio.sleep(self.ring_delay_s)  # let LEFT spread before we go
        # ... and never go before some member has it: a node cut off from all the others (a
        # partition) would otherwise stop as LEAVING in every other view, for good (found by
        # the simulation, seed 30 with membership changes). One member is enough: gossip among
        # the others spreads it.
        while c.gossip.exchanges_ok == mark:  # noqa: ASYNC110 (gossip state)
            await trio.sleep(self.ring_delay_s / 3)
        figures["transfers"] = len(plan)
        c.node.request_shutdown()
        return figures

    def removenode(self, action: str, node_id: str = "") -> dict[str, Any]:
        """Remove a member that is gone for good (Cassandra's ``nodetool removenode``, Riak's
        ``cluster force-remove``): this node writes the member's row LEFT on its behalf
        (``membership.remove_member``) and gossip spreads it. Every node then refills what it
        gains from the ranges the member replicated, pulling them from the other replicas
        (``on_membership``), and drops its hints for the member. Refused unless this node is
        NORMAL and the member is a ring member other than this node that is down here."""
        if action == "status":
            return self.removenode_op.view()
        c = self.cluster
        if self.removenode_op.state == "running":
            return self.removenode_op.view()
        if c.gossip.own.status is not NodeStatus.NORMAL:
            raise RuntimeError(f"this node is {c.gossip.own.status.value}, not normal")
        if node_id == c.node_id:
            raise RuntimeError("a node cannot remove itself; use decommission")
        row = c.membership.get(node_id)
        if row is None:
            raise RuntimeError(f"no member {node_id!r}")
        if row.status in (NodeStatus.LEFT, NodeStatus.JOINING) or node_id not in c.ring.nodes:
            raise RuntimeError(f"{node_id!r} is {row.status.value}, not a ring member")
        if c.gossip.is_up(node_id):
            raise RuntimeError(f"{node_id!r} is up; a live member leaves by decommission")

        async def work(op: Operation) -> dict[str, Any]:
            c.gossip._adopt(remove_member(c.membership, node_id))
            log.warning("event=removenode node=%s by=%s", node_id, c.node_id)
            op.progress(0, 1)
            # Our own refill was queued by the membership change; wait until it (and any
            # before it) was tried once -- transfers whose source is down are tried again
            # later (INFO refilling_ranges) -- then let the change spread before reporting.
            tried = self.refill_figures["refills"] + len(self._refills)
            while self.refill_figures["refills"] < tried:  # noqa: ASYNC110 (queue state)
                await trio.sleep(0.05)
            await trio.sleep(self.ring_delay_s)
            op.progress(1, 1)
            return {"removed": node_id, **self.refill_figures}

        return self._start(self.removenode_op, work)

    # -- members removed by removenode: refill what this node gains --
    def on_membership(self, old: Any, new: Any) -> None:
        """A ring listener: for each member that went from the ring to LEFT without a
        decommission streaming its ranges away (it was NORMAL, not LEAVING: removed by
        removenode), queue a refill of the ranges this node gains; drop the hints kept for
        it; and if this node itself was removed, stop."""
        c = self.cluster
        for row in new.rows():
            prev = old.get(row.node_id)
            if row.status is not NodeStatus.LEFT or prev is None:
                continue
            if prev.status is not NodeStatus.NORMAL:
                continue
            if row.node_id == c.node_id:
                if self.decommission_op.state != "running" and not self._announcing_removal:
                    log.error("event=removed_from_cluster node=%s: another member declared this "
                              "node gone (removenode); it stops. Wipe its data directory to "
                              "start it as a new member.", c.node_id)
                    c.node.request_shutdown()
                continue
            old_ring, new_ring = ring_of(old), ring_of(new)
            if old_ring == new_ring:
                continue
            # Every range this node gains, pulled from each other old replica (a merge: repeats
            # are harmless), not from one: a write that reached only one of them (W=1, or W=2
            # with the removed node one of the two) is not left to anti-entropy.
            plan = [Transfer(t.range, src, t.to_node, (src,))
                    for t in plan_fetches(old_ring, new_ring, c.node_id, c.settings)
                    for src in t.sources if src not in (row.node_id, c.node_id)]
            self._refills.append((row.node_id, plan))
            self.refilling.extend(t.range for t in plan)
            self._refill_wake.set()
            if c.handoff is not None:
                dropped = c.handoff.drop_target(row.node_id)
                if dropped:
                    log.info("event=hints_dropped target=%s count=%d reason=removed",
                             row.node_id, dropped)

    def removed_while_down(self) -> None:
        """This member restarted from its saved state and a peer says its previous incarnation
        was removed (removenode) meanwhile: it announces LEFT under its new generation (so its
        restart does not put it back in the others' rings), lets that spread, and stops."""
        c = self.cluster
        log.error("event=removed_from_cluster node=%s: this member was removed (removenode) "
                  "while it was down; it announces LEFT and stops. Wipe its data directory to "
                  "start it as a new member.", c.node_id)
        self._announcing_removal = True
        c.gossip.set_status(NodeStatus.LEFT)

        async def stop_soon() -> None:
            await trio.sleep(self.ring_delay_s)
            c.node.request_shutdown()

        if c._nursery is not None:
            c._nursery.start_soon(stop_soon)
        else:
            c.node.request_shutdown()

    async def run_refills(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The task that pulls, for each queued removal, the ranges this node gains from their
        other replicas (``streaming.fetch_ranges``, with its fallback across sources)."""
        task_status.started()
        c = self.cluster
        while True:
            if not self._refills:
                self._refill_wake = trio.Event()
                await self._refill_wake.wait()
                continue
            gone, plan = self._refills[0]
            self.refill_running = True
            failed: list[Transfer] = []
            f = self.refill_figures
            try:
                log.info("event=refill_start removed=%s transfers=%d", gone, len(plan))
                keys = 0
                for t in plan:
                    try:
                        fig = await c.fetch_ranges([t])
                    except Exception:  # logged; tried again below
                        log.exception("event=refill_transfer_failed removed=%s", gone)
                        fig = {"failed": 1}
                    f["refill_transfers"] += fig.get("transfers", 0)
                    keys += fig.get("keys", 0)
                    if fig.get("failed", 0):
                        failed.append(t)
                    else:
                        self.refilling.remove(t.range)
                f["refills"] += 1
                f["refill_keys"] += keys
                f["refill_failed"] += len(failed)
                log.log(logging.WARNING if failed else logging.INFO,
                        "event=refill_done removed=%s transfers=%d keys=%d failed=%d", gone,
                        len(plan) - len(failed), keys, len(failed))
            finally:
                self._refills.pop(0)
                if failed:  # its source was down: again later (the ranges stay not ready)
                    self._refills.append((gone, failed))
                self.refill_running = False
            if failed:
                await trio.sleep(self.ring_delay_s)

    def join(self, seed: str) -> dict[str, Any]:
        c = self.cluster
        host, _, port = seed.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("expected HOST:PEERPORT")
        if len(c.membership) > 1:
            raise RuntimeError("this node is already a member of a cluster")
        if c.node.engine.last_seq:
            raise RuntimeError("this node holds data; only an empty node can join a cluster")
        c._add_link(host, int(port))

        async def work(op: Operation) -> dict[str, Any]:
            c.gossip.set_status(NodeStatus.JOINING)
            with trio.fail_after(max(20 * c.config.gossip_interval_ms / 1000, 5.0)):
                while len(c.membership) < 2:  # noqa: ASYNC110 (gossip state, no event to wait on)
                    await trio.sleep(0.05)
            await c._settle_new_member(seeded=True)
            return {"members": len(c.membership), "ring_nodes": len(c.ring)}

        return self._start(self.join_op, work)
