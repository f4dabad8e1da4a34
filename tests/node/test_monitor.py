"""MONITOR and WAIT on a real node over sockets: what monitors see and in which order, how a
monitor that leaves or stalls is dealt with, how WAIT waits without stopping the server."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator

import pytest
import trio

from respkv.config import Config
from respkv.node.server import MONITOR_OUTPUT_LIMIT, Node
from respkv.storage.memory import MemoryEngine
from respkv.testing.inproc import close_after_run
from respkv.testing.resp import command_bytes as mb

LINE = re.compile(rb'\+(\d+)\.(\d{6}) \[(\d+) ([0-9.]+:\d+)\] (.*)')


class Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, *commands: bytes) -> None:
        await self.stream.send_all(b"".join(commands))

    async def read_until(self, pattern: bytes) -> bytes:
        """Read until ``pattern`` has arrived; return (and consume) everything up to its end."""
        with trio.fail_after(10):
            while pattern not in self.buf:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(self.buf)
                self.buf += chunk
        end = self.buf.index(pattern) + len(pattern)
        got, self.buf = self.buf[:end], self.buf[end:]
        return got

    async def lines(self, n: int) -> list[bytes]:
        """The next ``n`` CRLF-terminated lines."""
        out = []
        for _ in range(n):
            out.append((await self.read_until(b"\r\n"))[:-2])
        return out

    async def eof(self) -> bytes:
        with trio.fail_after(10):
            while True:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    got, self.buf = self.buf, b""
                    return got
                self.buf += chunk

    def local(self) -> str:
        host, port = self.stream.socket.getsockname()[:2]
        return f"{host}:{port}"


_open: list[Conn] = []


@pytest.fixture(autouse=True)
def close_conns() -> Iterator[None]:
    """Close the connections a test left open. Synchronous: an autouse async fixture never
    runs under pytest-trio (see respkv.testing.inproc.close_after_run)."""
    yield
    while _open:
        close_after_run(_open.pop().stream)


async def start(nursery: trio.Nursery, **settings: object) -> Node:
    cfg = Config(engine="memory", port=0, appendfsync="no", **settings)  # type: ignore[arg-type]
    node = Node(cfg, engine=MemoryEngine())
    await nursery.start(node.run)
    return node


@pytest.fixture
async def node(nursery):
    n = await start(nursery)
    yield n
    n.request_shutdown()


async def eventually(cond: Callable[[], object]) -> None:
    """Wait until ``cond()`` holds (node state that has no event to wait on); 10 s at most."""
    with trio.fail_after(10):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.005)


async def connect(node: Node) -> Conn:
    assert node.port is not None
    c = Conn(await trio.open_tcp_stream("127.0.0.1", node.port))
    _open.append(c)
    return c


async def monitor(node: Node) -> Conn:
    m = await connect(node)
    await m.send(mb("MONITOR"))
    assert await m.read_until(b"\r\n") == b"+OK\r\n"
    return m


def parse(line: bytes) -> tuple[int, str, bytes]:
    """(db, peer, the quoted arguments) of a MONITOR line; checks the time stamp's shape."""
    m = LINE.fullmatch(line)
    assert m is not None, line
    return int(m.group(3)), m.group(4).decode(), m.group(5)


async def test_monitor_sees_other_clients_commands_in_order(node):
    m = await monitor(node)
    c = await connect(node)
    d = await connect(node)
    await c.send(mb("SET", "a", "1"), mb("GET", "a"), mb("SELECT", "2"), mb("SET", "b", b'x"\\\n\x00\xff'))
    await c.read_until(b"+OK\r\n$1\r\n1\r\n+OK\r\n+OK\r\n")
    await d.send(mb("AUTH", "u", "secret"), mb("HELLO", "3", "AUTH", "default", "pw"),
                 mb("CONFIG", "GET", "hz"), mb("NOSUCH"), mb("GET"), mb("PING"))
    await d.read_until(b"+PONG\r\n")
    got = [parse(line) for line in await m.lines(7)]
    assert got == [
        (0, c.local(), b'"SET" "a" "1"'),
        (0, c.local(), b'"GET" "a"'),
        (2, c.local(), b'"SELECT" "2"'),  # shown once it ran: with the new database
        (2, c.local(), b'"SET" "b" "x\\"\\\\\\n\\x00\\xff"'),
        (0, d.local(), b'"AUTH" "(redacted)" "(redacted)"'),
        (0, d.local(), b'"HELLO" "3" "AUTH" "(redacted)" "(redacted)"'),
        # CONFIG GET is administrative, NOSUCH and GET were refused: none shown
        (0, d.local(), b'"PING"'),
    ]
    assert m.buf == b""


async def test_exec_shows_the_commands_it_ran_then_itself(node):
    c = await connect(node)
    await c.send(mb("MULTI"), mb("SET", "x", "1"))  # begun before anyone monitors
    await c.read_until(b"+OK\r\n+QUEUED\r\n")
    m = await monitor(node)
    await c.send(mb("SELECT", "3"), mb("INCR", "x"), mb("CLIENT", "LIST"), mb("EXEC"))
    await c.read_until(b"+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n")
    await c.send(mb("PING"))
    await c.read_until(b"+PONG\r\n")
    got = [parse(line)[::2] for line in await m.lines(5)]
    assert got == [(0, b'"SET" "x" "1"'), (3, b'"SELECT" "3"'), (3, b'"INCR" "x"'),
                   (3, b'"EXEC"'), (3, b'"PING"')]


async def test_monitor_own_commands_keyspace_refused_reset_leaves(node):
    m = await connect(node)
    other = await monitor(node)
    # a pipeline whose MONITOR is in the middle: what follows it runs in monitor mode
    await m.send(mb("SET", "k", "v"), mb("MONITOR"), mb("PING"), mb("GET", "k"), mb("MONITOR"),
                 mb("RESET"), mb("GET", "k"))
    got = await m.read_until(b"$1\r\nv\r\n")
    peer = m.local().encode()
    assert re.fullmatch(
        rb'\+OK\r\n\+OK\r\n\+PONG\r\n\+\d+\.\d{6} \[0 ' + re.escape(peer) + rb'\] "PING"\r\n'
        rb"-ERR Replica can't interact with the keyspace\r\n\+RESET\r\n\$1\r\nv\r\n", got), got
    lines = [parse(line)[2] for line in await other.lines(4)]
    assert lines == [b'"SET" "k" "v"', b'"PING"', b'"RESET"', b'"GET" "k"']
    # an ordinary connection again: nothing more is fed to it
    c = await connect(node)
    await c.send(mb("SET", "z", "1"))
    await c.read_until(b"+OK\r\n")
    await m.send(mb("PING"))
    assert await m.read_until(b"\r\n") == b"+PONG\r\n"
    assert parse((await other.lines(2))[0])[2] == b'"SET" "z" "1"'
    assert list(node.monitors) == [other_id(node, other)]


def other_id(node: Node, conn: Conn) -> int:
    [client] = [c for c in node.state.clients.values() if c.peer == conn.local()]
    return client.id


async def test_disconnecting_monitor_is_cleaned_up(node):
    m = await monitor(node)
    assert len(node.monitors) == 1 and node._gate
    line = [cl for cl in node.state.clients.values() if cl.flags == "O"]
    assert len(line) == 1
    await m.stream.aclose()
    _open.remove(m)
    c = await connect(node)
    with trio.fail_after(10):
        while node.monitors or node._monitor_conns:
            await c.send(mb("PING"))  # fed to nobody once the monitor's writer sees it gone
            await c.read_until(b"+PONG\r\n")
            await trio.sleep(0.01)
    assert not node._gate and not node._multi_queues
    assert len(node.state.clients) == 1


async def test_client_kill_of_a_monitor(node):
    m = await monitor(node)
    c = await connect(node)
    await c.send(mb("CLIENT", "KILL", "ADDR", m.local()))
    assert await c.read_until(b"\r\n") == b":1\r\n"
    assert await m.eof() == b""
    await eventually(lambda: not node.monitors and not node._monitor_conns and not node._gate)
    # MONITOR counted once, then CLIENT KILL (a batch is counted once it is done)
    assert node.state.stats["total_commands_processed"] == 2


async def test_quit_from_a_monitor(node):
    m = await monitor(node)
    await m.send(mb("QUIT"))
    assert await m.eof() == b"+OK\r\n"  # not its own QUIT line: it is closing (as redis)


async def test_stalled_monitor_does_not_block_others_and_is_cut_at_its_limit(nursery):
    node = await start(nursery, client_output_buffer_limit_hard=1024 * 1024)
    s = socket.create_connection(("127.0.0.1", node.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(mb("MONITOR"))  # then never reads
    s.setblocking(False)
    await eventually(lambda: node.monitors)
    c = await connect(node)
    value = b"v" * 20_000
    with trio.fail_after(30):
        for i in range(400):  # 8 MB of lines: far beyond the socket buffers and the limit
            await c.send(mb("SET", "k%d" % i, value))
            await c.read_until(b"+OK\r\n")
            if not node.monitors:
                break
    assert not node.monitors, "the stalled monitor should have been disconnected"
    await eventually(lambda: len(node.state.clients) == 1)
    await c.send(mb("PING"))
    assert await c.read_until(b"+PONG\r\n") == b"+PONG\r\n"
    s.close()
    assert MONITOR_OUTPUT_LIMIT >= 1024 * 1024


async def test_a_slow_monitor_gets_everything_eventually(node):
    m = await monitor(node)
    c = await connect(node)
    value = b"w" * 5000
    for i in range(300):  # 1.5 MB of lines while the monitor does not read
        await c.send(mb("SET", "k%d" % i, value))
        await c.read_until(b"+OK\r\n")
    lines = await m.lines(300)
    assert [parse(line)[2] for line in lines] == [
        b'"SET" "k%d" "%s"' % (i, value) for i in range(300)]


# -- WAIT ----------------------------------------------------------------------------------------


async def test_wait_times_out_without_blocking_others(node):
    w = await connect(node)
    c = await connect(node)
    t0 = trio.current_time()
    await w.send(mb("SET", "k", "v"), mb("WAIT", "1", "300"), mb("GET", "k"))
    assert await w.read_until(b"+OK\r\n") == b"+OK\r\n"  # sent before the wait
    for _ in range(5):
        await c.send(mb("PING"))
        await c.read_until(b"+PONG\r\n")
    assert trio.current_time() - t0 < 0.3
    assert await w.read_until(b"$1\r\nv\r\n") == b":0\r\n$1\r\nv\r\n"
    assert trio.current_time() - t0 >= 0.29
    await w.send(mb("WAIT", "0", "0"), mb("WAIT", "2147483648", "0"))
    assert await w.read_until(b":0\r\n:0\r\n") == b":0\r\n:0\r\n"


async def test_wait_forever_until_client_unblock(node):
    w = await connect(node)
    await w.send(mb("CLIENT", "ID"))
    wid = int((await w.read_until(b"\r\n"))[1:-2])
    c = await connect(node)
    await w.send(mb("WAIT", "1", "0"))
    await trio.sleep(0.05)
    await w.send(mb("PING"))  # arrives while it waits: runs after the WAIT
    await c.send(mb("INFO", "clients"))
    assert b"blocked_clients:1\r\n" in await c.read_until(b"clients_in_timeout_table:0\r\n\r\n")
    await c.send(mb("CLIENT", "UNBLOCK", str(wid)))
    assert await c.read_until(b"\r\n") == b":1\r\n"
    assert await w.read_until(b"+PONG\r\n") == b":0\r\n+PONG\r\n"
    await w.send(mb("WAIT", "1", "0"))
    await trio.sleep(0.05)
    await c.send(mb("CLIENT", "UNBLOCK", str(wid), "ERROR"), mb("CLIENT", "UNBLOCK", str(wid)))
    assert await c.read_until(b":0\r\n") == b":1\r\n:0\r\n"
    assert await w.read_until(b"\r\n") == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"


async def test_wait_ends_when_the_client_leaves(node):
    w = await connect(node)
    await w.send(mb("WAIT", "1", "0"))
    await eventually(lambda: node._blocks)
    await w.stream.aclose()
    _open.remove(w)
    await eventually(lambda: not node._blocks and not node.state.clients)
    assert not node._gate


async def test_a_monitor_sees_wait_when_it_starts(node):
    m = await monitor(node)
    w = await connect(node)
    await w.send(mb("WAIT", "1", "200"))
    [line] = await m.lines(1)
    assert parse(line)[2] == b'"WAIT" "1" "200"'
    assert await w.read_until(b"\r\n") == b":0\r\n"


# -- cluster mode --------------------------------------------------------------------------------


async def test_cluster_mode_monitor_role_wait_memory(tmp_path):
    from respkv.testing.inproc import running_nodes

    async with running_nodes(tmp_path, 2, n_replicas=2) as (a, b):
        m = await monitor(a)
        ca = await connect(a)
        cb = await connect(b)
        await ca.send(mb("SET", "k", "v"), mb("GET", "k"), mb("ROLE"), mb("WAIT", "0", "0"),
                      mb("MEMORY", "USAGE", "k"), mb("MEMORY", "USAGE", "nokey"))
        got = await ca.read_until(b"$-1\r\n")
        assert got.startswith(b"+OK\r\n$1\r\nv\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
                              b"-ERR WAIT is not supported in cluster mode: every write already "
                              b"waits for W replicas")
        assert re.search(rb"\r\n:\d+\r\n\$-1\r\n$", got), got  # this node's copy of k; none of nokey
        # b coordinates a write that a replicates: peer traffic, not a command a received
        await cb.send(mb("SET", "k2", "v2"))
        await cb.read_until(b"+OK\r\n")
        await ca.send(mb("PING"))
        await ca.read_until(b"+PONG\r\n")
        lines = [parse(line) for line in await m.lines(7)]
        assert {peer for _, peer, _ in lines} == {ca.local()}
        assert [args for _, _, args in lines] == [
            b'"SET" "k" "v"', b'"GET" "k"', b'"ROLE"', b'"WAIT" "0" "0"',
            b'"MEMORY" "USAGE" "k"', b'"MEMORY" "USAGE" "nokey"', b'"PING"']
