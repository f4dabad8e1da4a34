"""A cluster of real `respkv server` processes behind unmodified redis-py clients.

Every test starts its own nodes on free loopback ports and stops them by PID (conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import redis

from respkv.cluster import wire
from respkv.testing.cluster import SECRET, LocalCluster, wait_until
from respkv.testing.procs import free_port, start_respkv

pytestmark = pytest.mark.slow


def siblings(c: redis.Redis, key: str) -> tuple[bytes, list[dict]]:
    reply = c.execute_command("SIBLINGS", key)
    if isinstance(reply, list):  # RESP2: flat map
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
        sibs = [dict(zip(s[::2], s[1::2], strict=True)) for s in reply[b"siblings"]]
    else:
        sibs = reply[b"siblings"]
    return reply[b"context"], sibs


def test_every_node_sees_the_same_data(cluster3: LocalCluster) -> None:
    clients = [cluster3.client(i) for i in range(3)]
    for i in range(30):
        assert clients[i % 3].set(f"k{i}", f"v{i}")
    for c in clients:
        assert c.mget([f"k{i}" for i in range(30)]) == [f"v{i}".encode() for i in range(30)]
        assert c.get("missing") is None
    assert clients[0].incr("counter") == 1
    assert clients[1].incr("counter") == 2
    assert clients[2].incrby("counter", 10) == 12
    assert clients[1].append("k0", "+") == 3
    assert clients[2].get("k0") == b"v0+"
    assert clients[0].delete("k1", "k2", "nope") == 2
    assert clients[1].exists("k1", "k2", "k3") == 1
    assert clients[2].set("ttl", "x", px=200)
    assert 0 < clients[0].pttl("ttl") <= 200
    wait_until(lambda: clients[1].get("ttl") is None, 5, "the TTL to pass")
    assert clients[0].set("nx", "1", nx=True) and not clients[1].set("nx", "2", nx=True)
    assert clients[2].getdel("nx") == b"1" and clients[0].get("nx") is None
    # RESP3 clients too, and the decoded-responses mode.
    c3 = redis.Redis(port=cluster3.ports[1], protocol=3, decode_responses=True)
    assert c3.get("k3") == "v3"
    # redis-cli, when installed.
    cli = shutil.which("redis-cli")
    if cli:
        out = subprocess.run([cli, "-p", str(cluster3.ports[2]), "GET", "k4"],
                             capture_output=True, text=True, timeout=10)
        assert out.stdout.strip() == "v4"


def test_whole_keyspace_commands_say_so(cluster3: LocalCluster) -> None:
    c = cluster3.client(0)
    for cmd in (("FLUSHDB",), ("FLUSHALL",)):
        with pytest.raises(redis.ResponseError, match="not supported in cluster mode"):
            c.execute_command(*cmd)
    with pytest.raises(redis.ResponseError, match="not atomic across replicas"):
        c.execute_command("RENAME", "a", "b")
    assert c.ping() and c.select(3) if hasattr(c, "select") else True


def test_keys_scan_dbsize_randomkey_walk_the_whole_cluster(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(4, "--n-replicas", "2", engine="memory")
    a, b = c.client(0), c.client(3)
    assert a.dbsize() == 0 and a.keys("*") == [] and a.randomkey() is None
    assert a.scan(0) == (0, [])
    a.set("solo", "v")  # one key: found from any ring position, wrapping past the top
    assert {a.randomkey() for _ in range(12)} == {b"solo"}
    a.delete("solo")
    assert a.randomkey() is None
    names = {f"user:{i}".encode() for i in range(300)} | {f"item:{i}".encode() for i in range(200)}
    pipe = a.pipeline(transaction=False)
    for k in names:
        pipe.set(k, "v")
    pipe.execute()
    assert a.delete(b"user:7") == 1  # a DEL is seen by every walk (quorum-confirmed)
    names.discard(b"user:7")
    assert a.dbsize() == b.dbsize() == 500 - 1
    assert set(b.keys("*")) == names
    assert set(a.keys("user:*")) == {k for k in names if k.startswith(b"user:")}
    assert set(a.keys("item:1?")) == {b"item:%d" % i for i in range(10, 20)}
    seen: list[bytes] = []
    cursor, steps = 0, 0
    while True:
        cursor, page = b.scan(cursor, count=50)
        seen += page
        steps += 1
        if cursor == 0:
            break
    assert set(seen) == names and len(seen) == len(names) and steps > 2
    assert set(b.scan_iter(match="item:*", count=40)) == {k for k in names if k.startswith(b"item:")}
    picks = {a.randomkey() for _ in range(40)}  # from a random ring position each time
    assert picks <= names and len(picks) > 20
    with pytest.raises(redis.ResponseError, match="syntax error"):
        a.execute_command("SCAN", "0", "COUNT", "0")
    c.kill(1)  # one of N=2 down: every range still has an up replica
    c.wait_converged([0, 2, 3])
    assert a.execute_command("DBSIZE", "R", "1") == 499  # R=2 of N=2 would need n1
    c.kill(2)  # two down: some range may have no replica up -- say so, no partial answer
    c.wait_converged([0, 3])
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        a.keys("*")


def test_read_your_writes_across_coordinators_when_w_plus_r_exceeds_n(
    cluster3: LocalCluster,
) -> None:
    clients = [cluster3.client(i) for i in range(3)]
    for i in range(100):
        writer, reader = clients[i % 3], clients[(i + 1) % 3]
        assert writer.execute_command("SET", "ryw", str(i), "W", "2")
        assert reader.execute_command("GET", "ryw", "R", "2") == str(i).encode()


def test_stale_read_when_w_plus_r_does_not_exceed_n(cluster3: LocalCluster) -> None:
    a, c = cluster3.client(0), None
    assert a.execute_command("SET", "stale", "old", "W", "ALL")
    cluster3.kill(2)
    cluster3.wait_converged([0, 1])
    assert a.execute_command("SET", "stale", "new", "W", "1")  # W=1, R=1: 1+1 <= 3
    cluster3.restart(2)
    cluster3.wait_converged()
    c = cluster3.client(2)
    assert c.execute_command("GET", "stale", "R", "1") == b"old"  # the stale read
    assert c.execute_command("GET", "stale", "R", "ALL") == b"new"
    # ... and the R=ALL read repaired node 2's copy.
    wait_until(lambda: c.execute_command("GET", "stale", "R", "1") == b"new", 5, "read repair")


def test_writes_survive_n_minus_w_dead_replicas_and_fail_clearly_beyond(
    cluster3: LocalCluster,
) -> None:
    a = cluster3.client(0)
    b = cluster3.client(1)
    cluster3.kill(2)
    cluster3.wait_converged([0, 1])
    for i in range(20):
        assert a.execute_command("SET", f"w{i}", "x", "W", "2")
        assert b.execute_command("GET", f"w{i}", "R", "2") == b"x"
    with pytest.raises(redis.ResponseError, match=r"NOREPLICAS Not enough replicas up: needed 3"):
        a.execute_command("SET", "w0", "y", "W", "ALL")
    cluster3.kill(1)
    cluster3.wait_converged([0])
    t0 = time.monotonic()
    with pytest.raises(redis.ResponseError) as e:
        a.set("w1", "z")  # default W = QUORUM = 2
    assert "NOREPLICAS" in str(e.value) and "needed 2" in str(e.value)
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        a.get("w1")  # default R = QUORUM = 2
    assert time.monotonic() - t0 < 1.0  # dead peers cost nothing: refused at once
    assert a.execute_command("GET", "w1", "R", "1") == b"x"  # its own copy answers R=1


def test_an_unresponsive_replica_fails_the_write_at_the_deadline(cluster3: LocalCluster) -> None:
    a = cluster3.client(0)
    cluster3.pause(2)  # connected but silent: only the deadline can tell
    try:
        assert a.execute_command("SET", "p", "1", "W", "2")  # n0 + n1 suffice
        t0 = time.monotonic()
        with pytest.raises(redis.ResponseError) as e:
            a.execute_command("SET", "p", "2", "W", "ALL")
        elapsed = time.monotonic() - t0
        assert str(e.value) == ("NOREPLICAS Not enough replicas: needed 3, answered 2 "
                                "(the write may still be applied on some replicas)")
        assert 0.9 < elapsed < 3.0  # request_timeout_ms = 1000
        with pytest.raises(redis.ResponseError, match="needed 3, (answered|up) 2"):
            a.execute_command("GET", "p", "R", "ALL")
        assert a.execute_command("GET", "p", "R", "2") == b"2"  # it may still be applied
        # Its heartbeats stopped: phi accrual convicts it, and then requests that need it fail
        # at once instead of at the deadline.
        wait_until(lambda: cluster3.info(0)["up_nodes"] == 2, 10, "n2 marked down by phi")
        assert cluster3.info(0)["member_n2"]["state"] == "down"
        t0 = time.monotonic()
        with pytest.raises(redis.ResponseError, match="needed 3, up 2"):
            a.execute_command("GET", "p", "R", "ALL")
        assert time.monotonic() - t0 < 0.5
    finally:
        cluster3.resume(2)
    wait_until(lambda: cluster3.info(0)["up_nodes"] == 3, 10, "n2 up again after SIGCONT")


def test_concurrent_writes_become_siblings_and_set_context_resolves_them(
    cluster3: LocalCluster,
) -> None:
    a, b = cluster3.client(0), cluster3.client(1)
    assert a.set("doc", "v0")
    ctx0, sibs = siblings(a, "doc")
    assert [s[b"value"] for s in sibs] == [b"v0"]
    # Two clients read the same version and write through different coordinators.
    assert a.execute_command("SET", "doc", "from-a", "CONTEXT", ctx0)
    assert b.execute_command("SET", "doc", "from-b", "CONTEXT", ctx0)
    ctx, sibs = siblings(cluster3.client(2), "doc")
    assert sorted(s[b"value"] for s in sibs) == [b"from-a", b"from-b"]
    assert a.get("doc") in (b"from-a", b"from-b")  # the deterministic winner
    assert a.get("doc") == b.get("doc") == cluster3.client(2).get("doc")
    # Writing back with the context that saw both resolves them.
    assert b.execute_command("SET", "doc", "merged", "CONTEXT", ctx)
    _, sibs = siblings(a, "doc")
    assert [s[b"value"] for s in sibs] == [b"merged"]
    with pytest.raises(redis.ResponseError, match="invalid causal context"):
        a.execute_command("SET", "doc", "x", "CONTEXT", "garbage!")
    # RESP3: a map.
    r3 = redis.Redis(port=cluster3.ports[0], protocol=3)
    reply = r3.execute_command("SIBLINGS", "doc")
    assert isinstance(reply, dict) and reply[b"siblings"][0][b"value"] == b"merged"


def test_a_sequential_writer_never_makes_siblings(cluster3: LocalCluster) -> None:
    clients = [cluster3.client(i) for i in range(3)]
    for i in range(30):
        assert clients[i % 3].set("seq", str(i))
    _, sibs = siblings(clients[0], "seq")
    assert [s[b"value"] for s in sibs] == [b"29"]


def test_no_sibling_explosion_with_interleaved_read_modify_write(cluster3: LocalCluster) -> None:
    """Riak's DVV motivation: two clients interleave read (SIBLINGS) / write (SET CONTEXT)
    through different coordinators; siblings stay at the truly concurrent writes (2)."""
    c1, c2 = cluster3.client(0), cluster3.client(1)
    assert c1.set("cart", "start")
    counts = []
    for rnd in range(15):
        ctx1, _ = siblings(c1, "cart")
        ctx2, _ = siblings(c2, "cart")
        assert c1.execute_command("SET", "cart", f"c1-{rnd}", "CONTEXT", ctx1)
        assert c2.execute_command("SET", "cart", f"c2-{rnd}", "CONTEXT", ctx2)
        _, sibs = siblings(cluster3.client(2), "cart")
        counts.append(len(sibs))
        assert sorted(s[b"value"] for s in sibs) == sorted([f"c1-{rnd}".encode(),
                                                             f"c2-{rnd}".encode()])
    assert max(counts) == 2


def as_map(reply: object) -> dict:
    if isinstance(reply, list):
        return dict(zip(reply[::2], reply[1::2], strict=True))
    assert isinstance(reply, dict)
    return reply


def test_consistency_command_and_per_request_levels(cluster3: LocalCluster) -> None:
    a = cluster3.client(0)
    assert as_map(a.execute_command("CONSISTENCY")) == {
        b"read": b"QUORUM (default)", b"write": b"QUORUM (default)", b"n": 3}
    assert a.execute_command("CONSISTENCY", "READ", "ONE", "WRITE", "ALL") in (b"OK", True)
    assert as_map(a.execute_command("CONSISTENCY"))[b"read"] == b"ONE"
    assert as_map(a.execute_command("CONSISTENCY"))[b"write"] == b"ALL"
    assert a.execute_command("CONSISTENCY", "R", "2", "W", "default") in (b"OK", True)
    levels = as_map(a.execute_command("CONSISTENCY"))
    assert (levels[b"read"], levels[b"write"]) == (b"2", b"QUORUM (default)")
    with pytest.raises(redis.ResponseError, match="exceeds the replication factor 3"):
        a.execute_command("CONSISTENCY", "W", "4")
    with pytest.raises(redis.ResponseError, match="exceeds the replication factor 3"):
        a.execute_command("GET", "k", "R", "4")
    assert a.execute_command("SET", "k", "v", "EX", "100", "W", "3") is True
    assert a.execute_command("MSET", "m1", "1", "m2", "2", "W", "ALL") is True
    assert a.execute_command("MGET", "m1", "m2", "R", "ONE") == [b"1", b"2"]
    assert a.execute_command("DEL", "m1", "m2", "W", "QUORUM") == 2
    assert a.execute_command("GETDEL", "k", "R", "1", "W", "2") == b"v"
    with pytest.raises(redis.ResponseError, match="syntax error"):
        a.execute_command("SET", "k", "R", "1")  # not an option here: Redis's own error
    stats = cluster3.info(0)
    assert "write_3" in stats and "read_one" in stats


def test_wrong_secret_peer_is_refused(make_cluster) -> None:  # type: ignore[no-untyped-def]
    good = make_cluster(1)
    assert good.info(0)["n_capped"].startswith("yes: 3 capped at 1")
    peer_port = good.ports[0] + 10000
    # A node with another secret seeds itself at the good node: refused, never in its ring.
    bad_dir = tempfile.mkdtemp(prefix="respkv-bad-")
    secret = os.path.join(bad_dir, "secret")
    with open(secret, "w") as f:
        f.write("a different secret entirely, 32b\n")
    bad = start_respkv("--node-id", "intruder", "--cluster-secret-file", secret, "--seed",
                       f"127.0.0.1:{peer_port}", data_dir=bad_dir, engine="memory")
    try:
        wait_until(lambda: good.info(0)["peer_connections_refused"] >= 1, 10, "a refusal")
        assert good.info(0)["ring_nodes"] == 1
        assert "intruder" not in str(good.info(0))
        assert "event=peer_refused" in good.nodes[0].log()  # type: ignore[union-attr]
        assert redis.Redis(port=bad.port).info("cluster")["up_nodes"] == 1
    finally:
        bad.stop()
    # By hand: a forged AUTH gets DENIED and the connection is closed.
    with socket.create_connection(("127.0.0.1", peer_port), timeout=5) as s:
        dec = wire.FrameDecoder()
        greeting = None
        while greeting is None:
            dec.feed(s.recv(4096))
            greeting = dec.next_frame()
        assert greeting[0] == wire.GREETING and greeting[2] == b"n0"
        s.sendall(wire.encode_frame([b"AUTH", b"mallory", b"dc1", b"N" * 16, b"", b"\0" * 32]))
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert data == wire.encode_frame([b"DENIED", b"authentication failed"])
    # Not speaking the dialect at all: the handshake times out or fails, the node keeps serving.
    with socket.create_connection(("127.0.0.1", peer_port), timeout=5) as s:
        s.sendall(b"PING\r\n")
    assert good.client(0).set("still", "serving")


def test_a_lone_cluster_node_caps_n(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(1)
    a = c.client(0)
    info = c.info(0)
    assert info["n_effective"] == 1 and info["n_replicas"] == 3
    assert a.set("x", "1") and a.get("x") == b"1"  # QUORUM scales to 1
    assert a.execute_command("GET", "x", "R", "ALL") == b"1"
    with pytest.raises(redis.ResponseError, match="exceeds the replication factor 1"):
        a.execute_command("SET", "x", "2", "W", "2")


def test_five_nodes_coordinators_that_are_not_replicas(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(5, engine="memory")
    clients = [c.client(i) for i in range(5)]
    for i in range(60):
        assert clients[i % 5].set(f"k{i}", f"v{i}")
        assert clients[(i + 2) % 5].get(f"k{i}") == f"v{i}".encode()
        assert clients[(i + 3) % 5].incr(f"n{i}") == 1
    total = sum(c.info(i)["coordinated_writes"] for i in range(5))
    assert total >= 120
    # Every key's versions live on exactly N=3 nodes.
    for i in range(60):
        _, sibs = siblings(clients[0], f"k{i}")
        assert len(sibs) == 1
    killed = 4
    c.kill(killed)
    c.wait_converged([0, 1, 2, 3])
    for i in range(60):
        assert clients[i % 4].get(f"k{i}") == f"v{i}".encode()


def test_cluster_up_starts_reports_and_stops_nodes() -> None:
    base = free_port()
    while any(_busy(base + i) or _busy(base + i + 10000) for i in range(3)):
        base = free_port()
    root = tempfile.mkdtemp(prefix="respkv-up-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "respkv.cli", "cluster", "up", "-n", "3", "--base-port", str(base),
         "--dir", root, "--engine", "memory"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("cluster of 3 up" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        pids = [int(line.split("pid ")[1].split()[0]) for line in lines if line.startswith("node")]
        assert len(pids) == 3
        assert sum(f"redis://127.0.0.1:{base + i}" in "".join(lines) for i in range(3)) == 3
        clients = [redis.Redis(port=base + i, socket_timeout=5) for i in range(3)]

        def converged() -> bool:
            return all(c.info("cluster")["up_nodes"] == 3 for c in clients)

        wait_until(converged, 20, "cluster up to converge")
        assert clients[0].set("hello", "world") and clients[2].get("hello") == b"world"
        os.kill(pids[2], signal.SIGKILL)
        line = proc.stdout.readline()
        assert "node3" in line and "left down" in line
        wait_until(lambda: clients[0].info("cluster")["up_nodes"] == 2, 10, "node3 down")
        assert clients[1].get("hello") == b"world"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert out.count("stopped") == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # Whatever failed above, stop every node `cluster up` reported starting, by its PID:
        # killing the parent alone would leave them running.
        started = [int(line.split("pid ")[1].split()[0]) for line in lines
                   if line.startswith("node") and "pid " in line]
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _busy(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_secret_is_required_in_cluster_mode() -> None:
    out = subprocess.run([sys.executable, "-m", "respkv.cli", "server", "--node-id", "x",
                          "--engine", "memory"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "cluster_secret_file" in out.stderr
    assert SECRET  # (the fixture's secret is long enough)


def test_keyed_commands_answer_as_a_single_node_does(cluster3: LocalCluster) -> None:
    """Differential: the same sequence of every supported keyed command, against a plain
    single node and through three different coordinators."""
    import random

    single = start_respkv(engine="memory")
    try:
        ref = redis.Redis(port=single.port)
        nodes = [cluster3.client(i) for i in range(3)]
        rng = random.Random(11)
        keys = ["a", "b", "c", "n"]
        templates = [
            ("SET", "{k}", "{v}"), ("SET", "{k}", "{v}", "NX"), ("SET", "{k}", "{v}", "XX", "GET"),
            ("SET", "{k}", "{v}", "KEEPTTL"), ("SETNX", "{k}", "{v}"), ("GET", "{k}"),
            ("GETSET", "{k}", "{v}"), ("GETDEL", "{k}"), ("GETEX", "{k}", "PERSIST"),
            ("MGET", "{k}", "{k2}"), ("MSET", "{k}", "{v}", "{k2}", "{v}"), ("APPEND", "{k}", "{v}"),
            ("STRLEN", "{k}"), ("GETRANGE", "{k}", "0", "2"), ("SETRANGE", "{k}", "1", "{v}"),
            ("INCR", "n"), ("DECRBY", "n", "3"), ("INCRBY", "{k}", "2"), ("INCRBYFLOAT", "n", "1.5"),
            ("DEL", "{k}", "{k2}"), ("UNLINK", "{k}"), ("EXISTS", "{k}", "{k2}", "{k}"),
            ("TOUCH", "{k}"), ("TYPE", "{k}"), ("EXPIRE", "{k}", "100"), ("PEXPIRE", "{k}", "100000", "NX"),
            ("EXPIREAT", "{k}", "4000000000"), ("PERSIST", "{k}"), ("EXPIRETIME", "{k}"),
            ("SETEX", "{k}", "100", "{v}"), ("PSETEX", "{k}", "100000", "{v}"),
            ("TTL", "{k}"),
        ]
        for step in range(250):
            t = rng.choice(templates)
            k, k2 = rng.choice(keys), rng.choice(keys)
            v = rng.choice(["x", "12", "hello", "7"])
            cmd = [a.format(k=k, k2=k2, v=v) for a in t]

            def run(c: redis.Redis, cmd: list[str] = cmd) -> object:
                try:
                    return c.execute_command(*cmd)
                except redis.ResponseError as e:
                    return f"error: {e}"

            want = run(ref)
            got = run(nodes[step % 3])
            assert got == want, (step, cmd)
    finally:
        single.stop()


def test_n_per_key_prefix_from_the_config_file(make_cluster) -> None:  # type: ignore[no-untyped-def]
    conf = os.path.join(tempfile.mkdtemp(prefix="respkv-conf-"), "respkv.toml")
    with open(conf, "w") as f:
        f.write('[n_replicas_by_prefix]\n"solo:" = 1\n"pair:" = 2\n')
    c = make_cluster(3, "--config", conf)
    a = c.client(0)
    assert a.execute_command("SET", "solo:x", "1", "W", "1")
    with pytest.raises(redis.ResponseError, match="exceeds the replication factor 1"):
        a.execute_command("SET", "solo:x", "2", "W", "2")
    assert a.execute_command("SET", "pair:x", "1", "W", "ALL")
    with pytest.raises(redis.ResponseError, match="exceeds the replication factor 2"):
        a.execute_command("GET", "pair:x", "R", "3")
    assert a.execute_command("SET", "other", "1", "W", "3")
    # Every node answers for every key, whichever replicas hold it.
    for i in range(3):
        assert c.client(i).get("solo:x") == b"1" and c.client(i).get("pair:x") == b"1"


def test_racing_plain_writes_through_every_coordinator_converge(cluster3: LocalCluster) -> None:
    import threading

    errors: list[BaseException] = []

    def hammer(i: int) -> None:
        c = cluster3.client(i)
        try:
            for j in range(150):
                c.execute_command("SET", "hot", f"{i}-{j}", "W", "1")
                c.incr("hot-counter")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    finals = {cluster3.client(i).execute_command("GET", "hot", "R", "ALL") for i in range(3)}
    assert len(finals) == 1  # every coordinator picks the same winner from the merged set
    views = [siblings(cluster3.client(i), "hot") for i in range(3)]
    assert all(v == views[0] for v in views)
    # Racing INCRs through different coordinators: some become siblings (lost updates made
    # visible), never more than were truly concurrent, and the counter is a positive integer.
    value = int(cluster3.client(0).get("hot-counter"))
    assert 150 <= value <= 450
    _, sibs = siblings(cluster3.client(0), "hot-counter")
    assert 1 <= len(sibs) <= 3


def test_a_replica_dying_under_load_costs_no_write_and_rejoins(cluster3: LocalCluster) -> None:
    import threading

    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0, 0]

    def writer(i: int) -> None:
        c = cluster3.client(i)
        j = 0
        try:
            while not stop.is_set():
                assert c.execute_command("SET", f"load:{i}:{j % 50}", str(j), "W", "2")
                done[i] += 1
                j += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: min(done) > 50, 20, "writes under way")
    cluster3.kill(2)
    before = list(done)
    wait_until(lambda: min(d - b for d, b in zip(done, before, strict=True)) > 50, 20,
               "writes after the kill")
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    cluster3.restart(2)
    cluster3.wait_converged()
    c2 = cluster3.client(2)
    assert c2.execute_command("SET", "after", "1", "W", "ALL")
    assert cluster3.client(0).execute_command("GET", "after", "R", "ALL") == b"1"
    # The restarted replica (LSM: it kept what it had) catches up on a key through read repair.
    last = cluster3.client(0).execute_command("GET", "load:0:0", "R", "ALL")
    assert c2.execute_command("GET", "load:0:0", "R", "1") == last


def test_reads_ask_r_replicas_and_speculate_past_a_silent_one(cluster3: LocalCluster) -> None:
    a = cluster3.client(0)
    for i in range(20):
        assert a.execute_command("SET", f"spec{i}", str(i), "W", "ALL")
    served = [cluster3.info(i)["replica_reads"] for i in range(3)]
    for i in range(20):
        assert a.execute_command("GET", f"spec{i}", "R", "2") == str(i).encode()
    asked = [cluster3.info(i)["replica_reads"] - served[i] for i in range(3)]
    assert asked[0] >= 20 and asked[1] + asked[2] == 20  # own copy + exactly one peer per read
    assert a.execute_command("GET", "spec0", "R", "1") == b"0"  # R=1: no peer asked at all
    assert sum(cluster3.info(i)["replica_reads"] for i in (1, 2)) == sum(
        served[i] + asked[i] for i in (1, 2))
    cluster3.pause(2)  # silent, still connected: the reads that asked it must go elsewhere
    try:
        for i in range(20):
            t0 = time.monotonic()
            assert a.execute_command("GET", f"spec{i}", "R", "2") == str(i).encode()
            assert time.monotonic() - t0 < 0.9  # well before the 1 s deadline
    finally:
        cluster3.resume(2)


def test_datacenter_levels_follow_the_dcs_learned_in_the_handshake(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(3, engine="memory",
                     per_node={0: ["--dc", "east"], 1: ["--dc", "east"], 2: ["--dc", "west"]})
    west = c.client(2)
    assert west.execute_command("SET", "geo", "1", "W", "ALL")
    c.kill(0)
    c.kill(1)
    c.wait_converged([2])
    # West alone: its local quorum (1 of its 1 replica) is met, every-DC quorum is not.
    assert west.execute_command("GET", "geo", "R", "LOCAL_QUORUM") == b"1"
    assert west.execute_command("SET", "geo", "2", "W", "LOCAL_ONE")
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        west.execute_command("SET", "geo", "3", "W", "EACH_QUORUM")
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        west.execute_command("GET", "geo", "R", "QUORUM")
