"""Operation histories of a key-value store under faults, and the checker that judges them.

Pure: no I/O, no clock, no randomness. The simulation (respkv/sim) and the real-process fault
campaigns record into the same :class:`History` and call the same :func:`check`.

Recording
---------

Every client operation is one :class:`Op`: ``invoke`` when the client sends it, then exactly one
of ``ok`` (with what a read returned), ``fail`` or ``unknown``. Times are milliseconds on one
clock shared by all clients (the simulation's virtual clock; a campaign's monotonic clock).

* ``set``: writes ``value``. **Values must be unique per write** (``check`` raises ValueError
  otherwise): that is how a read value is attributed to the write that made it.
* ``del``: writes a tombstone. A DEL that found nothing to delete (reply 0) wrote nothing: record
  it with ``ok(..., noop=True)``; it is then ignored as a write.
* ``get``: ``values`` is what the read returned: one value for GET (None for nil), every sibling's
  value for a sibling read (None for a tombstone).

Outcomes: ``ok`` (acknowledged); ``fail`` -- the operation **certainly had no effect** (a write
refused before anything was sent, e.g. respkv's ``NOREPLICAS Not enough replicas up``; any failed
read); ``unknown`` -- it may or may not have taken effect, now or later (timeouts, ``NOREPLICAS
... answered A``, connection lost). When in doubt, record ``unknown``: ``fail`` is a claim the
checker holds the store to. An unknown operation's completion time is +infinity.

After the run, once faults are healed and the store was given the chance to repair, record for
every key the values of its siblings as all replicas hold them (``set_final``), and whether the
replicas converged (``set_convergence``).

The rules ``check`` applies (with W + R > N)
--------------------------------------------

Notation: ``w.complete`` is +inf for unknown operations; "w could have seen a" means
``w.complete >= a.invoke`` (w's dot can only be made after a's if w ends after a starts; equal
times count, as a simulated clock can give operations zero duration). A write is
*present* at the end when it is a ``set`` whose value is among the final siblings, or a ``del``
and a tombstone is among them (or the key has no siblings left).

1. ``phantom-read``: every value read (during the run or at the end) was written by a ``set`` of
   the same key that was invoked before the read completed. ``failed-write-visible``: ... and that
   ``set`` did not ``fail``.
2. ``lost-write``: every acknowledged write ``a`` is present at the end, **or** some other
   non-failed write present at the end could have seen ``a`` (it may have superseded ``a``
   causally: a DVV store drops exactly the writes a later write's context covers). So an
   acknowledged write is lost when it is absent and everything that survived ended before it
   began. This refines the naive "the last acknowledged write in real-time order survives", which
   is wrong for concurrent writes (one of two overlapping writes may legitimately see and replace
   the other), and it does not demand that a real-time-superseded write be gone (it may survive
   as a sibling).
3. ``stale-read`` (only with ``stale_reads=True``: strict quorums, W + R > N, node clocks that
   agree, and a last-writer-wins read of the siblings' winner): a read ``r`` returning ``v`` is
   stale when every write that could have produced ``v`` -- the ``set`` of ``v``; for nil the
   initial absence and every non-failed ``del`` -- is *superseded before r*: some acknowledged
   write ``w`` has ``c.complete + granularity_ms <= w.invoke`` and ``w.complete < r.invoke``. With
   W + R > N the read meets a replica holding ``w`` (or a write that saw it), and ``w``'s
   timestamp is later than ``c``'s, so the winner cannot be ``c``. ``granularity_ms`` is the
   timestamp resolution (two writes in one millisecond may tie). Sloppy quorums (hinted
   handoff) void the intersection, so campaigns running them leave this off.
4. ``divergence``: after the heal, all replicas of every key hold equal sets
   (``set_convergence(equal=False)`` is a violation); the time from the heal to convergence is
   reported, not judged.

A violation names the rule, the key, the operations involved and a readable message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

OK = "ok"
FAIL = "fail"
UNKNOWN = "unknown"
INF = float("inf")
WRITES = ("set", "del")
KINDS = ("set", "del", "get")


@dataclass
class Op:
    """One client operation. ``complete_ms`` is None until it completes (and stays None, i.e.
    +infinity, for an unknown outcome)."""

    id: int
    client: str
    kind: str
    key: bytes
    value: bytes | None
    invoke_ms: float
    complete_ms: float | None = None
    outcome: str | None = None
    values: tuple[bytes | None, ...] = ()
    noop: bool = False

    @property
    def end(self) -> float:
        return INF if self.complete_ms is None or self.outcome == UNKNOWN else self.complete_ms

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES and not self.noop

    def describe(self) -> str:
        what = {"set": f"SET {_s(self.key)} {_s(self.value)}", "del": f"DEL {_s(self.key)}",
                "get": f"GET {_s(self.key)}"}[self.kind]
        end = "..." if self.complete_ms is None else f"{self.complete_ms:.1f}"
        res = self.outcome or "pending"
        if self.kind == "get" and self.outcome == OK:
            res += " -> " + ",".join(_s(v) for v in self.values)
        if self.noop:
            res += " (deleted nothing)"
        return f"#{self.id} {self.client} [{self.invoke_ms:.1f}, {end}] {what}: {res}"


def _s(b: bytes | None) -> str:
    return "nil" if b is None else b.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Violation:
    rule: str
    key: bytes
    message: str
    ops: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.rule} on {_s(self.key)}: {self.message}"


@dataclass
class History:
    """What the clients did and what the store ended with. Not thread-safe (one recorder)."""

    ops: list[Op] = field(default_factory=list)
    final: dict[bytes, tuple[bytes | None, ...]] = field(default_factory=dict)
    heal_ms: float | None = None
    converged_ms: float | None = None
    replicas_equal: bool | None = None
    divergence: str = ""

    def invoke(self, client: str, kind: str, key: bytes, value: bytes | None = None, *,
               at_ms: float) -> Op:
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}")
        op = Op(len(self.ops), client, kind, key, value if kind == "set" else None, at_ms)
        self.ops.append(op)
        return op

    def ok(self, op: Op, *, at_ms: float, values: Iterable[bytes | None] = (),
           noop: bool = False) -> None:
        op.outcome, op.complete_ms, op.values, op.noop = OK, at_ms, tuple(values), noop

    def fail(self, op: Op, *, at_ms: float) -> None:
        op.outcome, op.complete_ms = FAIL, at_ms

    def unknown(self, op: Op, *, at_ms: float | None = None) -> None:
        op.outcome, op.complete_ms = UNKNOWN, at_ms

    def set_final(self, key: bytes, values: Iterable[bytes | None]) -> None:
        self.final[key] = tuple(values)

    def set_convergence(self, *, heal_ms: float, converged_ms: float | None, equal: bool,
                        detail: str = "") -> None:
        self.heal_ms, self.converged_ms, self.replicas_equal = heal_ms, converged_ms, equal
        self.divergence = detail

    def counts(self) -> dict[str, int]:
        """``{"set_ok": 3, "get_fail": 1, ...}`` plus ``ops``."""
        out: dict[str, int] = {"ops": len(self.ops)}
        for op in self.ops:
            name = f"{op.kind}_{op.outcome or 'pending'}"
            out[name] = out.get(name, 0) + 1
        return out

    def convergence_ms(self) -> float | None:
        """Time from the heal to convergence (None when unknown or not converged)."""
        if self.heal_ms is None or self.converged_ms is None:
            return None
        return self.converged_ms - self.heal_ms


def check(history: History, *, stale_reads: bool = False,
          granularity_ms: float = 1.0) -> list[Violation]:
    """Every violation of the rules in the module docstring (empty: the history is valid)."""
    by_key: dict[bytes, list[Op]] = {}
    writer: dict[tuple[bytes, bytes], Op] = {}
    for op in history.ops:
        by_key.setdefault(op.key, []).append(op)
        if op.kind == "set":
            assert op.value is not None
            if (op.key, op.value) in writer:
                raise ValueError(f"value {_s(op.value)} written twice to {_s(op.key)}: values "
                                 "must be unique per write")
            writer[(op.key, op.value)] = op
    out: list[Violation] = []
    for key in sorted(set(by_key) | set(history.final)):
        ops = by_key.get(key, [])
        final = history.final.get(key)
        out += _check_reads(key, ops, final, writer)
        if final is not None:
            out += _check_lost(key, ops, final)
        if stale_reads:
            out += _check_stale(key, ops, granularity_ms)
    if history.replicas_equal is False:
        out.append(Violation("divergence", b"", "replicas differ after the heal: "
                             + (history.divergence or "(no detail)")))
    return out


def _check_reads(key: bytes, ops: list[Op], final: tuple[bytes | None, ...] | None,
                 writer: dict[tuple[bytes, bytes], Op]) -> list[Violation]:
    out = []
    observed: list[tuple[Op | None, bytes]] = [
        (op, v) for op in ops if op.kind == "get" and op.outcome == OK for v in op.values
        if v is not None]
    if final is not None:
        observed += [(None, v) for v in final if v is not None]
    for r, v in observed:
        where = f"read #{r.id}" if r is not None else "the final state"
        ids = (r.id,) if r is not None else ()
        w = writer.get((key, v))
        if w is None:
            out.append(Violation("phantom-read", key, f"{where} has {_s(v)}, which no SET of "
                                 "this key wrote", ids))
        elif w.outcome == FAIL:
            out.append(Violation("failed-write-visible", key, f"{where} has {_s(v)}, written by "
                                 f"#{w.id}, which failed (certainly not applied)", ids + (w.id,)))
        elif r is not None and r.complete_ms is not None and w.invoke_ms > r.complete_ms:
            out.append(Violation("phantom-read", key, f"read #{r.id} returned {_s(v)} before "
                                 f"#{w.id} wrote it", ids + (w.id,)))
    return out


def _present(w: Op, final: tuple[bytes | None, ...]) -> bool:
    if w.kind == "set":
        return w.value in final
    return not final or None in final


def _check_lost(key: bytes, ops: list[Op], final: tuple[bytes | None, ...]) -> list[Violation]:
    out = []
    writes = [op for op in ops if op.is_write and op.outcome != FAIL]
    survivors = [w for w in writes if _present(w, final)]
    for a in writes:
        if a.outcome != OK or _present(a, final):
            continue
        if any(w is not a and w.end >= a.invoke_ms for w in survivors):
            continue
        kept = ", ".join(_s(v) for v in final) or "nothing"
        out.append(Violation("lost-write", key, f"acknowledged #{a.id} ({a.describe()}) is gone; "
                             f"the replicas kept {kept}, all written before it began",
                             (a.id,) + tuple(w.id for w in survivors)))
    return out


def _check_stale(key: bytes, ops: list[Op], granularity_ms: float) -> list[Violation]:
    out = []
    acked = [op for op in ops if op.is_write and op.outcome == OK]
    by_value = {op.value: op for op in ops if op.kind == "set"}
    dels = [op for op in ops if op.kind == "del" and op.is_write and op.outcome != FAIL]
    for r in ops:
        if r.kind != "get" or r.outcome != OK or len(r.values) != 1:
            continue
        v = r.values[0]
        if v is None:
            cands: list[tuple[Op | None, float]] = [(None, -INF)] + [(d, d.end) for d in dels]
        else:
            c = by_value.get(v)
            if c is None or c.outcome == FAIL:
                continue  # reported by the read rules
            cands = [(c, c.end)]
        newer: list[Op] = []
        for c, c_end in cands:
            w = next((w for w in acked if w is not c and c_end + granularity_ms <= w.invoke_ms
                      and w.end < r.invoke_ms), None)
            if w is None:
                break
            newer.append(w)
        else:
            w = newer[-1]
            out.append(Violation("stale-read", key, f"read #{r.id} ({r.describe()}) returned "
                                 f"{_s(v)}, but acknowledged #{w.id} ({w.describe()}) replaced it "
                                 "before the read began", (r.id, w.id)))
    return out


__all__ = ["FAIL", "History", "OK", "Op", "UNKNOWN", "Violation", "check"]
