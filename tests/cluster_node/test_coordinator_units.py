"""The coordinator's pure pieces and the peer transport in one process (no child processes)."""

from __future__ import annotations

import itertools

import pytest
import trio

import respkv.commands  # noqa: F401
from respkv.cluster import versions as V
from respkv.cluster import wire
from respkv.cluster.quorum import ConsistencyLevel
from respkv.commands.core import TABLE
from respkv.node.coordinator import ClusterView, is_blind_write, strip_context, strip_levels
from respkv.node.network import TCP
from respkv.node.peer import PeerIdentity, PeerLink, PeerServer, SendBatcher
from respkv.node.replica import LocalReplica, cluster_storage_key
from respkv.storage.memory import MemoryEngine

SECRET = b"0123456789abcdef-secret"


def spec(name: str):  # type: ignore[no-untyped-def]
    return TABLE.lookup(name.encode())


def b(*words: str) -> list[bytes]:
    return [w.encode() for w in words]


@pytest.mark.parametrize("cmd, rest, r, w", [
    (b("GET", "k", "R", "1"), b("GET", "k"), 1, None),
    (b("GET", "k", "r", "one"), b("GET", "k"), ConsistencyLevel.ONE, None),
    (b("GETDEL", "k", "R", "1", "W", "2"), b("GETDEL", "k"), 1, 2),
    (b("SET", "k", "v", "EX", "10", "W", "3"), b("SET", "k", "v", "EX", "10"), None, 3),
    (b("SET", "k", "R", "1"), b("SET", "k", "R", "1"), None, None),  # Redis: syntax error
    (b("GET", "R", "1"), b("GET", "R", "1"), None, None),  # Redis: arity error
    (b("GET", "k", "R", "x"), b("GET", "k", "R", "x"), None, None),  # not a level
    (b("GET", "k", "R", "1", "R", "2"), b("GET", "k", "R", "1", "R", "2"), None, None),
    (b("MGET", "a", "b", "R", "QUORUM"), b("MGET", "a", "b"), ConsistencyLevel.QUORUM, None),
    (b("MSET", "a", "1", "W", "ALL"), b("MSET", "a", "1"), None, ConsistencyLevel.ALL),
    (b("APPEND", "R", "1"), b("APPEND", "R", "1"), None, None),
])
def test_strip_levels(cmd, rest, r, w) -> None:  # type: ignore[no-untyped-def]
    assert strip_levels(spec(cmd[0].decode()), cmd) == (rest, r, w)


def test_strip_context_and_blind_writes() -> None:
    ctx = V.VersionVector.from_counters({"n1": 3})
    text = V.encode_context(ctx)
    args, got = strip_context(b("SET", "k", "v", "CONTEXT", text, "EX", "5"))
    assert args == b("SET", "k", "v", "EX", "5") and got == ctx
    with pytest.raises(V.InvalidContextError):
        strip_context(b("SET", "k", "v", "CONTEXT", "nope"))
    assert is_blind_write(spec("set"), b("SET", "k", "v", "EX", "5"))
    assert not is_blind_write(spec("set"), b("SET", "k", "v", "NX"))
    assert not is_blind_write(spec("set"), b("SET", "k", "v", "get"))
    assert is_blind_write(spec("mset"), b("MSET", "a", "1"))
    assert not is_blind_write(spec("incr"), b("INCR", "a"))


def test_cluster_view_is_a_keyspace_for_handlers() -> None:
    now = [1000]
    a = V.overwrite(V.EMPTY, "n1", b"old", timestamp_ms=1)
    b2 = V.update(V.EMPTY, V.EMPTY_CLOCK, "n2", b"new", timestamp_ms=2)
    both = V.sync(a, b2)
    expired = V.overwrite(V.EMPTY, "n1", b"gone", timestamp_ms=3, expire_at_ms=500)
    stats = {"keyspace_hits": 0, "keyspace_misses": 0}
    view = ClusterView(0, lambda: now[0], {b"k": both, b"e": expired}, stats)
    assert view.get(b"k").value == b"new"  # the winner
    assert view.get(b"e") is None and view.get(b"nope") is None
    assert view.delete(b"k") and not view.delete(b"nope")
    view.set(b"x", b"1", 2000)
    assert view.get(b"x").value == b"1" and view.get(b"k") is None
    assert view.mutations == {b"k": (None, 0), b"x": (b"1", 2000)}
    assert view.sibling_set(b"k") == both and len(both.siblings) == 2
    view.lookup_read(b"x")
    view.lookup_read(b"y")
    assert stats == {"keyspace_hits": 1, "keyspace_misses": 1}


def test_local_replica_layout_sync_and_coordination() -> None:
    clock = itertools.count(100)
    eng = MemoryEngine()
    rep = LocalReplica(eng, "n1", lambda: next(clock))
    assert cluster_storage_key(3, b"k")[8:] == b"\x00\x03k"
    assert rep.read(0, b"k") == V.EMPTY and rep.read_raw(0, b"k") == b""
    s1, raw1 = rep.coordinate(0, b"k", b"v1", 0, None)
    assert raw1 == V.encode_sibling_set(s1)
    assert [x.value for x in s1.siblings] == [b"v1"]
    assert rep.read(0, b"k") == s1 and rep.read(1, b"k") == V.EMPTY
    # A concurrent write from elsewhere becomes a sibling, and an overwrite clears both.
    other = V.update(V.EMPTY, V.EMPTY_CLOCK, "n2", b"v2", timestamp_ms=1)
    rep.apply_raw(0, b"k", V.encode_sibling_set(other))
    assert sorted(x.value for x in rep.read(0, b"k").siblings) == [b"v1", b"v2"]
    rep.apply_raw(0, b"k", V.encode_sibling_set(other))  # idempotent
    assert len(rep.read(0, b"k").siblings) == 2
    s3, _ = rep.coordinate(0, b"k", b"v3", 0, None)
    assert [x.value for x in s3.siblings] == [b"v3"]
    # A context that saw only the first write keeps what it did not see.
    s4, _ = rep.coordinate(0, b"k", b"v4", 0, s1.clock)
    assert sorted(x.value for x in s4.siblings) == [b"v3", b"v4"]
    with pytest.raises(V.InvalidSiblingSetError):
        rep.apply_raw(0, b"new", b"garbage")


def test_apply_raw_equals_sync_on_random_histories() -> None:
    import random

    rng = random.Random(7)
    clock = itertools.count(1)
    for trial in range(200):
        reps = [LocalReplica(MemoryEngine(), f"n{i}", lambda: next(clock)) for i in range(3)]
        for _ in range(rng.randrange(1, 12)):
            src = rng.choice(reps)
            ctx = None if rng.random() < 0.5 else rng.choice(reps).read(0, b"k").clock
            value = None if rng.random() < 0.2 else b"v%d" % rng.randrange(100)
            new, _ = src.coordinate(0, b"k", value, 0, ctx)
            for dst in reps:
                if dst is not src and rng.random() < 0.6:
                    before = dst.read(0, b"k")
                    dst.apply_raw(0, b"k", V.encode_sibling_set(new))
                    assert dst.read(0, b"k") == V.sync(before, new), trial


# -- the transport on loopback, in process ------------------------------------------------------


def identity(node_id: str, secret: bytes = SECRET) -> PeerIdentity:
    counter = itertools.count()
    return PeerIdentity(node_id, "dc1", secret, "",
                        lambda n: (b"%s-%d-" % (node_id.encode(), next(counter))).ljust(n, b"."))


async def start_server(nursery: trio.Nursery, node_id: str = "srv",
                       handled: list | None = None) -> tuple[PeerServer, int]:
    eng = MemoryEngine()
    rep = LocalReplica(eng, node_id, lambda: 1)

    def handle(req: wire.Request) -> tuple[bool, bytes]:
        if handled is not None:
            handled.append(req)
        if type(req) is wire.ReplicaRead:
            return True, rep.read_raw(req.db, req.key)
        if type(req) is wire.ReplicaWrite:
            rep.apply_raw(req.db, req.key, req.sibling_set)
            return True, b""
        return True, b""

    async def durable(_seq: int) -> None:
        pass

    peers: list = []
    server = PeerServer(identity(node_id), handle, lambda: eng.last_seq, durable,
                        lambda *a: peers.append(a))
    listeners, port = await TCP.listen("127.0.0.1", 0)
    await nursery.start(server.run, listeners)
    return server, port


async def wait_for(cond, limit_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``cond`` (state of objects owned by other tasks) until true, at most ``limit_s``."""
    with trio.fail_after(limit_s):
        while not cond():  # noqa: ASYNC110 (polls state that has no event to wait on)
            await trio.sleep(0.005)


async def test_link_multiplexes_many_requests_on_one_connection() -> None:
    async with trio.open_nursery() as nursery:
        server, port = await start_server(nursery)
        identified: list[str] = []
        link = PeerLink("127.0.0.1", port, identity("cli"), lambda lk: identified.append(lk.peer_id))
        nursery.start_soon(link.run)
        await wait_for(lambda: link.connected)
        assert identified == ["srv"]
        replies: dict[int, wire.Reply | None] = {}
        data = V.encode_sibling_set(V.overwrite(V.EMPTY, "cli", b"v", timestamp_ms=1))
        for i in range(200):
            link.send(lambda rid, i=i: wire.encode_request(
                wire.ReplicaWrite(rid, "cli", 1000, 0, b"k%d" % i, data)),
                lambda r, i=i: replies.__setitem__(i, r))
        await wait_for(lambda: len(replies) == 200)
        assert all(r is not None and r.ok for r in replies.values())
        got: list[wire.Reply | None] = []
        link.send(lambda rid: wire.encode_request(wire.ReplicaRead(rid, "cli", 1000, 0, b"k7")),
                  got.append)
        await wait_for(lambda: got)
        assert got[0] is not None and got[0].payload == data
        assert link.stats["connects"] == 1 and server.stats["peer_connections_accepted"] == 1
        nursery.cancel_scope.cancel()


async def test_a_batched_link_sends_a_passs_requests_in_one_syscall() -> None:
    """With a SendBatcher installed, the requests made in one scheduler pass are held and go
    out together when the pass ends; every one is answered, in order; without a batcher each
    request is its own send."""
    batcher = SendBatcher()
    trio.lowlevel.add_instrument(batcher)
    try:
        async with trio.open_nursery() as nursery:
            server, port = await start_server(nursery)
            link = PeerLink("127.0.0.1", port, identity("cli"), lambda _link: None)
            link.batcher = batcher
            nursery.start_soon(link.run)
            await wait_for(lambda: link.connected)
            sends0 = link.stats["sends"]
            replies: list[int] = []
            data = V.encode_sibling_set(V.overwrite(V.EMPTY, "cli", b"v", timestamp_ms=1))
            for i in range(5):  # no checkpoint in between: one pass
                link.send(lambda rid, i=i: wire.encode_request(
                    wire.ReplicaWrite(rid, "cli", 1000, 0, b"b%d" % i, data)),
                    lambda r, i=i: replies.append(i) if r is not None and r.ok else None)
            assert link.stats["sends"] == sends0  # held, not sent yet
            await wait_for(lambda: len(replies) == 5)
            assert replies == [0, 1, 2, 3, 4]
            assert link.stats["sends"] == sends0 + 1
            assert server.stats["peer_requests_served"] >= 5
            link.batcher = None  # unbatched: one send per request
            for _ in range(3):
                link.send(lambda rid: wire.encode_request(wire.Ping(rid, "cli", 10)),
                          lambda r: None)
            assert link.stats["sends"] == sends0 + 4
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(batcher)


async def test_wrong_secret_is_refused_and_a_dead_peer_refuses_at_once() -> None:
    async with trio.open_nursery() as nursery:
        server, port = await start_server(nursery)
        link = PeerLink("127.0.0.1", port, identity("evil", b"another-secret-of-16+"), lambda _link: None)
        nursery.start_soon(link.run)
        await wait_for(lambda: server.stats["peer_connections_refused"] >= 1)
        await wait_for(lambda: "refused" in link.last_error)
        assert not link.connected
        assert link.send(lambda rid: b"", lambda r: None) == 0
        # Nothing listens here: connect fails, requests are refused without waiting.
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        dead = PeerLink("127.0.0.1", dead_port, identity("cli"), lambda _link: None)
        nursery.start_soon(dead.run)
        await wait_for(lambda: dead.stats["connect_failures"] >= 1)
        assert dead.send(lambda rid: b"", lambda r: None) == 0
        nursery.cancel_scope.cancel()


async def test_broken_connection_fails_outstanding_requests_and_reconnects() -> None:
    async with trio.open_nursery() as nursery:
        handled: list = []
        server, port = await start_server(nursery, handled=handled)
        link = PeerLink("127.0.0.1", port, identity("cli"), lambda _link: None)
        nursery.start_soon(link.run)
        await wait_for(lambda: link.connected)
        results: list = []
        # A PING the server answers, then cut the connection under an outstanding request.
        link.send(lambda rid: wire.encode_request(wire.Ping(rid, "cli", 10)), results.append)
        await wait_for(lambda: results)
        link._pending[999_999] = results.append  # an outstanding request that will never finish
        link._outbox += b"*1\r\n$3\r\nBAD\r\n"  # the server closes on a malformed request
        link._wake.set()
        await wait_for(lambda: None in results)
        await wait_for(lambda: link.connected and link.stats["connects"] == 2, 5)
        nursery.cancel_scope.cancel()


async def test_a_link_to_a_silent_peer_is_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import respkv.node.peer as peer_mod

    monkeypatch.setattr(peer_mod, "MAX_OUTSTANDING", 10)
    async with trio.open_nursery() as nursery:
        # An acceptor that authenticates and then never answers.
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def silent(stream: trio.SocketStream) -> None:
            acc = wire.Acceptor(SECRET, "mute", b"m" * 16)
            await stream.send_all(acc.greeting())
            dec = wire.FrameDecoder()
            frame = None
            while frame is None:
                dec.feed(await stream.receive_some(4096))
                frame = dec.next_frame()
            await stream.send_all(acc.on_auth(frame))
            await trio.sleep_forever()

        await nursery.start(trio.serve_listeners, silent, listeners)
        link = PeerLink("127.0.0.1", port, identity("cli"), lambda _link: None)
        nursery.start_soon(link.run)
        await wait_for(lambda: link.connected)
        ids = [link.send(lambda rid: wire.encode_request(wire.Ping(rid, "cli", 10)),
                         lambda r: None) for _ in range(15)]
        assert all(ids[:10]) and ids[10:] == [0] * 5
        assert link.statistics()["outstanding"] == 10
        nursery.cancel_scope.cancel()


async def test_a_link_cancelled_in_its_handshake_closes_its_connection() -> None:
    """Retired (or shut down) while the peer has not greeted yet: the connection the link
    opened is closed then, not left to the garbage collector (a ResourceWarning)."""
    dialled: list = []

    class Recording:
        async def connect(self, host: str, port: int):  # type: ignore[no-untyped-def]
            dialled.append(await TCP.connect(host, port))
            return dialled[-1]

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def mute(_stream: trio.SocketStream) -> None:  # accepts, never greets
            await trio.sleep_forever()

        await nursery.start(trio.serve_listeners, mute, listeners)
        link = PeerLink("127.0.0.1", port, identity("cli"), lambda _link: None,
                        network=Recording())  # type: ignore[arg-type]
        done = trio.Event()

        async def run_link() -> None:
            await link.run()
            done.set()

        nursery.start_soon(run_link)
        await wait_for(lambda: dialled)
        link.retire()
        with trio.fail_after(5):
            await done.wait()
        assert dialled[0].sock.fileno() == -1
        nursery.cancel_scope.cancel()


def test_cluster_commands_live_in_the_cluster_nodes_own_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cluster node adds CONSISTENCY, SIBLINGS and RESPKV to its own copy of the command
    table: the shared TABLE (single nodes, COMMAND output) stays redis-server's."""
    from respkv.config import Config
    from respkv.node.server import Node
    from respkv.storage.memory import MemoryEngine

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    cfg = Config(engine="memory", port=0, node_id="solo", cluster_secret_file=str(secret),
                 dir=str(tmp_path / "d"))
    node = Node(cfg, engine=MemoryEngine())
    for name in (b"consistency", b"siblings", b"respkv"):
        assert node.state.table.lookup(name) is not None
        assert TABLE.lookup(name) is None
    plain = Node(Config(engine="memory", port=0), engine=MemoryEngine())
    assert plain.state.table is TABLE


async def test_deadlines_fire_each_operation_once_at_its_deadline(autojump_clock) -> None:  # type: ignore[no-untyped-def]
    from respkv.node.coordinator import Deadlines, _Op

    d = Deadlines(1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        assert d.running
        done, late = _Op(), _Op()
        t0 = trio.current_time()
        d.add(done)
        d.discard(done)  # finished before its deadline: never fired
        await trio.sleep(0.5)
        d.add(late)
        await late.event.wait()
        assert trio.current_time() - t0 == pytest.approx(1.5, abs=1e-6)
        assert not done.event.is_set() and d.fired == 1
        # idle again, then a new operation wakes the task
        await trio.sleep(5)
        again = _Op()
        d.add(again)
        await again.event.wait()
        assert d.fired == 2
        nursery.cancel_scope.cancel()
    assert not d.running


async def test_peer_server_corks_replies_while_more_requests_are_readable() -> None:
    """Replies to reads that were already waiting go out in one send, after one durability
    step covering every batch; when a read would block, the held replies go out at once."""
    from respkv.cluster.wire import FrameDecoder
    from respkv.node import peer as peer_mod

    def rw(i: int) -> bytes:
        return wire.encode_write(i, b"n1", 1000, 0, b"k%d" % i, b"")

    chunks = [rw(1) + rw(2), rw(3), rw(4) + rw(5)]  # three reads, all readable at once
    events: list[object] = []
    seq = [0]

    class Sock:
        def recv(self, _n: int) -> bytes:
            if chunks:
                return chunks.pop(0)
            raise BlockingIOError

    class Stream:
        sock = Sock()
        waits = 0

        async def receive_some(self, _n: int) -> bytes:
            await trio.lowlevel.checkpoint()
            self.waits += 1
            return b""  # the peer closed: the loop ends

        async def send_all(self, data: bytes) -> None:
            events.append(("send", [r.req_id for r in _replies(data)]))

    def _replies(data: bytes) -> list[wire.Reply]:
        d = FrameDecoder()
        d.feed(bytes(data))  # the server sends a bytearray; feed takes bytes (and checks, compiled)
        out = []
        while (r := d.next_reply()) is not None:
            out.append(r)
        return out

    def handle(req: wire.Request) -> tuple[bool, bytes]:
        seq[0] += 1  # each write moves the engine's sequence
        return True, b""

    async def durable(before: int) -> None:
        events.append(("durable", before))

    server = peer_mod.PeerServer(PeerIdentity("n0", "dc1", SECRET, "", bytes),
                                 handle, lambda: seq[0], durable, lambda *a: None)
    stream = Stream()
    await server._serve_requests(stream, FrameDecoder())
    assert events == [("durable", 0), ("send", [1, 2, 3, 4, 5])]
    assert stream.waits == 1 and server.stats["peer_requests_served"] == 5


def test_a_member_down_longer_than_gc_grace_refuses_to_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """cluster_state's alive_ms (refreshed while the node runs) against gc_grace_seconds: a
    member last up longer ago than the grace refuses to start (its copy could bring back keys
    whose deletes were purged meanwhile), unless allow_stale_rejoin; a recent one starts."""
    import json

    from respkv.config import Config, ConfigError
    from respkv.node.server import Node

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    now = [1_800_000_000_000]
    data = tmp_path / "d"
    data.mkdir()

    def state(alive_ms: int) -> None:
        (data / "cluster_state").write_text(json.dumps(
            {"node_id": "solo", "generation": 5, "status": "normal", "alive_ms": alive_ms}))

    def node(**kw: object) -> Node:
        cfg = Config(engine="lsm", port=0, node_id="solo", cluster_secret_file=str(secret),
                     dir=str(data), gc_grace_seconds=86400, **kw)  # type: ignore[arg-type]
        # config engine "lsm" (the state file is kept), storage in memory (no lock to free)
        return Node(cfg, engine=MemoryEngine(), clock_ms=lambda: now[0])

    state(now[0] - 2 * 86_400_000)  # down two days, grace one
    with pytest.raises(ConfigError, match="gc_grace_seconds"):
        node()
    node(allow_stale_rejoin=True)
    state(now[0] - 3_600_000)  # down an hour
    node()


async def test_a_running_member_records_when_it_was_last_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from respkv.config import Config
    from respkv.node.server import Node

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    now = [1_800_000_000_000]
    cfg = Config(engine="lsm", port=0, node_id="solo", cluster_secret_file=str(secret),
                 dir=str(tmp_path / "d"))
    async with trio.open_nursery() as nursery:
        n = Node(cfg, clock_ms=lambda: now[0])
        await nursery.start(n.run)
        state = json.loads((tmp_path / "d" / "cluster_state").read_text())
        assert state["alive_ms"] == now[0] and state["node_id"] == "solo"
        n.request_shutdown()


def test_a_restarted_member_starts_with_the_ring_it_last_knew(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """cluster_state keeps the other members' rows: a restarted member's ring is the whole
    ring from the start (its peers down until heard), never itself alone -- which made it
    coordinate as a one-node cluster until its first gossip exchange. LEFT rows and rows that
    do not parse are not loaded."""
    import json

    from respkv.config import Config
    from respkv.node.server import Node

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    data = tmp_path / "d"
    data.mkdir()

    def row(node_id: str, status: str = "normal") -> dict[str, object]:
        return {"node_id": node_id, "generation": 7, "version": 12, "status": status,
                "dc": "dc1", "rack": "rack1", "weight": 1.0, "vnodes": 16,
                "address": f"127.0.0.1:{17000 + len(node_id)}"}

    (data / "cluster_state").write_text(json.dumps(
        {"node_id": "n1", "generation": 5, "status": "normal", "alive_ms": 1_800_000_000_000,
         "peers": [row("n2"), row("n3"), row("gone", "left"), {"node_id": "junk"}]}))
    cfg = Config(engine="lsm", port=0, node_id="n1", cluster_secret_file=str(secret),
                 dir=str(data))
    n = Node(cfg, engine=MemoryEngine(), clock_ms=lambda: 1_800_000_000_000)
    c = n.cluster
    assert c is not None
    assert sorted(c.ring.nodes) == ["n1", "n2", "n3"] and c.effective_n() == 3
    assert c.up_nodes() == {"n1"}
    assert "gone" not in c.gossip.membership and "junk" not in c.gossip.membership
    # and what it saves is what it loads: the peers' rows, as it knows them
    c._persist_own()
    saved = json.loads((data / "cluster_state").read_text())
    assert sorted(p["node_id"] for p in saved["peers"]) == ["n2", "n3"]
    assert saved["peers"][0] == row("n2")
