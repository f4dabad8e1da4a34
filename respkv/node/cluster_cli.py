"""``respkv server --seed`` and ``respkv cluster up``: a local development cluster in one terminal.

``cluster up -n 3 [--base-port P] [--dir D]`` writes a cluster secret into D (once), then starts
each node as a separate ``respkv server`` process whose command line (printed) is all it needs,
so a node can be restarted by hand. Node i listens for clients on P+i and for peers on
P+i+10000, and lists every other node as a seed. It prints each node's client address; a node
that dies is reported and left down while the others keep serving; Ctrl-C (or SIGTERM) stops them
all by PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from respkv.config import Config

PEER_OFFSET = 10000


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", action="append", default=[], metavar="HOST:PEERPORT",
                   help="a peer to connect to (repeatable; adds to the 'seeds' setting)")


def apply_server_flags(ns: argparse.Namespace, config: Config) -> None:
    """Fold ``--seed`` flags into ``config.seeds`` and validate the cluster settings."""
    seeds = [s for s in (config.seeds.split(",") if config.seeds else []) if s]
    seeds += list(getattr(ns, "seed", []) or [])
    if seeds:
        config.set("seeds", ",".join(seeds))
    from respkv.node.coordinator import cluster_settings, is_cluster_config

    if is_cluster_config(config):
        cluster_settings(config)  # raises ConfigError naming the key


def add_cluster_command(sub: Any) -> None:
    p = sub.add_parser("cluster", help="local development clusters")
    csub = p.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start N local nodes, each a separate `respkv server`")
    up.add_argument("-n", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--base-port", type=int, default=7000, help="client port of node 1 "
                    "(node i: base+i-1; peer ports +10000)")
    up.add_argument("--dir", default="./respkv-cluster", help="parent data directory")
    up.add_argument("--engine", default="lsm", choices=("lsm", "memory"))
    up.add_argument("--n-replicas", type=int, default=3)
    up.set_defaults(func=cmd_cluster_up)


def node_command(i: int, n: int, base: int, root: str, secret_file: str, engine: str,
                 n_replicas: int) -> list[str]:
    port = base + i
    args = [sys.executable, "-m", "respkv.cli", "server", "--port", str(port),
            "--dir", os.path.join(root, f"node{i + 1}"), "--engine", engine,
            "--node-id", f"node{i + 1}", "--cluster-secret-file", secret_file,
            "--n-replicas", str(n_replicas)]
    for j in range(n):
        if j != i:
            args += ["--seed", f"127.0.0.1:{base + j + PEER_OFFSET}"]
    return args


FORM_TIMEOUT_S = 60.0


def wait_formed(ports: list[int], n: int, stop: Callable[[], bool]) -> bool:
    """Poll every node's INFO cluster until each has a ring of ``n`` members, all up (the new
    nodes have gossiped and settled their status). False after ``FORM_TIMEOUT_S``."""
    from respkv.admin import AdminError, RespConnection, parse_info

    deadline = time.monotonic() + FORM_TIMEOUT_S
    while time.monotonic() < deadline and not stop():
        formed = 0
        for port in ports:
            try:
                conn = RespConnection("127.0.0.1", port, 1.0, None)
                try:
                    raw = conn.call("INFO", "cluster")
                finally:
                    conn.close()
                info = parse_info(raw.decode() if isinstance(raw, bytes) else str(raw))
                c = info.get("cluster", {})
                formed += c.get("ring_nodes") == n and c.get("up_nodes") == n
            except (AdminError, OSError):
                pass
        if formed == len(ports):
            return True
        time.sleep(0.2)
    return False


def ensure_secret(root: str) -> str:
    path = os.path.join(root, "cluster.secret")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path


def cmd_cluster_up(ns: argparse.Namespace) -> int:
    if ns.n < 1 or not (0 < ns.base_port and ns.base_port + ns.n + PEER_OFFSET < 65536):
        print("respkv: bad -n or --base-port", file=sys.stderr)
        return 2
    root = os.path.abspath(ns.dir)
    os.makedirs(root, exist_ok=True)
    secret_file = ensure_secret(root)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop_all(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for i in range(ns.n):
        cmd = node_command(i, ns.n, ns.base_port, root, secret_file, ns.engine, ns.n_replicas)
        os.makedirs(os.path.join(root, f"node{i + 1}"), exist_ok=True)
        log = open(os.path.join(root, f"node{i + 1}.log"), "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        procs.append((f"node{i + 1}", proc))
        print(f"node{i + 1}: pid {proc.pid}  redis://127.0.0.1:{ns.base_port + i}  "
              f"(peer 127.0.0.1:{ns.base_port + i + PEER_OFFSET}, log {root}/node{i + 1}.log)")
        print("  " + " ".join(cmd[1:]).replace(sys.executable, "python"), flush=True)
    formed = wait_formed([ns.base_port + i for i in range(ns.n)], ns.n, lambda: stopping)
    if formed:
        print(f"cluster of {ns.n} up; Ctrl-C stops every node", flush=True)
    else:
        print(f"cluster of {ns.n} started but not formed within {FORM_TIMEOUT_S:.0f} s (see the "
              "logs); Ctrl-C stops every node", flush=True)
    reported: set[int] = set()
    try:
        while not stopping:
            for name, proc in procs:
                if proc.pid not in reported and proc.poll() is not None:
                    reported.add(proc.pid)
                    print(f"{name} (pid {proc.pid}) exited with {proc.returncode}; left down, "
                          "the others keep serving", flush=True)
            if len(reported) == len(procs):
                print("every node has exited", flush=True)
                return 1
            time.sleep(0.2)
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for name, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            print(f"{name} (pid {proc.pid}) stopped ({proc.returncode})", flush=True)
    return 0

