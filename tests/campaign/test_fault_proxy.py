"""The fault proxy (respkv/testing/faultproxy.py) on plain sockets: direction learned from the
AUTH frame, delay, stall (bytes held, then delivered in order), cut (closed; reconnects closed),
heal. No respkv process is needed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from respkv.cluster import wire
from respkv.testing.faultproxy import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def echo(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()
    for c in conns:
        c.close()


def dial(port: int, me: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    auth = wire.encode_frame([b"AUTH", me.encode(), b"dc1", b"n" * 16, b"", b"m" * 32])
    s.sendall(auth)
    assert recv_exactly(s, len(auth)) == auth
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def round_trip(s: socket.socket, data: bytes = b"ping") -> float:
    t0 = time.monotonic()
    s.sendall(data)
    assert recv_exactly(s, len(data)) == data
    return time.monotonic() - t0


def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_direction_delay_stall_cut_and_heal(echo_port: int) -> None:
    with FaultProxy() as proxy:
        port = proxy.add_node("b", echo_port)
        s = dial(port, "a")
        assert proxy.connections() == [("a", "b")]
        assert round_trip(s) < 0.2
        # Delay one direction only (a -> b): one hop delayed.
        proxy.delay("a", "b", 250, both=False)
        assert 0.25 <= round_trip(s) < 0.45
        proxy.heal()
        assert round_trip(s) < 0.2
        # Stall: the bytes are held, not lost, and arrive in order after the heal.
        proxy.stall("a", "b")
        s.sendall(b"held-1")
        s.sendall(b"held-2")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(100)
        s.settimeout(5)
        proxy.heal("a", "b")
        assert recv_exactly(s, 12) == b"held-1held-2"
        # A rule for another pair does not touch this connection.
        proxy.cut("c", "b")
        assert round_trip(s) < 0.2
        # Cut: the connection is closed, and a new one is closed once its AUTH names "a".
        proxy.cut("a", "b")
        assert s.recv(100) == b""
        s.close()
        s2 = socket.create_connection(("127.0.0.1", port), timeout=5)
        s2.sendall(wire.encode_frame([b"AUTH", b"a", b"dc1", b"n" * 16, b"", b"m" * 32]))
        assert s2.recv(100) == b""
        s2.close()
        assert proxy.stats.cut_connections >= 2
        wait_for(lambda: proxy.connections() == [])
        proxy.heal()
        s3 = dial(port, "a")
        assert round_trip(s3) < 0.2
        s3.close()


def test_partition_separates_groups_both_ways(echo_port: int) -> None:
    with FaultProxy() as proxy:
        pairs = proxy.partition([{"a", "b"}, {"c"}])
        assert sorted(pairs) == [("a", "c"), ("b", "c")]
        port = proxy.add_node("c", echo_port)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(wire.encode_frame([b"AUTH", b"a", b"dc1", b"n" * 16, b"", b"m" * 32]))
        assert s.recv(100) == b""
        s.close()
        proxy.heal()
        s = dial(port, "a")
        s.close()


def test_a_proxy_port_that_is_taken_is_refused_and_its_socket_closed() -> None:
    with socket.socket() as taken, FaultProxy() as proxy:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        # The listening socket made for it is closed at once: left to the garbage collector it
        # is a ResourceWarning, an error under filterwarnings = error.
        with pytest.raises(OSError):
            proxy.add_node("n0", 1, proxy_port=taken.getsockname()[1])
