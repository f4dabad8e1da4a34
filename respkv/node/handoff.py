"""Hinted handoff: the fallback side of a sloppy quorum (Dynamo §4.6; Cassandra's hints/).

A write whose natural replica ``T`` is down goes to a fallback node with a hint for ``T``. The
fallback stores the hint -- not in its replica of the keyspace, in the durable hint store
(``respkv/storage/hints.py``, format ``docs/formats/hints.md``) -- and acknowledges it once it
is durable, so the hint counts toward W. This module owns the store on a node:

* the ``hint`` service (docs/formats/wire.md): ``args = (target, db, key, sibling_set)``;
  the store's ``add``; the reply waits until the hint is synced (``PeerServer`` awaits
  :meth:`HintedHandoff.sync_pending` with the batch's durability step).
* the replay task: every ``REPLAY_PERIOD_S``, for each target with pending hints that gossip
  says is up, send its hints as ``RW`` (a replica merges, so replaying twice is harmless) at
  most ``hint_replay_per_second``, and ``ack`` those the target acknowledged; hints older than
  ``max_hint_window_ms`` are dropped (anti-entropy repairs what they carried).

With ``hinted_handoff = false`` the coordinator plans strict quorums and nothing reaches here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio

from respkv.cluster import wire
from respkv.cluster.wire import WireError, parse_uint

log = logging.getLogger("respkv.handoff")

REPLAY_PERIOD_S = 0.5
EXPIRE_PERIOD_S = 10.0


class HintedHandoff:
    def __init__(self, cluster: Any, store: Any) -> None:
        self.cluster = cluster
        self.store = store
        cfg = cluster.config
        self.window_ms = cfg.max_hint_window_ms
        self.rate = cfg.hint_replay_per_second
        self.unsynced = 0
        self._sync_lock = trio.Lock()
        self.stats = {"hints_stored": 0, "hints_replayed": 0, "hints_expired": 0,
                      "hints_replay_failures": 0, "hints_refused": 0, "hints_dropped_removed": 0}
        cluster.services[b"hint"] = self.handle

    # -- storing --
    def add(self, target: str, db: int, key: bytes, data: bytes) -> None:
        self.store.add(target, self.cluster.node.clock_ms(), db, key, data)
        self.unsynced += 1
        self.stats["hints_stored"] += 1

    def drop_target(self, target: str) -> int:
        """Drop every hint kept for ``target`` (a member removed from the cluster: its ranges
        are refilled from the other replicas, which hold what the hints hold); durable at the
        next sync, which is started here. Returns how many were dropped."""
        dropped = self.store.ack(target, up_to=(1 << 63) - 1)  # every id of every segment
        if dropped:
            self.stats["hints_dropped_removed"] += dropped
            nursery = self.cluster._nursery
            if nursery is not None:
                nursery.start_soon(self._sync_quietly)
        return dropped

    async def sync_pending(self) -> None:
        """Make every hint added so far durable (one fsync for all of them, in a worker
        thread). Raises OSError when the disk fails (the caller must not acknowledge)."""
        if not self.unsynced:
            return
        async with self._sync_lock:
            if not self.unsynced:
                return
            n = self.unsynced
            await self.cluster.node.sync_worker(self.store.sync)
            self.unsynced -= n

    def handle(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        args = call.args
        if len(args) != 4:
            return False, b"hint takes target, db, key, sibling_set"
        try:
            target = args[0].decode()
            db = parse_uint(args[1])
        except (UnicodeDecodeError, WireError):
            self.stats["hints_refused"] += 1
            return False, b"bad hint target or db"
        if target == self.cluster.node_id:  # the "down" replica is us: just apply it
            try:
                self.cluster.replica.apply_raw(db, args[2], args[3])
            except ValueError as e:
                return False, str(e).encode()
            return True, b""
        try:
            from respkv.cluster.versions import decode_sibling_set

            decode_sibling_set(args[3])  # never store bytes we could not replay
        except ValueError as e:
            self.stats["hints_refused"] += 1
            return False, str(e).encode()
        try:
            self.add(target, db, args[2], args[3])
        except OSError as e:
            log.error("event=hint_store_failed target=%s error=%r", target, str(e))
            return False, b"hint store failed"
        return True, b""

    async def _sync_quietly(self) -> None:
        try:
            async with self._sync_lock:
                await self.cluster.node.sync_worker(self.store.sync)
        except OSError as e:
            log.error("event=hint_sync_failed error=%r", str(e))

    # -- replay --
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last_expire = 0.0
        while True:
            await trio.sleep(REPLAY_PERIOD_S)
            now = trio.current_time()
            if now - last_expire >= min(EXPIRE_PERIOD_S, self.window_ms / 2000):
                last_expire = now
                try:
                    dropped = self.store.expire(self.cluster.node.clock_ms(), self.window_ms)
                except OSError as e:
                    log.error("event=hint_expire_failed error=%r", str(e))
                    dropped = 0
                if dropped:
                    # counted with the store's removal, before the sync awaits (INFO must never
                    # show a hint gone from pending and not yet counted anywhere)
                    self.stats["hints_expired"] += dropped
                    log.info("event=hints_expired count=%d window_ms=%d", dropped,
                             self.window_ms)
                    await self._sync_quietly()
            for target in list(self.store.targets()):
                if self.store.pending(target) and self.cluster.gossip.is_up(target):
                    await self.replay(target)

    async def replay(self, target: str) -> int:
        """Send up to one second's worth of ``target``'s hints; ack what it stored."""
        batch = self.store.iterate(target, self.rate)
        if not batch:
            return 0
        link = self.cluster.links.get(target)
        if link is None or not link.connected:
            return 0
        done = trio.Event()
        acked: list[Any] = []
        waiting = [0]
        timeout_ms = int(self.cluster.timeout_s * 1000)
        me = self.cluster.node_id

        def callback(hint_id: Any, reply: wire.Reply | None) -> None:
            waiting[0] -= 1
            if reply is not None and reply.ok:
                acked.append(hint_id)
            else:
                self.stats["hints_replay_failures"] += 1
            if waiting[0] == 0:
                done.set()

        t0 = trio.current_time()
        for hint_id, _created, db, key, data in batch:
            rid = link.send(
                lambda r, db=db, key=key, data=data: wire.encode_request(
                    wire.ReplicaWrite(r, me, timeout_ms, db, key, data)),
                lambda reply, h=hint_id: callback(h, reply))
            if rid:
                waiting[0] += 1
        if waiting[0]:
            with trio.move_on_after(self.cluster.timeout_s):
                await done.wait()
        if acked:
            self.store.ack(target, acked)
            self.stats["hints_replayed"] += len(acked)
            await self._sync_quietly()  # acks are durable at sync (else replayed again: harmless)
            log.info("event=hints_replayed target=%s count=%d", target, len(acked))
        # Rate limit: a full batch is one second's worth.
        spent = trio.current_time() - t0
        if len(batch) >= self.rate and spent < 1.0:
            await trio.sleep(1.0 - spent)
        return len(acked)

    def summary(self) -> dict[str, Any]:
        pending = {t: self.store.pending(t) for t in sorted(self.store.targets())}
        return {"pending": {t: n for t, n in pending.items() if n}, **self.stats,
                "hinted_handoff": "on", "max_hint_window_ms": self.window_ms}


def hints_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "hints")
