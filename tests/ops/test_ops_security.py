"""Protected mode (no password: only loopback clients) and requirepass, on real processes.

The decision is tested as a pure function; the real-process test binds 0.0.0.0 and connects
from the machine's own non-loopback address (skipped when it has none), which the server sees as
a non-loopback peer.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from respkv.commands import errors as E
from respkv.node.server import _is_loopback
from respkv.testing.procs import free_port, start_respkv


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("", True), ("localhost", True),
    ("192.0.2.7", False), ("10.0.0.1", False), ("::ffff:192.0.2.7", False), ("fd00::2", False),
    ("2001:db8::1", False), ("0.0.0.0", False), ("example.org", False),
])
def test_loopback_decision(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def own_non_loopback_ipv4() -> str | None:
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show", "up"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return None


OWN_IP = own_non_loopback_ipv4()
needs_ip = pytest.mark.skipif(OWN_IP is None, reason="no non-loopback IPv4 address on this host")


def first_reply(host: str, port: int, payload: bytes = b"PING\r\n", lines: int = 1) -> bytes:
    """The first ``lines`` reply lines of a connection from ``host`` (as its source address)."""
    with socket.create_connection((host, port), timeout=10, source_address=(host, 0)) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"\r\n") < lines:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@needs_ip
def test_protected_mode_denies_a_non_loopback_client() -> None:
    assert OWN_IP is not None
    sp = start_respkv("--bind", "0.0.0.0", engine="memory")
    try:
        assert first_reply("127.0.0.1", sp.port) == b"+PONG\r\n"
        assert first_reply(OWN_IP, sp.port) == b"-" + E.PROTECTED_MODE.encode() + b"\r\n"
    finally:
        sp.stop()


@needs_ip
def test_a_password_lifts_protected_mode() -> None:
    assert OWN_IP is not None
    sp = start_respkv("--bind", "0.0.0.0", "--requirepass", "s3cret", engine="memory")
    try:
        assert first_reply(OWN_IP, sp.port).startswith(b"-NOAUTH ")
        assert first_reply(OWN_IP, sp.port, b"AUTH s3cret\r\nPING\r\n", 2) == b"+OK\r\n+PONG\r\n"
        assert first_reply(OWN_IP, sp.port, b"AUTH default s3cret\r\n") == b"+OK\r\n"
        assert first_reply(OWN_IP, sp.port, b"AUTH nope\r\n").startswith(b"-WRONGPASS ")
    finally:
        sp.stop()


@needs_ip
def test_protected_mode_off() -> None:
    assert OWN_IP is not None
    sp = start_respkv("--bind", "0.0.0.0", "--protected-mode", "no", engine="memory")
    try:
        assert first_reply(OWN_IP, sp.port) == b"+PONG\r\n"
    finally:
        sp.stop()


def scrape_status(host: str, port: int) -> int:
    with socket.create_connection((host, port), timeout=10, source_address=(host, 0)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk
            head += chunk
        return int(head.split()[1])


@needs_ip
@pytest.mark.parametrize("extra,remote_status", [
    ((), 403), (("--requirepass", "pw"), 200), (("--protected-mode", "no"), 200),
])
def test_protected_mode_covers_the_metrics_endpoint(extra: tuple[str, ...], remote_status: int) -> None:
    assert OWN_IP is not None
    mport = free_port()
    sp = start_respkv("--bind", "0.0.0.0", "--metrics-port", str(mport), *extra, engine="memory")
    try:
        assert scrape_status("127.0.0.1", mport) == 200
        assert scrape_status(OWN_IP, mport) == remote_status
    finally:
        sp.stop()
