"""Gossiped cluster membership (Dynamo §4.8; van Renesse, Minsky, Hayden 1998, *A Gossip-Style
Failure Detection Service*; Cassandra's Gossiper SYN/ACK/ACK2 exchange).

Each node owns one :class:`NodeState` -- its own row -- and is the only writer of it. A row is
versioned by ``(generation, version)``: ``generation`` is the node's restart epoch (the caller
passes something that grows across restarts, e.g. the start time in seconds), ``version`` grows
with every heartbeat and every change the node makes to its row. A :class:`Membership` is an
immutable map of rows; :func:`merge` keeps, per node, the row with the higher
``(generation, version)`` (ties, which only a bug can produce, broken by the row's content), so
merge is commutative, associative and idempotent and all nodes converge on the same map.

What is *not* here: whether a node is down. Liveness is local (each node's phi detectors, see
:mod:`respkv.cluster.failure`), never gossiped; :func:`advanced` tells the caller whose rows grew
so it can feed those detectors.

Gossip round, all pure functions (the node's gossip task sends the messages):

1. initiator ``A``: ``syn = make_syn(mA)`` -> ``B``
2. ``B``: ``ack = handle_syn(mB, syn)`` -> ``A`` (B's newer rows, and the nodes B wants)
3. ``A``: ``mA', ack2 = handle_ack(mA, ack)`` -> ``B`` (A's rows B asked for)
4. ``B``: ``mB' = handle_ack2(mB, ack2)``

After the round both hold ``merge(mA, mB)`` (for the rows either had at the start).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from respkv.cluster.codec import DecodeError, Reader, frame, put_str, put_uvarint, unframe
from respkv.cluster.hashing import vnode_token
from respkv.cluster.ring import DEFAULT_VNODES_PER_WEIGHT, NodeInfo, Ring, vnode_count

GOSSIP_FORMAT_VERSION = 1


class RandomSource(Protocol):
    """The randomness a caller passes in (``random.Random`` satisfies it)."""

    def randrange(self, start: int, stop: int = ...) -> int: ...


class NodeStatus(enum.Enum):
    JOINING = "joining"  # bootstrapping; not yet a ring member
    NORMAL = "normal"  # a ring member
    LEAVING = "leaving"  # still a ring member, streaming its ranges away
    LEFT = "left"  # gone for good; kept so the departure itself propagates


RING_STATUSES = frozenset({NodeStatus.NORMAL, NodeStatus.LEAVING})


@dataclass(frozen=True)
class NodeState:
    """One node's gossiped row. ``vnodes`` is the node's vnode count, so every node derives
    the same tokens (``vnode_token(node_id, i)`` for ``i < vnodes``) whatever its own config."""

    node_id: str
    generation: int
    version: int
    status: NodeStatus
    dc: str
    rack: str
    weight: float
    vnodes: int
    address: str  # "host:port" of the node-to-node listener

    def order_key(self) -> tuple:
        return (
            self.generation,
            self.version,
            self.status.value,
            self.dc,
            self.rack,
            self.weight,
            self.vnodes,
            self.address,
        )

    def newer_than(self, other: NodeState) -> bool:
        if self.generation != other.generation:
            return self.generation > other.generation
        if self.version != other.version:
            return self.version > other.version
        return self.order_key() > other.order_key()

    def tokens(self) -> tuple[int, ...]:
        return tuple(vnode_token(self.node_id, i) for i in range(self.vnodes))


def new_node_state(
    node_id: str,
    generation: int,
    address: str,
    dc: str = "dc1",
    rack: str = "rack1",
    weight: float = 1,
    vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT,
    status: NodeStatus = NodeStatus.JOINING,
) -> NodeState:
    """A node's own row at start-up (version 1 of a fresh ``generation``)."""
    return NodeState(
        node_id, generation, 1, status, dc, rack, weight,
        vnode_count(weight, vnodes_per_weight), address,
    )


class Membership:
    """An immutable map node id -> :class:`NodeState`."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[NodeState] = ()) -> None:
        out: dict[str, NodeState] = {}
        for row in rows:
            have = out.get(row.node_id)
            if have is None or row.newer_than(have):
                out[row.node_id] = row
        self._rows = out

    @classmethod
    def _wrap(cls, rows: dict[str, NodeState]) -> Membership:
        m = cls.__new__(cls)
        m._rows = rows
        return m

    def __getitem__(self, node_id: str) -> NodeState:
        return self._rows[node_id]

    def get(self, node_id: str) -> NodeState | None:
        return self._rows.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._rows))

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[NodeState]:
        return [self._rows[n] for n in sorted(self._rows)]

    def as_dict(self) -> Mapping[str, NodeState]:
        return dict(self._rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Membership):
            return NotImplemented
        return self._rows == other._rows

    def __hash__(self) -> int:
        return hash(frozenset(self._rows.values()))

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{r.node_id}@{r.generation}.{r.version}:{r.status.value}" for r in self.rows()
        )
        return f"Membership({inner})"

    def without(self, node_id: str) -> Membership:
        """This map without ``node_id``'s row (a LEFT row dropped after ``left_row_ttl_s``:
        not a merge; the caller keeps the row from coming back, see respkv/node/gossip.py)."""
        if node_id not in self._rows:
            return self
        rows = dict(self._rows)
        del rows[node_id]
        return Membership._wrap(rows)

    def with_row(self, row: NodeState) -> Membership:
        """This map with ``row`` merged in (kept only if newer)."""
        have = self._rows.get(row.node_id)
        if have is not None and not row.newer_than(have):
            return self
        rows = dict(self._rows)
        rows[row.node_id] = row
        return Membership._wrap(rows)


def merge(a: Membership, b: Membership) -> Membership:
    """Per node, the row with the higher ``(generation, version)``. A join-semilattice."""
    if len(a) < len(b):
        a, b = b, a
    rows: dict[str, NodeState] | None = None
    for node_id, theirs in b._rows.items():
        mine = a._rows.get(node_id)
        if mine is theirs:
            continue
        if mine is None or theirs.newer_than(mine):
            if rows is None:
                rows = dict(a._rows)
            rows[node_id] = theirs
    return a if rows is None else Membership._wrap(rows)


# -- a node's changes to its own row ----------------------------------------------------------


def _own(m: Membership, node_id: str) -> NodeState:
    row = m.get(node_id)
    if row is None:
        raise KeyError(f"{node_id!r} has no row in this membership")
    return row


def heartbeat(m: Membership, node_id: str) -> Membership:
    """``node_id`` bumps its own heartbeat version (once per gossip round)."""
    row = _own(m, node_id)
    return m.with_row(replace(row, version=row.version + 1))


def set_status(m: Membership, node_id: str, status: NodeStatus) -> Membership:
    row = _own(m, node_id)
    return m.with_row(replace(row, status=status, version=row.version + 1))


def set_weight(
    m: Membership, node_id: str, weight: float, vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT
) -> Membership:
    row = _own(m, node_id)
    return m.with_row(
        replace(
            row, weight=weight, vnodes=vnode_count(weight, vnodes_per_weight),
            version=row.version + 1,
        )
    )


REMOVAL_VERSION_STEP = 1 << 40
"""How far ``remove_member`` raises the removed row's version: past any heartbeat its node could
still emit under the same generation (one per gossip round: 2**40 rounds is 35,000 years at
1 ms), so a node declared removed while it was only paused or cut off cannot win its row back
without restarting (a new generation), and then it refuses to run (respkv/node/coordinator.py)."""


def remove_member(m: Membership, node_id: str) -> Membership:
    """Another node's row, written LEFT on its behalf (``respkv admin removenode``; Cassandra's
    ``nodetool removenode``, Riak's ``cluster force-remove``): for a member that is gone for good
    and cannot decommission itself. The one exception to each row having one writer; the row
    keeps its generation, so every node merges it the same way."""
    row = m.get(node_id)
    if row is None:
        raise KeyError(f"{node_id!r} has no row in this membership")
    return m.with_row(replace(row, status=NodeStatus.LEFT,
                              version=row.version + REMOVAL_VERSION_STEP))


def restart(m: Membership, row: NodeState) -> Membership:
    """A node comes back with a fresh row; its ``generation`` must exceed the one gossiped
    before the restart, else the old row would win."""
    old = m.get(row.node_id)
    if old is not None and row.generation <= old.generation:
        raise ValueError(
            f"generation {row.generation} of {row.node_id!r} does not exceed {old.generation}"
        )
    return m.with_row(row)


def advanced(old: Membership, new: Membership) -> list[str]:
    """Nodes whose row in ``new`` is newer than in ``old`` (or new): heard-from evidence to feed
    their failure detectors. Sorted."""
    out = []
    for node_id, row in new._rows.items():
        prev = old._rows.get(node_id)
        if prev is None or row.newer_than(prev):
            out.append(node_id)
    return sorted(out)


# -- views -------------------------------------------------------------------------------------


def ring_of(m: Membership, vnodes_per_weight: int = DEFAULT_VNODES_PER_WEIGHT) -> Ring:
    """The ring of the members in NORMAL or LEAVING status. Joining nodes are not in it yet;
    compute ``transfer_plan(ring_of(m), ring_with_joiners)`` to bootstrap them."""
    return Ring.build(
        (
            NodeInfo(r.node_id, r.dc, r.rack, r.weight, r.tokens())
            for r in m.rows()
            if r.status in RING_STATUSES
        ),
        vnodes_per_weight,
    )


def gossip_candidates(m: Membership, self_id: str) -> list[str]:
    """Nodes worth gossiping with: every known node except ``self_id`` and LEFT nodes."""
    return [n for n in sorted(m._rows) if n != self_id and m._rows[n].status is not NodeStatus.LEFT]


def choose_gossip_peer(
    m: Membership, self_id: str, rng: RandomSource, extra: Iterable[str] = ()
) -> str | None:
    """A uniformly random peer among :func:`gossip_candidates` plus ``extra`` (e.g. seed
    addresses not yet in the membership); None when there is nobody."""
    candidates = sorted(set(gossip_candidates(m, self_id)) | (set(extra) - {self_id}))
    if not candidates:
        return None
    return candidates[rng.randrange(len(candidates))]


# -- the SYN / ACK / ACK2 exchange -------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    node_id: str
    generation: int
    version: int


@dataclass(frozen=True)
class GossipSyn:
    sender: str
    digests: tuple[Digest, ...]


@dataclass(frozen=True)
class GossipAck:
    sender: str
    rows: tuple[NodeState, ...]  # rows newer at the sender than the SYN said
    requests: tuple[str, ...]  # nodes for which the sender wants the initiator's row


@dataclass(frozen=True)
class GossipAck2:
    sender: str
    rows: tuple[NodeState, ...]


def digests(m: Membership) -> tuple[Digest, ...]:
    return tuple(Digest(r.node_id, r.generation, r.version) for r in m.rows())


def make_syn(m: Membership, self_id: str) -> GossipSyn:
    return GossipSyn(self_id, digests(m))


def handle_syn(m: Membership, self_id: str, syn: GossipSyn) -> GossipAck:
    """The receiver's answer: its rows that are newer than (or absent from) the digests, and
    requests for the rows the digests show to be newer at the initiator. ``m`` is unchanged."""
    rows: list[NodeState] = []
    requests: list[str] = []
    mentioned = set()
    for d in syn.digests:
        mentioned.add(d.node_id)
        mine = m.get(d.node_id)
        if mine is None:
            requests.append(d.node_id)
            continue
        mine_v = (mine.generation, mine.version)
        theirs_v = (d.generation, d.version)
        if mine_v > theirs_v:
            rows.append(mine)
        elif mine_v < theirs_v:
            requests.append(d.node_id)
            if d.node_id == syn.sender and mine.status is NodeStatus.LEFT:
                # The initiator restarted since it left (or was removed): it is told, so a
                # member removed while it was down can stop rather than come back with stale
                # data (respkv/node/gossip.py). Its own newer row wins its merge as before.
                rows.append(mine)
    rows.extend(m[n] for n in m if n not in mentioned)
    return GossipAck(self_id, tuple(rows), tuple(requests))


def handle_ack(m: Membership, self_id: str, ack: GossipAck) -> tuple[Membership, GossipAck2]:
    """The initiator merges the receiver's rows and answers the requests with its own rows.
    As in ``handle_syn``, a receiver whose own row is newer than a LEFT row the initiator held
    for it is sent that LEFT row too (it restarted after leaving)."""
    merged = merge(m, Membership(ack.rows))
    rows = [merged[n] for n in ack.requests if n in merged]
    mine = m.get(ack.sender)
    if mine is not None and mine.status is NodeStatus.LEFT:
        theirs = next((r for r in ack.rows if r.node_id == ack.sender), None)
        if theirs is not None and theirs.newer_than(mine):
            rows.append(mine)
    return merged, GossipAck2(self_id, tuple(rows))


def handle_ack2(m: Membership, ack2: GossipAck2) -> Membership:
    return merge(m, Membership(ack2.rows))


# -- wire encoding -----------------------------------------------------------------------------
#
# message = framed(0x01, kind byte || str sender || payload); kinds: 1 SYN, 2 ACK, 3 ACK2
# SYN  payload = uvarint n || n * (str node, uvarint generation, uvarint version)
# ACK  payload = rows || uvarint n || n * str node
# ACK2 payload = rows
# rows = uvarint n || n * row; row = str node, uvarint generation, uvarint version,
#        str status, str dc, str rack, str weight (repr of the float), uvarint vnodes, str address

_SYN, _ACK, _ACK2 = 1, 2, 3
GossipMessage = GossipSyn | GossipAck | GossipAck2


class InvalidGossipMessageError(ValueError):
    pass


def _put_rows(out: bytearray, rows: Iterable[NodeState]) -> None:
    rows = list(rows)
    put_uvarint(out, len(rows))
    for r in rows:
        put_str(out, r.node_id)
        put_uvarint(out, r.generation)
        put_uvarint(out, r.version)
        put_str(out, r.status.value)
        put_str(out, r.dc)
        put_str(out, r.rack)
        put_str(out, repr(float(r.weight)))
        put_uvarint(out, r.vnodes)
        put_str(out, r.address)


def _read_rows(rd: Reader) -> tuple[NodeState, ...]:
    rows = []
    for _ in range(rd.uvarint()):
        node, gen, ver = rd.str_(), rd.uvarint(), rd.uvarint()
        try:
            status = NodeStatus(rd.str_())
            dc, rack = rd.str_(), rd.str_()
            weight = float(rd.str_())
        except ValueError as exc:
            raise DecodeError(str(exc)) from exc
        vnodes, address = rd.uvarint(), rd.str_()
        rows.append(NodeState(node, gen, ver, status, dc, rack, weight, vnodes, address))
    return tuple(rows)


def encode_gossip(msg: GossipMessage) -> bytes:
    body = bytearray()
    if isinstance(msg, GossipSyn):
        body.append(_SYN)
        put_str(body, msg.sender)
        put_uvarint(body, len(msg.digests))
        for d in msg.digests:
            put_str(body, d.node_id)
            put_uvarint(body, d.generation)
            put_uvarint(body, d.version)
    elif isinstance(msg, GossipAck):
        body.append(_ACK)
        put_str(body, msg.sender)
        _put_rows(body, msg.rows)
        put_uvarint(body, len(msg.requests))
        for n in msg.requests:
            put_str(body, n)
    else:
        body.append(_ACK2)
        put_str(body, msg.sender)
        _put_rows(body, msg.rows)
    return frame(GOSSIP_FORMAT_VERSION, body)


def decode_gossip(data: bytes) -> GossipMessage:
    try:
        rd = Reader(unframe(data, GOSSIP_FORMAT_VERSION))
        kind = rd.byte()
        sender = rd.str_()
        msg: GossipMessage
        if kind == _SYN:
            ds = tuple(
                Digest(rd.str_(), rd.uvarint(), rd.uvarint()) for _ in range(rd.uvarint())
            )
            msg = GossipSyn(sender, ds)
        elif kind == _ACK:
            rows = _read_rows(rd)
            reqs = tuple(rd.str_() for _ in range(rd.uvarint()))
            msg = GossipAck(sender, rows, reqs)
        elif kind == _ACK2:
            msg = GossipAck2(sender, _read_rows(rd))
        else:
            raise DecodeError(f"unknown gossip message kind {kind}")
        rd.expect_end()
        return msg
    except DecodeError as exc:
        raise InvalidGossipMessageError(f"invalid gossip message: {exc}") from exc
