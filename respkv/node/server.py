"""The trio layer of a respkv node: client connections, durability, background work.

Structure (the trio habit): ``Node.run`` opens one root nursery and ``start``s each long-lived
service in it -- the listener, the fsync policy task, the engine's background worker, the active
expiry cycle and the client cron. Everything else in respkv is sans-I/O; this module only moves
bytes between sockets and those cores, and decides *when* (never *what*).

Durability contract: every reply to a batch of commands read from one client is sent only after
the commit-log bytes of that batch's writes were handed to the OS (``engine.write_pending``), so
an acknowledged write survives the process being killed; under ``appendfsync always`` only after
an fsync that covers them (group commit: concurrent clients share one fsync); under ``everysec``
an fsync runs once a second in a worker thread.

Memory contract: a connection holds at most one read (64 KB) of input beyond one incomplete
command, and at most ``OUTPUT_FLUSH_BYTES`` of replies beyond one reply: while a client does not
read its replies the server does not read its requests.

MONITOR: a monitor is sent every command the server runs, as redis-server 7.0 does (which
commands, when, how redacted: ``respkv.commands.server.shown_to_monitors``). Feeding appends a
line to each monitor's buffer and never waits; a writer task per monitor sends the buffer. A
monitor whose pending output exceeds ``client_output_buffer_limit_hard`` (or, when that is 0,
``MONITOR_OUTPUT_LIMIT``) is disconnected, as redis-server's client-output-buffer-limit does,
so a monitor that does not read can neither block the server nor grow without bound. While
nobody monitors and nobody waits, the serve loop pays one test of an empty dict per command
(``_gate``) for all of this.

WAIT (blocking): the handler asks ``block_client``; the serve loop sends the batch's earlier
replies, then waits (timeout, CLIENT UNBLOCK, or the peer leaving) while it keeps reading the
connection, and runs what arrived meanwhile after the WAIT, in order, as redis-server does.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import random
import signal
import socket
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Any

import trio

import respkv.commands  # noqa: F401  (registers every command module)
from respkv.commands import errors as E
from respkv.commands.client import set_flag
from respkv.commands.core import (
    QUEUED,
    Client,
    CommandSpec,
    ServerState,
    account_command,
    execute,
)
from respkv.commands.errors import CommandError, RejectedError
from respkv.commands.server import (
    called_spec,
    hidden_from_monitors,
    monitor_line,
    shown_to_monitors,
    touches_keyspace,
)
from respkv.config import LOG_LEVELS, Config
from respkv.node.info import process_rss_bytes, register_info_providers
from respkv.node.metrics import (
    BUCKET_OF_US,
    FAST_US,
    LATENCY_BOUNDS_US,
    CommandLatency,
    serve_metrics,
)
from respkv.node.network import TCP, Network
from respkv.node.streams import RawSocketStream
from respkv.node.systemd import SystemdNotifier
from respkv.node.tls import open_tls_listener
from respkv.protocol.resp import OK, ErrorReply, ProtocolError, Raw, RequestParser, encode
from respkv.storage.api import Engine

log = logging.getLogger("respkv.node")

OUTPUT_FLUSH_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
MONITOR_OUTPUT_LIMIT = 32 * 1024 * 1024
"""Pending MONITOR output past which a monitor is disconnected when
``client_output_buffer_limit_hard`` is 0 (redis-server's hard limit for pubsub clients; its
normal-client class, monitors included, has none, but a monitor has no backpressure: the server
cannot stop feeding it)."""

BLOCKED = Raw(b"")
"""What ``block_client`` hands a handler to return: an empty reply (the serve loop's encode
writes nothing) that the loop recognises by identity and replaces with the wait's reply."""


class _EnterMonitorMode(Exception):
    """Raised in the serve loop right after a MONITOR: the connection goes on in monitor mode."""


class Monitor:
    """A connection fed every command (MONITOR). ``buf`` holds its output not yet handed to its
    writer task (lines, and in monitor mode its own replies, in order); ``inflight`` what the
    writer is sending. Fed by any task, written by the writer only."""

    __slots__ = ("client", "buf", "inflight", "wake", "progress", "closed")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.buf = bytearray()
        self.inflight = 0
        self.wake = trio.Event()  # set when buf grew (or the monitor must stop)
        self.progress = trio.Event()  # set when a send completed
        self.closed = False  # over its output limit, or its peer left: stop writing

    def pending(self) -> int:
        return len(self.buf) + self.inflight


class Block:
    """A client waiting in WAIT: ``reply`` is what it gets when ``done`` (0 unless CLIENT
    UNBLOCK ... ERROR said otherwise) or when ``timeout_ms`` (0: none) passed."""

    __slots__ = ("timeout_ms", "reply", "done")

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.reply: Any = 0
        self.done = trio.Event()


def open_engine(config: Config, clock_ms: Callable[[], int]) -> Engine:
    if config.engine == "memory":
        from respkv.storage.memory import MemoryEngine

        return MemoryEngine()
    from respkv.storage.lsm import LSMEngine

    os.makedirs(config.dir, exist_ok=True)
    return LSMEngine.open(
        config.dir,
        now_ms=clock_ms,
        memtable_bytes=config.memtable_bytes,
        block_cache_bytes=config.block_cache_bytes,
        skip_corrupt=config.aof_load_truncated,
        tombstone_grace_ms=config.tombstone_grace_seconds * 1000,
    )


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def skewed_clock(offset_ms: int) -> Callable[[], int]:
    """The wall clock plus ``clock_offset_ms`` (a testing aid that injects clock skew)."""
    if not offset_ms:
        return wall_clock_ms
    return lambda: wall_clock_ms() + offset_ms


class DurabilityError(Exception):
    pass


class GroupCommit:
    """Shares fsyncs among concurrent writers (``appendfsync always``)."""

    def __init__(self, engine: Engine,
                 sync_worker: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None) -> None:
        self.engine = engine
        self.sync_worker = sync_worker or trio.to_thread.run_sync
        self.durable_seq = 0
        self.error: str | None = None
        self._need = trio.Event()
        self._round_done = trio.Event()
        self.fsyncs = 0

    async def wait_durable(self, seq: int) -> None:
        """Return once ``seq`` is on disk; raises DurabilityError if the fsync failed."""
        while self.durable_seq < seq:
            if self.error is not None:
                raise DurabilityError(self.error)
            ev = self._round_done
            self._need.set()
            await ev.wait()
        if self.error is not None and self.durable_seq < seq:
            raise DurabilityError(self.error)

    async def sync_now(self) -> None:
        """One fsync of everything written so far (everysec policy, shutdown)."""
        try:
            seq = await self.sync_worker(self.engine.sync)
        except OSError as e:
            self.error = f"{e.strerror or e}"
            log.error("event=fsync_failed error=%r", self.error)
            return
        self.fsyncs += 1
        self.error = None
        self.durable_seq = max(self.durable_seq, seq)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._need.wait()
            self._need = trio.Event()
            done = self._round_done
            self._round_done = trio.Event()  # writers arriving now wait for the next round
            await self.sync_now()
            done.set()


def _is_loopback(host: str) -> bool:
    """Protected mode's test of a peer address ("" is a unix-socket peer). An IPv4-mapped
    ::ffff:127.x.y.z (an IPv4 client of a dual-stack "::" listener) is the loopback it maps."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in ("localhost", "")
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


TTL_DISCOVERY_KEYS = 2000
"""Stored keys a cron tick looks at for TTLs after a restart (discover_ttls): at hz 10, 20,000
keys a second, about 2 ms of each tick."""


class Node:
    """One respkv node. Owns the engine, the server state and every connection task."""

    def __init__(
        self,
        config: Config,
        *,
        engine: Engine | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        perf_ns: Callable[[], int] = time.perf_counter_ns,
        network: Network = TCP,
        rng: random.Random | None = None,
        nonce: Callable[[int], bytes] = os.urandom,
        sync_worker: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
        listen: bool = True,
    ) -> None:
        """``clock_ms`` (wall time: expiry, dots' timestamps), ``perf_ns`` (durations),
        ``network`` (peer connections), ``rng`` (every random choice: gossip partners,
        probabilistic read repair, eviction samples) and ``nonce`` (handshake nonces, run id)
        are the node's only sources of time, randomness and peers: the simulation
        (respkv/sim) passes its own. ``sync_worker(fn)`` runs the engine's blocking work
        (fsync, flush and compaction, close; default: a worker thread); the simulation runs it
        inline so that nothing happens outside trio's (mock) clock. ``listen=False``: no client
        listener (the simulation drives ``serve_client`` over memory streams)."""
        self.sync_worker = sync_worker or trio.to_thread.run_sync
        self.listen = listen
        self.config = config
        self.clock_ms = clock_ms
        self.perf_ns = perf_ns
        self.network = network
        self.rng = rng if rng is not None else random.Random()
        self.nonce = nonce
        self.engine = engine if engine is not None else open_engine(config, clock_ms)
        from respkv.node.coordinator import is_cluster_config

        # Single-node mode: the databases follow the stored map (SWAPDB, docs/formats/dbmap.md).
        self.state = ServerState(
            config, self.engine, clock_ms, run_id=nonce(20).hex(), rng=self.rng,
            db_map=not is_cluster_config(config),
        )
        self.state.info_providers["persistence"] = self._persistence_info
        self.state.info_providers["storage"] = lambda: {"engine": self.config.engine,
                                                        **self.engine.stats()}
        register_info_providers(self)  # pid, OS, RSS, CPU, rates and clock_us for INFO/TIME
        self.latency = CommandLatency(self.state.cmdstats)  # histograms: INFO, /metrics
        self.state.info_providers["latencystats"] = self.latency.latencystats
        self.commit = GroupCommit(self.engine, self.sync_worker)
        self.port: int | None = None
        self._scopes: dict[int, trio.CancelScope] = {}
        self._streams: dict[int, Any] = {}
        self._root: trio.Nursery | None = None
        self._shutdown = trio.Event()
        self._bg_progress = trio.Event()
        self.state.kill_client = self._kill_client  # type: ignore[attr-defined]
        # MONITOR and WAIT (see the module docstring). ``_gate`` is non-empty while the serve
        # loop must look at each command after it ran: "monitor" while anyone monitors, and
        # ("block", id) for a WAIT about to block.
        self.monitors: dict[int, Monitor] = {}  # client id -> monitor fed every command
        self._monitor_conns: dict[int, Monitor] = {}  # connections in monitor mode
        self._blocks: dict[int, Block] = {}
        self._gate: dict[Any, bool] = {}
        # While anyone monitors: each client's MULTI queue (the list EXEC will run) and its
        # database, so the commands EXEC ran can be shown after it.
        self._multi_queues: dict[int, tuple[list[Any], int]] = {}
        state = self.state
        state.start_monitor = self._start_monitor  # type: ignore[attr-defined]
        state.stop_monitor = self._stop_monitor  # type: ignore[attr-defined]
        state.block_client = self._block_client  # type: ignore[attr-defined]
        state.unblock_client = self._unblock_client  # type: ignore[attr-defined]
        state.command_latency = self._command_latency  # type: ignore[attr-defined]
        # EXEC's commands are timed and counted as the serve loop counts the others
        state.perf_us = lambda: self.perf_ns() // 1000
        state.on_new_cmdstat = self.latency.new_histogram
        state.observe_latency = self._observe_latency
        state.sleep_client = self._sleep_client  # type: ignore[attr-defined]  # DEBUG SLEEP
        state.rewrite_aof = self._rewrite_aof  # type: ignore[attr-defined]  # BGREWRITEAOF
        self._sleeps: dict[int, int] = {}  # client id -> microseconds DEBUG SLEEP asked for
        # BGREWRITEAOF: when the running rewrite started (perf ns; None: none runs), how many
        # finished, how long the last one took (-1: none yet) and whether it failed.
        self._aof_rewrite_started: int | None = None
        self.aof_rewrites = 0
        self._aof_last_rewrite_s = -1
        self._aof_rewrite_failures = 0  # consecutive; 0 after a rewrite that succeeded
        state.nonce = nonce  # type: ignore[attr-defined]
        state.memory_startup_bytes = process_rss_bytes()  # type: ignore[attr-defined]
        clock_us = getattr(state, "clock_us", None)
        self._clock_us: Callable[[], int] = clock_us or (lambda: self.clock_ms() * 1000)
        self.write_stalls = 0
        self.ttls_discovered = 0
        # Cluster mode (node_id or seeds configured): keyed commands go through the coordinator.
        self.cluster: Any = None
        from respkv.node.coordinator import Cluster, is_cluster_config

        if is_cluster_config(config):
            self.cluster = Cluster(self)
        # Keys recovered from disk carry TTLs the databases' expiry hints do not know of yet:
        # the cron finds them in bounded steps (discover_ttls). Single-node keys only.
        self._ttl_scan: bytes | None = (
            b"" if self.cluster is None and self.engine.last_seq > 0 else None)

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until shutdown; ``task_status.started(port)`` once listening."""
        listen = self._listen_socket() if self.listen else None
        self.port = listen.getsockname()[1] if listen is not None else 0
        tls = None
        try:
            tls = open_tls_listener(self.config)  # None when tls_port is 0; OSError if bad
            async with trio.open_nursery() as nursery:
                self._root = nursery
                await nursery.start(self.commit.run)
                await nursery.start(self._fsync_policy_task)
                await nursery.start(self._background_work_task)
                await nursery.start(self._cron_task)
                if self.cluster is not None:
                    await nursery.start(self.cluster.run)
                # Metrics first: once the client port accepts, everything is up (a supervisor
                # or a test that waits for the client port may scrape at once).
                if self.config.metrics_port:
                    await nursery.start(serve_metrics, self, self.config.bind, self.config.metrics_port)
                if listen is not None:
                    await nursery.start(self._accept_task, listen)
                if tls is not None:
                    await nursery.start(self._accept_task, *tls)
                log.info("event=ready port=%d engine=%s", self.port, self.config.engine)
                task_status.started(self.port)
                await self._shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            if listen is not None:
                listen.close()
            if tls is not None:
                tls[0].close()
            with trio.CancelScope(shield=True):
                await self._close_engine()

    async def _close_engine(self) -> None:
        try:
            await self.sync_worker(self.engine.close)
        except Exception:  # a failing disk at shutdown: report, never hang
            log.exception("event=engine_close_failed")

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def _listen_socket(self) -> socket.socket:
        cfg = self.config
        family = socket.AF_INET6 if ":" in cfg.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.bind, cfg.port))
        sock.listen(511)
        sock.setblocking(False)
        return sock

    # -- connections --------------------------------------------------------------------------
    async def _accept_task(
        self,
        listen: socket.socket,
        wrap: Callable[[socket.socket], Any] = RawSocketStream,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        assert self._root is not None
        async with trio.open_nursery() as conns:
            while True:
                await trio.lowlevel.wait_readable(listen)
                try:
                    sock, addr = listen.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:  # EMFILE and friends: back off instead of spinning
                    log.warning("event=accept_failed error=%r", e)
                    await trio.sleep(0.1)
                    continue
                conns.start_soon(self._connection, sock, addr, wrap)

    async def _connection(
        self, sock: socket.socket, addr: Any, wrap: Callable[[socket.socket], Any] = RawSocketStream
    ) -> None:
        stream = wrap(sock)  # RawSocketStream, or a TLSStream (node/tls.py) on the TLS port
        peer_host = addr[0] if isinstance(addr, tuple) else ""
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        try:
            laddr = "%s:%d" % sock.getsockname()[:2]
        except OSError:
            laddr = ""
        state = self.state
        cfg = self.config
        try:
            if len(state.clients) >= cfg.maxclients:
                state.stats["rejected_connections"] += 1
                await stream.send_all(b"-" + E.MAX_CLIENTS.encode() + b"\r\n")
                return
            if cfg.protected_mode and not cfg.requirepass and not _is_loopback(peer_host):
                await stream.send_all(b"-" + E.PROTECTED_MODE.encode() + b"\r\n")
                return
            client = state.new_client(peer, laddr)
            with trio.CancelScope() as scope:
                self._scopes[client.id] = scope
                self._streams[client.id] = stream
                try:
                    await self.serve_client(stream, client)
                except trio.BrokenResourceError:
                    pass
                finally:
                    self._scopes.pop(client.id, None)
                    self._streams.pop(client.id, None)
                    self._forget(client)
                    state.drop_client(client)
        except trio.BrokenResourceError:
            pass
        finally:
            stream.close_now()

    def _kill_client(self, client: Client) -> None:
        scope = self._scopes.get(client.id)
        client.killed = True
        if scope is not None:
            scope.cancel()

    async def serve_client(self, stream: Any, client: Client) -> None:
        """The per-connection loop: read, parse, dispatch in order, reply in one send.

        Any stream with ``receive_some``/``send_all`` works (memory streams in tests).
        """
        state = self.state
        engine = self.engine
        cfg = self.config
        parser = RequestParser(cfg.proto_max_bulk_len)
        specs = state.table.specs
        lookup = state.table.lookup
        perf = self.perf_ns
        cmdstats = state.cmdstats
        hists = self.latency.hists
        bounds = LATENCY_BOUNDS_US
        bucket_of = BUCKET_OF_US
        stats = state.stats
        cluster = self.cluster  # None: the single-node path, unchanged
        gate = self._gate  # empty unless someone monitors or a WAIT is about to block
        parser.auth_required = not client.authenticated
        while True:
            data = await stream.receive_some(READ_SIZE)
            if not data:
                return
            stats["total_net_input_bytes"] += len(data)
            parser.feed(data)
            batch = parser.commands()
            if not batch:
                client.qbuf = parser.buffered
                if client.qbuf > cfg.client_query_buffer_limit:
                    log.warning("event=client_closed reason=query_buffer_limit id=%d", client.id)
                    return
                continue
            client.last_ms = self.clock_ms()
            seq_before = engine.last_seq
            out = bytearray()
            try:
                for args in batch:
                    if isinstance(args, ProtocolError):  # isinstance: narrows for mypy, as cheap
                        # latin-1: "expected '$', got 'X'" carries the offending raw byte, as Redis
                        out += b"-ERR " + str(args).encode("latin-1") + b"\r\n"
                        client.close_after_reply = True
                        log.info("event=protocol_error id=%d peer=%s error=%r", client.id, client.peer, str(args))
                        break
                    spec = specs.get(args[0]) or lookup(args[0])
                    t0 = perf()
                    if cluster is None:
                        reply = execute(spec, client, args)
                    else:
                        reply = await cluster.execute(spec, client, args)
                    dt = (perf() - t0) // 1000
                    if spec is None or reply is QUEUED or isinstance(reply, ErrorReply):
                        account_command(state, spec, client, args, reply, dt)  # the rare cases
                    else:  # account_command's common case, inlined
                        st = cmdstats.get(spec.name)
                        if st is None:
                            st = state.cmdstat(spec.name)  # and its histogram
                        st[0] += 1
                        st[1] += dt
                        hists[spec.name][bucket_of[dt] if dt < FAST_US else bisect_left(bounds, dt)] += 1
                        client.last_cmd = spec.name
                        if (dt >= cfg.slowlog_log_slower_than >= 0
                                and "skip_slowlog" not in spec.flags):
                            state.slowlog_record(dt, args, client)
                    encode(reply, client.resp3, out)  # read after the handler: HELLO switches it
                    if gate:
                        await self._after_command(stream, client, spec, args, reply, out, batch,
                                                  parser, seq_before, None)
                    if client.close_after_reply or state.shutdown_requested is not None:
                        break
                    if len(out) > OUTPUT_FLUSH_BYTES:
                        await self._durable(seq_before)
                        seq_before = engine.last_seq
                        await self._send(stream, client, out)
                        out = bytearray()
            except _EnterMonitorMode:
                # MONITOR ran: the rest of this batch, and everything after, is served in
                # monitor mode (which returns once a RESET left it and its batch is done).
                at = next(i for i, a in enumerate(batch) if a is args)
                stats["total_commands_processed"] += at + 1  # monitor mode counts the rest
                if not await self._monitor_mode(stream, client, parser, out, seq_before,
                                                batch[at + 1:]):
                    return
                parser.auth_required = not client.authenticated
                continue
            stats["total_commands_processed"] += len(batch)
            if engine.last_seq != seq_before:
                try:
                    if cfg.appendfsync == "always":
                        await self.commit.wait_durable(engine.last_seq)
                    else:
                        engine.write_pending()  # in the OS before the reply: survives a kill
                except (DurabilityError, OSError) as e:
                    msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    out = bytearray(b"-MISCONF Errors writing to the AOF file: %s\r\n" % msg.encode())
                    client.close_after_reply = True
                if engine.write_stalled():
                    await self._wait_not_stalled()
            if out:
                if cfg.client_output_buffer_limit_hard:
                    await self._send(stream, client, out)
                else:  # the common case, inlined: one coroutine layer less per reply
                    stats["total_net_output_bytes"] += len(out)
                    await stream.send_all(out)
            if state.shutdown_requested is not None:
                self.request_shutdown()
                return
            if client.close_after_reply:
                return
            parser.auth_required = not client.authenticated

    # -- MONITOR and WAIT -----------------------------------------------------------------------
    async def _after_command(self, stream: Any, client: Client, spec: CommandSpec | None,
                             args: list[bytes], reply: Any, out: bytearray, batch: list[Any],
                             parser: RequestParser, seq_before: int, mon: Monitor | None) -> None:
        """A command that ran while ``_gate`` was non-empty: show it to the monitors; after a
        MONITOR outside monitor mode raise _EnterMonitorMode; wait if it was a WAIT that blocks.
        ``mon``: this connection's Monitor when in monitor mode (all its output goes there)."""
        if self.monitors:
            self._feed_monitors(client, spec, args, reply)
            if mon is None and client.id in self.monitors:
                raise _EnterMonitorMode
        if ("sleep", client.id) in self._gate:
            await self._sleep_after(client, spec, args)
        if reply is BLOCKED:
            self._gate.pop(("block", client.id), None)
            blk = self._blocks.get(client.id)
            if blk is not None:
                await self._wait_blocked(stream, client, blk, out, batch, parser, seq_before, mon)

    def _feed_monitors(self, client: Client, spec: CommandSpec | None, args: list[bytes],
                       reply: Any) -> None:
        """Append the line of this command (and, after an EXEC, of the commands it ran, first)
        to every monitor's buffer. Never waits."""
        queues = self._multi_queues
        queued = client.multi
        lines = []
        now = self._clock_us()
        if spec is not None and spec.name == "exec":
            q = queues.pop(client.id, None)
            if q is not None and type(reply) is list and len(reply) == len(q[0]):
                db = q[1]
                for (s, a), r in zip(q[0], reply, strict=True):
                    if s.name == "select" and r is OK:
                        db = int(a[1])
                    called = called_spec(s, a)
                    if called is not None and not hidden_from_monitors(called):
                        lines.append(monitor_line(now, db, client.peer, a))
        elif queued is None:
            queues.pop(client.id, None)
        elif client.id not in queues or queues[client.id][0] is not queued:
            queues[client.id] = (queued, client.dbnum)  # MULTI: EXEC will run this list
        if shown_to_monitors(spec, client, args):
            lines.append(monitor_line(now, client.dbnum, client.peer, args))
        if lines:
            data = b"".join(lines)
            for m in list(self.monitors.values()):
                self._push(m, data)

    def _push(self, mon: Monitor, data: bytes | bytearray, own: bool = False) -> None:
        """Queue output for a monitor's writer; past its limit the monitor is disconnected.
        Once the monitor asked to close (QUIT) only its ``own`` replies are still queued: as
        redis-server, which adds nothing to a client flagged close-after-reply."""
        if mon.closed or (mon.client.close_after_reply and not own):
            return
        mon.buf += data
        pending = mon.pending()
        mon.client.obuf = pending
        if pending > (self.config.client_output_buffer_limit_hard or MONITOR_OUTPUT_LIMIT):
            log.warning("event=client_closed reason=output_buffer_limit id=%d monitor=1 "
                        "pending=%d", mon.client.id, pending)
            mon.closed = True
            mon.buf.clear()
            self._stop_monitor(mon.client)
            self._kill_client(mon.client)
        mon.wake.set()

    def _start_monitor(self, client: Client) -> bool:
        """MONITOR's request (``ServerState.start_monitor``): False if already a monitor."""
        if client.id in self.monitors:
            return False
        if not self.monitors:
            self._gate["monitor"] = True
            for c in self.state.clients.values():  # transactions begun while nobody monitored
                if c.multi is not None:
                    self._multi_queues[c.id] = (c.multi, c.dbnum)
        self.monitors[client.id] = self._monitor_conns.get(client.id) or Monitor(client)
        set_flag(client, "O", True)
        return True

    def _stop_monitor(self, client: Client) -> None:
        """RESET's request (``ServerState.stop_monitor``), a disconnect, an output overflow."""
        if self.monitors.pop(client.id, None) is None:
            return
        set_flag(client, "O", False)
        if not self.monitors:
            self._gate.pop("monitor", None)
            self._multi_queues.clear()

    def _forget(self, client: Client) -> None:
        """A connection ended: it monitors nothing and waits for nothing any more."""
        self._stop_monitor(client)
        self._monitor_conns.pop(client.id, None)
        self._blocks.pop(client.id, None)
        self._gate.pop(("block", client.id), None)
        self._multi_queues.pop(client.id, None)
        self._sleeps.pop(client.id, None)
        self._gate.pop(("sleep", client.id), None)

    def _block_client(self, client: Client, timeout_ms: int) -> Raw:
        """WAIT's request (``ServerState.block_client``): the reply marker the loop awaits."""
        self._blocks[client.id] = Block(timeout_ms)
        self._gate[("block", client.id)] = True
        set_flag(client, "b", True)
        return BLOCKED

    def _unblock_client(self, target: Client, error: bool) -> bool:
        """CLIENT UNBLOCK (``ServerState.unblock_client``): True if ``target`` was waiting."""
        blk = self._blocks.get(target.id)
        if blk is None or blk.done.is_set():
            return False
        if error:
            blk.reply = CommandError(E.UNBLOCKED)
        blk.done.set()
        return True

    async def _wait_blocked(self, stream: Any, client: Client, blk: Block, out: bytearray,
                            batch: list[Any], parser: RequestParser, seq_before: int,
                            mon: Monitor | None) -> None:
        """Send the replies before the WAIT (durably), wait for it to end, then encode its reply
        into ``out``. Meanwhile the connection is read (at most READ_SIZE bytes, as the serve
        loop reads): a peer that leaves ends the wait and the connection
        (BrokenResourceError); commands that arrived are appended to ``batch``, which the loop
        runs next, in order."""
        extra = bytearray()
        eof = False
        try:
            if out:
                try:
                    await self._durable(seq_before)
                except DurabilityError as e:  # as the batch's end would: MISCONF, then close
                    out[:] = b"-MISCONF Errors writing to the AOF file: %s\r\n" % str(e).encode()
                    client.close_after_reply = True
                    return
                if mon is None:
                    await self._send(stream, client, out)
                else:
                    self._push(mon, out, own=True)
                out.clear()

            async def read_meanwhile() -> None:
                nonlocal eof
                while len(extra) < READ_SIZE:
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        eof = True
                        blk.done.set()
                        return
                    extra.extend(data)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_meanwhile)
                with trio.move_on_after(blk.timeout_ms / 1000 if blk.timeout_ms else math.inf):
                    await blk.done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._blocks.pop(client.id, None)
            set_flag(client, "b", False)
        if eof:
            raise trio.BrokenResourceError("the client closed the connection during WAIT")
        encode(blk.reply, client.resp3, out)
        if mon is not None and client.id in self.monitors:
            self._push(mon, out, own=True)
            out.clear()
        if extra:
            self.state.stats["total_net_input_bytes"] += len(extra)
            parser.auth_required = not client.authenticated
            parser.feed(bytes(extra))
            batch.extend(parser.commands())
            client.qbuf = parser.buffered

    async def _monitor_mode(self, stream: Any, client: Client, parser: RequestParser,
                            out: bytearray, seq_before: int, rest: list[Any]) -> bool:
        """Serve a connection from its MONITOR on: a writer task sends its Monitor buffer (the
        lines fed to it and, in order with them, its own replies); this task runs its
        commands, a monitor being refused those that touch keys. Returns True when a RESET left
        monitor mode and its output was sent (the serve loop goes on), False to close."""
        mon = self.monitors.get(client.id)
        if mon is None:  # killed, or over its limit, before it started
            return False
        self._monitor_conns[client.id] = mon
        mon.buf[:0] = out  # the batch's replies so far go before any line
        out.clear()
        keep = False
        try:
            await self._durable(seq_before)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._monitor_writer, stream, mon, nursery.cancel_scope)
                mon.wake.set()
                keep = await self._monitor_serve(stream, client, parser, mon, rest)
                while mon.pending() and not mon.closed:  # QUIT's reply, or before a RESET
                    ev = mon.progress
                    await ev.wait()
                nursery.cancel_scope.cancel()
        except DurabilityError:
            return False
        finally:
            self._monitor_conns.pop(client.id, None)
            if self.monitors.get(client.id) is mon:
                self._stop_monitor(client)
            client.obuf = 0
        return keep and not mon.closed

    async def _monitor_writer(self, stream: Any, mon: Monitor, scope: trio.CancelScope) -> None:
        """Send ``mon.buf`` as it fills; on a broken stream or ``mon.closed`` end monitor mode."""
        stats = self.state.stats
        try:
            while not mon.closed:
                if not mon.buf:
                    mon.wake = trio.Event()
                    await mon.wake.wait()
                    continue
                data = bytes(mon.buf)
                mon.buf.clear()
                mon.inflight = len(data)
                stats["total_net_output_bytes"] += len(data)
                try:
                    await stream.send_all(data)
                finally:
                    mon.inflight = 0
                    mon.client.obuf = len(mon.buf)
                    ev, mon.progress = mon.progress, trio.Event()
                    ev.set()
        except trio.BrokenResourceError:
            pass
        mon.closed = True
        scope.cancel()

    async def _monitor_serve(self, stream: Any, client: Client, parser: RequestParser,
                             mon: Monitor, batch: list[Any]) -> bool:
        """The command loop of a connection in monitor mode (see _monitor_mode)."""
        state = self.state
        engine = self.engine
        cfg = self.config
        try:
            while True:
                seq_before = engine.last_seq
                out = bytearray()
                for args in batch:
                    if isinstance(args, ProtocolError):
                        out += b"-ERR " + str(args).encode("latin-1") + b"\r\n"
                        client.close_after_reply = True
                        break
                    await self._run_one(stream, client, args, out, batch, parser, seq_before, mon)
                    if client.close_after_reply or state.shutdown_requested is not None:
                        break
                state.stats["total_commands_processed"] += len(batch)
                if engine.last_seq != seq_before:  # only once a RESET left monitor mode
                    try:
                        await self._durable(seq_before)
                    except DurabilityError as e:
                        out = bytearray(b"-MISCONF Errors writing to the AOF file: %s\r\n"
                                        % str(e).encode())
                        client.close_after_reply = True
                if out:
                    self._push(mon, out, own=True)
                if state.shutdown_requested is not None:
                    self.request_shutdown()
                    return False
                if client.close_after_reply:
                    return False
                if client.id not in self.monitors:
                    return True  # a RESET left monitor mode: an ordinary connection again
                parser.auth_required = not client.authenticated
                batch = []
                while not batch:
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        return False
                    state.stats["total_net_input_bytes"] += len(data)
                    parser.feed(data)
                    batch = parser.commands()
                    client.qbuf = parser.buffered
                    if not batch and client.qbuf > cfg.client_query_buffer_limit:
                        return False
                client.last_ms = self.clock_ms()
        except trio.BrokenResourceError:
            return False

    async def _run_one(self, stream: Any, client: Client, args: list[bytes], out: bytearray,
                       batch: list[Any], parser: RequestParser, seq_before: int,
                       mon: Monitor) -> None:
        """One command of a connection in monitor mode: what the serve loop does, plus
        redis-server's refusal of key access to a monitor (not shown to monitors)."""
        state = self.state
        spec = state.table.specs.get(args[0]) or state.table.lookup(args[0])
        monitoring = client.id in self.monitors
        if (monitoring and spec is not None and called_spec(spec, args) is not None
                and (client.authenticated or "noauth" in spec.flags)
                and touches_keyspace(spec, args)):
            if client.multi is not None:
                client.multi_error = True  # EXEC will abort, as after any refused command
            reply: Any = RejectedError(E.REPLICA_KEYSPACE)  # rejectCommand
            self._account(spec, client, args, reply, 0)
            encode(reply, client.resp3, out)
            self._push(mon, out, own=True)
            out.clear()
            return
        t0 = self.perf_ns()
        if self.cluster is None:
            reply = execute(spec, client, args)
        else:
            reply = await self.cluster.execute(spec, client, args)
        self._account(spec, client, args, reply, (self.perf_ns() - t0) // 1000)
        encode(reply, client.resp3, out)
        if monitoring:  # its reply before its own line (a RESET's is sent at the batch end)
            self._push(mon, out, own=True)
            out.clear()
        if self._gate:
            await self._after_command(stream, client, spec, args, reply, out, batch, parser,
                                      seq_before, mon)

    def _account(self, spec: CommandSpec | None, client: Client, args: list[bytes], reply: Any,
                 dt: int) -> None:
        """The serve loop's per-command statistics (it inlines them): commandstats, the latency
        histogram, the slow log."""
        account_command(self.state, spec, client, args, reply, dt)

    def _observe_latency(self, name: str, us: int) -> None:
        """``ServerState.observe_latency``: one call of ``name`` in its latency histogram."""
        self.latency.hists[name][
            BUCKET_OF_US[us] if us < FAST_US else bisect_left(LATENCY_BOUNDS_US, us)] += 1

    def _command_latency(self) -> dict[str, tuple[int, list[tuple[int, int]]]]:
        """LATENCY HISTOGRAM's source (``ServerState.command_latency``): per command with
        calls, (calls, [(bucket upper bound in us, calls at or below it)]) for the buckets
        holding calls; the bucket above the largest bound counts at that bound."""
        top = len(LATENCY_BOUNDS_US) - 1
        out: dict[str, tuple[int, list[tuple[int, int]]]] = {}
        for name, hist in self.latency.current():
            total = 0
            buckets: list[tuple[int, int]] = []
            for i, n in enumerate(hist):
                if n:
                    total += n
                    buckets.append((LATENCY_BOUNDS_US[min(i, top)], total))
            out[name] = (total, buckets)
        return out

    async def _send(self, stream: Any, client: Client, out: bytearray) -> None:
        self.state.stats["total_net_output_bytes"] += len(out)
        limit = self.config.client_output_buffer_limit_hard
        if limit and len(out) > limit:
            log.warning("event=client_closed reason=output_buffer_limit id=%d", client.id)
            raise trio.BrokenResourceError("output buffer limit")
        client.obuf = len(out)
        await stream.send_all(out)
        client.obuf = 0

    async def _durable(self, seq_before: int) -> None:
        """Make the writes since ``seq_before`` as durable as the fsync policy promises."""
        engine = self.engine
        last = engine.last_seq
        if last == seq_before:
            return
        if self.config.appendfsync == "always":
            await self.commit.wait_durable(last)
        else:
            try:
                engine.write_pending()
            except OSError as e:
                raise DurabilityError(e.strerror or str(e)) from e

    async def _wait_not_stalled(self) -> None:
        self.write_stalls += 1
        while self.engine.write_stalled():
            ev = self._bg_progress
            await ev.wait()

    # -- DEBUG SLEEP and BGREWRITEAOF ------------------------------------------------------------
    def _sleep_client(self, client: Client, us: int) -> None:
        """DEBUG SLEEP's request (``ServerState.sleep_client``): this connection waits ``us``
        microseconds once the command (or the EXEC running it) returned, before its next
        command; other connections are served meanwhile. CLIENT KILL and shutdown end it."""
        self._sleeps[client.id] = self._sleeps.get(client.id, 0) + us
        self._gate[("sleep", client.id)] = True

    async def _sleep_after(self, client: Client, spec: CommandSpec | None,
                           args: list[bytes]) -> None:
        """Wait what DEBUG SLEEP asked for; the slept time is the command's own run time in
        INFO commandstats and the slow log (as Redis, whose DEBUG SLEEP sleeps inside the
        command); its latency histogram keeps the time the handler took."""
        self._gate.pop(("sleep", client.id), None)
        us = self._sleeps.pop(client.id, 0)
        if us <= 0:
            return
        t0 = self.perf_ns()
        await trio.sleep(us / 1_000_000)
        slept = (self.perf_ns() - t0) // 1000
        state = self.state
        if spec is not None and spec.name in state.cmdstats:
            state.cmdstats[spec.name][1] += slept
        threshold = self.config.slowlog_log_slower_than
        if (spec is not None and threshold >= 0 and slept >= threshold
                and "skip_slowlog" not in spec.flags):
            latest = state.slowlog[0] if state.slowlog else None
            if latest is not None and latest.id == state.slowlog_next_id - 1 and latest.args == args:
                latest.duration_us += slept  # the serve loop logged the command already
            else:
                state.slowlog_record(slept, args, client)

    def _flush_pending(self) -> bool:
        """Frozen memtables remain to be flushed (whose commit logs are still kept)."""
        pending = getattr(self.engine, "flush_pending", None)
        return bool(pending()) if pending is not None else False

    def _rewrite_aof(self) -> str:
        """BGREWRITEAOF's request (``ServerState.rewrite_aof``): seal the active memtable and
        its commit log, so that the background worker flushes it to a table and deletes the
        logs it covered (the LSM engine's equivalent of rewriting the AOF). "started",
        "in_progress" while an earlier one's flush is pending, "failed" if the engine refused.
        The memory engine has no log: started and done at once."""
        if self._aof_rewrite_started is not None:
            return "in_progress"
        seal = getattr(self.engine, "seal_commit_log", None)
        self._aof_rewrite_started = self.perf_ns()
        if seal is not None:
            try:
                seal()
            except Exception:
                log.exception("event=aof_rewrite_failed")
                self._end_aof_rewrite(failed=True)
                return "failed"
        if not self._flush_pending():
            self._end_aof_rewrite(failed=False)
        log.info("event=aof_rewrite_started")
        return "started"

    def _end_aof_rewrite(self, failed: bool) -> None:
        started = self._aof_rewrite_started
        self._aof_rewrite_started = None
        if started is not None:
            self._aof_last_rewrite_s = (self.perf_ns() - started) // 1_000_000_000
        if failed:
            self._aof_rewrite_failures += 1
        else:
            self._aof_rewrite_failures = 0
            self.aof_rewrites += 1
        log.info("event=aof_rewrite_done failed=%d", int(failed))

    def _persistence_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "loading": 0,
            "aof_enabled": 1 if self.config.engine == "lsm" else 0,
            "aof_rewrite_in_progress": int(self._aof_rewrite_started is not None),
            "aof_last_rewrite_time_sec": self._aof_last_rewrite_s,
            "aof_current_rewrite_time_sec": (
                -1 if self._aof_rewrite_started is None
                else (self.perf_ns() - self._aof_rewrite_started) // 1_000_000_000),
            "aof_last_bgrewrite_status": "err" if self._aof_rewrite_failures else "ok",
            "aof_rewrites": self.aof_rewrites,
            "aof_rewrites_consecutive_failures": self._aof_rewrite_failures,
            "appendfsync": self.config.appendfsync,
            "aof_last_write_status": "ok" if self.commit.error is None else "err",
            "aof_fsyncs": self.commit.fsyncs,
            "write_stalls": self.write_stalls,
            "ttl_keys_discovered": self.ttls_discovered,
            "ttl_discovery": "done" if self._ttl_scan is None else "running",
        }
        info.update(self.engine.stats())
        return info

    # -- background services ------------------------------------------------------------------
    async def _fsync_policy_task(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(1.0)
            if self.config.appendfsync == "everysec" and self.engine.last_seq > self.commit.durable_seq:
                await self.commit.sync_now()

    async def _background_work_task(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        engine = self.engine
        while True:
            if engine.background_work_pending():
                try:
                    await self.sync_worker(engine.do_background_work)
                except Exception:
                    log.exception("event=background_work_failed")
                    if self._aof_rewrite_started is not None:
                        self._end_aof_rewrite(failed=True)
                    await trio.sleep(1.0)
                ev, self._bg_progress = self._bg_progress, trio.Event()
                ev.set()
            else:
                await trio.sleep(0.05)
            if self._aof_rewrite_started is not None and not self._flush_pending():
                self._end_aof_rewrite(failed=False)

    async def _cron_task(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Active expiry (hz times a second, as redis-server's serverCron) and idle timeouts."""
        task_status.started()
        ticks = 0
        while True:
            await trio.sleep(1.0 / self.config.hz)
            ticks += 1
            if self._ttl_scan is not None:
                self.discover_ttls(TTL_DISCOVERY_KEYS)
            if self.state.active_expire_enabled:  # DEBUG SET-ACTIVE-EXPIRE 0 stops it
                self.active_expire(deadline_ns=self.perf_ns() + 25_000_000 // self.config.hz)
            if ticks % self.config.hz == 0:
                self._close_idle_clients()

    def discover_ttls(self, budget: int) -> int:
        """One step of the walk over the keys found on disk at start-up: each key with a TTL is
        handed to its database's expiry hints (``Keyspace.note_ttl``), so the active expiry
        cycle removes it in time, as redis-server does with the TTLs it loads; without this a
        key written before a restart and never read again stayed stored until a compaction
        dropped it. Looks at ``budget`` stored keys; returns how many TTLs it noted."""
        start = self._ttl_scan
        if start is None:
            return 0
        # Stored keys carry their physical database (SWAPDB's map: Keyspace.db); a prefix no
        # SELECTable database uses (databases lowered since) is nobody's to expire.
        by_physical = {ks.db: ks for ks in self.state.dbs}
        noted = 0
        last = None
        for skey, rec in islice(self.engine.scan(start), budget):
            last = skey
            if rec.expire_at_ms:
                ks = by_physical.get(int.from_bytes(skey[:2], "big"))
                if ks is not None:
                    ks.note_ttl(skey[2:], rec.expire_at_ms)
                    noted += 1
        self._ttl_scan = None if last is None else last + b"\x00"
        self.ttls_discovered += noted
        return noted

    def active_expire(self, deadline_ns: int) -> int:
        """Redis's active expiry: sample keys with a TTL, repeat while >25% of a sample expired."""
        total = 0
        for db in self.state.dbs:
            while True:
                n = db.active_expire_cycle(20)
                total += n
                if n <= 5 or self.perf_ns() > deadline_ns:
                    break
        return total

    def _close_idle_clients(self) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        now = self.clock_ms()
        for client in list(self.state.clients.values()):
            if client.id in self.monitors or client.id in self._blocks:
                continue  # as redis-server: monitors and blocked clients never time out
            if now - client.last_ms > timeout * 1000:
                log.info("event=client_closed reason=idle id=%d", client.id)
                self._kill_client(client)


def apply_process_setting(key: str, value: str) -> None:
    """CONFIG SET effects that belong to the process rather than the node: the log level."""
    if key == "loglevel":
        logging.getLogger("respkv").setLevel(LOG_LEVELS[value])


async def run_node(config: Config, *, on_ready: Callable[[int], None] | None = None) -> None:
    """Run a node until SIGTERM/SIGINT or SHUTDOWN; the process entry point's trio main.

    The signal handlers are installed before the engine opens: a SIGTERM during start-up or
    right after READY=1 is a clean shutdown, never the default kill."""
    notifier = SystemdNotifier.from_environment()
    network: Network = TCP
    if config.peer_tls:  # peers over mutual TLS (node/tls_network.py); OSError if files are bad
        from respkv.node.tls_network import TlsNetwork, peer_ssl_contexts

        network = TlsNetwork(*peer_ssl_contexts(config))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        node = Node(config, clock_ms=skewed_clock(config.clock_offset_ms), network=network)
        node.state.on_config_set = apply_process_setting
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    log.info("event=shutdown signal=%s", signal.Signals(signum).name)
                    node.request_shutdown()
                    return

            nursery.start_soon(watch_signals)
            port = await nursery.start(node.run)
            notifier.ready(f"serving clients on {config.bind}:{port}")
            nursery.start_soon(notifier.watchdog)  # WATCHDOG=1 pings when WatchdogSec= is set
            if on_ready is not None:
                on_ready(port)
            await node._shutdown.wait()
            notifier.stopping()
            nursery.cancel_scope.cancel()
