"""Local multi-process clusters for tests and benches: each node a `respkv server` process.

Contract (as respkv.testing.procs): every node binds 127.0.0.1 on a free port (peer port + 10000),
is started by us and stopped by us by PID; readiness and convergence are waited for by polling
with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis

from respkv.testing.procs import ServerProcess, free_port, start_respkv, wait_for_port

SECRET = "a cluster secret for tests, 32+b\n"


def wait_until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = cond()
            if got:
                return got
        except (redis.RedisError, OSError) as e:
            last_exc = e
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_exc!r})")


class NodeProcesses:
    """Process control of a group of respkv servers we started: ``nodes[i]`` is node i's
    process (None while it is down); kill, pause and resume act on that PID only."""

    nodes: list[ServerProcess | None]
    paused: set[int]

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        node.kill()  # SIGKILL by PID
        self.nodes[i] = None

    def pause(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        os.kill(node.pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        node = self.nodes[i]
        assert node is not None
        try:
            os.kill(node.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.paused.discard(i)

    def resume_all(self) -> None:
        for i in list(self.paused):
            if self.nodes[i] is not None:
                self.resume(i)
        self.paused.clear()


class LocalCluster(NodeProcesses):
    """N respkv processes that list each other as seeds. Node i is ``nodes[i]`` (id ``n{i}``)."""

    def __init__(self, n: int, *extra: str, engine: str = "lsm", secret: str = SECRET,
                 per_node: dict[int, list[str]] | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="respkv-cluster-")
        self.secret_file = os.path.join(self.root, "secret")
        with open(self.secret_file, "w") as f:
            f.write(secret)
        self.ports = [free_port() for _ in range(n)]
        self.extra = extra
        self.per_node = per_node or {}
        self.engine = engine
        self.nodes: list[ServerProcess | None] = [None] * n
        self.paused: set[int] = set()
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()
        try:
            for i in range(n):
                self.start(i)
            self.wait_converged()
        except AssertionError as e:
            # Did not converge (seen once in CI, not reproduced): say what each node saw.
            views = []
            for i in range(n):
                try:
                    info = self.info(i)
                    views.append(f"n{i}: up_nodes={info.get('up_nodes')} "
                                 f"ring_nodes={info.get('ring_nodes')} "
                                 f"{ {k: v for k, v in info.items() if k.startswith('member_')} }")
                except Exception as ie:  # noqa: BLE001 (a diagnostic only)
                    views.append(f"n{i}: {ie!r}")
            logs = self.logs()
            self.stop()
            raise AssertionError(f"{e}\n" + "\n".join(views) + f"\n--- logs ---\n{logs}") from None
        except BaseException:
            # The caller never gets this object to stop: stop what was started (left running,
            # such nodes dialed later tests' clusters that reused their ports).
            self.stop()
            raise

    def args(self, i: int) -> list[str]:
        seeds = []
        for j, p in enumerate(self.ports):
            if j != i:
                seeds += ["--seed", f"127.0.0.1:{p + 10000}"]
        return ["--node-id", f"n{i}", "--cluster-secret-file", self.secret_file,
                "--request-timeout-ms", "1000", "--gossip-interval-ms", "100", *seeds,
                *self.extra, *self.per_node.get(i, [])]

    def add_node(self) -> int:
        """Start one more node (id ``n{len}``) seeded with every existing node; it joins the
        running cluster (bootstraps). Returns its index."""
        self.ports.append(free_port())
        self.nodes.append(None)
        i = len(self.ports) - 1
        self.start(i)
        wait_for_port(self.ports[i])
        return i

    def start(self, i: int) -> ServerProcess:
        data_dir = os.path.join(self.root, f"n{i}")
        os.makedirs(data_dir, exist_ok=True)
        self.nodes[i] = start_respkv(*self.args(i), port=self.ports[i], data_dir=data_dir,
                                     engine=self.engine)
        return self.nodes[i]  # type: ignore[return-value]

    def client(self, i: int, **kw: Any) -> redis.Redis:
        """A client of node i. ``stop`` closes it if the test still holds it (a client the
        test dropped was closed then)."""
        r = redis.Redis(port=self.ports[i], socket_timeout=10, **kw)
        self._clients.add(r)
        return r

    def info(self, i: int) -> dict[str, Any]:
        with redis.Redis(port=self.ports[i], socket_timeout=10) as r:
            return r.info("cluster")

    def wait_converged(self, live: list[int] | None = None, timeout: float = 60.0) -> None:
        """Every live node has every other live node up (and a ring of all nodes)."""
        live = live if live is not None else [i for i, p in enumerate(self.nodes) if p is not None]

        def ok() -> bool:
            for i in live:
                info = self.info(i)
                if info["up_nodes"] != len(live) or info["ring_nodes"] != len(self.ports):
                    return False
            return True

        wait_until(ok, timeout, "the cluster to converge")

    def restart(self, i: int) -> None:
        self.start(i)
        wait_for_port(self.ports[i])

    def stop(self) -> None:
        for r in list(self._clients):
            r.close()
        self.resume_all()
        for node in self.nodes:
            if node is not None:
                node.stop()

    def logs(self) -> str:
        return "\n".join(n.log()[-3000:] for n in self.nodes if n is not None)
