"""The trio node in process: connections, pipelining, limits, durability policy, shutdown."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel

from respkv.config import Config
from respkv.node.server import Node
from respkv.storage.memory import MemoryEngine
from respkv.testing.inproc import close_after_run
from respkv.testing.resp import command_bytes as mb


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_exactly(self, expected: bytes) -> bytes:
        """Read until ``len(expected)`` bytes arrived (or EOF) and return them."""
        with trio.fail_after(10):
            while len(self.buf) < len(expected):
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    break
                self.buf += chunk
        got, self.buf = self.buf[: len(expected)], self.buf[len(expected) :]
        return got

    async def read_until_eof(self) -> bytes:
        with trio.fail_after(10):
            while True:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    out, self.buf = self.buf, b""
                    return out
                self.buf += chunk


_open: list[RawClient] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close the connections a test left open. Synchronous: an autouse async fixture never
    runs under pytest-trio (see respkv.testing.inproc.close_after_run)."""
    yield
    while _open:
        close_after_run(_open.pop().stream)


@pytest.fixture
async def node(nursery):
    cfg = Config(engine="memory", port=0, appendfsync="no")
    n = Node(cfg, engine=MemoryEngine())
    await nursery.start(n.run)
    yield n
    n.request_shutdown()


async def connect(node: Node) -> RawClient:
    c = RawClient(await trio.open_tcp_stream("127.0.0.1", node.port))
    _open.append(c)
    return c


async def test_pipeline_replies_in_order(node):
    c = await connect(node)
    await c.send(mb("SET", "a", "1") + mb("GET", "a") + b"PING\r\n" + mb("GET", "zz"))
    assert await c.read_exactly(b"+OK\r\n$1\r\n1\r\n+PONG\r\n$-1\r\n") == b"+OK\r\n$1\r\n1\r\n+PONG\r\n$-1\r\n"


async def test_one_byte_at_a_time(node):
    c = await connect(node)
    for b in mb("SET", "k", "hello"):
        await c.send(bytes([b]))
    assert await c.read_exactly(b"+OK\r\n") == b"+OK\r\n"


async def test_protocol_error_replies_then_closes_other_clients_fine(node):
    bad = await connect(node)
    good = await connect(node)
    await bad.send(mb("PING") + b"*1\r\n$600000000\r\n")
    assert await bad.read_until_eof() == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    await good.send(b"PING\r\n")
    assert await good.read_exactly(b"+PONG\r\n") == b"+PONG\r\n"


async def test_hello3_switches_encoding(node):
    c = await connect(node)
    await c.send(mb("HELLO", "3") + mb("GET", "missing"))
    with trio.fail_after(10):
        while b"_\r\n" not in c.buf:
            c.buf += await c.stream.receive_some(65536)
    assert c.buf.startswith(b"%7\r\n") and c.buf.endswith(b"_\r\n")


async def test_quit_closes_after_reply(node):
    c = await connect(node)
    await c.send(b"QUIT\r\nPING\r\n")
    assert await c.read_until_eof() == b"+OK\r\n"


async def test_vanishing_client_mid_pipeline(node):
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", node.port))
        s.setblocking(False)  # never block the trio thread the server runs on
        try:
            s.send(mb("SET", "x", "y" * 100000) * 50)
        except BlockingIOError:
            pass
        await trio.sleep(0.01)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST with replies and requests in flight
    c = await connect(node)
    await c.send(b"PING\r\n")
    assert await c.read_exactly(b"+PONG\r\n") == b"+PONG\r\n"


async def test_slow_reader_is_not_buffered_without_bound(node):
    """A client that never reads its replies: the server stops reading its requests instead of
    queueing replies, so its memory for that client stays bounded; others are served."""
    c = await connect(node)
    await c.send(mb("SET", "big", b"v" * 10000))
    await c.read_exactly(b"+OK\r\n")
    s = socket.create_connection(("127.0.0.1", node.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    request = mb("GET", "big") * 100
    sent = 0
    blocked_rounds = 0
    with trio.fail_after(30):
        while blocked_rounds < 20:  # the kernel buffers are full: the server stopped reading
            try:
                sent += s.send(request)
                blocked_rounds = 0
                await trio.lowlevel.checkpoint()  # let the server run
            except BlockingIOError:
                blocked_rounds += 1
                await trio.sleep(0.01)
    # Every GET accepted would produce 10 KB of reply; the server accepted only what fits in
    # the socket buffers plus one read, and holds at most one flush of output for the client.
    replies_owed = sent // len(mb("GET", "big"))
    # It did accept requests whose replies (MBs) far exceed what it holds for the client...
    assert replies_owed * 10000 > 20 * (65536 + 20000), (sent, replies_owed)
    # ...and stopped reading: what was sent fits in kernel buffers (bounded), not ever-growing.
    assert sent < 64 * 1024 * 1024
    slow = [cl for cl in node.state.clients.values() if cl.last_cmd == "get"]
    assert slow and all(cl.obuf <= 65536 + 20000 for cl in slow)
    await c.send(b"PING\r\n")
    assert await c.read_exactly(b"+PONG\r\n") == b"+PONG\r\n"
    s.close()


async def test_maxclients(nursery):
    cfg = Config(engine="memory", port=0, maxclients=2)
    n = Node(cfg, engine=MemoryEngine())
    await nursery.start(n.run)
    a = await connect(n)
    b = await connect(n)
    await a.send(b"PING\r\n")
    await b.send(b"PING\r\n")
    await a.read_exactly(b"+PONG\r\n")
    await b.read_exactly(b"+PONG\r\n")
    c = await connect(n)
    assert await c.read_until_eof() == b"-ERR max number of clients reached\r\n"
    n.request_shutdown()


async def test_requirepass_and_auth(nursery):
    cfg = Config(engine="memory", port=0, requirepass="s3cret")
    n = Node(cfg, engine=MemoryEngine())
    await nursery.start(n.run)
    c = await connect(n)
    await c.send(b"GET a\r\nAUTH wrong\r\nAUTH s3cret\r\nGET a\r\n")
    expected = (
        b"-NOAUTH Authentication required.\r\n"
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n"
    )
    assert await c.read_exactly(expected) == expected
    n.request_shutdown()


async def test_group_commit_under_always(nursery):
    """Under appendfsync always each reply waits for an fsync covering its write; concurrent
    clients share fsyncs (fewer fsyncs than writes)."""

    class CountingEngine(MemoryEngine):
        def __init__(self) -> None:
            super().__init__()
            self.synced = 0
            self.syncs = 0

        def sync(self) -> int:
            import time

            time.sleep(0.005)  # a disk's fsync latency, in the worker thread
            self.syncs += 1
            self.synced = self.last_seq
            return self.synced

    eng = CountingEngine()
    cfg = Config(engine="memory", port=0, appendfsync="always")
    n = Node(cfg, engine=eng)
    await nursery.start(n.run)
    acked: list[int] = []

    async def writer(i: int) -> None:
        c = await connect(n)
        for j in range(20):
            await c.send(mb("SET", f"k{i}-{j}", "v"))
            await c.read_exactly(b"+OK\r\n")
            # Acknowledged: the engine must have synced at least up to this write.
            acked.append(eng.synced)
            assert eng.synced >= 1

    async with trio.open_nursery() as inner:
        for i in range(10):
            inner.start_soon(writer, i)
    assert len(acked) == 200
    assert eng.syncs < 200, "concurrent writers should share fsyncs"
    assert n.commit.durable_seq >= 200
    n.request_shutdown()


async def test_idle_timeout_closes_idle_clients(nursery):
    cfg = Config(engine="memory", port=0, timeout=1, hz=50)
    n = Node(cfg, engine=MemoryEngine())
    await nursery.start(n.run)
    idle = await connect(n)
    await idle.send(b"PING\r\n")
    await idle.read_exactly(b"+PONG\r\n")
    with trio.fail_after(5):
        assert await idle.read_until_eof() == b""  # closed by the server after ~1-2 s
    n.request_shutdown()


async def test_active_expiry_removes_untouched_keys(nursery):
    eng = MemoryEngine()
    cfg = Config(engine="memory", port=0, hz=100)
    n = Node(cfg, engine=eng)
    await nursery.start(n.run)
    c = await connect(n)
    pipeline = b"".join(mb("SET", f"t{i}", "v", "PX", "30") for i in range(200))
    await c.send(pipeline + mb("SET", "keep", "v"))
    await c.read_exactly(b"+OK\r\n" * 201)
    with trio.fail_after(10):
        while eng.stats()["keys"] > 1:  # noqa: ASYNC110 -- nobody reads the keys: only the cycle can remove them
            await trio.sleep(0.01)
    assert eng.get(b"\x00\x00keep") is not None
    n.request_shutdown()


async def test_shutdown_command_stops_the_node(nursery):
    cfg = Config(engine="memory", port=0)
    n = Node(cfg, engine=MemoryEngine())
    done = trio.Event()

    async def run_and_flag(task_status=trio.TASK_STATUS_IGNORED):
        await n.run(task_status=task_status)
        done.set()

    await nursery.start(run_and_flag)
    c = await connect(n)
    await c.send(b"SHUTDOWN NOSAVE\r\n")
    with trio.fail_after(10):
        await done.wait()


async def test_keys_with_a_ttl_from_before_a_restart_are_expired_actively(tmp_path):
    """A key with a TTL written before a restart and never read again is removed by the active
    expiry cycle once its time comes (the TTLs on disk are found by discover_ttls in bounded
    steps); before, the expiry hints started empty and such a key stayed stored."""
    from respkv.storage.lsm import LSMEngine

    now = [1_700_000_000_000]
    cfg = Config(engine="lsm", port=0, hz=100, dir=str(tmp_path))
    eng = LSMEngine.open(str(tmp_path), now_ms=lambda: now[0])
    for i in range(5000):
        eng.put(b"\x00\x00t%d" % i, b"v", expire_at_ms=now[0] + 60_000)
    eng.put(b"\x00\x01other-db", b"v", expire_at_ms=now[0] + 60_000)
    eng.put(b"\x00\x00keep", b"v")
    eng.close()

    now[0] += 120_000  # the node comes back after the TTLs passed
    eng = LSMEngine.open(str(tmp_path), now_ms=lambda: now[0])
    async with trio.open_nursery() as nursery:
        n = Node(cfg, engine=eng, clock_ms=lambda: now[0])
        await nursery.start(n.run)
        with trio.fail_after(20):
            while n.state.dbs[0].stats["expired_keys"] < 5000 or \
                    n.state.dbs[1].stats["expired_keys"] < 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert n.ttls_discovered == 5001
        assert n._ttl_scan is None  # the walk is over
        assert eng.get(b"\x00\x00t1") is None and eng.get(b"\x00\x01other-db") is None
        assert eng.get(b"\x00\x00keep") is not None
        n.request_shutdown()
