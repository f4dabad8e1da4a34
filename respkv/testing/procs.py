"""Start and stop real server processes for tests and benches: respkv nodes and redis-server.

Contract: every process is bound to 127.0.0.1 on a free port, started by us, and stopped by us by
its PID (SIGTERM, then SIGKILL after a grace period). Readiness is waited for by polling the port
with a deadline -- never by sleeping a fixed time.
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
from dataclasses import dataclass, field


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (and whose +10000 peer port is too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair found")


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                s.settimeout(2)
                if s.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")


@dataclass
class ServerProcess:
    port: int
    proc: subprocess.Popen
    dir: str | None = None
    args: list[str] = field(default_factory=list)
    log_path: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by PID, wait, SIGKILL if it did not exit; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self) -> str:
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                return f.read()
        return ""


def start_respkv(
    *extra: str, port: int | None = None, data_dir: str | None = None, engine: str = "lsm",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    port = port or free_port()
    data_dir = data_dir or tempfile.mkdtemp(prefix="respkv-test-")
    log_path = os.path.join(data_dir, f"respkv-{port}.log")
    args = [sys.executable, "-m", "respkv.cli", "server", "--port", str(port), "--dir", data_dir,
            "--engine", engine, *extra]
    logf = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL)
    logf.close()
    sp = ServerProcess(port, proc, data_dir, args, log_path)
    try:
        wait_for_port(port, proc)
    except Exception:
        sp.stop()
        raise RuntimeError(f"respkv did not start: {sp.log()}") from None
    return sp


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def start_redis(*extra: str, port: int | None = None) -> ServerProcess:
    exe = redis_server_path()
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    d = tempfile.mkdtemp(prefix="redis-test-")
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", d, "--daemonize", "no", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    sp = ServerProcess(port, proc, d, args)
    try:
        wait_for_port(port, proc)
    except Exception:
        sp.stop()
        raise
    return sp
