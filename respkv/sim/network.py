"""SimNetwork: an in-process network for the peer layer, driven by one seeded random source.

It implements the node layer's Network seam (respkv/node/network.py): each node gets a
:class:`HostNetwork` view (``listen``/``connect`` from that host), and every connection is a
pair of :class:`SimStream` objects (``receive_some``/``send_all``/``aclose``/``close_now``; no
``sock`` attribute, so the peer layer drives them through those methods only).

What it does to the bytes (all decided by ``rng``, all on trio's clock, so a seed replays):

* **Delay**: every ``send_all`` is delivered after ``base + jitter`` ms of the connection's own
  latency (each connection draws its base when it opens), occasionally a spike. Within one
  connection the order is kept (TCP); across connections chunks overtake each other freely.
* **Splitting**: a chunk may arrive in several pieces (the receiver sees partial frames).
* **Loss** is a connection **reset**: both ends see the connection die (``b""`` /
  ``BrokenResourceError``) and what was in flight is gone, as TCP loses data. Bytes are never
  dropped from the middle of a live stream.
* **Duplication**: a complete *request* frame of the peer dialect (``RR``, ``RW``, ``CW``,
  ``C``, ``PING``) on the initiator-to-acceptor direction may be delivered twice in a row (a
  re-delivered request, as a retrying transport would): the stream stays a valid frame sequence,
  the acceptor serves it twice and the initiator ignores the second reply.
* **Partitions**: hosts are put in groups; bytes between groups are held (a black hole, as a cut
  cable: TCP keeps retransmitting) and delivered, in order, after the heal -- unless the
  connection is reset. A connect across groups fails after ``connect_timeout_ms``.
* **Host down** (a crashed node): its connections are reset at once (a process crash: the OS
  answers RST) or held until it comes back and then reset (a machine crash), by the caller's
  choice.

Ownership: :meth:`SimNetwork.run` is the one delivery task (start it in the simulation's root
nursery); every other method is synchronous or only awaits delivery-independent events.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

EPSILON_S = 1e-9
REQUEST_KINDS = frozenset({b"RR", b"RW", b"CW", b"C", b"PING"})


@dataclass
class NetParams:
    """Fault rates (probabilities per event) and latencies (ms) of one simulated network."""

    min_latency_ms: float = 0.2
    max_latency_ms: float = 3.0
    jitter_ms: float = 1.0
    spike_p: float = 0.01  # a chunk is delayed by up to spike_ms
    spike_ms: float = 150.0
    split_p: float = 0.2  # a chunk arrives in 2-3 pieces
    dup_p: float = 0.01  # a request frame is delivered twice
    reset_p: float = 0.0005  # a chunk's connection is reset instead (loss)
    connect_timeout_ms: float = 1000.0

    def calm(self) -> NetParams:
        """The same latencies without faults (after the heal)."""
        return NetParams(self.min_latency_ms, self.max_latency_ms, self.jitter_ms, 0.0,
                         self.spike_ms, self.split_p, 0.0, 0.0, self.connect_timeout_ms)


class _Pipe:
    """One direction of a connection: chunks in flight, then the receiver's buffer."""

    def __init__(self, conn: SimConnection, src: str, dst: str, requests: bool) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.buf = bytearray()
        self.eof = False  # the sender closed (after the bytes before it)
        self.event = trio.Event()
        self.last_at = 0.0
        self.held: list[bytes | None] = []  # chunks (None: the FIN) waiting for a heal
        self.scan = _FrameScanner() if requests else None

    def wake(self) -> None:
        self.event.set()
        self.event = trio.Event()


class SimConnection:
    _ids = 0

    def __init__(self, net: SimNetwork, client: str, server: str, port: int,
                 latency_ms: float) -> None:
        self.net = net
        self.id = net._next_conn_id()
        self.client = client
        self.server = server
        self.port = port
        self.latency_ms = latency_ms
        self.reset = False
        self.up = _Pipe(self, client, server, requests=True)  # client -> server
        self.down = _Pipe(self, server, client, requests=False)
        self.client_end = SimStream(self, self.down, self.up, f"{server}:{port}")
        self.server_end = SimStream(self, self.up, self.down, f"{client}:c{self.id}")

    def kill(self) -> None:
        """Reset: both ends fail; whatever was in flight is lost."""
        if self.reset:
            return
        self.reset = True
        for p in (self.up, self.down):
            p.buf.clear()
            p.held.clear()
            p.wake()
        self.net._conns.pop(self.id, None)


class SimStream(trio.abc.HalfCloseableStream):
    """One end of a simulated connection (the stream API the peer layer uses)."""

    def __init__(self, conn: SimConnection, rx: _Pipe, tx: _Pipe, remote: str) -> None:
        self.conn = conn
        self.rx = rx
        self.tx = tx
        self.remote = remote
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.closed:
            raise trio.ClosedResourceError("stream closed")
        rx = self.rx
        while not rx.buf and not rx.eof and not self.conn.reset:
            await rx.event.wait()
            if self.closed:
                raise trio.ClosedResourceError("stream closed")
        await trio.lowlevel.checkpoint()
        if self.conn.reset:
            return b""
        n = len(rx.buf) if max_bytes is None else min(max_bytes, len(rx.buf))
        data = bytes(rx.buf[:n])
        del rx.buf[:n]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise trio.ClosedResourceError("stream closed")
        if self.conn.reset:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("connection reset")
        self.conn.net._send(self.tx, bytes(data))
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        self._fin()
        await trio.lowlevel.checkpoint()

    def _fin(self) -> None:
        if not self.tx.eof and not self.conn.reset:
            self.conn.net._send(self.tx, None)

    def close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fin()
        self.rx.wake()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()


class SimListener(trio.abc.Listener[SimStream]):
    def __init__(self, net: SimNetwork, host: str, port: int) -> None:
        self.net = net
        self.host = host
        self.port = port
        self.send, self.recv = trio.open_memory_channel[SimStream](128)
        self.closed = False

    async def accept(self) -> SimStream:
        try:
            return await self.recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()

    def close_now(self) -> None:
        if not self.closed:
            self.closed = True
            if self.net._listeners.get((self.host, self.port)) is self:
                del self.net._listeners[(self.host, self.port)]
            self.send.close()


class HostNetwork:
    """The Network seam as one host sees it (pass it as ``Node(network=...)``)."""

    def __init__(self, net: SimNetwork, host: str) -> None:
        self.net = net
        self.host = host

    async def listen(self, host: str, port: int) -> tuple[list[Any], int]:
        return self.net._listen(self.host, port)

    async def connect(self, host: str, port: int) -> SimStream:
        return await self.net._connect(self.host, host, port)


class SimNetwork:
    """Every host's connections; ``trace(kind, text)`` is told of each fault it injects."""

    def __init__(self, rng: Any, params: NetParams | None = None,
                 trace: Callable[[str, str], None] | None = None) -> None:
        self.rng = rng
        self.params = params or NetParams()
        self.trace = trace or (lambda kind, text: None)
        self._listeners: dict[tuple[str, int], SimListener] = {}
        self._conns: dict[int, SimConnection] = {}
        self._conn_seq = 0
        self._heap: list[tuple[float, int, _Pipe, bytes | None]] = []
        self._seq = 0
        self._wake = trio.Event()
        self._group: dict[str, int] = {}
        self._down: set[str] = set()  # hosts that hold (black-hole) their traffic
        self.stats = {"chunks": 0, "bytes": 0, "duplicates": 0, "resets": 0, "held": 0,
                      "connects": 0, "connects_refused": 0, "connects_timed_out": 0}

    def host(self, name: str) -> HostNetwork:
        return HostNetwork(self, name)

    def _next_conn_id(self) -> int:
        self._conn_seq += 1
        return self._conn_seq

    # -- topology faults --
    def reachable(self, a: str, b: str) -> bool:
        if a in self._down or b in self._down:
            return a == b
        return self._group.get(a, 0) == self._group.get(b, 0)

    def partition(self, groups: list[list[str]]) -> None:
        """Hosts in different groups cannot talk; hosts not listed join group 0."""
        self._group = {h: i + 1 for i, g in enumerate(groups) for h in g}

    def heal(self) -> None:
        self._group = {}
        self._release()

    def host_down(self, host: str, *, reset: bool) -> None:
        """A crashed host: its connections reset now, or (``reset=False``) are black-holed
        until :meth:`host_up`, which resets them."""
        for conn in list(self._conns.values()):
            if host in (conn.client, conn.server) and reset:
                self._reset(conn, "host down")
        if not reset:
            self._down.add(host)

    def host_up(self, host: str) -> None:
        if host in self._down:
            self._down.discard(host)
            for conn in list(self._conns.values()):
                if host in (conn.client, conn.server):
                    self._reset(conn, "host back (stale connection)")
            self._release()

    def reset_some(self, fraction: float) -> int:
        """Reset each open connection with probability ``fraction``."""
        n = 0
        for conn in list(self._conns.values()):
            if self.rng.random() < fraction:
                self._reset(conn, "burst")
                n += 1
        return n

    def _reset(self, conn: SimConnection, why: str) -> None:
        if not conn.reset:
            self.stats["resets"] += 1
            self.trace("reset", f"{conn.client}->{conn.server}:{conn.port} #{conn.id} ({why})")
            conn.kill()

    # -- listen / connect --
    def _listen(self, host: str, port: int) -> tuple[list[Any], int]:
        if port == 0:
            port = 20000
            while (host, port) in self._listeners:
                port += 1
        if (host, port) in self._listeners:
            raise OSError(errno.EADDRINUSE, "address in use")
        lst = SimListener(self, host, port)
        self._listeners[(host, port)] = lst
        return [lst], port

    async def _connect(self, src: str, dst: str, port: int) -> SimStream:
        p = self.params
        self.stats["connects"] += 1
        rtt = 2 * (p.min_latency_ms + self.rng.random() * (p.max_latency_ms - p.min_latency_ms))
        if not self.reachable(src, dst):
            await trio.sleep(p.connect_timeout_ms / 1000)
            self.stats["connects_timed_out"] += 1
            raise OSError(errno.ETIMEDOUT, f"connect to {dst}:{port} timed out")
        await trio.sleep(rtt / 1000)
        lst = self._listeners.get((dst, port))
        if lst is None or lst.closed or not self.reachable(src, dst):
            self.stats["connects_refused"] += 1
            raise OSError(errno.ECONNREFUSED, f"connect to {dst}:{port} refused")
        conn = SimConnection(self, src, dst, port, rtt / 2)
        try:
            lst.send.send_nowait(conn.server_end)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats["connects_refused"] += 1
            raise OSError(errno.ECONNREFUSED, f"connect to {dst}:{port} refused") from None
        self._conns[conn.id] = conn
        return conn.client_end

    # -- delivery --
    def _send(self, pipe: _Pipe, data: bytes | None) -> None:
        """Schedule ``data`` (None: the FIN) on ``pipe``, with this network's faults."""
        rng, p = self.rng, self.params
        conn = pipe.conn
        if data is not None:
            self.stats["chunks"] += 1
            self.stats["bytes"] += len(data)
            if p.reset_p and rng.random() < p.reset_p:
                self._reset(conn, "loss")
                return
            if pipe.scan is not None and (p.dup_p or pipe.scan.buf):
                data = self._maybe_duplicate(pipe, data)
                if not data:
                    return
        now = trio.current_time()
        delay = conn.latency_ms + rng.random() * p.jitter_ms
        if p.spike_p and rng.random() < p.spike_p:
            delay += rng.random() * p.spike_ms
        at = max(now + delay / 1000, pipe.last_at)
        pieces: list[bytes | None] = [data]
        if data is not None and len(data) > 1 and p.split_p and rng.random() < p.split_p:
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 2))))
            bounds = [0, *cuts, len(data)]
            pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        for piece in pieces:
            pipe.last_at = at
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, pipe, piece))
            at += 0.0001
        self._wake.set()

    def _maybe_duplicate(self, pipe: _Pipe, data: bytes) -> bytes:
        """Pass bytes through the frame scanner; a complete request frame may come out twice.
        Returns the bytes to send now (complete frames; a partial frame waits for the rest)."""
        assert pipe.scan is not None
        out = bytearray()
        for frame, first in pipe.scan.feed(data):
            out += frame
            if first in REQUEST_KINDS and self.params.dup_p and \
                    self.rng.random() < self.params.dup_p:
                out += frame
                self.stats["duplicates"] += 1
                self.trace("duplicate", f"{pipe.src}->{pipe.dst} #{pipe.conn.id} "
                           f"{first.decode()} frame")
        return bytes(out)

    def _release(self) -> None:
        """After a heal: send the held chunks of every pipe that can deliver again."""
        for conn in list(self._conns.values()):
            for pipe in (conn.up, conn.down):
                if pipe.held and self.reachable(pipe.src, pipe.dst):
                    held, pipe.held = pipe.held, []
                    now = trio.current_time()
                    at = max(now + conn.latency_ms / 1000, pipe.last_at)
                    for piece in held:
                        pipe.last_at = at
                        self._seq += 1
                        heapq.heappush(self._heap, (at, self._seq, pipe, piece))
                        at += 0.0001
        self._wake.set()

    def _deliver(self, pipe: _Pipe, piece: bytes | None) -> None:
        conn = pipe.conn
        if conn.reset:
            return
        if pipe.held or not self.reachable(pipe.src, pipe.dst):
            pipe.held.append(piece)  # black hole until the heal (order kept)
            self.stats["held"] += 1
            return
        if piece is None:
            pipe.eof = True
            if conn.up.eof and conn.down.eof:
                self._conns.pop(conn.id, None)
        else:
            pipe.buf += piece
        pipe.wake()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The delivery task: hands each chunk to its receiver at its time."""
        task_status.started()
        heap = self._heap
        while True:
            if not heap:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            at = heap[0][0]
            # (a tolerance: the mock clock's jump to ``at`` can land a rounding error short)
            if at > trio.current_time() + EPSILON_S:
                with trio.move_on_at(at):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            while heap and heap[0][0] <= trio.current_time() + EPSILON_S:
                _, _, pipe, piece = heapq.heappop(heap)
                self._deliver(pipe, piece)
            await trio.lowlevel.checkpoint()

    def statistics(self) -> dict[str, int]:
        return {**self.stats, "open_connections": len(self._conns)}


class _FrameScanner:
    """Splits a byte stream into complete RESP frames (arrays of bulk strings); returns
    ``(frame_bytes, first_element)`` for each complete one. Bytes that are not a frame pass
    through at once (first element ``b""``); a partial frame waits for the rest."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            got = self._one()
            if got is None:
                return out
            out.append(got)

    def _one(self) -> tuple[bytes, bytes] | None:
        buf = self.buf
        if buf and buf[:1] != b"*":  # not a frame: pass the bytes through as they are
            frame = bytes(buf)
            buf.clear()
            return frame, b""
        nl = buf.find(b"\r\n")
        if nl < 0:
            return None
        try:
            count = int(buf[1:nl])
        except ValueError:
            frame = bytes(buf)
            buf.clear()
            return frame, b""
        pos = nl + 2
        first = b""
        for i in range(count):
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return None
            if buf[pos:pos + 1] != b"$":
                frame = bytes(buf)
                buf.clear()
                return frame, b""
            n = int(buf[pos + 1:nl])
            start = nl + 2
            if len(buf) < start + n + 2:
                return None
            if i == 0:
                first = bytes(buf[start:start + n])
            pos = start + n + 2
        frame = bytes(buf[:pos])
        del buf[:pos]
        return frame, first
