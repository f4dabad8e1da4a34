"""MONITOR through the real clients, and the small server commands they wrap: ``redis-cli
monitor`` while another client writes, redis-py's ``r.monitor()``, ``r.role()``, ``r.wait()``,
``r.memory_usage()``, ``r.acl_whoami()``. Each runs against respkv and against redis-server and
must give the same result (time stamps, client ports and MEMORY USAGE's figure normalised)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import redis
from rawresp import COMPARED

from respkv.testing.procs import ServerProcess

REDIS_CLI = shutil.which("redis-cli")

CONFIGS = [
    pytest.param({"protocol": 2}, id="resp2"),
    pytest.param({"protocol": 3, "decode_responses": True}, id="resp3-str"),
]


def _normalise_line(line: str) -> str:
    line = re.sub(r"^\d{10}\.\d{6} ", "<time> ", line)
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)


def cli_monitor(sp: ServerProcess, commands: list[list[str]]) -> list[str]:
    """Run ``redis-cli monitor`` on ``sp``, send ``commands`` with redis-py, return what
    redis-cli printed for them (normalised)."""
    assert REDIS_CLI is not None
    proc = subprocess.Popen([REDIS_CLI, "-h", "127.0.0.1", "-p", str(sp.port), "monitor"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"OK\n"
        r = writer(sp, {"protocol": 2})
        try:
            for c in commands:
                r.execute_command(*c)
        finally:
            r.close()
        return [_normalise_line(proc.stdout.readline().decode().rstrip("\n"))
                for _ in commands]
    finally:
        proc.terminate()  # the redis-cli this test started
        proc.wait(timeout=10)
        proc.stdout.close()


def writer(sp: ServerProcess, config: dict[str, Any]) -> redis.Redis:
    """A redis-py client that sends no CLIENT SETINFO when it connects: redis-server 7.0 does
    not know it (an unknown subcommand is never shown to monitors); respkv has 7.2's."""
    return redis.Redis(port=sp.port, driver_info=None, **config)


SCRIPT = [["SET", "k", "hello world"], ["GET", "k"], ["SET", "bin", "a\nb\x00\"\\"],
          ["CONFIG", "GET", "hz"], ["SELECT", "3"], ["INCR", "n"], ["PING"]]
"""What both monitors must print: CONFIG GET is an admin command (hidden); SELECT changes the
db shown from its own line on."""


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed: run compat/setup.sh")
def test_redis_cli_monitor(both) -> None:
    respkv, redis_srv = both
    got = cli_monitor(respkv, SCRIPT[:3] + SCRIPT[4:] + [["PING"]])
    want = cli_monitor(redis_srv, SCRIPT[:3] + SCRIPT[4:] + [["PING"]])
    COMPARED["(redis-cli monitor)"] += 1
    assert got == want
    assert got[0] == '<time> [0 127.0.0.1:<port>] "SET" "k" "hello world"'
    assert got[2] == '<time> [0 127.0.0.1:<port>] "SET" "bin" "a\\nb\\x00\\"\\\\"'
    assert got[3] == '<time> [3 127.0.0.1:<port>] "SELECT" "3"'


def py_monitor(sp: ServerProcess, config: dict[str, Any]) -> list[dict[str, Any]]:
    r = redis.Redis(port=sp.port, **config)
    other = writer(sp, config)
    out = []
    try:
        other.ping()  # connected (HELLO 3 sent) before the monitor starts
        with r.monitor() as m:
            for c in SCRIPT:
                other.execute_command(*c)
            for _ in range(len(SCRIPT) - 1):  # CONFIG GET is not shown
                cmd = m.next_command()
                assert isinstance(cmd["time"], float) and cmd["time"] > 0
                assert cmd["client_address"] == "127.0.0.1" and int(cmd["client_port"]) > 0
                out.append({k: v for k, v in cmd.items()
                            if k not in ("time", "client_port")})
    finally:
        other.close()
        r.close()
    return out


@pytest.mark.parametrize("config", CONFIGS)
def test_redis_py_monitor(both, config: dict[str, Any]) -> None:
    respkv, redis_srv = both
    got = py_monitor(respkv, config)
    want = py_monitor(redis_srv, config)
    COMPARED["(redis-py monitor)"] += 1
    assert got == want
    assert [c["command"] for c in got][:2] == ["SET k hello world", "GET k"]
    assert [c["db"] for c in got] == [0, 0, 0, 3, 3, 3]


def server_calls(sp: ServerProcess, config: dict[str, Any]) -> list[Any]:
    r = redis.Redis(port=sp.port, **config)
    try:
        r.set("k", "v" * 100)
        usage = r.memory_usage("k")
        return [
            r.role(),
            r.wait(0, 0),
            r.wait(1, 5),
            type(usage).__name__,
            r.memory_usage("nokey"),
            r.memory_usage("k", samples=0) == usage,
            r.acl_whoami(),
            r.acl_users(),
            r.acl_cat()[:3],
            r.memory_purge() if hasattr(r, "memory_purge") else True,
        ]
    finally:
        r.close()


@pytest.mark.parametrize("config", CONFIGS)
def test_role_wait_memory_acl_via_redis_py(both, config: dict[str, Any]) -> None:
    respkv, redis_srv = both
    got = server_calls(respkv, config)
    want = server_calls(redis_srv, config)
    COMPARED["(redis-py server commands)"] += 1
    assert got == want
    assert got[1:4] == [0, 0, "int"]


def test_redis_py_monitor_sees_a_pipeline_in_order(respkv_mem) -> None:
    r = redis.Redis(port=respkv_mem.port)
    other = writer(respkv_mem, {})
    try:
        other.ping()
        with r.monitor() as m:
            pipe = other.pipeline(transaction=True)
            pipe.set("a", 1)
            pipe.incr("a")
            pipe.get("a")
            assert pipe.execute() == [True, 2, b"2"]
            seen = [m.next_command()["command"] for _ in range(5)]
        assert seen == ["MULTI", "SET a 1", "INCRBY a 1", "GET a", "EXEC"]  # redis-py: INCRBY
    finally:
        other.close()
        r.close()
