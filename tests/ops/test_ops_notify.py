"""The notify protocol against a real `respkv server` process, and its structured logs.

The test plays systemd: it binds an AF_UNIX datagram socket, starts the server with
$NOTIFY_SOCKET naming it, and reads READY=1 once the port answers and STOPPING=1 after SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from respkv.node.systemd import SystemdNotifier, watchdog_interval
from respkv.testing.procs import ServerProcess, free_port, start_respkv


def receive_fields(sock: socket.socket, timeout: float = 15.0) -> dict[str, str]:
    sock.settimeout(timeout)  # a deadline, not a sleep: recv returns as soon as a message arrives
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n") if line)


def notify_socket(tmp_path, abstract: bool) -> tuple[socket.socket, str]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"respkv-test-notify-{os.getpid()}-{id(s)}"
        s.bind("\0" + name)
        return s, "@" + name
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    return s, path


def start_with_notify(address: str, *extra: str) -> ServerProcess:
    return start_respkv(*extra, engine="memory", env={**os.environ, "NOTIFY_SOCKET": address})


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_then_stopping_on_sigterm(tmp_path, abstract: bool) -> None:
    sock, address = notify_socket(tmp_path, abstract)
    with sock:
        sp = start_with_notify(address)
        try:
            ready = receive_fields(sock)
            assert ready["READY"] == "1"
            assert ready["STATUS"] == f"serving clients on 127.0.0.1:{sp.port}"
        finally:
            code = sp.stop()
        stopping = receive_fields(sock)
        assert stopping["STOPPING"] == "1"
        assert "STATUS" in stopping
    assert code == 0


def test_stopping_on_shutdown_command(tmp_path) -> None:
    sock, address = notify_socket(tmp_path, abstract=False)
    with sock:
        sp = start_with_notify(address)
        try:
            assert receive_fields(sock)["READY"] == "1"
            with socket.create_connection(("127.0.0.1", sp.port), timeout=10) as c:
                c.sendall(b"SHUTDOWN NOSAVE\r\n")
                assert c.recv(100) == b""  # no reply: the connection closes
            assert receive_fields(sock)["STOPPING"] == "1"
            assert sp.proc.wait(15) == 0
        finally:
            sp.stop()


LINE = re.compile(r"^level=(debug|info|warning|error|critical) logger=respkv[\w.]* (\w+=\S+ ?)+$")


def test_structured_logs_ready_and_shutdown() -> None:
    sp = start_respkv(engine="memory")
    try:
        assert sp.stop() == 0
        lines = sp.log().splitlines()
    finally:
        sp.kill()
    assert any("event=ready" in ln and f"port={sp.port}" in ln for ln in lines), lines
    assert any("event=shutdown signal=SIGTERM" in ln for ln in lines), lines
    for ln in lines:
        assert LINE.match(ln), ln


def test_no_notify_socket_is_a_no_op() -> None:
    n = SystemdNotifier.from_environment({})
    assert not n.enabled
    assert n.ready("x") is False


def test_a_gone_manager_never_raises(tmp_path) -> None:
    n = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert n.send("READY=1") is False
    assert n.stopping() is False


def test_fields_are_one_datagram(tmp_path) -> None:
    sock, address = notify_socket(tmp_path, abstract=True)
    with sock:
        assert SystemdNotifier(address).send("READY=1", "STATUS=two\nlines")
        assert receive_fields(sock, 5) == {"READY": "1", "STATUS": "two lines"}


def test_sigterm_right_after_ready_is_a_clean_stop(tmp_path) -> None:
    """systemd may stop a unit the moment it is ready: the signal handlers must already be there."""
    sock, address = notify_socket(tmp_path, abstract=True)
    with sock:
        for _ in range(3):
            proc = subprocess.Popen(
                [sys.executable, "-m", "respkv.cli", "server", "--port", str(free_port()),
                 "--engine", "memory"], env={**os.environ, "NOTIFY_SOCKET": address},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                assert receive_fields(sock)["READY"] == "1"
                os.kill(proc.pid, signal.SIGTERM)
                assert receive_fields(sock)["STOPPING"] == "1"
                assert proc.wait(15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def protocol_error(port: int) -> bytes:
    """Send a malformed request (logged at notice level) and read until the node hangs up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"*abc\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
        return data  # the line is logged before the node closes the connection


def test_config_set_loglevel_applies_at_once() -> None:
    sp = start_respkv("--loglevel", "warning", engine="memory")
    try:
        assert protocol_error(sp.port).startswith(b"-ERR Protocol error")
        assert "event=protocol_error" not in sp.log()
        with socket.create_connection(("127.0.0.1", sp.port), timeout=10) as c:
            c.sendall(b"CONFIG SET loglevel notice\r\n")
            assert c.recv(100) == b"+OK\r\n"
        protocol_error(sp.port)
        assert "event=protocol_error" in sp.log()
    finally:
        sp.stop()


@pytest.mark.parametrize("env,pid,expected", [
    ({}, 7, None),
    ({"WATCHDOG_USEC": "30000000"}, 7, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, 7, None),
    ({"WATCHDOG_USEC": "soon"}, 7, None),
])
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval(env, pid) == expected


def test_watchdog_pings_a_real_node(tmp_path) -> None:
    sock, address = notify_socket(tmp_path, abstract=False)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    with sock:
        sp = start_respkv(engine="memory", env=env)
        try:
            assert receive_fields(sock)["READY"] == "1"
            pings = 0
            while pings < 3:  # each recv waits for the next datagram (15 s deadline)
                fields = receive_fields(sock)
                assert fields == {"WATCHDOG": "1"}, fields
                pings += 1
        finally:
            assert sp.stop() == 0
