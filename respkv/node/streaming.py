"""Range streaming: moving the keys of token ranges between nodes (Dynamo 2007 §4.9; Cassandra's
bootstrap and decommission streaming).

In cluster mode a token range is one ordered engine scan (docs/cluster.md, "Cluster key
layout"), so moving a range is paging through that scan and sending each page. Three peer
services (docs/formats/wire.md, "Anti-entropy and streaming"), registered by
:func:`register_services`:

* ``stream``: apply a page of ``(storage key, sibling set)`` pairs with a replica merge
  (``LocalReplica.apply_raw``: ``versions.sync``, never an overwrite), so a page sent twice, or a
  key written meanwhile by a coordinator, loses nothing. The reply is sent after the page is in
  the commit log (``PeerServer`` makes every request that wrote durable before replying), so a
  page acknowledged is a page the receiver keeps.
* ``fetch``: one page of this node's keys in a list of ranges (values, or 8-byte digests for
  anti-entropy), resumable after a storage key.
* ``fetch_keys``: the stored sets of named storage keys.

The executors: :func:`stream_ranges` pushes ranges this node holds to the nodes that gain them
(decommission), :func:`fetch_ranges` pulls ranges this node gains from their current replicas
(bootstrap of a joining node). Plans come from the pure ``ring.transfer_plan``
(:func:`plan_sends`, :func:`plan_fetches`): only ranges whose replica set changes move.

Bounded work: one call scans at most ``SCAN_KEYS_PER_CALL`` keys and returns or sends about
``stream_page_bytes``; long transfers are many calls, each under its own deadline, and the
executors checkpoint between pages. The executors hold one page in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from respkv.cluster import wire
from respkv.cluster.exchange import (
    InvalidExchangeDataError,
    decode_page,
    decode_ranges,
    encode_page,
    encode_ranges,
    range_scans,
    resume_scans,
    split_storage_key,
    value_digest,
)
from respkv.cluster.hashing import TokenRange
from respkv.cluster.ring import NodeInfo, Ring, Transfer, add_node, natural_replicas, transfer_plan
from respkv.cluster.wire import WireError, parse_uint

log = logging.getLogger("respkv.streaming")

SCAN_KEYS_PER_CALL = 8192  # keys one fetch call (or one local page) scans at most
MAX_PAGE_BYTES = 16 * 1024 * 1024  # cap on a requested page size, and on a pushed page
MAX_RANGES_PER_CALL = 4096
MAX_KEYS_PER_FETCH = 4096
MIN_CALL_TIMEOUT_S = 5.0

Progress = Callable[[int, int], None]
KeyFilter = Callable[[bytes], bool] | None


# -- reading pages of ranges (sync, bounded) ----------------------------------------------------------


def read_page(engine: Any, scans: Sequence[tuple[bytes, bytes | None]], after: bytes,
              max_keys: int, max_bytes: int, include: KeyFilter = None
              ) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Up to ``max_keys`` scanned keys / about ``max_bytes`` of ``(storage key, stored set)``
    pairs after ``after`` (b"": from the start) within ``scans``; keys ``include`` rejects are
    scanned but not returned. Returns the pairs and the cursor for the next page (b"": done)."""
    items: list[tuple[bytes, bytes]] = []
    size = 0
    scanned = 0
    for lo, hi in resume_scans(scans, after):
        for skey, rec in engine.scan(lo, hi):
            if include is None or include(skey):
                items.append((skey, rec.value))
                size += len(skey) + len(rec.value)
            scanned += 1
            if scanned >= max_keys or size >= max_bytes:
                return items, skey
    return items, b""


def page_timeout(cluster: Any) -> float:
    return max(cluster.timeout_s, MIN_CALL_TIMEOUT_S)


def replica_filter(cluster: Any, nodes: Iterable[str], rings: Sequence[Ring]) -> KeyFilter:
    """None (every key) unless N differs by key prefix (``n_replicas_by_prefix``); then a test
    that every node of ``nodes`` is a natural replica of the key, under the key's own N, in one
    of ``rings``."""
    settings = cluster.settings
    if not settings.n_by_prefix:
        return None
    wanted = set(nodes)
    per_dc = settings.replicas_per_dc

    def include(skey: bytes) -> bool:
        key = skey[10:]
        n = settings.n_for(key)
        token = int.from_bytes(skey[:8], "big")
        return any(wanted <= set(natural_replicas(r, token, n, per_dc)) for r in rings)

    return include


def apply_pairs(cluster: Any, items: Iterable[tuple[bytes, bytes]],
                changed: list[tuple[bytes, bytes]] | None = None) -> int:
    """Merge each ``(storage key, encoded set)`` into the local replica (``versions.sync``).
    With ``changed``, the pairs whose stored result differs from what came are appended
    (storage key, stored bytes): what the sender lacks. Raises ValueError on bad bytes."""
    rep = cluster.replica
    engine = cluster.node.engine
    n = 0
    for skey, data in items:
        _, db, key = split_storage_key(skey)
        rep.apply_raw(db, key, data)
        n += 1
        if changed is not None:
            rec = engine.get(skey)
            if rec is not None and rec.value != data:
                changed.append((skey, rec.value))
    return n


# -- services (the receiving side) -----------------------------------------------------------------


class StreamService:
    """The ``stream``, ``fetch`` and ``fetch_keys`` handlers of one node (synchronous, bounded)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.stats = {"stream_pages_received": 0, "stream_keys_received": 0,
                      "fetch_pages_served": 0, "fetch_keys_served": 0}
        cluster.services[b"stream"] = self.handle_stream
        cluster.services[b"fetch"] = self.handle_fetch
        cluster.services[b"fetch_keys"] = self.handle_fetch_keys

    def handle_stream(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        args = call.args
        if not 1 <= len(args) <= 2 or len(args[0]) > MAX_PAGE_BYTES + 1024:
            return False, b"stream takes page [, want_changes]"
        try:
            items, _ = decode_page(args[0])
            changed: list[tuple[bytes, bytes]] | None = (
                [] if len(args) == 2 and args[1] == b"1" else None)
            applied = apply_pairs(self.cluster, items, changed)
        except ValueError as e:  # InvalidExchangeDataError, bad key, corrupt set
            return False, str(e).encode()
        self.stats["stream_pages_received"] += 1
        self.stats["stream_keys_received"] += applied
        return True, encode_page(changed or [])

    def handle_fetch(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        args = call.args
        if len(args) != 4 or args[2] not in (b"values", b"digests"):
            return False, b"fetch takes ranges, after, values|digests, max_bytes"
        try:
            ranges = decode_ranges(args[0])
            max_bytes = min(parse_uint(args[3]), MAX_PAGE_BYTES)
        except (InvalidExchangeDataError, WireError) as e:
            return False, str(e).encode()
        if len(ranges) > MAX_RANGES_PER_CALL:
            return False, b"too many ranges"
        c = self.cluster
        rings = [c.ring] if c.pending_ring is None else [c.ring, c.pending_ring]
        include = replica_filter(c, [call.sender], rings)
        items, after = read_page(c.node.engine, range_scans(ranges), args[1],
                                 SCAN_KEYS_PER_CALL, max(1, max_bytes), include)
        if args[2] == b"digests":
            items = [(k, value_digest(v).to_bytes(8, "big")) for k, v in items]
        self.stats["fetch_pages_served"] += 1
        self.stats["fetch_keys_served"] += len(items)
        return True, encode_page(items, after)

    def handle_fetch_keys(self, call: wire.ServiceCall) -> tuple[bool, bytes]:
        if len(call.args) != 1:
            return False, b"fetch_keys takes one key page"
        try:
            wanted, _ = decode_page(call.args[0])
        except InvalidExchangeDataError as e:
            return False, str(e).encode()
        if len(wanted) > MAX_KEYS_PER_FETCH:
            return False, b"too many keys"
        engine = self.cluster.node.engine
        out = []
        for skey, _ in wanted:
            rec = engine.get(skey)
            if rec is not None:
                out.append((skey, rec.value))
        self.stats["fetch_keys_served"] += len(out)
        return True, encode_page(out)


def register_services(cluster: Any) -> StreamService:
    """The node's StreamService (made once; later calls return it)."""
    existing = getattr(cluster, "stream_service", None)
    if existing is None:
        existing = StreamService(cluster)
        cluster.stream_service = existing
    return existing


# -- plans ---------------------------------------------------------------------------------------------


def _ns(settings: Any) -> list[int]:
    return sorted({settings.n, *(n for _, n in settings.n_by_prefix)})


def _plans(old: Ring, new: Ring, settings: Any) -> list[Transfer]:
    """``transfer_plan`` for every N in use (the default and each prefix's), without repeats."""
    seen: set[Transfer] = set()
    out = []
    for n in _ns(settings):
        for t in transfer_plan(old, new, n, settings.replicas_per_dc):
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def plan_sends(old: Ring, new: Ring, node_id: str, settings: Any) -> list[Transfer]:
    """The transfers ``node_id`` sends when ``old`` becomes ``new`` (it is their ``from_node``):
    for a leaving node, every range it replicates that changes owner."""
    return [t for t in _plans(old, new, settings) if t.from_node == node_id]


def plan_fetches(old: Ring, new: Ring, node_id: str, settings: Any) -> list[Transfer]:
    """The transfers ``node_id`` receives when ``old`` becomes ``new`` (a joining node)."""
    return [t for t in _plans(old, new, settings) if t.to_node == node_id]


# -- executors -----------------------------------------------------------------------------------------


def _new_figures() -> dict[str, Any]:
    return {"transfers": 0, "ranges": 0, "keys": 0, "bytes": 0, "pages": 0, "failed": 0}


async def stream_ranges(cluster: Any, plan: Sequence[Transfer],
                        progress: Progress | None = None) -> dict[str, Any]:
    """Push the keys of each transfer's range from this node to its ``to_node`` in pages
    (``stream``). Transfers to this node itself are skipped. Raises ``PeerCallError`` when a
    page cannot be delivered (the caller -- decommission -- must not leave then). Returns
    ``{"transfers", "ranges", "keys", "bytes", "pages", "failed"}``; ``bytes`` counts the
    pages sent."""
    fig = _new_figures()
    work = [t for t in plan if t.to_node != cluster.node_id]
    total = len(work)
    page_bytes = cluster.config.stream_page_bytes
    timeout = page_timeout(cluster)
    engine = cluster.node.engine
    if progress is not None:
        progress(0, total)
    for done, t in enumerate(work, 1):
        scans = range_scans([t.range])
        after = b""
        while True:
            items, after = read_page(engine, scans, after, SCAN_KEYS_PER_CALL, page_bytes)
            if items:
                page = encode_page(items)
                await cluster.call(t.to_node, b"stream", (page,), timeout_s=timeout)
                fig["keys"] += len(items)
                fig["bytes"] += len(page)
                fig["pages"] += 1
            else:
                await trio.lowlevel.checkpoint()
            if not after:
                break
        fig["transfers"] += 1
        fig["ranges"] += 1
        log.info("event=range_streamed range=%s to=%s", _fmt(t.range), t.to_node)
        if progress is not None:
            progress(done, total)
    return fig


async def fetch_ranges(cluster: Any, plan: Sequence[Transfer],
                       progress: Progress | None = None) -> dict[str, Any]:
    """Pull the keys of each transfer's range into this node from its ``from_node``, or the
    next of its ``sources`` when that one is down or fails midway (a restart from the
    beginning of the range: merges make repeats harmless). The pulled keys are durable (as the
    fsync policy promises) before this returns. A transfer no source could serve is counted in
    ``failed`` (anti-entropy repairs it later) and logged."""
    fig = _new_figures()
    work = [t for t in plan if t.to_node == cluster.node_id]
    total = len(work)
    timeout = page_timeout(cluster)
    page_bytes = b"%d" % cluster.config.stream_page_bytes
    engine = cluster.node.engine
    seq_before = engine.last_seq
    if progress is not None:
        progress(0, total)
    for done, t in enumerate(work, 1):
        ranges = encode_ranges([t.range])
        up = cluster.up_nodes()
        sources = [s for s in t.sources if s in up and s != cluster.node_id]
        for source in sources:
            after = b""
            try:
                while True:
                    payload = await cluster.call(source, b"fetch",
                                                 (ranges, after, b"values", page_bytes),
                                                 timeout_s=timeout)
                    items, after = decode_page(payload)
                    fig["keys"] += apply_pairs(cluster, items)
                    fig["bytes"] += len(payload)
                    fig["pages"] += 1
                    await trio.lowlevel.checkpoint()
                    if not after:
                        break
            except Exception as e:  # PeerCallError, bad bytes: try the next source
                log.warning("event=range_fetch_failed range=%s source=%s error=%r",
                            _fmt(t.range), source, str(e))
                continue
            fig["transfers"] += 1
            fig["ranges"] += 1
            break
        else:
            fig["failed"] += 1
            # A warning: the caller reports the failed count (a bootstrap leaves the range to
            # anti-entropy; a refill tries it again, so an error each time would flood the log).
            log.warning("event=range_fetch_gave_up range=%s sources=%s", _fmt(t.range),
                        ",".join(t.sources))
        if progress is not None:
            progress(done, total)
    await cluster.node._durable(seq_before)
    return fig


def future_ring(cluster: Any) -> Ring:
    """The ring once this node is in it: the pending ring when gossip has one with this node,
    else the current ring plus this node's own row."""
    pending = cluster.pending_ring
    if pending is not None and cluster.node_id in pending.nodes:
        return pending
    ring = cluster.ring
    if cluster.node_id in ring.nodes:
        return ring
    row = cluster.membership[cluster.node_id]
    return add_node(ring, NodeInfo(row.node_id, row.dc, row.rack, row.weight, row.tokens()))


async def bootstrap(cluster: Any, progress: Progress | None = None) -> dict[str, Any]:
    """A joining node pulls every range it gains from the current replicas (``Cluster.
    bootstrap``): only ranges whose replica set changes move."""
    plan = plan_fetches(cluster.ring, future_ring(cluster), cluster.node_id, cluster.settings)
    fig = await fetch_ranges(cluster, plan, progress)
    log.log(logging.WARNING if fig["failed"] else logging.INFO,
            "event=bootstrap_streamed transfers=%d keys=%d bytes=%d failed=%d",
            fig["transfers"], fig["keys"], fig["bytes"], fig["failed"])
    return fig


def _fmt(r: TokenRange) -> str:
    return f"({r.start:016x},{r.end:016x}]"
