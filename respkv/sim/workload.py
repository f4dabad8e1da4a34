"""The plan of one simulated run: cluster shape, client operations and the fault schedule.

A plan is a pure value made from the seed (``make_plan(seed)``) before anything runs, and
serializable (``to_json``/``from_json``): a failing run is replayed from its seed, and a shrunk
plan (fewer faults) from its JSON. Values written are unique per write (``c<client>.<n>``), so
the history checker can attribute every value read to the write that made it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field

from respkv.sim.network import NetParams

# (W, R) pairs with W + R > N for N = 3, and how often each is drawn
LEVELS = [((2, 2), 6), ((3, 1), 1), ((1, 3), 1)]


@dataclass(frozen=True)
class PlannedOp:
    client: int
    at_ms: float  # earliest start (the client runs its operations one at a time, in order)
    kind: str  # set / del / get
    key: str
    value: str = ""  # set: the unique value


@dataclass(frozen=True)
class Fault:
    at_ms: float
    # partition / heal / crash / restart / resets; with membership changes also join /
    # decommission / removenode
    kind: str
    # partition: the groups; crash / restart / join / decommission: ((node,),); removenode:
    # ((removed,), (by,))
    nodes: tuple[tuple[str, ...], ...] = ()
    mode: str = ""  # crash: process / power (power also tears and reorders dir ops)
    fraction: float = 0.0  # resets: share of open connections reset

    def describe(self) -> str:
        if self.kind == "partition":
            return "partition " + " | ".join(",".join(g) for g in self.nodes)
        if self.kind in ("crash", "restart", "join", "decommission"):
            return f"{self.kind} {self.nodes[0][0]}" + (f" ({self.mode})" if self.mode else "")
        if self.kind == "removenode":
            return f"removenode {self.nodes[0][0]} by {self.nodes[1][0]}"
        if self.kind == "resets":
            return f"reset {self.fraction:.0%} of connections"
        return self.kind


@dataclass
class Plan:
    seed: int
    nodes: list[str]
    n: int
    w: int
    r: int
    sloppy: bool  # hinted handoff (sloppy quorums): the stale-read rule does not apply
    keys: list[str]
    clients: int
    duration_ms: float
    ops: list[PlannedOp] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    net: NetParams = field(default_factory=NetParams)
    membership: bool = False  # the fault schedule may also join, decommission and remove nodes

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        d["ops"] = [PlannedOp(**o) for o in d["ops"]]
        d["faults"] = [Fault(f["at_ms"], f["kind"], tuple(tuple(g) for g in f["nodes"]),
                             f["mode"], f["fraction"]) for f in d["faults"]]
        d["net"] = NetParams(**d["net"])
        return cls(**d)

    def describe(self) -> str:
        return (f"nodes={len(self.nodes)} N={self.n} W={self.w} R={self.r} "
                f"{'sloppy' if self.sloppy else 'strict'} keys={len(self.keys)} "
                f"clients={self.clients}{' membership' if self.membership else ''}")


def make_plan(seed: int, *, duration_ms: float = 6000.0, faults: bool = True,
              membership: bool = False) -> Plan:
    """The plan of seed ``seed`` (deterministic). ``membership``: the fault schedule also
    changes the ring (``_faults``); without it a seed's plan is what it always was."""
    rng = random.Random(f"plan/{seed}")
    nodes = [f"n{i + 1}" for i in range(rng.choice([3, 3, 4, 5]))]
    (w, r), = rng.choices([lv for lv, _ in LEVELS], [wt for _, wt in LEVELS])
    plan = Plan(seed=seed, nodes=nodes, n=3, w=w, r=r, sloppy=rng.random() < 0.5,
                keys=[f"k{i}" for i in range(rng.randint(2, 5))], clients=rng.randint(2, 4),
                duration_ms=duration_ms, membership=membership)
    p = plan.net
    p.max_latency_ms = rng.choice([1.0, 3.0, 10.0])
    p.dup_p = rng.choice([0.0, 0.01, 0.05])
    p.reset_p = rng.choice([0.0, 0.0005, 0.002])
    p.spike_p = rng.choice([0.0, 0.01, 0.03])
    seq = [0] * plan.clients
    for c in range(plan.clients):
        t = rng.uniform(0, 100)
        while t < duration_ms:
            key = rng.choice(plan.keys)
            roll = rng.random()
            if roll < 0.45:
                seq[c] += 1
                plan.ops.append(PlannedOp(c, round(t, 3), "set", key, f"c{c}.{seq[c]}"))
            elif roll < 0.52:
                plan.ops.append(PlannedOp(c, round(t, 3), "del", key))
            else:
                plan.ops.append(PlannedOp(c, round(t, 3), "get", key))
            t += rng.expovariate(1 / 60)
    if faults:
        plan.faults = _faults(rng, nodes, duration_ms, membership)
    return plan


# Membership changes (``make_plan(membership=True)``): the ring never has fewer than
# MIN_MEMBERS (N = 3) or more than MAX_MEMBERS members; after a change the nodes it involves
# are neither crashed nor changed again for MEMBERSHIP_SETTLE_MS (a bootstrap or a
# decommission is a few gossip intervals plus streaming), and no other change starts then.
# Partitions and connection resets still happen meanwhile.
MIN_MEMBERS = 3
MAX_MEMBERS = 6
MEMBERSHIP_SETTLE_MS = 4000.0


def _faults(rng: random.Random, nodes: list[str], duration_ms: float,
            membership: bool = False) -> list[Fault]:
    """The fault schedule. Without ``membership`` the draws are exactly the original ones (a
    seed's plan never changes). With it, ``join`` starts a new node (``n<k>``, k past every
    name used), ``decommission`` makes a live member leave (it streams its ranges away, then
    stops), ``removenode`` has a live member remove a crashed one (which never restarts)."""
    out: list[Fault] = []
    members = list(nodes)
    down: list[str] = []
    split = False
    settle_until = 0.0  # no membership change, and no crash of ``moving``, before this
    moving: set[str] = set()
    t = rng.uniform(200, 1200)
    while t < duration_ms:
        if t >= settle_until:
            moving = set()
        kinds = ["resets"]
        if len(down) < len(members) - 1:
            kinds += ["crash"] * 2
        if down:
            kinds += ["restart"] * 3
        kinds += ["heal"] * 3 if split else ["partition"] * 2
        if membership and t >= settle_until:
            live = [n for n in members if n not in down]
            if len(members) < MAX_MEMBERS:
                kinds += ["join"]
            if len(members) > MIN_MEMBERS and len(live) > MIN_MEMBERS:
                kinds += ["decommission"]
            if len(members) > MIN_MEMBERS and down and live:
                kinds += ["removenode"]
        kind = rng.choice(kinds)
        at = round(t, 3)
        if kind == "crash":
            node = rng.choice([n for n in members if n not in down and n not in moving]
                              or [n for n in members if n not in down])
            if node in moving:  # only a moving node is left to crash: reset connections
                out.append(Fault(at, "resets", fraction=0.5))
                t += rng.uniform(300, 1500)
                continue
            down.append(node)
            out.append(Fault(at, "crash", ((node,),), rng.choice(["process", "power"])))
        elif kind == "join":
            name = f"n{len(nodes) + sum(f.kind == 'join' for f in out) + 1}"
            members.append(name)
            moving = {name}
            settle_until = t + MEMBERSHIP_SETTLE_MS
            out.append(Fault(at, "join", ((name,),)))
        elif kind == "decommission":
            node = rng.choice([n for n in members if n not in down])
            members.remove(node)
            moving = {node}
            settle_until = t + MEMBERSHIP_SETTLE_MS
            out.append(Fault(at, "decommission", ((node,),)))
        elif kind == "removenode":
            gone = down.pop(rng.randrange(len(down)))
            members.remove(gone)
            by = rng.choice([n for n in members if n not in down])
            moving = {by}
            settle_until = t + MEMBERSHIP_SETTLE_MS
            out.append(Fault(at, "removenode", ((gone,), (by,))))
        elif kind == "restart":
            node = down.pop(rng.randrange(len(down)))
            out.append(Fault(at, "restart", ((node,),)))
        elif kind == "partition":
            shuffled = members[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(members) - 1)
            out.append(Fault(at, "partition", (tuple(sorted(shuffled[:cut])),
                                               tuple(sorted(shuffled[cut:])))))
            split = True
        elif kind == "heal":
            out.append(Fault(at, "heal"))
            split = False
        else:
            out.append(Fault(at, "resets", fraction=rng.choice([0.2, 0.5, 1.0])))
        t += rng.uniform(300, 1500)
    return out
