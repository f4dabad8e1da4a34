"""A fault-injecting TCP proxy for the peer links of a local cluster (fault campaigns, issue 7).

Every node gets one proxy port (``add_node``) that forwards to its real peer port. Nodes are
started with their seeds pointing at the other nodes' proxy ports and ``peer_advertise`` set to
their own proxy port, so every peer connection -- seeds, addresses learned from gossip, dial-backs
-- goes through here.

Direction: a proxy port knows its *acceptor* (the node behind it). The *initiator* is read from
the connection's first frame, the handshake's ``AUTH`` (docs/formats/wire.md: ``["AUTH",
initiator_id, ...]``); nothing is rewritten (the handshake MACs cover every field). So each
connection has two flows, initiator -> acceptor (requests) and acceptor -> initiator (replies),
and a rule for ``(src, dst)`` applies to the bytes flowing from ``src`` to ``dst`` on every
connection between them.

Rules, per ordered pair (set from any thread; ``heal`` clears them):

* ``cut``: connections between the pair are closed at once and new ones are closed as soon as
  their initiator is known -- a partition the nodes see as a broken link (fast failure).
* ``stall``: the proxy stops reading that flow -- a silent partition (TCP keeps the bytes; nodes
  find out by deadlines and phi accrual); on heal the held bytes flow again, in order.
* ``delay``: each chunk of the flow is forwarded ``ms`` after it arrived (order kept).

The proxy runs trio in one daemon thread of the test process; ``close()`` stops it and closes
every socket. Only loopback addresses are used.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from respkv.cluster import wire

CHUNK = 65536


@dataclass(eq=False)
class _Conn:
    acceptor: str
    initiator: str | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def pair(self) -> tuple[str, str] | None:
        return (self.initiator, self.acceptor) if self.initiator is not None else None


@dataclass
class ProxyStats:
    connections: int = 0
    cut_connections: int = 0
    bytes_forwarded: int = 0
    identified: int = 0


class FaultProxy:
    """See the module docstring. Usage::

        proxy = FaultProxy(); proxy.start()
        p = proxy.add_node("n1", real_peer_port)      # give n1 --peer-advertise 127.0.0.1:p
        proxy.partition([{"n1", "n2"}, {"n3"}])       # cut between the groups, both ways
        proxy.heal()
        proxy.close()
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._cut: set[tuple[str, str]] = set()
        self._stall: set[tuple[str, str]] = set()
        self._delay_s: dict[tuple[str, str], float] = {}
        self._routes: dict[str, tuple[int, int]] = {}  # node -> (proxy port, real port)
        self._conns: set[_Conn] = set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle (any thread) --------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        if self._error is not None:
            raise RuntimeError("fault proxy failed") from self._error

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_node(self, node: str, real_port: int, proxy_port: int = 0) -> int:
        """Listen for ``node``'s peer connections (on ``proxy_port``, 0: a free one) and forward
        them to ``real_port``; returns the proxy port. Calling it again for the same node
        re-points the route (a restarted node on another port)."""
        with self._lock:
            if node in self._routes:
                port = self._routes[node][0]
                self._routes[node] = (port, real_port)
                return port
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, proxy_port))
            sock.listen(128)
            port = sock.getsockname()[1]
            with self._lock:
                self._routes[node] = (port, real_port)
            assert self._token is not None
            trio.from_thread.run_sync(self._spawn_listener, node, sock, trio_token=self._token)
        except BaseException:
            sock.close()  # the listener never started: it owns nothing yet
            raise
        return port

    def port_of(self, node: str) -> int:
        return self._routes[node][0]

    # -- faults (any thread) -----------------------------------------------------------------
    def cut(self, src: str, dst: str, both: bool = True) -> None:
        with self._lock:
            self._cut.add((src, dst))
            if both:
                self._cut.add((dst, src))
        self._close_cut()

    def stall(self, src: str, dst: str, both: bool = True) -> None:
        with self._lock:
            self._stall.add((src, dst))
            if both:
                self._stall.add((dst, src))

    def delay(self, src: str, dst: str, ms: float, both: bool = True) -> None:
        with self._lock:
            self._delay_s[(src, dst)] = ms / 1000
            if both:
                self._delay_s[(dst, src)] = ms / 1000

    def partition(self, groups: Iterable[Iterable[str]], mode: str = "cut") -> list[tuple[str, str]]:
        """Separate the groups from each other (both directions); returns the pairs affected.
        ``mode``: "cut" or "stall"."""
        gs = [set(g) for g in groups]
        pairs = [(a, b) for i, g in enumerate(gs) for h in gs[i + 1:] for a in g for b in h]
        for a, b in pairs:
            (self.cut if mode == "cut" else self.stall)(a, b)
        return pairs

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Clear every rule (no arguments) or those between ``a`` and ``b`` (both ways)."""
        with self._lock:
            if a is None:
                self._cut.clear()
                self._stall.clear()
                self._delay_s.clear()
                return
            for p in ((a, b), (b, a)):
                self._cut.discard(p)  # type: ignore[arg-type]
                self._stall.discard(p)  # type: ignore[arg-type]
                self._delay_s.pop(p, None)  # type: ignore[arg-type]

    def connections(self) -> list[tuple[str | None, str]]:
        """(initiator, acceptor) of every open proxied connection."""
        with self._lock:
            return [(c.initiator, c.acceptor) for c in self._conns]

    # -- trio side ---------------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _spawn_listener(self, node: str, sock: socket.socket) -> None:
        assert self._nursery is not None
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        self._nursery.start_soon(self._serve, node, listener)

    async def _serve(self, node: str, listener: trio.SocketListener) -> None:
        async with listener:
            async with trio.open_nursery() as nursery:
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._handle, node, stream)

    def _close_cut(self) -> None:
        if self._token is None:
            return
        try:
            trio.from_thread.run_sync(self._cancel_cut, trio_token=self._token)
        except trio.RunFinishedError:
            pass

    def _cancel_cut(self) -> None:
        with self._lock:
            doomed = [c for c in self._conns if c.pair() is not None and c.pair() in self._cut]
        for c in doomed:
            c.scope.cancel()
            self.stats.cut_connections += 1

    async def _handle(self, node: str, inbound: trio.SocketStream) -> None:
        conn = _Conn(node)
        self.stats.connections += 1
        with self._lock:
            real_port = self._routes[node][1]
            self._conns.add(conn)
        try:
            async with inbound:
                with conn.scope:
                    try:
                        outbound = await trio.open_tcp_stream(self.host, real_port)
                    except OSError:
                        return
                    async with outbound:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._pump, conn, inbound, outbound, True,
                                               nursery)
                            nursery.start_soon(self._pump, conn, outbound, inbound, False,
                                               nursery)
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _flow_rule(self, conn: _Conn, forward: bool) -> tuple[bool, bool, float]:
        """(cut, stalled, delay_s) for one flow of ``conn`` (forward: initiator -> acceptor)."""
        pair = conn.pair()
        if pair is None:
            return False, False, 0.0
        flow = pair if forward else (pair[1], pair[0])
        with self._lock:
            return pair in self._cut, flow in self._stall, self._delay_s.get(flow, 0.0)

    async def _pump(self, conn: _Conn, src: trio.SocketStream, dst: trio.SocketStream,
                    forward: bool, nursery: trio.Nursery) -> None:
        decoder = wire.FrameDecoder() if forward else None
        send, recv = trio.open_memory_channel(64)  # type: ignore[var-annotated]
        nursery.start_soon(self._deliver, recv, dst, nursery)
        try:
            while True:
                cut, stalled, delay_s = self._flow_rule(conn, forward)
                if cut:
                    self.stats.cut_connections += 1
                    break
                if stalled:
                    await trio.sleep(0.02)
                    continue
                try:
                    data = await src.receive_some(CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                if decoder is not None:
                    decoder = self._identify(conn, decoder, data)
                cut, stalled, delay_s = self._flow_rule(conn, forward)
                while stalled and not cut:  # arrived as the stall began: hold it
                    await trio.sleep(0.02)
                    cut, stalled, delay_s = self._flow_rule(conn, forward)
                if cut:
                    self.stats.cut_connections += 1
                    break
                await send.send((trio.current_time() + delay_s, data))
        finally:
            nursery.cancel_scope.cancel()

    def _identify(self, conn: _Conn, decoder: Any, data: bytes) -> Any:
        """Feed the initiator's bytes until its AUTH frame names it; None once done."""
        try:
            decoder.feed(data)
            frame = decoder.next_frame()
        except Exception:  # noqa: BLE001 - not the peer dialect: never identified
            return None
        if frame is None:
            return decoder
        if frame and frame[0] == b"AUTH" and len(frame) > 1:
            try:
                conn.initiator = frame[1].decode()
                self.stats.identified += 1
            except UnicodeDecodeError:
                pass
        return None

    async def _deliver(self, recv: Any, dst: trio.SocketStream, nursery: trio.Nursery) -> None:
        try:
            async for deliver_at, data in recv:
                await trio.sleep_until(deliver_at)
                await dst.send_all(data)
                self.stats.bytes_forwarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()
