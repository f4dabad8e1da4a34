"""Gossip membership and phi-accrual failure detection over the peer dialect.

The pure pieces are :mod:`respkv.cluster.membership` (rows, merge, SYN/ACK/ACK2) and
:mod:`respkv.cluster.failure` (phi accrual); this module is their one owner task on a node.

* Every ``gossip_interval_ms`` (jittered by the node's random source) the node bumps its own
  heartbeat and runs one SYN/ACK/ACK2 exchange with one random peer: a known member, or a peer
  whose link is connected (seeds before their row is known). The exchange is two service calls
  ``gossip`` (docs/formats/wire.md, "Service gossip"): ``SYN`` answered by ``ACK``, then ``ACK2``.
* Whenever a merge makes another node's row newer, that node's phi detector gets a heartbeat
  at the local clock: liveness evidence is a node's *own* heartbeat counter advancing, however
  it travelled (Cassandra's Gossiper; van Renesse et al. 1998). Liveness is never gossiped.
* A peer is **up** when its link is connected and its phi is below ``phi_threshold`` (a peer
  that is connected but whose heartbeat stopped -- a paused process -- is down). A connected
  peer not heard from by gossip yet counts as up (its handshake just proved it alive).
* Each new membership is handed to ``on_change(old, new)`` (the cluster rebuilds its ring and
  dials addresses it did not know).

The node's own row: ``generation`` is persisted in ``<dir>/cluster_state`` and grows across
restarts (so the new row wins over the gossiped old one); ``status`` follows
NORMAL/JOINING/LEAVING/LEFT as the node's topology work (respkv/node/topology.py) sets it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from respkv.cluster import membership as M
from respkv.cluster.failure import PhiAccrualDetector
from respkv.cluster.membership import Membership, NodeState, NodeStatus
from respkv.storage.fs import replace_durably

log = logging.getLogger("respkv.gossip")

STATE_FILE = "cluster_state"


class StateFileError(Exception):
    pass


def load_state(data_dir: str) -> dict[str, Any] | None:
    """This node's persisted row facts (``generation``, ``status``, ``node_id``), or None."""
    path = os.path.join(data_dir, STATE_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(raw)
        if not isinstance(state.get("generation"), int) or state.get("status") not in {
                s.value for s in NodeStatus}:
            raise ValueError("missing generation or status")
        return state
    except ValueError as e:
        raise StateFileError(f"{path} is corrupt ({e}); move it away to start this node as "
                             "a new member") from None


def save_state(data_dir: str, state: dict[str, Any]) -> None:
    """Atomically replace ``<dir>/cluster_state`` (write, fsync, rename, fsync the folder)."""
    os.makedirs(data_dir, exist_ok=True)
    replace_durably(os.path.join(data_dir, STATE_FILE), json.dumps(state, sort_keys=True).encode())


class Gossiper:
    """The membership owner of one node. ``call(node, service, args, timeout)`` sends a service
    call; ``connected(node)`` says whether the node's link is up; ``linked()`` lists nodes with a
    connected link; ``clock_ms`` and ``rng`` are the node's."""

    def __init__(
        self,
        own: NodeState,
        interval_ms: int,
        threshold: float,
        clock_ms: Callable[[], int],
        rng: Any,
        call: Callable[..., Any],
        connected: Callable[[str], bool],
        linked: Callable[[], list[str]],
        on_change: Callable[[Membership, Membership], None],
    ) -> None:
        self.node_id = own.node_id
        self.membership = Membership([own])
        self.interval_ms = interval_ms
        self.threshold = threshold
        self.clock_ms = clock_ms
        self.rng = rng
        self._call = call
        self._connected = connected
        self._linked = linked
        self._on_change = on_change
        self.detectors: dict[str, PhiAccrualDetector] = {}
        self.rounds = 0
        self.exchanges_failed = 0
        self.exchanged_with: set[str] = set()  # peers a full exchange succeeded with
        # Full exchanges this node started that succeeded: after one, that peer holds every row
        # of ours at least as new as when it started (decommission waits for one after LEFT).
        self.exchanges_ok = 0
        # Set by the cluster for a member restarted from saved state: the generation it ran
        # under before, and what to do when a peer says that incarnation was removed.
        self.previous_generation: int | None = None
        self.on_removed: Callable[[], None] | None = None
        # LEFT rows: dropped ``left_ttl_ms`` after this node first saw them LEFT, then refused
        # (their generation or older) for as long again, so peers that have not dropped them
        # yet cannot gossip them back (Cassandra's justRemovedEndpoints). 0: kept forever.
        self.left_ttl_ms = 0.0
        self._left_since: dict[str, float] = {}
        self._quarantine: dict[str, tuple[int, float]] = {}  # node -> (generation, until)
        self.left_rows_dropped = 0
        self.first_exchange = trio.Event()
        self._was_up: dict[str, bool] = {}

    # -- the own row --
    @property
    def own(self) -> NodeState:
        return self.membership[self.node_id]

    def set_status(self, status: NodeStatus) -> None:
        self._adopt(M.set_status(self.membership, self.node_id, status))

    # -- liveness --
    def _detector(self, node_id: str) -> PhiAccrualDetector:
        d = self.detectors.get(node_id)
        if d is None:
            iv = float(self.interval_ms)
            # Akka's proportions: a pause of 3 intervals is acceptable, the spread never below
            # half an interval (heartbeats travel through random exchanges, so they jitter).
            d = PhiAccrualDetector(min_std_dev_ms=max(iv / 2, 1.0), acceptable_pause_ms=3 * iv,
                                   first_heartbeat_estimate_ms=iv, threshold=self.threshold)
            self.detectors[node_id] = d
        return d

    def phi(self, node_id: str) -> float:
        d = self.detectors.get(node_id)
        return d.phi(self.clock_ms()) if d is not None and d.is_monitoring else 0.0

    def is_up(self, node_id: str) -> bool:
        if node_id == self.node_id:
            return True
        if not self._connected(node_id):
            return False
        d = self.detectors.get(node_id)
        if d is None or not d.is_monitoring:
            return True
        return d.is_available(self.clock_ms(), self.threshold)

    def check_transitions(self) -> None:
        """Log up/down transitions (once per change)."""
        for node_id in self.membership:
            if node_id == self.node_id:
                continue
            up = self.is_up(node_id)
            if self._was_up.get(node_id) != up:
                if node_id in self._was_up or not up:
                    log.info("event=peer_%s node=%s phi=%.2f", "up" if up else "down", node_id,
                             self.phi(node_id))
                self._was_up[node_id] = up

    # -- merging --
    def _adopt(self, new: Membership) -> None:
        old = self.membership
        if new == old:
            return
        now = self.clock_ms()
        if self._quarantine:
            for node_id, (generation, until) in list(self._quarantine.items()):
                if now >= until:
                    del self._quarantine[node_id]
                    continue
                row = new.get(node_id)
                if row is not None and row.generation <= generation:
                    new = new.without(node_id)  # a dropped LEFT row, gossiped back
            if new == old:
                return
        for node_id in M.advanced(old, new):
            if node_id != self.node_id:
                self._detector(node_id).heartbeat(now)
        own_new = new.get(self.node_id)
        if own_new is not None and own_new != old.get(self.node_id) and own_new.newer_than(
                old[self.node_id]) and own_new.generation != old[self.node_id].generation:
            # Someone gossiped a row of ours we did not write (an older incarnation with a higher
            # generation, after a clock jump): keep ours, bumped past it.
            mine = old[self.node_id]
            new = new.with_row(replace(mine, generation=own_new.generation + 1, version=1))
        self.membership = new
        if self.left_ttl_ms:
            for row in new.rows():
                if row.status is NodeStatus.LEFT and row.node_id not in self._left_since:
                    self._left_since[row.node_id] = now
        self._on_change(old, new)

    def drop_old_left_rows(self) -> list[str]:
        """Drop the LEFT rows this node has seen LEFT for ``left_ttl_ms`` (each gossip round);
        returns their node ids."""
        if not self.left_ttl_ms or not self._left_since:
            return []
        now = self.clock_ms()
        dropped = []
        for node_id, since in list(self._left_since.items()):
            row = self.membership.get(node_id)
            if row is None or row.status is not NodeStatus.LEFT:
                del self._left_since[node_id]  # back under a new incarnation, or gone
                continue
            if node_id == self.node_id or now - since < self.left_ttl_ms:
                continue
            del self._left_since[node_id]
            self._quarantine[node_id] = (row.generation, now + self.left_ttl_ms)
            old = self.membership
            self.membership = old.without(node_id)
            self.detectors.pop(node_id, None)
            self._was_up.pop(node_id, None)
            self.left_rows_dropped += 1
            dropped.append(node_id)
            log.info("event=left_row_dropped node=%s generation=%d", node_id, row.generation)
            self._on_change(old, self.membership)
        return dropped

    def _check_removed(self, rows: tuple[NodeState, ...]) -> None:
        """A restarted member told by a peer that its previous incarnation LEFT (removed by
        another node while this one was down): it must not serve its stale data as a member."""
        prev_gen = self.previous_generation
        if prev_gen is None or self.on_removed is None:
            return
        if self.own.status not in M.RING_STATUSES:
            return
        for r in rows:
            if (r.node_id == self.node_id and r.status is NodeStatus.LEFT
                    and r.generation >= prev_gen):
                self.previous_generation = None  # once
                self.on_removed()
                return

    # -- the service (replica side of an exchange) --
    def handle(self, args: tuple[bytes, ...]) -> tuple[bool, bytes]:
        if len(args) != 1:
            return False, b"gossip takes one argument"
        try:
            msg = M.decode_gossip(args[0])
        except M.InvalidGossipMessageError as e:
            return False, str(e).encode()
        if isinstance(msg, M.GossipSyn):
            ack = M.handle_syn(self.membership, self.node_id, msg)
            return True, M.encode_gossip(ack)
        if isinstance(msg, M.GossipAck2):
            self._check_removed(msg.rows)
            self._adopt(M.handle_ack2(self.membership, msg))
            return True, b""
        return False, b"unexpected gossip message"

    # -- the owner task --
    def choose_peer(self) -> str | None:
        """A random live peer; with probability ``1 / (live + 1)`` a random unreachable one
        instead (Cassandra's Gossiper), so a node that comes back is heard of without live
        peers' rounds stalling on dead ones."""
        linked = [n for n in self._linked() if n != self.node_id]
        pick = M.choose_gossip_peer(self.membership, self.node_id, self.rng, extra=linked)
        if pick is None:
            return None
        candidates = sorted(set(M.gossip_candidates(self.membership, self.node_id)) | set(linked))
        live = [n for n in candidates if self.is_up(n)]
        dead = [n for n in candidates if not self.is_up(n)]
        if dead and (not live or self.rng.random() < 1 / (len(live) + 1)):
            return dead[self.rng.randrange(len(dead))]
        return live[self.rng.randrange(len(live))] if live else pick

    async def exchange(self, peer: str) -> bool:
        timeout = max(self.interval_ms / 1000, 0.2)
        try:
            payload = await self._call(peer, b"gossip",
                                       (M.encode_gossip(M.make_syn(self.membership,
                                                                   self.node_id)),), timeout)
            ack = M.decode_gossip(payload)
            if not isinstance(ack, M.GossipAck):
                raise M.InvalidGossipMessageError("expected ACK")
            self._check_removed(ack.rows)
            merged, ack2 = M.handle_ack(self.membership, self.node_id, ack)
            self._adopt(merged)
            await self._call(peer, b"gossip", (M.encode_gossip(ack2),), timeout)
        except Exception as e:  # an unreachable or misbehaving peer: try another next round
            self.exchanges_failed += 1
            log.debug("event=gossip_failed peer=%s error=%r", peer, str(e))
            return False
        self.exchanged_with.add(peer)
        self.exchanges_ok += 1
        self.first_exchange.set()
        return True

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Rounds at a steady pace: each exchange runs in its own task, so a slow or silent
        peer never delays the next heartbeat (one exchange in flight per peer)."""
        task_status.started()
        in_flight: set[str] = set()

        async def exchange(peer: str) -> None:
            try:
                await self.exchange(peer)
            finally:
                in_flight.discard(peer)

        async with trio.open_nursery() as nursery:
            while True:
                jitter = 0.75 + self.rng.random() / 2  # desynchronise nodes started together
                await trio.sleep(self.interval_ms * jitter / 1000)
                self.rounds += 1
                self.drop_old_left_rows()
                self._adopt(M.heartbeat(self.membership, self.node_id))
                peer = self.choose_peer()
                if peer is not None and peer not in in_flight:
                    in_flight.add(peer)
                    nursery.start_soon(exchange, peer)
                self.check_transitions()

    def statistics(self) -> dict[str, Any]:
        return {"gossip_rounds": self.rounds, "gossip_exchanges_failed": self.exchanges_failed,
                "gossip_members": len(self.membership),
                "gossip_generation": self.own.generation, "node_status": self.own.status.value,
                "gossip_left_rows_dropped": self.left_rows_dropped}
