"""Cluster nodes in the test's own trio run, over real loopback TCP (memory engines): for tests
that need to reach into a node (its replica, engine, tasks) while it serves."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hiredis
import trio

from respkv.config import Config
from respkv.node.server import Node
from respkv.storage.memory import MemoryEngine
from respkv.testing.procs import free_port

SECRET = "a cluster secret for tests, 32+b\n"


@asynccontextmanager
async def running_nodes(tmp_path: Path, count: int, clock_ms: Callable[[], int] | None = None,
                        **settings: Any) -> AsyncIterator[list[Node]]:
    """``count`` cluster nodes (memory engines, loopback peer ports chosen free; no hinted
    handoff, no periodic anti-entropy unless ``settings`` say otherwise; ``clock_ms``: their
    shared wall clock); yields once every node sees every other up in its ring; shuts them all
    down on exit."""
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    peer_ports = [free_port() for _ in range(count)]
    nodes = []
    for i in range(count):
        seeds = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(peer_ports) if j != i)
        values: dict[str, Any] = dict(
            engine="memory", port=0, appendfsync="no", node_id=f"n{i}", seeds=seeds,
            peer_port=peer_ports[i], cluster_secret_file=str(secret),
            dir=str(tmp_path / f"n{i}"), gossip_interval_ms=100, request_timeout_ms=2000,
            hinted_handoff=False, anti_entropy_interval_ms=0)
        values.update(settings)
        cfg = Config(**values)
        if clock_ms is None:
            nodes.append(Node(cfg, engine=MemoryEngine(), rng=random.Random(i)))
        else:
            nodes.append(Node(cfg, engine=MemoryEngine(), rng=random.Random(i), clock_ms=clock_ms))
    async with trio.open_nursery() as nursery:
        try:
            for node in nodes:
                await nursery.start(node.run)
            await settled(nodes)
            yield nodes
        finally:
            for node in nodes:
                node.request_shutdown()


async def settled(nodes: list[Node]) -> None:
    """Every node has every node in its ring and up (again: writing straight into a replica
    blocks the event loop, and a peer that missed heartbeats meanwhile is down for a while)."""
    ids = {n.cluster.node_id for n in nodes}
    await wait_for(lambda: all(set(n.cluster.ring.nodes) == ids and n.cluster.up_nodes() >= ids
                               for n in nodes), 20)


async def wait_for(cond: Callable[[], bool], deadline_s: float) -> None:
    """Poll ``cond`` (state of other tasks, no event to wait on) until true, with a deadline."""
    with trio.fail_after(deadline_s):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.02)


def close_after_run(stream: trio.SocketStream) -> None:
    """Close ``stream``'s socket once the trio run that used it is over (where ``aclose`` can
    no longer run); a stream already closed is left alone.

    For the teardown of a synchronous fixture that closes what a test left open: pytest-trio
    runs only the async fixtures a test (or its fixtures) names, so an ``autouse`` async fixture
    never runs at all -- and the connections it was to close stay open until the interpreter
    exits (``ResourceWarning: unclosed <socket.socket ...>`` after pytest's summary)."""
    fd = stream.socket.detach()
    if fd >= 0:
        os.close(fd)


async def command(node: Node, *args: bytes | str | int) -> Any:
    """One command to ``node``'s client port on a new connection; its reply as hiredis reads
    it (an error reply as a ``hiredis.ReplyError`` value)."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    assert node.port is not None, "the node is not listening"
    stream = await trio.open_tcp_stream("127.0.0.1", node.port)
    async with stream:
        await stream.send_all(b"*%d\r\n" % len(parts)
                              + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        reader = hiredis.Reader()
        while (got := reader.gets()) is False:
            reader.feed(await stream.receive_some(65536))
        return got

