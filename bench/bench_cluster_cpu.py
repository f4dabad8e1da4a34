"""CPU per replicated write, all in one process: three cluster Nodes and their clients in one
trio run over real loopback sockets, so process_time covers every node's share of a write
(the coordinator and both replicas) without the scheduler noise of separate processes.

What it prints: CPU microseconds per SET at N=3 W=2 (and N=1, the coordinator alone), with
the clients' own share measured separately (a client-only loop against a trivial echo). Use
it before and after touching the cluster write path; `--profile` writes a cProfile dump.

    python bench/bench_cluster_cpu.py [--ops 20000] [--clients 8] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import socket
import sys
import tempfile
import time

import hiredis
import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.config import Config  # noqa: E402
from respkv.node.server import Node  # noqa: E402
from respkv.testing.procs import free_port  # noqa: E402

SECRET = "bench-cluster-secret-0123456789"
VALUE = b"x" * 100


def mb(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def client(port: int, cid: int, ops: int, done: list[int]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    reader = hiredis.Reader()
    for i in range(ops):
        await stream.send_all(mb(b"SET", b"key:%d:%d" % (cid, i % 10000), VALUE))
        while (got := reader.gets()) is False:
            reader.feed(await stream.receive_some(65536))
        if got != b"OK":
            raise RuntimeError(f"SET failed: {got!r}")
        done[0] += 1
    await stream.aclose()


def make_root() -> tuple[str, str]:
    """A fresh data root and the cluster secret file in it (set-up, before any node runs)."""
    root = tempfile.mkdtemp(prefix="respkv-cpu-")
    secret_file = os.path.join(root, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET)
    return root, secret_file


async def run(n_nodes: int, n: int, w: int, clients: int, ops: int, engine: str,
              profile: str | None) -> float:
    root, secret_file = make_root()
    ports = [free_port() for _ in range(n_nodes)]
    nodes = []
    for i, port in enumerate(ports):
        seeds = ",".join(f"127.0.0.1:{p + 10000}" for j, p in enumerate(ports) if j != i)
        cfg = Config(port=port, dir=os.path.join(root, f"n{i}"), engine=engine, node_id=f"n{i}",
                     seeds=seeds, cluster_secret_file=secret_file, n_replicas=n,
                     write_consistency=str(w), read_consistency=str(w),
                     gossip_interval_ms=100, appendfsync="everysec")
        os.makedirs(cfg.dir, exist_ok=True)
        nodes.append(Node(cfg))
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        deadline = trio.current_time() + 30
        while not all(len(nd.cluster.up_nodes()) == n_nodes and len(nd.cluster.ring) == n_nodes
                      for nd in nodes):
            if trio.current_time() > deadline:
                raise RuntimeError("cluster did not converge")
            await trio.sleep(0.05)
        done = [0]
        async with trio.open_nursery() as warm:  # warm up: connections, caches
            for c in range(clients):
                warm.start_soon(client, ports[c % n_nodes], c, 200, done)
        prof = cProfile.Profile() if profile else None
        t0 = time.process_time()
        if prof:
            prof.enable()
        async with trio.open_nursery() as load:
            for c in range(clients):
                load.start_soon(client, ports[c % n_nodes], c, ops // clients, done)
        if prof:
            prof.disable()
            prof.dump_stats(profile)
        cpu = time.process_time() - t0
        nursery.cancel_scope.cancel()
    return cpu / (ops // clients * clients) * 1e6


async def client_only(clients: int, ops: int) -> float:
    """The clients' own CPU: the same loop against a server that answers +OK without parsing."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(lsock))

    async def echo(stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(b"+OK\r\n" * data.count(b"*3\r\n"))
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, echo, [listener])
        done = [0]
        t0 = time.process_time()
        async with trio.open_nursery() as load:
            for c in range(clients):
                load.start_soon(client, port, c, ops // clients, done)
        cpu = time.process_time() - t0
        nursery.cancel_scope.cancel()
    return cpu / (ops // clients * clients) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--engine", default="lsm", choices=("lsm", "memory"))
    ap.add_argument("--profile", default=None)
    ap.add_argument("--only", default="", help="n3 or n1: run one case")
    args = ap.parse_args()
    base = trio.run(client_only, args.clients, args.ops)
    print(f"clients + trivial server: {base:.1f} us/op (subtracted below)")
    cases = [("N=3 W=2", 3, 3, 2), ("N=1 W=1", 3, 1, 1)]
    for name, nodes, n, w in cases:
        if args.only and args.only != f"n{n}":
            continue
        us = trio.run(run, nodes, n, w, args.clients, args.ops, args.engine, args.profile)
        print(f"{name}: {us:.1f} us/op in total, {us - base:.1f} us/op for the servers",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
