"""``respkv-sim``: run a campaign of seeded simulations and report each seed's verdict.

    respkv-sim --seeds 1000              # seeds 0..999
    respkv-sim --seeds 200 --start 5000  # seeds 5000..5199
    respkv-sim --seed 42 --trace         # replay one seed, printing its whole trace
    respkv-sim --seeds 200 --membership  # plans that also join, decommission, remove nodes
    respkv-sim --replay plan.json        # replay a (shrunk) plan written by a failing run

Per seed one line: the cluster, the operations by kind and outcome, the faults, the time the
replicas took to converge after the heal, and the verdict. A violating seed also prints the
violations, the minimal trace (the operations on the keys involved, every fault, in time order),
and -- after shrinking the fault schedule (dropping faults while the violation persists) -- the
path of the smallest plan still failing and the command that replays it. Exit status 1 if any
seed failed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from respkv.sim.cluster import SimResult, run_plan
from respkv.sim.workload import Plan, make_plan


@dataclass
class Campaign:
    results: list[SimResult] = field(default_factory=list)
    failed: list[SimResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seeds_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds else 0.0

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            for k, v in r.history.counts().items():
                out[k] = out.get(k, 0) + v
            for k, v in r.fault_counts().items():
                out["fault_" + k] = out.get("fault_" + k, 0) + v
        return out

    def summary(self) -> str:
        t = self.totals()
        conv_ok = sorted(c for r in self.results if (c := r.history.convergence_ms()) is not None)
        passive = sorted(c for r in self.results if r.passive
                         and (c := r.history.convergence_ms()) is not None)
        virtual = sum(r.virtual_s for r in self.results)
        faults = {k[6:]: v for k, v in sorted(t.items()) if k.startswith("fault_")}
        ops = {k: v for k, v in sorted(t.items()) if not k.startswith("fault_") and k != "ops"}
        lines = [
            f"{len(self.results)} seeds, {len(self.failed)} failed, {self.seconds:.1f} s "
            f"({self.seeds_per_second:.2f} seeds/s; {virtual:.0f} virtual seconds simulated)",
            f"operations: {t.get('ops', 0)} " + " ".join(f"{k}={v}" for k, v in ops.items()),
            "faults: " + " ".join(f"{k}={v}" for k, v in faults.items()),
            f"purge phase: {sum(r.purged for r in self.results)} dead keys purged, then every "
            "key written again and checked on every replica",
        ]
        if conv_ok:
            lines.append(f"convergence after the heal: median {conv_ok[len(conv_ok) // 2]:.0f} ms,"
                         f" max {conv_ok[-1]:.0f} ms; {len(passive)} of {len(conv_ok)} seeds by "
                         "hinted handoff and anti-entropy alone"
                         + (f" (median {passive[len(passive) // 2]:.0f} ms, max {passive[-1]:.0f}"
                            " ms)" if passive else "") + ", the others after the R=ALL reads")
        if self.failed:
            lines.append("failed seeds: " + " ".join(str(r.plan.seed) for r in self.failed))
        return "\n".join(lines)


def seed_line(r: SimResult, seconds: float) -> str:
    c = r.history.counts()
    parts = []
    for kind in ("set", "del", "get"):
        n = {o: c.get(f"{kind}_{o}", 0) for o in ("ok", "unknown", "fail")}
        if sum(n.values()):
            parts.append(f"{kind} {n['ok']}/{n['unknown']}/{n['fail']}")
    faults = " ".join(f"{k}={v}" for k, v in sorted(r.fault_counts().items())) or "none"
    conv = r.history.convergence_ms()
    verdict = "OK" if r.ok else "VIOLATION" if r.violations else "HARNESS ERROR"
    errors = f" node_errors={len(r.node_errors)}" if r.node_errors else ""
    return (f"seed {r.plan.seed:>6} {r.plan.describe()} | ops {c['ops']} (ok/unknown/fail) "
            f"{' '.join(parts)} | faults {faults} | converged "
            f"{'-' if conv is None else f'{conv:.0f} ms'}{'' if r.passive else ' (R=ALL)'}"
            f"{errors} | {verdict} ({seconds:.2f} s)")


def minimal_trace(r: SimResult, context_ops: int = 4) -> list[str]:
    """The trace lines that explain the first violation: the operations it names, the
    ``context_ops`` operations on its key just before them, every fault (node and network) up to
    the last of them, and the heal and convergence lines."""
    if not r.violations:
        return list(r.trace)
    first = r.violations[0]
    named = set(first.ops)
    key = first.key.decode()
    ops: list[tuple[int, int]] = []  # (trace index, op id) of operations on the key
    for i, line in enumerate(r.trace):
        m = _OP_LINE.match(line)
        if m and (not key or f" {key} " in line or f" {key}:" in line):
            ops.append((i, int(m.group(1))))
    keep_idx = {i for i, op_id in ops if op_id in named}
    if keep_idx:
        earliest = min(keep_idx)
        before = [i for i, _ in ops if i < earliest][-context_ops:]
        keep_idx.update(before)
    last = max(keep_idx, default=len(r.trace))
    out = []
    for i, line in enumerate(r.trace):
        kind = line.split(None, 2)[1] if len(line.split(None, 2)) > 1 else ""
        if i in keep_idx or (kind in ("fault", "reset", "partition", "heal", "node-died")
                             and i <= last) or kind in ("start", "converged", "diverged"):
            out.append(line)
    return out


_OP_LINE = re.compile(r"^\s*[\d.]+ op\s+#(\d+) ")


def shrink(plan: Plan, fails: Callable[[Plan], bool], budget: int = 40) -> Plan:
    """Drop faults one at a time, keeping each drop under which ``fails`` still holds (greedy;
    at most ``budget`` runs). The workload is kept: dropping operations changes every later
    random draw and rarely keeps a failure. Joins are kept: later faults may name the node."""
    runs = 0
    i = len(plan.faults) - 1
    while i >= 0 and runs < budget:
        if plan.faults[i].kind == "join":
            i -= 1
            continue
        trial = replace(plan, faults=plan.faults[:i] + plan.faults[i + 1:])
        runs += 1
        if fails(trial):
            plan = trial
        i -= 1
    return plan


def report_failure(r: SimResult, out: Callable[[str], None], *, do_shrink: bool,
                   plan_dir: str, shrink_budget: int = 40) -> str:
    """Print a failing seed's violations and minimal trace; returns the replay plan path."""
    out(f"  seed {r.plan.seed} FAILED ({len(r.violations)} violations"
        f"{', harness: ' + '; '.join(r.harness_errors) if r.harness_errors else ''})")
    for v in r.violations[:10]:
        out(f"    {v}")
    if len(r.violations) > 10:
        out(f"    ... and {len(r.violations) - 10} more")
    for e in r.node_errors[:5]:
        out(f"    node error: {e}")
    plan = r.plan
    if do_shrink and r.violations:
        rules = {v.rule for v in r.violations}
        plan = shrink(plan, lambda p: any(v.rule in rules for v in run_plan(p).violations),
                      shrink_budget)
        if len(plan.faults) < len(r.plan.faults):
            out(f"  shrunk: {len(r.plan.faults)} faults -> {len(plan.faults)} still fail")
            r = run_plan(plan)
    path = os.path.join(plan_dir, f"respkv-sim-{r.plan.seed}.json")
    with open(path, "w") as f:
        f.write(plan.to_json())
    out(f"  minimal trace (the first violation; whole trace: respkv-sim --replay {path} "
        f"--trace, or the unshrunk run: respkv-sim --seed {r.plan.seed} --trace):")
    for line in minimal_trace(r):
        out("    " + line)
    out(f"  replay: respkv-sim --replay {path}")
    return path


def run_campaign(seeds: Iterable[int], *, out: Callable[[str], None] = print,
                 duration_ms: float = 6000.0, do_shrink: bool = False,
                 plan_dir: str | None = None, verbose: bool = True, shrink_budget: int = 40,
                 stop_after_failures: int = 0, membership: bool = False) -> Campaign:
    """Run one simulation per seed; print one line per seed (``verbose``) and a report for
    each failing one; ``stop_after_failures`` (> 0) ends the campaign after that many failed
    seeds; ``membership``: the plans also join, decommission and remove nodes. The pytest
    entry point and ``main`` both use this."""
    camp = Campaign()
    plan_dir = plan_dir or tempfile.gettempdir()
    t0 = time.perf_counter()
    for seed in seeds:
        t = time.perf_counter()
        r = run_plan(make_plan(seed, duration_ms=duration_ms, membership=membership))
        camp.results.append(r)
        if verbose or not r.ok:
            out(seed_line(r, time.perf_counter() - t))
        if not r.ok:
            camp.failed.append(r)
            report_failure(r, out, do_shrink=do_shrink, plan_dir=plan_dir,
                           shrink_budget=shrink_budget)
            if stop_after_failures and len(camp.failed) >= stop_after_failures:
                break
    camp.seconds = time.perf_counter() - t0
    return camp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="respkv-sim", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="number of seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    ap.add_argument("--replay", help="run the plan in this JSON file (from a failing run)")
    ap.add_argument("--duration-ms", type=float, default=6000.0,
                    help="virtual duration of each seed's workload")
    ap.add_argument("--membership", action="store_true",
                    help="the plans also join, decommission and remove nodes")
    ap.add_argument("--trace", action="store_true", help="print each seed's whole trace")
    ap.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    ap.add_argument("--no-shrink", action="store_true", help="do not shrink failing plans")
    ap.add_argument("--plan-dir", default=None, help="where failing plans are written")
    args = ap.parse_args(argv)
    if args.replay:
        with open(args.replay) as f:
            plan = Plan.from_json(f.read())
        t = time.perf_counter()
        r = run_plan(plan)
        print(seed_line(r, time.perf_counter() - t))
        print("\n".join(r.trace) if args.trace or not r.ok else "", end="")
        for v in r.violations:
            print(f"  {v}")
        return 0 if r.ok else 1
    seeds = args.seed if args.seed else range(args.start, args.start + args.seeds)
    if args.trace:
        for seed in seeds:
            t = time.perf_counter()
            r = run_plan(make_plan(seed, duration_ms=args.duration_ms,
                                   membership=args.membership))
            print(seed_line(r, time.perf_counter() - t))
            print("\n".join(r.trace))
            for v in r.violations:
                print(f"  {v}")
        return 0
    camp = run_campaign(seeds, duration_ms=args.duration_ms, do_shrink=not args.no_shrink,
                        plan_dir=args.plan_dir, verbose=not args.quiet,
                        membership=args.membership)
    print(camp.summary())
    return 1 if camp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
