"""Purging dead keys: the cluster's tombstone and expiry garbage collection.

A cluster key is never removed by a write: DEL stores a tombstone sibling and an expired value
stays stored, each with the key's clock, so that a lagging replica's older write cannot come
back (docs/cluster.md, "Versions"). Without more, a cluster that deletes or expires keys grows
forever. This module removes, from this node's storage, every key whose versions are all
tombstones or expired values and have been for ``gc_grace_seconds`` (Cassandra's gc_grace;
``versions.purgeable``), history and all.

What makes it safe (docs/cluster.md, "Purging dead keys"):

* **Dot reuse (Riak's kv679).** A node's next dot on a key is one above the counter its stored
  clock holds for itself; once the key is purged that counter is gone, and a write of the key
  would start again at 1 -- a dot an older write already used, which a replica that still holds
  the key would take for that write and drop. So before removing anything the node raises its
  **dot floor** above its own counter on every key it removes, and persists it
  (``<dir>/dot_floor``: written, fsynced, renamed); every dot it issues afterwards is above the
  floor (``LocalReplica.coordinate``).
* **Resurrection.** A replica that missed a delete still holds the value; if the others purge
  the tombstone first, anti-entropy or a read would bring the value back. ``gc_grace_seconds``
  must therefore exceed the time in which every replica learns of a delete: the hint window and
  a full anti-entropy cycle. A node down for longer than gc_grace must be wiped before it
  rejoins (as in Cassandra).
* **A write during the sweep.** Keys are chosen from a page of the engine and removed only if
  their stored bytes are unchanged when the removal runs (synchronously, after the floor is
  durable): a key written in between stays.

A key that anti-entropy copies back from a replica that has not purged it yet is stored again
and purged by the next sweep (it is as dead there as here).

The periodic task (:meth:`Purger.run`) sweeps every ``purge_interval_ms`` (jittered; 0: off);
``respkv admin purge start`` (``RESPKV PURGE START``) runs one now. One sweep at a time (a lock).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

from respkv.cluster import versions as V
from respkv.node.periodic import every
from respkv.node.streaming import read_page
from respkv.storage.fs import replace_durably

log = logging.getLogger("respkv.purge")

DOT_FLOOR_FILE = "dot_floor"
# One page of a sweep runs without a checkpoint: ~256 keys keep it to a few milliseconds.
PAGE_KEYS = 256
PAGE_BYTES = 1024 * 1024


def load_dot_floor(data_dir: str) -> int:
    """The persisted dot floor (0 when none was ever written). A corrupt file is an error: a
    floor read as too low could reuse dots, so the node must not start on a guess."""
    path = os.path.join(data_dir, DOT_FLOOR_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0
    text = raw.strip()
    if not text.isdigit():
        raise ValueError(f"{path}: not a decimal counter: {raw[:40]!r}")
    return int(text)


def save_dot_floor(data_dir: str, floor: int) -> None:
    """Atomically replace ``<dir>/dot_floor`` (write, fsync, rename, fsync the folder)."""
    replace_durably(os.path.join(data_dir, DOT_FLOOR_FILE), b"%d\n" % floor)


class Purger:
    """One node's sweeps. ``cluster`` gives the engine, the replica (its ``dot_floor``), the
    config, the node's clock and random source, and where the floor is persisted."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._lock = trio.Lock()
        self.stats = {"purge_sweeps": 0, "purge_keys_checked": 0, "purge_keys_removed": 0,
                      "purge_keys_skipped": 0, "purge_unreadable": 0}

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Every ``purge_interval_ms`` (x0.5-1.5 jitter), one sweep; never returns unless the
        interval is 0 (off). A failed sweep is logged; the next one starts over."""
        await every(self.cluster.config.purge_interval_ms, self.cluster.node.rng,
                    self._sweep_logged, task_status)

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except OSError as e:  # the floor could not be persisted: nothing was removed
            log.error("event=purge_failed error=%r", str(e))

    async def sweep(self, page_keys: int = PAGE_KEYS,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Walk every stored cluster key once, in pages (a checkpoint between pages), removing
        the purgeable ones. Returns this sweep's figures (checked, removed, skipped: changed
        while the floor was being persisted); ``progress(checked, 0)`` after each page."""
        async with self._lock:
            cluster = self.cluster
            node = cluster.node
            engine = node.engine
            replica = cluster.replica
            grace_ms = cluster.config.gc_grace_seconds * 1000
            me = cluster.node_id
            fig = {"checked": 0, "removed": 0, "skipped": 0}
            after = b""
            while True:
                items, after = read_page(engine, [(b"", None)], after, page_keys, PAGE_BYTES)
                now = node.clock_ms()
                chosen: list[tuple[bytes, bytes]] = []
                floor = replica.dot_floor
                for skey, data in items:
                    try:
                        s = V.decode_sibling_set(data)
                    except V.InvalidSiblingSetError:
                        self.stats["purge_unreadable"] += 1
                        continue
                    if V.purgeable(s, now, grace_ms):
                        chosen.append((skey, data))
                        mine = s.clock[me]
                        if mine > floor:
                            floor = mine
                fig["checked"] += len(items)
                if progress is not None:
                    progress(fig["checked"], 0)
                if chosen:
                    if floor > replica.dot_floor:
                        # Raised before the await: dots issued meanwhile are above it already.
                        replica.dot_floor = floor
                        if cluster.persist_state:
                            await node.sync_worker(
                                lambda f=floor: save_dot_floor(cluster.state_dir, f))
                    removed = replica.purge(chosen)
                    fig["removed"] += removed
                    fig["skipped"] += len(chosen) - removed
                if not after:
                    break
                await trio.lowlevel.checkpoint()
            self.stats["purge_sweeps"] += 1
            self.stats["purge_keys_checked"] += fig["checked"]
            self.stats["purge_keys_removed"] += fig["removed"]
            self.stats["purge_keys_skipped"] += fig["skipped"]
            if fig["removed"]:
                log.info("event=purge_done checked=%d removed=%d skipped=%d floor=%d",
                         fig["checked"], fig["removed"], fig["skipped"], replica.dot_floor)
            return fig
