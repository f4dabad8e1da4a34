"""Where the cluster bench's bound is: the CPU budget 1.5x Redis's replicated writes leaves respkv.

bench_cluster.py compares a 3-node respkv cluster (N=3 W=2) with Redis master + 2 replicas
(SET+WAIT 1 1000 pipelined) at 8 client threads. At 8 threads both sides saturate the machine
or the harness's GIL, so throughput is CPUs divided by CPU per operation. This bench measures,
in one run, the figures that decide whether 1.5x is reachable on this machine:

1. Redis pipelined at T threads: ops/s and the harness's CPU per operation (when that times
   ops/s is about one CPU, the Redis figure is the harness's GIL, not Redis).
2. respkv at T threads, the nodes free to run on any CPU: ops/s, harness and servers' CPU per
   write.
3. The same respkv cluster with its three nodes pinned to the last CPU and the harness to the
   others: the nodes then share one CPU that never idles, so the servers' figure holds no
   cost of idle CPUs waking, only of the three processes taking turns.
4. The same three nodes in one process (bench_cluster_cpu.py, subprocess): no process switches.

Then the budget: at 1.5x Redis's ops/s with the harness's CPU per respkv write (row 2), what is
left of the machine's CPUs for the three servers, per write, against rows 2-4.

Runs alternate (redis, respkv free, respkv pinned) --repeat times; medians. The nodes run the
compiled hot path (as bench_cluster.py; ``--form source`` for the uncompiled code).

    python bench/bench_cluster_bound.py [--seconds 4] [--repeat 3] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import bench_cluster as B  # noqa: E402

from respkv.testing.build import build_compiled_tree  # noqa: E402
from respkv.testing.cluster import LocalCluster  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (a process we started) to ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


def switches(pids: list[int]) -> int:
    """Context switches (voluntary and not) of every thread of ``pids`` so far (Linux /proc)."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if "ctxt_switches:" in line:  # voluntary_ and nonvoluntary_
                            total += int(line.split()[1])
            except OSError:
                pass  # a thread that ended meanwhile
    return total


def measured(threads: int, seconds: float, op: Callable[[int], Callable[[int], None]],
             pids: list[int]) -> tuple[float, float, float, float, float, float]:
    """bench_cluster.run's figures plus the servers' context switches per operation."""
    before = switches(pids)
    r = B.run(threads, seconds, op, pids)
    return (*r, (switches(pids) - before) / (r[0] * seconds))


def in_process_servers_us(tree: str, clients: int, engine: str) -> float:
    """Servers' CPU per write with all three nodes in one process (bench_cluster_cpu.py)."""
    os.makedirs(os.path.join(tree, "bench"), exist_ok=True)
    script = os.path.join(tree, "bench", "bench_cluster_cpu.py")
    shutil.copy(os.path.join(HERE, "bench_cluster_cpu.py"), script)
    out = subprocess.run([sys.executable, script, "--only", "n3", "--clients", str(clients),
                          "--engine", engine], cwd=tree, capture_output=True, text=True,
                         check=True, timeout=600).stdout
    for line in out.splitlines():
        if line.startswith("N=3 W=2:"):
            return float(line.split(",")[1].split()[0])
    raise RuntimeError(f"unexpected bench_cluster_cpu output: {out!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--engine", default="lsm", choices=("lsm", "memory"))
    ap.add_argument("--form", default="compiled", choices=("compiled", "source"))
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("needs at least two CPUs to pin the nodes apart from the harness")
        return 2
    node_cpu, harness_cpus = {cpus[-1]}, set(cpus[:-1])
    repo = os.path.dirname(HERE)
    tree = repo
    if args.form == "compiled":
        tree = build_compiled_tree(tempfile.mkdtemp(prefix="respkv-compiled-"))
    os.chdir(tree)  # the nodes run ``python -m respkv.cli`` from the working directory
    redis_procs = B.start_redis_with_replicas()
    cluster = LocalCluster(3, engine=args.engine)
    rows: dict[str, list[tuple[float, float, float, float, float, float]]] = {
        "redis": [], "free": [], "pinned": []}
    try:
        compiled = cluster.client(0).info("server")["respkv_compiled"]
        redis_pids = [p.pid for p in redis_procs]
        pids = [n.pid for n in cluster.nodes if n is not None]
        everywhere = set(cpus)
        B.run(args.threads, 1, B.respkv_op(cluster.ports), pids)  # warm-up
        for _ in range(args.repeat):
            rows["redis"].append(measured(args.threads, args.seconds,
                                          B.redis_op(redis_procs[0].port), redis_pids))
            rows["free"].append(measured(args.threads, args.seconds,
                                         B.respkv_op(cluster.ports), pids))
            for pid in pids:
                set_affinity(pid, node_cpu)
            os.sched_setaffinity(0, harness_cpus)  # threads started from here inherit it
            try:
                rows["pinned"].append(measured(args.threads, args.seconds,
                                               B.respkv_op(cluster.ports), pids))
            finally:
                for pid in pids:
                    set_affinity(pid, everywhere)
                os.sched_setaffinity(0, everywhere)
    finally:
        cluster.stop()
        for p in redis_procs:
            p.stop()
    one_process = in_process_servers_us(tree, args.threads, args.engine)
    if tree != repo:
        os.chdir(repo)
        shutil.rmtree(tree, ignore_errors=True)

    def med(name: str, i: int) -> float:
        return statistics.median(r[i] for r in rows[name])

    print(f"{args.threads} client threads, {args.seconds:g} s runs, medians of {args.repeat}; "
          f"cpus={len(cpus)}; respkv servers: {args.form} (compiled modules: {compiled}); "
          f"pinned: nodes on CPU {cpus[-1]}, harness on {sorted(harness_cpus)}")
    print(f"{'row':<44} {'ops/s':>7} {'harness us/op':>13} {'servers us/op':>13} "
          f"{'server switches/op':>18}")
    for name, label in (("redis", "redis SET+WAIT 1 1000 pipelined"),
                        ("free", "respkv SET N=3 W=2, nodes free"),
                        ("pinned", "respkv, the three nodes pinned to one CPU")):
        print(f"{label:<44} {med(name, 0):>7.0f} {med(name, 3):>13.0f} {med(name, 4):>13.0f} "
              f"{med(name, 5):>18.2f}")
    print(f"{'respkv, the three nodes in one process':<44} {'':>7} {'':>13} "
          f"{one_process:>13.0f} {'0':>18}")
    redis_harness_cpus = med("redis", 0) * med("redis", 3) / 1e6
    target = 1.5 * med("redis", 0)
    harness_cpu = target * med("free", 3) / 1e6
    budget = (len(cpus) - harness_cpu) / target * 1e6
    print(f"redis's harness uses {redis_harness_cpus:.2f} CPU (one GIL: ~1.0 means the Redis "
          f"figure is the harness's bound)")
    print(f"1.5x redis = {target:.0f} ops/s; the respkv harness then uses {harness_cpu:.2f} of "
          f"{len(cpus)} CPUs, leaving {budget:.0f} us of server CPU per write")
    for name, us in (("nodes free", med("free", 4)), ("pinned to one CPU", med("pinned", 4)),
                     ("one process", one_process)):
        print(f"  servers' CPU per write, {name}: {us:.0f} us = {us / budget:.2f}x the budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
