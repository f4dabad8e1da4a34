"""Peer transport: the authenticated peer listener and one long-lived link per peer.

The dialect (frames, messages, handshake) is docs/formats/wire.md, implemented sans I/O in
respkv/cluster/wire.py; this module only moves its bytes over trio streams.

* :class:`PeerServer` accepts connections on the peer port, runs the acceptor side of the
  handshake (refusing and logging a peer that cannot prove the cluster secret), then answers
  requests in arrival order with the local replica. Replies are sent after the writes they
  answer were handed to the OS (the node's durability contract); under load, replies to reads
  that were already waiting go out together (``_serve_requests``).
* :class:`PeerLink` is this node's one outbound connection to one peer address, owned by its
  ``run`` task: it connects, authenticates, and reconnects after a failure (back-off
  ``RECONNECT_BACKOFF_MS``). ``send`` queues a request (pipelined: no waiting for earlier
  replies) and registers a callback that the reader task calls with the reply matched by
  request id -- or with None when the connection breaks. ``send`` never blocks and never
  awaits; a link that is not connected refuses at once, so a dead peer costs no time.

Cancellation: a link's ``run`` and the server's tasks may be cancelled at any checkpoint; an
outstanding request's callback is then called with None (never left dangling).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from respkv.cluster import wire
from respkv.cluster.wire import FrameDecoder, HandshakeError, SelfConnection, WireError
from respkv.node.network import TCP, Network

log = logging.getLogger("respkv.peer")

READ_SIZE = 64 * 1024
# Memory bound of one link to a peer that accepts bytes but does not answer (paused, overloaded):
# beyond these, requests are refused at once (counted as that replica not answering).
MAX_OUTSTANDING = 50_000
MAX_OUTBOX_BYTES = 64 * 1024 * 1024
# Replies held while more requests are already readable (PeerServer._serve_requests).
CORK_MAX_BATCHES = 8
CORK_MAX_BYTES = 64 * 1024
ReplyCallback = Callable[[wire.Reply | None], None]


@dataclass(frozen=True)
class PeerIdentity:
    """Who this node is on the peer network. ``nonce`` returns n fresh random bytes (the node
    passes ``os.urandom``; tests a seeded source)."""

    node_id: str
    dc: str
    secret: bytes
    advertise: str  # this node's own peer address host:port, announced in AUTH
    nonce: Callable[[int], bytes]


async def _receive(stream: Any) -> bytes:
    """Bytes from the stream. On a real socket, a plain recv is tried before parking in epoll
    (under load the next message is usually there already, and the epoll round costs more than
    the message); the caller then yields (``trio.lowlevel.checkpoint``) often enough. b"" at end
    of stream."""
    sock = getattr(stream, "sock", None)
    if sock is None:
        return await stream.receive_some(READ_SIZE)
    try:
        return sock.recv(READ_SIZE)
    except BlockingIOError:
        return await stream.receive_some(READ_SIZE)
    except OSError:
        return b""


def _remote(stream: Any) -> str:
    sock = getattr(stream, "sock", None)
    if sock is None:
        return str(getattr(stream, "remote", "?"))
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def _next_frame(stream: Any, decoder: FrameDecoder) -> list[bytes]:
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise trio.BrokenResourceError("peer closed the connection")
        decoder.feed(data)


# -- the accepting side -----------------------------------------------------------------------------


class PeerServer:
    """Serves replica requests from authenticated peers.

    ``handle(request) -> (ok, payload)`` is synchronous (the local replica); ``durable(seq)`` is
    awaited before replies to a batch that wrote are sent (``seq``: the engine's ``last_seq``
    before the batch); ``on_peer(node_id, dc, addr)`` is told of every authenticated peer.
    """

    def __init__(
        self,
        identity: PeerIdentity,
        handle: Callable[[wire.Request], tuple[bool, bytes]],
        last_seq: Callable[[], int],
        durable: Callable[[int], Awaitable[None]],
        on_peer: Callable[[str, str, str], None],
        dirty: Callable[[], bool] = lambda: False,
    ) -> None:
        self.dirty = dirty  # True: something besides the engine (hints) awaits durability
        self.identity = identity
        self.handle = handle
        self.last_seq = last_seq
        self.durable = durable
        self.on_peer = on_peer
        self.stats = {"peer_connections_accepted": 0, "peer_connections_refused": 0,
                      "peer_requests_served": 0, "peer_reply_sends": 0,
                      "peer_connections_open": 0}

    def statistics(self) -> dict[str, int]:
        return dict(self.stats)

    async def run(self, listeners: list[Any], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio.serve_listeners(self._serve, listeners, task_status=task_status)

    async def _serve(self, stream: Any) -> None:
        try:
            await self._serve_raw(stream)
        finally:
            stream.close_now()

    async def _serve_raw(self, stream: Any) -> None:
        remote = _remote(stream)
        ident = self.identity
        acc = wire.Acceptor(ident.secret, ident.node_id, ident.nonce(16), ident.dc)
        decoder = FrameDecoder()
        try:
            with trio.fail_after(wire.HANDSHAKE_TIMEOUT_MS / 1000):
                await stream.send_all(acc.greeting())
                frame = await _next_frame(stream, decoder)
                try:
                    welcome = acc.on_auth(frame)
                except HandshakeError as e:
                    self.stats["peer_connections_refused"] += 1
                    log.warning("event=peer_refused remote=%s reason=%r", remote, e.detail)
                    await stream.send_all(e.reply)
                    return
                await stream.send_all(welcome)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                WireError, OSError) as e:
            self.stats["peer_connections_refused"] += 1
            log.warning("event=peer_refused remote=%s reason=%r", remote,
                        f"handshake failed: {e!r}")
            await trio.aclose_forcefully(stream)
            return
        assert acc.peer_id is not None
        self.stats["peer_connections_accepted"] += 1
        self.stats["peer_connections_open"] += 1
        log.info("event=peer_accepted remote=%s node=%s", remote, acc.peer_id)
        self.on_peer(acc.peer_id, acc.peer_dc, acc.peer_addr)
        try:
            await self._serve_requests(stream, decoder)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except WireError as e:
            log.warning("event=peer_protocol_error node=%s error=%r", acc.peer_id, str(e))
        finally:
            self.stats["peer_connections_open"] -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_requests(self, stream: Any, decoder: FrameDecoder) -> None:
        """Serve requests in arrival order. Replies are corked while more requests are already
        readable: on a real socket, after a batch, a plain recv looks for the next read; if
        there is one it is served first, and the replies go out together once a read would
        block (or after ``CORK_MAX_BATCHES`` batches or ``CORK_MAX_BYTES``), so under load one
        send -- and one wake-up of the peer's reader -- carries the replies of several reads.
        The recv is the one the loop makes anyway before waiting, so an idle connection pays
        nothing. Before any reply is sent the writes of every batch it answers are durable
        (``durable(seq)``, seq read before the first of them)."""
        handle = self.handle
        stats = self.stats
        encode_ok_empty = wire.encode_ok_empty
        encode_reply = wire.encode_reply
        sock = getattr(stream, "sock", None)
        out = bytearray()
        seq_before = 0
        corked = 0  # batches whose replies are in ``out``
        busy = 0
        while True:
            if not out:
                data = await _receive(stream)
            else:
                data = None
                if sock is not None and corked < CORK_MAX_BATCHES and len(out) < CORK_MAX_BYTES:
                    try:
                        data = sock.recv(READ_SIZE)
                    except BlockingIOError:
                        pass
                    except OSError:
                        data = b""
                if data is None:  # nothing more to read now: reply
                    if self.last_seq() != seq_before or self.dirty():
                        await self.durable(seq_before)
                    await stream.send_all(out)
                    stats["peer_reply_sends"] += 1
                    out = bytearray()
                    corked = 0
                    data = await stream.receive_some(READ_SIZE)
            if not data:
                return
            busy += 1
            if busy >= 16:  # data kept coming without a wait: let other tasks run
                busy = 0
                await trio.lowlevel.checkpoint()
            decoder.feed(data)
            if not out:
                seq_before = self.last_seq()
            served = 0
            while (req := decoder.next_request()) is not None:
                ok, payload = handle(req)
                served += 1
                out += (encode_ok_empty(req.req_id) if ok and not payload
                        else encode_reply(req.req_id, ok, payload))
            stats["peer_requests_served"] += served
            corked += served > 0


# -- the initiating side ----------------------------------------------------------------------------


class SendBatcher(trio.abc.Instrument):
    """A trio instrument (one per cluster node) that sends the requests each ``PeerLink`` was
    given during a scheduler pass when the pass ends -- trio calls ``before_io_wait`` once per
    pass, before it polls for I/O -- so one syscall (and one wake-up of the peer) carries every
    request a pass made for that peer, rather than one each.

    Measured (bench/bench_cluster_cpu.py, 8 clients, N=3 W=2): 155 -> 134 us of server CPU
    per write in one process, where a pass holds every node's work; in separate processes a
    pass holds fewer writes, and the saving is a few percent. The cost is latency within one
    pass: a request waits for the other ready tasks of its pass, which are also what would
    have run before its reply could be read anyway."""

    def __init__(self) -> None:
        self.dirty: list[PeerLink] = []  # links holding requests (a link may appear twice)

    def before_io_wait(self, timeout: float) -> None:
        dirty = self.dirty
        if dirty:
            self.dirty = []
            for link in dirty:
                try:
                    link.flush_held()
                except Exception:
                    log.exception("event=peer_flush_failed")


class PeerLink:
    """This node's one outbound connection to the peer at ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        identity: PeerIdentity,
        on_identified: Callable[[PeerLink], None],
        network: Network = TCP,
        on_down: Callable[[PeerLink], None] | None = None,
    ) -> None:
        self.on_down = on_down  # told when an identified connection breaks
        self.network = network
        self.host = host
        self.port = port
        self.identity = identity
        self.on_identified = on_identified
        self.peer_id: str | None = None  # learned from the handshake
        self.peer_dc = ""
        self.connected = False
        self.is_self = False  # the address is this node's own peer port
        self._pending: dict[int, ReplyCallback] = {}
        self._next_id = 0
        self._outbox = bytearray()
        self._held = bytearray()  # requests held for the end of the scheduler pass
        self.batcher: SendBatcher | None = None
        self.retired = False
        self._scope = trio.CancelScope()
        self._wake = trio.Event()
        self._sock: Any = None  # the real socket while connected (None on other networks)
        self.stats = {"connects": 0, "connect_failures": 0, "disconnects": 0,
                      "requests_sent": 0, "requests_refused": 0, "replies": 0,
                      "sends": 0}
        self.last_error = ""
        self._decoder = FrameDecoder()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def statistics(self) -> dict[str, Any]:
        return {"address": self.address, "node": self.peer_id or "", "connected": self.connected,
                "outstanding": len(self._pending), "last_error": self.last_error, **self.stats}

    # -- the request API (sync; never blocks) --
    def send(self, build: Callable[[int], bytes], callback: ReplyCallback) -> int:
        """Queue the request ``build(req_id)``; ``callback`` gets the reply (or None if the
        connection breaks first). Returns the request id, or 0 (and does not call back) when
        the link is not connected or already holds ``MAX_OUTSTANDING`` unanswered requests or
        ``MAX_OUTBOX_BYTES`` unsent bytes."""
        if (not self.connected or len(self._pending) >= MAX_OUTSTANDING
                or len(self._outbox) >= MAX_OUTBOX_BYTES):
            self.stats["requests_refused"] += 1
            return 0
        self._next_id += 1
        req_id = self._next_id
        self._pending[req_id] = callback
        frame = build(req_id)
        self.stats["requests_sent"] += 1
        if self._outbox or self._sock is None:
            # A backlog (keep the order), or a stream without a socket: the writer sends it.
            self._outbox += frame
            self._wake.set()
            return req_id
        batcher = self.batcher
        if batcher is None:
            self._send_now(frame)
        else:
            if not self._held:
                batcher.dirty.append(self)
            self._held += frame
        return req_id

    def flush_held(self) -> None:
        """Send the requests held since the scheduler pass began (``SendBatcher``)."""
        frame, self._held = self._held, bytearray()
        if not frame:
            return
        if self._outbox or self._sock is None:  # a backlog appeared, or the socket went
            self._outbox += frame
            self._wake.set()
            return
        self._send_now(frame)

    def _send_now(self, frame: bytes | bytearray) -> None:
        """One syscall on the non-blocking socket, from the caller, without waking the writer
        task (a task switch costs more than the syscall); what does not fit is left to the
        writer."""
        self.stats["sends"] += 1
        try:
            n = self._sock.send(frame)
        except BlockingIOError:
            n = 0
        except OSError:
            n = 0  # the reader will see the connection fail and fail these requests
        if n < len(frame):
            self._outbox += frame[n:]
            self._wake.set()

    def forget(self, req_id: int) -> None:
        """The caller stopped waiting (deadline): drop the callback; a late reply is ignored."""
        self._pending.pop(req_id, None)

    def retire(self) -> None:
        """Stop for good (the peer left the cluster): ``run`` returns, an open connection is
        closed and its outstanding requests fail; later ``send`` calls are refused."""
        self.retired = True
        self._scope.cancel()

    # -- the owner task --
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with self._scope:
            await self._run()
        self.connected = False

    async def _run(self) -> None:
        backoff = wire.RECONNECT_BACKOFF_MS / 1000
        while not self.retired:
            stream = await self._connect()
            if stream is None:
                if self.is_self:
                    return
                await trio.sleep(backoff)
                continue
            self._sock = getattr(stream, "sock", None)
            self.connected = True
            self.stats["connects"] += 1
            self.last_error = ""
            log.info("event=peer_connected address=%s node=%s", self.address, self.peer_id)
            self.on_identified(self)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._reader, stream, nursery.cancel_scope)
                    nursery.start_soon(self._guard, self._writer, stream, nursery.cancel_scope)
            finally:
                self.connected = False
                self._sock = None
                self.stats["disconnects"] += 1
                if self.on_down is not None:
                    self.on_down(self)
                self._fail_pending()
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            log.warning("event=peer_disconnected address=%s node=%s error=%r", self.address,
                        self.peer_id, self.last_error)
            await trio.sleep(backoff)

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        self._outbox = bytearray()
        self._held = bytearray()
        for cb in pending.values():
            try:
                cb(None)
            except Exception:
                log.exception("event=peer_callback_failed address=%s", self.address)

    async def _connect(self) -> Any:
        ident = self.identity
        try:
            stream = await self.network.connect(self.host, self.port)
        except OSError as e:
            self.stats["connect_failures"] += 1
            self.last_error = f"connect: {e.strerror or e}"
            return None
        ini = wire.Initiator(ident.secret, ident.node_id, ident.nonce(16), ident.advertise,
                             ident.dc)
        decoder = FrameDecoder()
        try:
            with trio.fail_after(wire.HANDSHAKE_TIMEOUT_MS / 1000):
                await stream.send_all(ini.on_greeting(await _next_frame(stream, decoder)))
                ini.on_welcome(await _next_frame(stream, decoder))
        except SelfConnection:
            self.is_self = True
            await trio.aclose_forcefully(stream)
            return None
        except HandshakeError as e:
            self.stats["connect_failures"] += 1
            self.last_error = e.detail
            log.warning("event=peer_refused address=%s reason=%r", self.address, e.detail)
            await trio.aclose_forcefully(stream)
            return None
        except (trio.TooSlowError, trio.BrokenResourceError, OSError, WireError) as e:
            self.stats["connect_failures"] += 1
            self.last_error = f"handshake: {e!r}"
            await trio.aclose_forcefully(stream)
            return None
        except BaseException:
            # Cancelled mid-handshake (retire, shutdown): nobody else holds the stream.
            stream.close_now()
            raise
        self.peer_id = ini.peer_id
        self.peer_dc = ini.peer_dc
        self._decoder = decoder
        return stream

    async def _guard(self, fn: Any, stream: Any, scope: trio.CancelScope) -> None:
        """Run the reader or the writer; any connection failure ends both (and the link)."""
        try:
            await fn(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, WireError) as e:
            self.last_error = repr(e)
        finally:
            scope.cancel()

    async def _reader(self, stream: Any) -> None:
        decoder = self._decoder
        busy = 0
        while True:
            while (reply := decoder.next_reply()) is not None:
                self.stats["replies"] += 1
                cb = self._pending.pop(reply.req_id, None)
                if cb is not None:
                    try:
                        cb(reply)
                    except Exception:  # a bug in one operation must not cut the link
                        log.exception("event=peer_callback_failed address=%s", self.address)
            data = await _receive(stream)
            if not data:
                raise trio.BrokenResourceError("peer closed the connection")
            decoder.feed(data)
            busy += 1
            if busy >= 16:  # data kept coming without a wait: let other tasks run
                busy = 0
                await trio.lowlevel.checkpoint()

    async def _writer(self, stream: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if not self._outbox:
                continue
            data, self._outbox = self._outbox, bytearray()
            self.stats["sends"] += 1
            await stream.send_all(data)
