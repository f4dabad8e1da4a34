"""Consistency levels, replica plans and the quorum tracker: plan, then execute.

After Cassandra's ``ConsistencyLevel`` / ``ReplicaPlan`` / ``ResponseResolver`` and Dynamo's
sloppy quorums (DeCandia et al. 2007, §4.5-4.6). A coordinator computes a :class:`ReplicaPlan`
-- which replicas to contact, how many acknowledgements it needs overall and per datacenter,
which contacts are fallbacks holding a hint for whom -- as a value, from the preference list,
before any message is sent. It then feeds replies into a :class:`QuorumTracker`, a pure state
machine that says when the operation has succeeded or can no longer succeed, and which replicas
need a read repair with what.

Level arithmetic, with N the *effective* replication (capped by the nodes that exist):

=============  =====================================================================
ONE/TWO/THREE  1/2/3 acks from any replicas, capped at N (a named level scales down)
QUORUM         N // 2 + 1 acks from any replicas
ALL            N acks
LOCAL_ONE      1 ack from the coordinator's datacenter
LOCAL_QUORUM   n_local // 2 + 1 acks from the coordinator's datacenter
EACH_QUORUM    n_dc // 2 + 1 acks from every datacenter holding replicas
integer k      k acks from any replicas; k > N is an error (:class:`InvalidLevelError`)
=============  =====================================================================

Writes go to all targets (up natural replicas and fallbacks); fallbacks' acks count (a sloppy
quorum). Reads by default go to the up natural replicas only, since a fallback holds hints, not
the key's history; pass ``sloppy=True`` to include fallbacks. LOCAL_* levels when the
coordinator's datacenter holds no replica of the key are unavailable (need 1, have 0 there).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from respkv.cluster.ring import PreferenceList
from respkv.cluster.versions import EMPTY, MAX_CLOCK_ENTRIES, SiblingSet, sync


class ConsistencyLevel(enum.Enum):
    ONE = "ONE"
    TWO = "TWO"
    THREE = "THREE"
    QUORUM = "QUORUM"
    ALL = "ALL"
    LOCAL_ONE = "LOCAL_ONE"
    LOCAL_QUORUM = "LOCAL_QUORUM"
    EACH_QUORUM = "EACH_QUORUM"


Level = ConsistencyLevel | int


class InvalidLevelError(ValueError):
    """A consistency level that does not parse, or asks for more replicas than exist.
    ``str(exc)`` is fit for a Redis error reply."""


def parse_level(raw: bytes | str | int) -> Level:
    """``b"quorum"``, ``"LOCAL_QUORUM"``, ``b"2"`` or ``2`` -> a level. Case-insensitive;
    integers must be >= 1."""
    if isinstance(raw, int):
        value = raw
    else:
        try:
            text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise InvalidLevelError("invalid consistency level") from None
        text = text.strip()
        upper = text.upper()
        if upper in ConsistencyLevel.__members__:
            return ConsistencyLevel[upper]
        if not text.isdigit() or not text.isascii():
            raise InvalidLevelError(f"invalid consistency level '{text}'")
        value = int(text)
    if value < 1:
        raise InvalidLevelError(f"invalid consistency level '{value}': must be at least 1")
    return value


def format_level(level: Level) -> str:
    return level.value if isinstance(level, ConsistencyLevel) else str(level)


@dataclass(frozen=True)
class Unavailable:
    """The plan can never meet its level: ``have`` live targets where ``needed`` acks are due
    (in ``dc`` when the shortfall is in one datacenter)."""

    needed: int
    have: int
    dc: str | None = None

    def message(self) -> str:
        where = f" in {self.dc}" if self.dc else ""
        return f"unavailable: needed {self.needed}, have {self.have}{where}"


class OpKind(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class ReplicaPlan:
    """What a coordinator will do for one key, decided before sending anything.

    * ``contacts``: replicas to send to; the coordinator's own replica first when it is one,
      then natural replicas in preference order, then fallbacks.
    * ``required``: acks needed overall; ``required_per_dc``: acks needed within each listed DC
      (LOCAL_* and EACH_QUORUM). Both must be met.
    * ``hints``: contact -> the down natural replica whose write it holds as a hint.
    * ``local_replica``: the coordinator's node id if it is among the contacts, else None.
    * ``unavailable``: set when the contacts can never meet the requirement; then nothing
      should be sent and the client gets ``unavailable.message()``.
    """

    kind: OpKind
    level: Level
    n: int
    contacts: tuple[str, ...]
    required: int
    required_per_dc: Mapping[str, int]
    dcs: Mapping[str, str]
    hints: Mapping[str, str]
    local_replica: str | None
    unavailable: Unavailable | None = None

    @property
    def is_available(self) -> bool:
        return self.unavailable is None

    def is_fallback(self, node: str) -> bool:
        return node in self.hints


def _quorum(n: int) -> int:
    return n // 2 + 1


def _requirements(
    pref: PreferenceList, level: Level, coordinator_dc: str
) -> tuple[int, dict[str, int]]:
    """(acks overall, acks per DC) for ``level`` against the effective N of ``pref``."""
    n = pref.n
    natural_per_dc: dict[str, int] = {}
    for node in pref.natural:
        dc = pref.dcs[node]
        natural_per_dc[dc] = natural_per_dc.get(dc, 0) + 1
    if isinstance(level, int):
        if level > n:
            raise InvalidLevelError(
                f"consistency level {level} exceeds the replication factor {n}"
            )
        return level, {}
    match level:
        case ConsistencyLevel.ONE:
            return min(1, n), {}
        case ConsistencyLevel.TWO:
            return min(2, n), {}
        case ConsistencyLevel.THREE:
            return min(3, n), {}
        case ConsistencyLevel.QUORUM:
            return (_quorum(n) if n else 0), {}
        case ConsistencyLevel.ALL:
            return n, {}
        case ConsistencyLevel.LOCAL_ONE:
            return 0, {coordinator_dc: 1}
        case ConsistencyLevel.LOCAL_QUORUM:
            local = natural_per_dc.get(coordinator_dc, 0)
            return 0, {coordinator_dc: _quorum(local) if local else 1}
        case ConsistencyLevel.EACH_QUORUM:
            return 0, {dc: _quorum(c) for dc, c in sorted(natural_per_dc.items())}
    raise AssertionError(level)


def plan(
    kind: OpKind,
    pref: PreferenceList,
    level: Level,
    coordinator: str,
    coordinator_dc: str,
    *,
    sloppy: bool | None = None,
) -> ReplicaPlan:
    """The replica plan for one operation. ``sloppy`` (default: True for writes, False for
    reads) says whether fallbacks are contacted and counted. Raises :class:`InvalidLevelError`
    for an integer level above the effective N; an unmeetable level is reported in the plan."""
    if sloppy is None:
        sloppy = kind is OpKind.WRITE
    required, per_dc = _requirements(pref, level, coordinator_dc)
    targets = [t for t in pref.targets if sloppy or not pref.is_fallback(t)]
    if coordinator in targets:
        targets.remove(coordinator)
        targets.insert(0, coordinator)
    hints = {t: pref.hints[t] for t in targets if pref.is_fallback(t)}
    unavailable: Unavailable | None = None
    if not pref.natural:
        unavailable = Unavailable(max(required, 1), 0)
    elif len(targets) < required:
        unavailable = Unavailable(required, len(targets))
    else:
        for dc, need in per_dc.items():
            have = sum(1 for t in targets if pref.dcs[t] == dc)
            if have < need:
                unavailable = Unavailable(need, have, dc)
                break
    return ReplicaPlan(
        kind=kind,
        level=level,
        n=pref.n,
        contacts=tuple(targets),
        required=required,
        required_per_dc=MappingProxyType(per_dc),
        dcs=MappingProxyType({t: pref.dcs[t] for t in targets}),
        hints=MappingProxyType(hints),
        local_replica=coordinator if coordinator in targets else None,
        unavailable=unavailable,
    )


def with_pending(plan: ReplicaPlan, pending: Sequence[str], dcs: Mapping[str, str],
                 up: Container[str]) -> ReplicaPlan:
    """A write's ``plan`` while a range moves: ``pending`` are the replicas the key will have
    once the JOINING/LEAVING members settle that are not natural replicas now. Each one raises
    the acks required by one (overall, or in its datacenter for the per-datacenter levels) and,
    when ``up``, is a contact whose ack counts (Cassandra's pending endpoints, CASSANDRA-833).

    Why: the new replica set is the old one less the nodes losing the range plus the pending
    ones, as many as those losing it. A write acknowledged by W + P of old and pending replicas
    is then on at least W of the new set, whichever old replicas lose the range; with only W
    counted, a write acknowledged by the node about to lose the range (and by nobody in the new
    set) would vanish when the ring changes (found by the simulation with membership changes,
    seed 2). A pending replica that is down makes the write need one more old replica
    instead."""
    extra = [node for node in pending if node not in plan.contacts]
    if not extra:
        return plan
    live = [node for node in extra if node in up]
    contacts = plan.contacts + tuple(live)
    required = plan.required + len(extra) if plan.required else 0
    per_dc = dict(plan.required_per_dc)
    for node in extra:
        if dcs[node] in per_dc:
            per_dc[dcs[node]] += 1
    all_dcs = {**plan.dcs, **{node: dcs[node] for node in live}}
    unavailable = plan.unavailable
    if unavailable is None:
        if len(contacts) < required:
            unavailable = Unavailable(required, len(contacts))
        else:
            for dc, need in per_dc.items():
                have = sum(1 for t in contacts if all_dcs[t] == dc)
                if have < need:
                    unavailable = Unavailable(need, have, dc)
                    break
    return replace(plan, contacts=contacts, required=required,
                   required_per_dc=MappingProxyType(per_dc), dcs=MappingProxyType(all_dcs),
                   unavailable=unavailable)


def plan_read(
    pref: PreferenceList, level: Level, coordinator: str, coordinator_dc: str, *, sloppy: bool = False
) -> ReplicaPlan:
    return plan(OpKind.READ, pref, level, coordinator, coordinator_dc, sloppy=sloppy)


def plan_write(
    pref: PreferenceList, level: Level, coordinator: str, coordinator_dc: str, *, sloppy: bool = True
) -> ReplicaPlan:
    return plan(OpKind.WRITE, pref, level, coordinator, coordinator_dc, sloppy=sloppy)


# -- tracking replies ------------------------------------------------------------------------


class Outcome(enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Failed:
    """The level can no longer be met: ``got`` acks where ``needed`` were required (in ``dc``
    when the shortfall is per datacenter)."""

    needed: int
    got: int
    dc: str | None = None

    def message(self) -> str:
        where = f" in {self.dc}" if self.dc else ""
        return f"quorum failed: needed {self.needed}, got {self.got}{where}"


@dataclass(frozen=True)
class ReadRepair:
    """Send ``merged`` to each of ``stale`` (replicas whose reply lacked part of it)."""

    merged: SiblingSet
    stale: tuple[str, ...]


class QuorumTracker:
    """Collects the replies to one plan. Owned by the one coordinator task executing the plan;
    not shared. Each contact's first reply counts; later ones for the same node are ignored.

    Read replies carry the replica's :class:`SiblingSet` (``EMPTY`` for "not found"); write
    replies carry nothing. :meth:`timeout` marks every contact that has not replied as failed.

    Cost: it runs once per replica reply on the coordinator's hot path, so the overall count
    (the only requirement of every level but the per-datacenter ones) is kept as counters;
    per-datacenter requirements take the general path.
    """

    __slots__ = ("plan", "_ok", "_failed", "_merged", "_contacts", "_required", "_per_dc")

    def __init__(self, plan: ReplicaPlan) -> None:
        if plan.unavailable is not None:
            raise ValueError("cannot track an unavailable plan")
        self.plan = plan
        self._ok: dict[str, SiblingSet] = {}
        self._failed: dict[str, str] = {}
        self._merged: SiblingSet = EMPTY
        self._contacts = plan.contacts
        self._required = plan.required
        self._per_dc = bool(plan.required_per_dc)

    # -- inputs --
    def ok(self, node: str, versions: SiblingSet | None = None) -> None:
        if node not in self._contacts or node in self._ok or node in self._failed:
            return
        if versions is None or versions is EMPTY:
            # sync(merged, EMPTY) is merged: a write ack or a "not found" adds nothing
            self._ok[node] = EMPTY
            return
        self._ok[node] = versions
        merged = self._merged
        if merged is EMPTY and len(versions.clock) <= MAX_CLOCK_ENTRIES:
            # sync(EMPTY, s) is s for a canonical set within the clock bound (every set the
            # versions module makes or decodes is canonical): the usual first read reply
            self._merged = versions
        else:
            self._merged = sync(merged, versions)

    def error(self, node: str, reason: str = "error") -> None:
        if node not in self._contacts or node in self._ok or node in self._failed:
            return
        self._failed[node] = reason

    def timeout(self) -> None:
        for node in self.pending_nodes():
            self._failed[node] = "timeout"

    # -- answers --
    def pending_nodes(self) -> tuple[str, ...]:
        return tuple(n for n in self._contacts if n not in self._ok and n not in self._failed)

    def acked(self) -> tuple[str, ...]:
        return tuple(self._ok)

    def _shortfall(self, count_pending: bool) -> Failed | None:
        """The first unmet requirement, counting acks (plus pending contacts if asked)."""
        pending = set(self.pending_nodes()) if count_pending else set()
        got = len(self._ok) + len(pending)
        if got < self._required:
            return Failed(self._required, len(self._ok))
        for dc, need in self.plan.required_per_dc.items():
            in_dc = sum(1 for n in (*self._ok, *pending) if self.plan.dcs[n] == dc)
            if in_dc < need:
                ok_dc = sum(1 for n in self._ok if self.plan.dcs[n] == dc)
                return Failed(need, ok_dc, dc)
        return None

    def outcome(self) -> Outcome:
        if not self._per_dc:
            ok = len(self._ok)
            if ok >= self._required:
                return Outcome.SUCCEEDED
            # every contact is acked, failed or pending: at most len(contacts) - failed acks
            if len(self._contacts) - len(self._failed) < self._required:
                return Outcome.FAILED
            return Outcome.PENDING
        if self._shortfall(count_pending=False) is None:
            return Outcome.SUCCEEDED
        if self._shortfall(count_pending=True) is not None:
            return Outcome.FAILED
        return Outcome.PENDING

    def failure(self) -> Failed | None:
        """Why the operation failed (None unless ``outcome() is FAILED``)."""
        if self.outcome() is not Outcome.FAILED:
            return None
        return self._shortfall(count_pending=False)

    @property
    def done(self) -> bool:
        """No reply is outstanding."""
        return len(self._ok) + len(self._failed) == len(self._contacts)

    def merged(self) -> SiblingSet:
        """The sync of every read reply so far: what the client is answered with."""
        return self._merged

    def read_repair(self) -> ReadRepair | None:
        """Replicas that answered with less than the merged versions, or None if all agree.
        Call after success (and again when ``done``, to repair late repliers too)."""
        merged = self._merged
        stale = tuple(n for n, s in self._ok.items() if s is not merged and s != merged)
        return ReadRepair(self._merged, stale) if stale else None
