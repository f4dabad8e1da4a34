"""The consistent-hashing ring with virtual nodes (Karger et al. 1997; DeCandia et al. 2007, §4.2).

Everything here is a pure function of immutable values, in the manner of riak_core's
``riak_core_ring`` and ``riak_core_apl``:

* :class:`Ring` is a frozen value built from :class:`NodeInfo` records. Node ``X`` of weight ``w``
  owns ``round(w * vnodes_per_weight)`` (at least one) vnodes whose tokens are
  :func:`~respkv.cluster.hashing.vnode_token` ``(X, i)``; so every node computes the same ring
  from the same membership, with no coordination.
* :func:`natural_replicas` / :func:`preference_list` walk clockwise from a token. With
  ``replicas_per_dc`` the walk places replicas as Cassandra's NetworkTopologyStrategy does: per
  datacenter, distinct nodes in clockwise order, preferring racks not yet used in that datacenter.
  The preference list also names the sloppy-quorum fallbacks (Dynamo §4.6): each natural replica
  that is not up is stood in for by the next up non-replica further clockwise (in the same
  datacenter when placing per datacenter), which holds the write as a hint for it.
* :func:`transfer_plan` compares two rings and lists the token ranges whose replica sets change.
* :func:`owned_ranges` lists the ranges a node replicates.

The replication factor is capped by what the ring holds: with fewer nodes than ``n`` (or fewer
nodes in a datacenter than its count) the natural replicas are all of them.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from respkv.cluster.hashing import TokenRange, merge_adjacent, token_of, vnode_token

DEFAULT_VNODES_PER_WEIGHT = 64
DEFAULT_DC = "dc1"
DEFAULT_RACK = "rack1"


def vnode_count(weight: float, vnodes_per_weight: int) -> int:
    """Vnodes owned by a node of ``weight``: ``max(1, round(weight * vnodes_per_weight))``."""
    if weight <= 0:
        raise ValueError(f"node weight must be positive, got {weight!r}")
    return max(1, round(weight * vnodes_per_weight))


@dataclass(frozen=True)
class NodeInfo:
    """A ring member. ``tokens`` are derived from ``node_id`` and the vnode count (see
    :meth:`make`); they are stored rather than recomputed so that a ring is a plain value."""

    node_id: str
    dc: str
    rack: str
    weight: float
    tokens: tuple[int, ...]

    @classmethod
    def make(
        cls,
        node_id: str,
        dc: str = DEFAULT_DC,
        rack: str = DEFAULT_RACK,
        weight: float = 1,
        vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT,
    ) -> NodeInfo:
        count = vnode_count(weight, vnodes_per_weight)
        return cls(node_id, dc, rack, weight, tuple(vnode_token(node_id, i) for i in range(count)))


@dataclass(frozen=True, eq=False)
class Ring:
    """An immutable ring. Build with :meth:`build`; change with :func:`add_node`,
    :func:`remove_node`, :func:`reweight`, each of which returns a new ring.

    ``tokens`` is sorted; ``owners[i]`` owns the range ``(tokens[i-1], tokens[i]]`` (index ``-1``
    wrapping to the last token). Equal tokens (a 2**-64 event) are ordered by node id.
    """

    nodes: Mapping[str, NodeInfo]
    tokens: tuple[int, ...]
    owners: tuple[str, ...]
    vnodes_per_weight: int
    # Derived from ``nodes`` by ``build``: the racks and the node count of each datacenter.
    racks_per_dc: Mapping[str, frozenset[str]] = field(repr=False)
    nodes_per_dc: Mapping[str, int] = field(repr=False)

    @classmethod
    def build(
        cls, nodes: Iterable[NodeInfo], vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT
    ) -> Ring:
        by_id: dict[str, NodeInfo] = {}
        for info in nodes:
            if info.node_id in by_id:
                raise ValueError(f"duplicate node id {info.node_id!r}")
            by_id[info.node_id] = info
        pairs = sorted((t, nid) for nid, info in by_id.items() for t in info.tokens)
        racks: dict[str, set[str]] = {}
        counts: dict[str, int] = {}
        for info in by_id.values():
            racks.setdefault(info.dc, set()).add(info.rack)
            counts[info.dc] = counts.get(info.dc, 0) + 1
        return cls(
            nodes=MappingProxyType(dict(sorted(by_id.items()))),
            tokens=tuple(t for t, _ in pairs),
            owners=tuple(n for _, n in pairs),
            vnodes_per_weight=vnodes_per_weight,
            racks_per_dc=MappingProxyType({dc: frozenset(r) for dc, r in racks.items()}),
            nodes_per_dc=MappingProxyType(counts),
        )

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[tuple[str, str, str, float]],
        vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT,
    ) -> Ring:
        """Build from ``(node_id, dc, rack, weight)`` tuples, deriving tokens."""
        return cls.build(
            (NodeInfo.make(n, dc, rack, w, vnodes_per_weight) for n, dc, rack, w in specs),
            vnodes_per_weight,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return dict(self.nodes) == dict(other.nodes) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __len__(self) -> int:
        return len(self.nodes)

    def dc_of(self, node_id: str) -> str:
        return self.nodes[node_id].dc

    def datacenters(self) -> tuple[str, ...]:
        return tuple(sorted(self.nodes_per_dc))

    def nodes_in_dc(self, dc: str) -> int:
        return self.nodes_per_dc.get(dc, 0)

    def index_of(self, token: int) -> int:
        """Index of the vnode whose range ``(tokens[i-1], tokens[i]]`` holds ``token``."""
        i = bisect.bisect_left(self.tokens, token)
        return 0 if i == len(self.tokens) else i

    def range_of_index(self, i: int) -> TokenRange:
        return TokenRange(self.tokens[i - 1], self.tokens[i])

    def walk(self, token: int) -> Iterator[str]:
        """Distinct physical nodes clockwise from ``token``'s vnode (each node once)."""
        if not self.tokens:
            return
        start = self.index_of(token)
        seen: set[str] = set()
        size = len(self.tokens)
        total = len(self.nodes)
        owners = self.owners
        for j in range(size):
            owner = owners[(start + j) % size]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == total:
                    return


def add_node(ring: Ring, info: NodeInfo) -> Ring:
    if info.node_id in ring.nodes:
        raise ValueError(f"node {info.node_id!r} is already in the ring")
    return Ring.build([*ring.nodes.values(), info], ring.vnodes_per_weight)


def remove_node(ring: Ring, node_id: str) -> Ring:
    if node_id not in ring.nodes:
        raise ValueError(f"node {node_id!r} is not in the ring")
    return Ring.build(
        [i for n, i in ring.nodes.items() if n != node_id], ring.vnodes_per_weight
    )


def reweight(ring: Ring, node_id: str, weight: float) -> Ring:
    """A ring where ``node_id`` owns ``vnode_count(weight)`` vnodes; its vnodes ``0..k-1`` keep
    their tokens, so only the added or dropped vnodes' ranges move."""
    old = ring.nodes[node_id]
    new = NodeInfo.make(node_id, old.dc, old.rack, weight, ring.vnodes_per_weight)
    return Ring.build(
        [new if n == node_id else i for n, i in ring.nodes.items()], ring.vnodes_per_weight
    )


# -- replica placement -------------------------------------------------------------------------


def _as_token(key_or_token: bytes | int) -> int:
    return key_or_token if isinstance(key_or_token, int) else token_of(key_or_token)


def _check_replication(n: int, replicas_per_dc: Mapping[str, int] | None) -> None:
    if n < 1:
        raise ValueError(f"replication factor must be at least 1, got {n}")
    if replicas_per_dc is not None:
        if any(c < 0 for c in replicas_per_dc.values()):
            raise ValueError("per-datacenter replica counts must be non-negative")
        if sum(replicas_per_dc.values()) != n:
            raise ValueError(
                f"n={n} must equal the sum of replicas_per_dc {dict(replicas_per_dc)}"
            )


def effective_replicas_per_dc(ring: Ring, replicas_per_dc: Mapping[str, int]) -> dict[str, int]:
    """Per-datacenter counts capped by the nodes each datacenter holds (absent DCs get 0)."""
    return {dc: min(c, ring.nodes_in_dc(dc)) for dc, c in sorted(replicas_per_dc.items())}


class _RackAwarePicker:
    """NetworkTopologyStrategy selection in one DC, fed nodes of that DC in clockwise order:
    take nodes on racks not yet used; once every rack of the DC has been used, take the skipped
    nodes (in walk order) and then any node."""

    __slots__ = ("count", "all_racks", "picked", "skipped", "seen_racks")

    def __init__(self, count: int, all_racks: frozenset[str]) -> None:
        self.count = count
        self.all_racks = all_racks
        self.picked: list[str] = []
        self.skipped: list[str] = []
        self.seen_racks: set[str] = set()

    @property
    def done(self) -> bool:
        return len(self.picked) >= self.count

    def feed(self, node: str, rack: str) -> None:
        if len(self.seen_racks) == len(self.all_racks):
            self.picked.append(node)
        elif rack not in self.seen_racks:
            self.picked.append(node)
            self.seen_racks.add(rack)
            if len(self.seen_racks) == len(self.all_racks):
                self.drain()
        else:
            self.skipped.append(node)

    def drain(self) -> None:
        while self.skipped and len(self.picked) < self.count:
            self.picked.append(self.skipped.pop(0))


def natural_replicas(
    ring: Ring,
    key_or_token: bytes | int,
    n: int,
    replicas_per_dc: Mapping[str, int] | None = None,
) -> tuple[str, ...]:
    """The natural replicas of a key, in clockwise order of first appearance.

    Without ``replicas_per_dc``: the first ``min(n, len(ring))`` distinct nodes clockwise. With it
    (``n`` must equal its sum): per DC, ``min(count, nodes in DC)`` nodes chosen rack-aware.
    The walk stops as soon as every count is met, so the cost is a few vnodes per replica.
    """
    _check_replication(n, replicas_per_dc)
    token = _as_token(key_or_token)
    if replicas_per_dc is None:
        out: list[str] = []
        for node in ring.walk(token):
            out.append(node)
            if len(out) == n:
                break
        return tuple(out)
    pickers = {
        dc: _RackAwarePicker(c, ring.racks_per_dc[dc])
        for dc, c in effective_replicas_per_dc(ring, replicas_per_dc).items()
        if c > 0
    }
    pending = set(pickers)
    order: list[str] = []
    for node in ring.walk(token):
        if not pending:
            break
        order.append(node)
        info = ring.nodes[node]
        picker = pickers.get(info.dc)
        if picker is None or picker.done:
            continue
        picker.feed(node, info.rack)
        if picker.done:
            pending.discard(info.dc)
    chosen: set[str] = set()
    for picker in pickers.values():
        picker.drain()
        chosen.update(picker.picked[: picker.count])
    return tuple(node for node in order if node in chosen)


@dataclass(frozen=True)
class PreferenceList:
    """Where a key's replicas are, given who is up.

    * ``natural``: the natural replicas (effective N = ``len(natural)``), clockwise order.
    * ``targets``: the up natural replicas (in natural order) followed by the fallbacks.
    * ``hints``: fallback node -> the down natural replica it stands in for.
    * ``dcs``: datacenter of every node in ``natural`` and ``targets``.
    * ``replicas_per_dc``: effective (capped) per-DC counts; ``None`` for simple placement.
    """

    token: int
    natural: tuple[str, ...]
    targets: tuple[str, ...]
    hints: Mapping[str, str]
    dcs: Mapping[str, str]
    replicas_per_dc: Mapping[str, int] | None

    @property
    def n(self) -> int:
        return len(self.natural)

    @property
    def down(self) -> tuple[str, ...]:
        """Natural replicas that were not up."""
        return tuple(node for node in self.natural if node not in self.targets)

    def is_fallback(self, node: str) -> bool:
        return node in self.hints


def preference_list(
    ring: Ring,
    key_or_token: bytes | int,
    n: int,
    up_nodes: Collection[str],
    replicas_per_dc: Mapping[str, int] | None = None,
) -> PreferenceList:
    """Natural replicas, plus sloppy-quorum fallbacks for those not in ``up_nodes``.

    Down natural replicas are considered in natural order; each takes the next up node further
    clockwise that is neither a natural replica nor already a fallback (restricted to its own
    datacenter when ``replicas_per_dc`` is given). When no such node exists the down replica has
    no stand-in and the targets are fewer than N.
    """
    token = _as_token(key_or_token)
    natural = natural_replicas(ring, token, n, replicas_per_dc)
    natural_set = set(natural)
    up_natural = [node for node in natural if node in up_nodes]
    down_natural = [node for node in natural if node not in up_nodes]
    hints: dict[str, str] = {}
    if down_natural:
        # Walk clockwise once; each usable node goes to the first still-unserved down replica
        # (of its DC when placing per DC). Equivalent to serving the down replicas in natural
        # order, each taking the next unused candidate.
        waiting = list(down_natural)
        for cand in ring.walk(token):
            if not waiting:
                break
            if cand in natural_set or cand not in up_nodes:
                continue
            for i, down in enumerate(waiting):
                if replicas_per_dc is None or ring.dc_of(down) == ring.dc_of(cand):
                    hints[cand] = down
                    del waiting[i]
                    break
    targets = (*up_natural, *hints)
    dcs = {node: ring.dc_of(node) for node in (*natural, *targets)}
    per_dc = (
        MappingProxyType(effective_replicas_per_dc(ring, replicas_per_dc))
        if replicas_per_dc is not None
        else None
    )
    return PreferenceList(
        token=token,
        natural=natural,
        targets=tuple(targets),
        hints=MappingProxyType(hints),
        dcs=MappingProxyType(dcs),
        replicas_per_dc=per_dc,
    )


# -- ranges and rebalancing --------------------------------------------------------------------


def replica_ranges(
    ring: Ring, n: int, replicas_per_dc: Mapping[str, int] | None = None
) -> list[tuple[TokenRange, tuple[str, ...]]]:
    """Every vnode range of the ring with its natural replicas, clockwise from token 0."""
    return [
        (ring.range_of_index(i), natural_replicas(ring, ring.tokens[i], n, replicas_per_dc))
        for i in range(len(ring.tokens))
    ]


def owned_ranges(
    ring: Ring, node_id: str, n: int, replicas_per_dc: Mapping[str, int] | None = None
) -> list[TokenRange]:
    """The token ranges ``node_id`` naturally replicates, adjacent ranges merged, clockwise."""
    return merge_adjacent(
        [rng for rng, reps in replica_ranges(ring, n, replicas_per_dc) if node_id in reps]
    )


def primary_ranges(ring: Ring, node_id: str) -> list[TokenRange]:
    """The ranges whose first replica is ``node_id`` (the ranges of its own vnodes)."""
    return merge_adjacent(
        [ring.range_of_index(i) for i, o in enumerate(ring.owners) if o == node_id]
    )


@dataclass(frozen=True)
class Transfer:
    """Stream the keys of ``range`` from ``from_node`` to ``to_node``.

    ``from_node`` is an old replica of the range: the one that drops out of the replica set when
    there is one (paired in order with the nodes that join it), otherwise the first old replica.
    ``sources`` lists every old replica, in order of preference, so the executor can substitute
    another when ``from_node`` is unreachable (e.g. a removed node that died).
    """

    range: TokenRange
    from_node: str
    to_node: str
    sources: tuple[str, ...]


def transfer_plan(
    old: Ring,
    new: Ring,
    n: int,
    replicas_per_dc: Mapping[str, int] | None = None,
) -> list[Transfer]:
    """The data movement that turns ``old``'s placement into ``new``'s.

    Considers every elementary range between consecutive tokens of either ring. A range appears
    exactly when its natural replica set differs between the rings, once per node that gains it.
    Ranges that a node merely loses need no transfer (it deletes them after the plan completes).
    Adjacent ranges with the same (from, to, sources) are merged. Ranges with no old replica (an
    empty old ring, or a datacenter that held no node) are not listed: there is nothing to move.
    """
    boundaries = sorted(set(old.tokens) | set(new.tokens))
    plan: list[Transfer] = []
    if not old.tokens:
        return plan
    for k, t in enumerate(boundaries):
        rng = TokenRange(boundaries[k - 1], t)
        before = natural_replicas(old, t, n, replicas_per_dc)
        after = natural_replicas(new, t, n, replicas_per_dc)
        if not before or set(before) == set(after):
            continue
        gained = [node for node in after if node not in before]
        dropped = [node for node in before if node not in after]
        kept = [node for node in before if node in after]
        for i, to_node in enumerate(gained):
            if i < len(dropped):
                src = dropped[i]
            else:
                src = kept[0] if kept else before[0]
            sources = (src, *[b for b in before if b != src])
            plan.append(Transfer(rng, src, to_node, sources))
    return _merge_transfers(plan)


def _merge_transfers(plan: list[Transfer]) -> list[Transfer]:
    out: list[Transfer] = []
    open_by_key: dict[tuple[str, str, tuple[str, ...]], int] = {}
    for tr in plan:
        key = (tr.from_node, tr.to_node, tr.sources)
        idx = open_by_key.get(key)
        if idx is not None and out[idx].range.end == tr.range.start:
            prev = out[idx]
            out[idx] = Transfer(TokenRange(prev.range.start, tr.range.end), *key)
        else:
            open_by_key[key] = len(out)
            out.append(tr)
    return out
