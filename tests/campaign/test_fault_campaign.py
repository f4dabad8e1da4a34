"""Fault campaign (issue 7): 5 real `respkv server` processes, N=3 W=2 R=2, concurrent redis-py
clients recording a history, while a nemesis kills (-9) and restarts nodes, pauses them
(SIGSTOP/SIGCONT), partitions them through the fault proxy (cut or silent), delays links, and
runs them with skewed clocks. After the heal the replicas are given the chance to repair (hint
replay, then one R=ALL read of every key, which read-repairs every replica), and the history is
judged by respkv.testing.history.check: no acknowledged write lost, no value nobody wrote, no
failed write visible, replicas equal. Counts are printed (run with -s to see them).

Peer traffic goes through respkv.testing.faultproxy: every node's seeds are the others' proxy
ports and its ``peer_advertise`` is its own proxy port, so addresses learned from gossip and
handshakes point at the proxy too. (The campaign prints whether the nodes announce the proxy
addresses; a build that ignores ``peer_advertise`` also dials the real ports, and partitions
then only cut the proxied links.)

Outcomes: a write is ``fail`` only for ``NOREPLICAS Not enough replicas up`` (nothing was sent);
every other write error, timeout or lost connection is ``unknown``; any failed read is ``fail``.
Stale reads are not judged: hinted handoff (sloppy quorums) and skewed clocks void them.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from respkv.cluster.ring import Ring, natural_replicas
from respkv.testing.cluster import NodeProcesses
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.history import FAIL, History, Op, check
from respkv.testing.procs import ServerProcess, free_port, start_respkv

pytestmark = pytest.mark.slow

NODES = 5
N, W, R = 3, 2, 2
KEYS = 40
CLIENTS = 6
LOAD_S = float(os.environ.get("RESPKV_CAMPAIGN_SECONDS", "50"))
SEED = int(os.environ.get("RESPKV_CAMPAIGN_SEED", "7"))
SECRET = "a cluster secret for the fault campaign\n"
REQUEST_TIMEOUT_MS = 800
CLIENT_TIMEOUT_S = 3.0


class Campaign(NodeProcesses):
    """Five nodes behind one FaultProxy; node i is ``n{i}``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.root = tempfile.mkdtemp(prefix="respkv-campaign-")
        self.secret = os.path.join(self.root, "secret")
        with open(self.secret, "w") as f:
            f.write(SECRET)
        self.ids = [f"n{i}" for i in range(NODES)]
        self.ports = [free_port() for _ in range(NODES)]
        self.proxy = FaultProxy()
        self.proxy.start()
        self.proxy_ports = [self.proxy.add_node(nid, p + 10000)
                            for nid, p in zip(self.ids, self.ports, strict=True)]
        self.nodes: list[ServerProcess | None] = [None] * NODES
        self.paused: set[int] = set()
        self.skew_ms = [0] + [rng.choice((-1, 1)) * rng.randrange(300, 2500)
                              for _ in range(NODES - 1)]
        self.started: list[ServerProcess] = []

    def args(self, i: int) -> list[str]:
        seeds: list[str] = []
        for j in range(NODES):
            if j != i:
                seeds += ["--seed", f"127.0.0.1:{self.proxy_ports[j]}"]
        return ["--node-id", self.ids[i], "--cluster-secret-file", self.secret,
                "--peer-port", str(self.ports[i] + 10000),
                "--peer-advertise", f"127.0.0.1:{self.proxy_ports[i]}",
                "--n-replicas", str(N), "--read-consistency", str(R),
                "--write-consistency", str(W), "--request-timeout-ms", str(REQUEST_TIMEOUT_MS),
                "--gossip-interval-ms", "100", "--clock-offset-ms", str(self.skew_ms[i]),
                *seeds]

    def start(self, i: int) -> None:
        d = os.path.join(self.root, self.ids[i])
        os.makedirs(d, exist_ok=True)
        node = start_respkv(*self.args(i), port=self.ports[i], data_dir=d, engine="lsm")
        self.nodes[i] = node
        self.started.append(node)

    def client(self, i: int, timeout: float = CLIENT_TIMEOUT_S) -> redis.Redis:
        return redis.Redis(port=self.ports[i], socket_timeout=timeout,
                           socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))

    def info(self, i: int, section: str = "cluster") -> dict[str, Any]:
        return self.client(i, 5).info(section)

    def wait_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                infos = [self.info(i) for i in range(NODES)]
                if all(x["up_nodes"] == NODES and x["ring_nodes"] == NODES for x in infos):
                    return
                last = [(x["up_nodes"], x["ring_nodes"]) for x in infos]
            except (redis.RedisError, OSError) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"cluster did not converge: {last!r}\n{self.logs()}")

    def routed_through_proxy(self) -> bool:
        """Every node announces its proxy address (so all peer links go through it)."""
        want = {nid: f"127.0.0.1:{p}" for nid, p in zip(self.ids, self.proxy_ports, strict=True)}
        for i in range(NODES):
            info = self.info(i)
            for nid in self.ids:
                row = info.get(f"member_{nid}")
                if nid != self.ids[i] and (not isinstance(row, dict)
                                           or row.get("address") != want[nid]):
                    return False
        return True

    def stop_all(self) -> None:
        self.resume_all()
        for node in self.started:  # every process we started, by PID
            node.stop()
        self.proxy.close()

    def logs(self) -> str:
        return "\n".join(f"--- {n.args[n.args.index('--node-id') + 1]}\n{n.log()[-2500:]}"
                         for n in self.nodes if n is not None)


class Recorder:
    """History is not thread-safe: one lock around it; times on one monotonic clock."""

    def __init__(self) -> None:
        self.history = History()
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.t0) * 1000

    def invoke(self, client: str, kind: str, key: bytes, value: bytes | None = None) -> Op:
        with self.lock:
            return self.history.invoke(client, kind, key, value, at_ms=self.now())

    def ok(self, op: Op, values: tuple[bytes | None, ...] = (), noop: bool = False) -> None:
        with self.lock:
            self.history.ok(op, at_ms=self.now(), values=values, noop=noop)

    def fail(self, op: Op) -> None:
        with self.lock:
            self.history.fail(op, at_ms=self.now())

    def unknown(self, op: Op) -> None:
        with self.lock:
            self.history.unknown(op)


def sibling_values(reply: Any) -> tuple[tuple[bytes, ...], list[tuple[Any, ...]]]:
    """SIBLINGS reply (RESP2 flat map or RESP3 map) -> (values, comparable sibling rows)."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
        sibs = [dict(zip(s[::2], s[1::2], strict=True)) for s in reply[b"siblings"]]
    else:
        sibs = reply[b"siblings"]
    values = tuple(s[b"value"] for s in sibs)
    rows = sorted((s[b"dot"], s[b"value"] or b"", s[b"deleted"]) for s in sibs)
    return values, [reply[b"context"], *rows]


def classify_write_error(e: Exception) -> str:
    if isinstance(e, redis.ResponseError) and str(e).startswith(
            "NOREPLICAS Not enough replicas up"):
        return FAIL  # the plan could not be met: nothing was sent
    return "unknown"


def client_loop(c: Campaign, rec: Recorder, cid: int, stop: threading.Event,
                counts: Counter[str]) -> None:
    rng = random.Random(SEED * 1000 + cid)
    conns = [c.client(i) for i in range(NODES)]
    name = f"c{cid}"
    seq = 0
    while not stop.is_set():
        node = rng.randrange(NODES)
        cl = conns[node]
        key = f"k{rng.randrange(KEYS)}".encode()
        r = rng.random()
        if r < 0.55:
            seq += 1
            value = f"{name}-{seq}".encode()
            op = rec.invoke(name, "set", key, value)
            try:
                cl.set(key, value)
                rec.ok(op)
            except (redis.RedisError, OSError) as e:
                (rec.fail if classify_write_error(e) == FAIL else rec.unknown)(op)
                counts["set_error:" + type(e).__name__] += 1
        elif r < 0.9:
            op = rec.invoke(name, "get", key)
            try:
                if rng.random() < 0.2:
                    values, _ = sibling_values(cl.execute_command("SIBLINGS", key))
                else:
                    values = (cl.get(key),)
                rec.ok(op, values)
            except (redis.RedisError, OSError) as e:
                rec.fail(op)
                counts["get_error:" + type(e).__name__] += 1
        else:
            op = rec.invoke(name, "del", key)
            try:
                n = cl.delete(key)
                rec.ok(op, noop=n == 0)
            except (redis.RedisError, OSError) as e:
                (rec.fail if classify_write_error(e) == FAIL else rec.unknown)(op)
                counts["del_error:" + type(e).__name__] += 1
    for cl in conns:
        cl.close()


def nemesis(c: Campaign, stop: threading.Event, faults: Counter[str], log: list[str],
            t_end: float) -> None:
    """One fault at a time: inject, hold 1.5-4 s, undo, rest 0.5-1.5 s."""
    rng = c.rng
    kinds = ["kill", "pause", "partition_cut", "partition_stall", "delay", "kill_pause"]
    order: list[str] = []
    while time.monotonic() < t_end and not stop.is_set():
        if not order:  # every kind once per round, in a random order
            order = rng.sample(kinds, len(kinds))
        kind = order.pop()
        hold = rng.uniform(1.5, 4.0)
        victims = rng.sample(range(NODES), 2)
        if kind == "kill":
            i = victims[0]
            c.kill(i)
            log.append(f"kill -9 {c.ids[i]}")
            time.sleep(hold)
            c.skew_ms[i] = rng.choice((-1, 1)) * rng.randrange(0, 2500)  # back with a new clock
            c.start(i)
            faults["clock_skew"] += 1
        elif kind == "pause":
            i = victims[0]
            c.pause(i)
            log.append(f"SIGSTOP {c.ids[i]}")
            time.sleep(hold)
            c.resume(i)
        elif kind == "kill_pause":  # two replicas of some keys gone at once: W=2 fails there
            i, j = victims
            c.kill(i)
            c.pause(j)
            log.append(f"kill -9 {c.ids[i]} + SIGSTOP {c.ids[j]}")
            time.sleep(hold)
            c.resume(j)
            c.start(i)
            faults["kill"] += 1
            faults["pause"] += 1
        elif kind in ("partition_cut", "partition_stall"):
            minority = set(rng.sample(c.ids, rng.choice((1, 2))))
            majority = set(c.ids) - minority
            c.proxy.partition([minority, majority], mode=kind.split("_")[1])
            log.append(f"{kind} {sorted(minority)} | {sorted(majority)}")
            time.sleep(hold)
            c.proxy.heal()
        elif kind == "delay":
            a, b = (c.ids[v] for v in victims)
            ms = rng.randrange(50, 400)
            c.proxy.delay(a, b, ms)
            log.append(f"delay {a}<->{b} {ms} ms")
            time.sleep(hold)
            c.proxy.heal()
        if kind != "kill_pause":
            faults[kind] += 1
        time.sleep(rng.uniform(0.5, 1.5))


def retry(fn: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return fn()
        except (redis.RedisError, OSError) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{what}: no answer within {timeout}s (last error {last!r})")


def replica_views(c: Campaign, ring: Ring, key: bytes) -> list[list[Any]]:
    """Each natural replica's own copy (SIBLINGS at R=1 on a replica reads only itself)."""
    out = []
    for nid in natural_replicas(ring, key, N):
        i = c.ids.index(nid)
        reply = c.client(i, 5).execute_command("SIBLINGS", key, "R", "1")
        out.append(sibling_values(reply)[1])
    return out


def test_fault_campaign() -> None:
    rng = random.Random(SEED)
    t_start = time.monotonic()
    c = Campaign(rng)
    rec = Recorder()
    stop = threading.Event()
    faults: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    fault_log: list[str] = []
    threads: list[threading.Thread] = []
    try:
        for i in range(NODES):
            c.start(i)
        c.wait_up()
        routed = c.routed_through_proxy()
        faults["clock_skew"] += sum(1 for s in c.skew_ms if s)
        threads = [threading.Thread(target=client_loop, args=(c, rec, k, stop, errors),
                                    daemon=True) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        nem = threading.Thread(target=nemesis,
                               args=(c, stop, faults, fault_log, time.monotonic() + LOAD_S),
                               daemon=True)
        nem.start()
        nem.join(LOAD_S + 60)
        assert not nem.is_alive(), "the nemesis is stuck"
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S * 3)
        assert not any(t.is_alive() for t in threads), "a client is stuck"

        # -- heal: every rule cleared, every node running and unpaused ----------------------
        c.proxy.heal()
        for i in list(c.paused):
            c.resume(i)
        for i in range(NODES):
            if c.nodes[i] is None:
                c.start(i)
        heal_ms = rec.now()
        c.wait_up()

        # Hints for nodes that were down are replayed (hinted handoff).
        def hints_drained() -> bool:
            return all(int(c.info(i, "hints").get("hints_pending", 0)) == 0
                       for i in range(NODES))

        deadline = time.monotonic() + 60
        while not retry(hints_drained, "INFO hints") and time.monotonic() < deadline:
            time.sleep(0.2)
        hints_done_ms = rec.now()
        ring = Ring.from_specs([(nid, "dc1", "rack1", 1.0) for nid in c.ids])
        keys = [f"k{k}".encode() for k in range(KEYS)]
        equal_before = sum(1 for k in keys if _all_equal(
            retry(lambda k=k: replica_views(c, ring, k), "replica read")))

        # One R=ALL read of every key: the final state, and a read repair of every replica.
        for n, key in enumerate(keys):
            reply = retry(lambda key=key, n=n: c.client(n % NODES, 5).execute_command(
                "SIBLINGS", key, "R", "ALL"), f"final read of {key!r}")
            rec.history.set_final(key, sibling_values(reply)[0])

        converged_ms = None
        detail = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            diverged = [k for k in keys if not _all_equal(
                retry(lambda k=k: replica_views(c, ring, k), "replica read"))]
            if not diverged:
                converged_ms = rec.now()
                break
            detail = f"{len(diverged)} keys differ, e.g. {diverged[0]!r}"
            time.sleep(0.2)
        rec.history.set_convergence(heal_ms=heal_ms, converged_ms=converged_ms,
                                    equal=converged_ms is not None, detail=detail)

        violations = check(rec.history)
        counts = rec.history.counts()
        proxy = c.proxy.stats
        conv = rec.history.convergence_ms()
        print("\n== fault campaign ==")
        print(f"seed {SEED}, {NODES} nodes, N={N} W={W} R={R}, {CLIENTS} clients, "
              f"{LOAD_S:.0f} s of faults, request timeout {REQUEST_TIMEOUT_MS} ms")
        print(f"peer links through the proxy: {'yes' if routed else 'NO (peer_advertise ignored)'}"
              f"; proxied connections {proxy.connections}, cut {proxy.cut_connections}")
        print(f"clock skews at the end (ms): {dict(zip(c.ids, c.skew_ms, strict=True))}")
        print(f"operations: {counts['ops']}  " + "  ".join(
            f"{k}={v}" for k, v in sorted(counts.items()) if k != "ops"))
        print(f"faults injected: {sum(faults.values())}  " + "  ".join(
            f"{k}={v}" for k, v in sorted(faults.items())))
        print(f"client errors: {dict(sorted(errors.items()))}")
        print(f"hints drained {(hints_done_ms - heal_ms) / 1000:.2f} s after the heal; "
              f"keys whose replicas were equal before any read repair: {equal_before}/{KEYS}")
        print("convergence after the heal (hint replay + one R=ALL read of every key): "
              + (f"{conv / 1000:.2f} s" if conv is not None else "NOT converged"))
        print(f"violations: {len(violations)}")
        for v in violations[:20]:
            print(f"  {v}")
        print(f"fault log: {'; '.join(fault_log)}")
        print(f"total run time {time.monotonic() - t_start:.1f} s")
        assert counts.get("set_ok", 0) > 100 and counts.get("get_ok", 0) > 100
        assert not violations, "\n".join(map(str, violations[:20]))
    except BaseException:
        print(c.logs())
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S * 3)
        c.stop_all()


def _all_equal(views: list[list[Any]]) -> bool:
    return all(v == views[0] for v in views)
