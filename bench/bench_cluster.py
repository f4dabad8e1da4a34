"""Replicated writes: a 3-node respkv cluster (N=3 W=2 R=2) against Redis master + 2 replicas.

Same durability on both sides: a write is acknowledged once two copies have it. respkv: a plain
SET (the coordinator answers when W=2 replicas acknowledged). Redis: SET then WAIT 1 1000 (the
master plus one replica), measured two ways: as two calls (two round trips, the way the issue
states it) and pipelined in one round trip (the cheapest way a redis-py client can ask for it;
the ratio is against this one). Same redis-py harness: T client threads, each with its own connection, each
doing SET (+WAIT) in a loop for --seconds; the respkv threads are spread over the three nodes
(any node coordinates). Runs alternate (redis, respkv, redis, ...), each figure is the median of
--repeat runs; latencies are the per-operation p50 and p99 of the median run. The last two
columns are the CPU per operation of the median run: the harness process (all its client
threads, under one GIL) and the three server processes together (from /proc). At 8 threads the
machine or the harness's GIL is saturated, so they say which side bounds the figure.

The respkv servers run the hot path as ``pip install .`` installs it, compiled with mypyc
(respkv/compiled.py; the bench builds a compiled copy of the tree in a temporary directory and
starts the nodes from it); ``--form source`` runs the sources uncompiled, as an editable install
does. The first line says which form the servers reported (INFO server respkv_compiled).

    python bench/bench_cluster.py [--seconds 5] [--repeat 3] [--threads 1,8] [--engine lsm]
                                  [--form compiled|source]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import redis  # noqa: E402

from respkv.testing.build import build_compiled_tree  # noqa: E402
from respkv.testing.cluster import LocalCluster  # noqa: E402
from respkv.testing.procs import ServerProcess, start_redis, wait_for_port  # noqa: E402

VALUE = b"x" * 100


def start_redis_with_replicas() -> list[ServerProcess]:
    master = start_redis()
    if master is None:
        raise SystemExit("redis-server is not installed: the comparison needs it")
    replicas = [r for r in (start_redis("--replicaof", "127.0.0.1", str(master.port))
                            for _ in range(2)) if r is not None]
    m = redis.Redis(port=master.port)
    deadline = time.monotonic() + 20
    def online() -> int:
        info = m.info("replication")
        return sum(1 for k, v in info.items()
                   if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")

    while online() < 2 or m.execute_command("WAIT", 2, 1000) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("redis replicas did not connect")
        time.sleep(0.05)
    for r in replicas:
        wait_for_port(r.port)
    return [master, *replicas]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(threads: int, seconds: float, make_op: Callable[[int], Callable[[int], None]],
        pids: Sequence[int] = ()) -> tuple[float, float, float, float, float]:
    """ops/s, p50 ms, p99 ms of ``threads`` threads each looping ``make_op(thread)(i)``, then
    the CPU microseconds per operation of this process and of the processes ``pids``."""
    lat: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(t: int) -> None:
        op = make_op(t)
        mine = lat[t]
        start.wait()
        i = 0
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= stop_at[0]:
                break
            op(i)
            mine.append(perf() - t0)
            i += 1

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    cpu0 = time.process_time()
    servers0 = sum(proc_cpu_s(p) for p in pids)
    begin = time.perf_counter()
    stop_at[0] = begin + seconds
    for th in ts:
        th.join()
    elapsed = time.perf_counter() - begin
    cpu = time.process_time() - cpu0
    servers = sum(proc_cpu_s(p) for p in pids) - servers0
    all_lat = sorted(x for lst in lat for x in lst)
    n = len(all_lat)
    return (n / elapsed, all_lat[n // 2] * 1000, all_lat[min(n - 1, int(n * 0.99))] * 1000,
            cpu / n * 1e6, servers / n * 1e6)


def redis_op(port: int, pipelined: bool = True) -> Callable[[int], Callable[[int], None]]:
    def make(t: int) -> Callable[[int], None]:
        c = redis.Redis(port=port)

        def two_calls(i: int) -> None:
            c.set(f"key:{t}:{i % 10000}", VALUE)
            if c.execute_command("WAIT", 1, 1000) < 1:
                raise RuntimeError("WAIT timed out")

        def op(i: int) -> None:
            p = c.pipeline(transaction=False)
            p.set(f"key:{t}:{i % 10000}", VALUE)
            p.execute_command("WAIT", 1, 1000)
            _, acked = p.execute()
            if acked < 1:
                raise RuntimeError("WAIT timed out")

        return op if pipelined else two_calls
    return make


def respkv_op(ports: list[int]) -> Callable[[int], Callable[[int], None]]:
    def make(t: int) -> Callable[[int], None]:
        c = redis.Redis(port=ports[t % len(ports)])

        def op(i: int) -> None:
            c.set(f"key:{t}:{i % 10000}", VALUE)

        return op
    return make


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,8")
    ap.add_argument("--engine", default="lsm", choices=("lsm", "memory"))
    ap.add_argument("--form", default="compiled", choices=("compiled", "source"))
    args = ap.parse_args()
    tree = None
    if args.form == "compiled":
        # the nodes run ``python -m respkv.cli`` from the working directory: the compiled copy
        tree = build_compiled_tree(tempfile.mkdtemp(prefix="respkv-compiled-"))
        os.chdir(tree)
    thread_counts = [int(x) for x in args.threads.split(",")]
    redis_procs = start_redis_with_replicas()
    cluster = LocalCluster(3, engine=args.engine)
    try:
        ports = cluster.ports
        assert cluster.info(0)["n_effective"] == 3
        compiled = cluster.client(0).info("server")["respkv_compiled"]
        print(f"respkv: 3 nodes, N=3 W=2 R=2, engine={args.engine}, plain SET; redis-server: master"
              f" + 2 replicas, SET+WAIT 1 1000 pipelined; 100-byte values, {args.seconds:g} s per "
              f"run, median of {args.repeat}; cpus={os.cpu_count()}; respkv servers: {args.form} "
              f"(compiled hot-path modules: {compiled})")
        print(f"{'threads':>7} {'system':<34} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'respkv/redis':>12} {'client us/op':>12} {'servers us/op':>13}")
        redis_pids = [p.pid for p in redis_procs]
        respkv_pids = [n.pid for n in cluster.nodes if n is not None]
        for threads in thread_counts:
            rs, r2s, ks = [], [], []
            for _ in range(args.repeat):
                r2s.append(run(threads, args.seconds, redis_op(redis_procs[0].port, False),
                               redis_pids))
                rs.append(run(threads, args.seconds, redis_op(redis_procs[0].port), redis_pids))
                ks.append(run(threads, args.seconds, respkv_op(ports), respkv_pids))
            r2 = sorted(r2s)[len(r2s) // 2]
            r = sorted(rs)[len(rs) // 2]
            k = sorted(ks)[len(ks) // 2]
            for name, x, ratio in (
                ("redis SET; WAIT 1 1000 (2 calls)", r2, f"{k[0] / r2[0]:.2f}"),
                ("redis SET+WAIT 1 1000 pipelined", r, f"{k[0] / r[0]:.2f}"),
                ("respkv SET (N=3 W=2)", k, ""),
            ):
                print(f"{threads:>7} {name:<34} {x[0]:>8.0f} {x[1]:>7.2f} {x[2]:>7.2f} "
                      f"{ratio:>12} {x[3]:>12.0f} {x[4]:>13.0f}", flush=True)
        print("respkv per-level stats (node 1): " + str(cluster.info(0).get("write_quorum")))
    finally:
        cluster.stop()
        for p in redis_procs:
            p.stop()
        if tree is not None:
            shutil.rmtree(tree, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
