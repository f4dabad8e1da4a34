"""DEBUG SLEEP, DEBUG SET-ACTIVE-EXPIRE, BGREWRITEAOF and EXEC's statistics on a real node over
sockets (respkv/node/server.py): what the node does for the handlers of
respkv/commands/maintenance.py."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import trio

from respkv.config import Config
from respkv.node.server import Node
from respkv.storage.memory import MemoryEngine
from respkv.testing.inproc import close_after_run
from respkv.testing.resp import command_bytes as mb


class Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def call(self, *args: str) -> bytes:
        """Send one command, return its reply line(s) up to the first CRLF."""
        await self.stream.send_all(mb(*args))
        return await self.read_until(b"\r\n")

    async def read_until(self, pattern: bytes) -> bytes:
        with trio.fail_after(10):
            while pattern not in self.buf:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(self.buf)
                self.buf += chunk
        end = self.buf.index(pattern) + len(pattern)
        got, self.buf = self.buf[:end], self.buf[end:]
        return got

    async def info(self, section: str) -> dict[str, str]:
        await self.stream.send_all(mb("INFO", section))
        head = await self.read_until(b"\r\n")
        body = await self.read_until(b"\r\n" * 2) if int(head[1:]) else b""
        return dict(line.split(":", 1) for line in body.decode().split("\r\n")
                    if ":" in line)


_open: list[Conn] = []


@pytest.fixture(autouse=True)
def close_conns() -> Iterator[None]:
    """Close the connections a test left open. Synchronous: an autouse async fixture never
    runs under pytest-trio (see respkv.testing.inproc.close_after_run)."""
    yield
    while _open:
        close_after_run(_open.pop().stream)


async def start(nursery: trio.Nursery, **settings: object) -> Node:
    cfg = Config(port=0, appendfsync="no", enable_debug_command="yes",
                 **settings)  # type: ignore[arg-type]
    node = Node(cfg, engine=MemoryEngine() if cfg.engine == "memory" else None)
    await nursery.start(node.run)
    return node


async def connect(node: Node) -> Conn:
    assert node.port is not None
    c = Conn(await trio.open_tcp_stream("127.0.0.1", node.port))
    _open.append(c)
    return c


async def eventually(cond: Callable[[], object]) -> None:
    """Wait until ``cond()`` holds (node state that has no event to wait on); 10 s at most."""
    with trio.fail_after(10):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_debug_sleep_stops_only_its_connection(nursery) -> None:
    node = await start(nursery, engine="memory")
    a, b = await connect(node), await connect(node)
    await b.call("CONFIG", "RESETSTAT")
    t0 = time.monotonic()
    # pipelined: the replies keep their order, PING's after the sleep
    await a.stream.send_all(mb("DEBUG", "SLEEP", "0.3") + mb("PING"))
    await trio.sleep(0.05)
    assert await b.call("PING") == b"+PONG\r\n"  # served while a sleeps
    assert time.monotonic() - t0 < 0.25
    assert await a.read_until(b"+PONG\r\n") == b"+OK\r\n+PONG\r\n"
    assert time.monotonic() - t0 >= 0.3
    stats = await b.info("commandstats")
    usec = int(stats["cmdstat_debug"].split("usec=")[1].split(",")[0])
    assert usec >= 300_000  # the slept time is DEBUG's run time, as in Redis
    slow = await b.call("SLOWLOG", "LEN")
    assert slow == b":1\r\n"


async def test_debug_sleep_in_exec_and_client_kill(nursery) -> None:
    node = await start(nursery, engine="memory")
    a, b = await connect(node), await connect(node)
    await a.call("CLIENT", "SETNAME", "sleeper")
    t0 = time.monotonic()
    await a.stream.send_all(mb("MULTI") + mb("DEBUG", "SLEEP", "0.2") + mb("EXEC"))
    assert await a.read_until(b"*1\r\n+OK\r\n") == b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n"
    assert time.monotonic() - t0 >= 0.2
    await a.stream.send_all(mb("DEBUG", "SLEEP", "100"))
    await trio.sleep(0.05)
    assert await b.call("CLIENT", "KILL", "SKIPME", "yes") == b":1\r\n"
    with trio.fail_after(5):
        assert await a.stream.receive_some(100) == b""  # closed, not left sleeping
    await eventually(lambda: len(node.state.clients) == 1)
    assert not node._sleeps


async def test_set_active_expire_stops_the_expiry_cycle(nursery) -> None:
    node = await start(nursery, engine="memory", hz=100)
    a = await connect(node)
    assert await a.call("DEBUG", "SET-ACTIVE-EXPIRE", "0") == b"+OK\r\n"
    await a.call("SET", "k", "v", "PX", "20")
    await trio.sleep(0.3)  # 30 cron ticks: none removes it
    assert node.engine.get(node.state.dbs[0].prefix + b"k") is not None
    assert await a.call("DEBUG", "SET-ACTIVE-EXPIRE", "1") == b"+OK\r\n"
    await eventually(lambda: node.engine.get(node.state.dbs[0].prefix + b"k") is None)


async def test_bgrewriteaof_drops_the_commit_log(nursery, tmp_path) -> None:
    node = await start(nursery, dir=str(tmp_path))
    a = await connect(node)
    for i in range(200):
        await a.call("SET", f"key:{i}", "v" * 100)
    before = await a.info("persistence")
    assert before["aof_rewrites"] == "0" and before["aof_rewrite_in_progress"] == "0"
    logs_before = {f for f in os.listdir(tmp_path) if f.endswith(".log")}
    assert int(before["aof_size"]) > 20_000
    # two in one batch: the flush cannot finish between them
    await a.stream.send_all(mb("BGREWRITEAOF") + mb("BGREWRITEAOF"))
    assert await a.read_until(b"progress\r\n") == (
        b"+Background append only file rewriting started\r\n"
        b"-ERR Background append only file rewriting already in progress\r\n")
    await eventually(lambda: node.aof_rewrites == 1)
    after = await a.info("persistence")
    assert after["aof_rewrite_in_progress"] == "0" and after["aof_rewrites"] == "1"
    assert after["aof_last_bgrewrite_status"] == "ok"
    assert after["aof_last_rewrite_time_sec"] == "0"
    assert int(after["aof_size"]) < 1000 and int(after["tables"]) >= 1
    assert not logs_before & {f for f in os.listdir(tmp_path) if f.endswith(".log")}
    assert await a.call("GET", "key:7") == b"$100\r\n"  # read back from the table
    assert await a.read_until(b"\r\n") == b"v" * 100 + b"\r\n"
    # an empty memtable: nothing to seal, done at once
    assert await a.call("BGREWRITEAOF") == b"+Background append only file rewriting started\r\n"
    assert node.aof_rewrites == 2


async def test_exec_commands_in_latency_histograms_and_slowlog(nursery) -> None:
    node = await start(nursery, engine="memory", slowlog_log_slower_than=0)
    a = await connect(node)
    await a.call("SLOWLOG", "RESET")
    await a.stream.send_all(mb("MULTI") + mb("SET", "a", "1") + mb("INCR", "a") + mb("EXEC"))
    await a.read_until(b"*2\r\n+OK\r\n:2\r\n")
    hist = node._command_latency()
    assert hist["set"][0] == 1 and hist["incr"][0] == 1 and hist["exec"][0] == 1
    names = [e.args[0].lower() for e in node.state.slowlog]
    assert b"incr" in names and b"set" in names and b"exec" not in names  # EXEC: skip_slowlog


async def test_key_access_refused_to_a_monitor_is_a_rejected_call(nursery) -> None:
    node = await start(nursery, engine="memory")
    a = await connect(node)
    assert await a.call("MONITOR") == b"+OK\r\n"
    assert await a.call("GET", "k") == b"-ERR Replica can't interact with the keyspace\r\n"
    assert node.state.cmdstats["get"] == [0, 0, 1, 0]  # redis-server 7.0.15: rejected_calls=1
    assert node.state.errorstats == {"ERR": 1}
