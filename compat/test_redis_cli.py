"""redis-cli (the real one, /usr/bin/redis-cli) against respkv, without a terminal.

Every invocation runs against respkv and against redis-server and must print the same stdout,
stderr and exit status (the port number, which differs, is replaced). Without a tty redis-cli
prints replies raw by default; ``--no-raw`` forces the formatted "(nil)"/"(integer) 1" output,
``-3`` speaks RESP3 (HELLO 3 first).
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from rawresp import COMPARED, RawConn, flushall

from respkv.testing.procs import ServerProcess

REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(REDIS_CLI is None,
                                reason="redis-cli is not installed: run `bash compat/setup.sh`")


def cli(sp: ServerProcess, *args: str, stdin: bytes | None = None, timeout: float = 60) -> tuple[bytes, bytes, int]:
    assert REDIS_CLI is not None
    p = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(sp.port), *args], input=stdin,
                       capture_output=True, timeout=timeout)
    port = str(sp.port).encode()
    return p.stdout.replace(port, b"PORT"), p.stderr.replace(port, b"PORT"), p.returncode


def same_output(both: tuple[ServerProcess, ServerProcess], *args: str, stdin: bytes | None = None) -> bytes:
    respkv, redis = both
    got = cli(respkv, *args, stdin=stdin)
    want = cli(redis, *args, stdin=stdin)
    COMPARED["(redis-cli)"] += 1
    assert got == want, f"redis-cli {' '.join(args)}\n redis : {want!r}\n respkv: {got!r}"
    return got[0]


SCRIPT = [
    ["SET", "k", "hello world"], ["GET", "k"], ["GET", "nokey"], ["SET", "k", "v", "NX"],
    ["SET", "k", "v2", "XX", "GET"], ["INCR", "n"], ["INCRBY", "n", "x"], ["INCRBYFLOAT", "f", "1.5"],
    ["MSET", "a", "1", "b", "2"], ["MGET", "a", "nokey", "b"], ["APPEND", "a", "zz"], ["STRLEN", "a"],
    ["EXISTS", "a", "b", "nokey"], ["EXPIRE", "a", "100"], ["TTL", "a"], ["TTL", "nokey"],
    ["PERSIST", "a"], ["TYPE", "a"], ["TYPE", "nokey"], ["RENAME", "a", "a2"], ["KEYS", "a2"],
    ["DBSIZE"], ["PING"], ["PING", "msg"], ["ECHO", "x y"], ["SET", "bin", "a\nb"], ["GET", "bin"],
    ["SET"], ["NOSUCHCOMMAND", "x"], ["SELECT", "99"], ["DEL", "k", "nokey"], ["FLUSHDB"], ["DBSIZE"],
]


@pytest.mark.parametrize("mode", [[], ["--raw"], ["--no-raw"], ["-3"], ["-3", "--no-raw"]],
                         ids=["default", "raw", "no-raw", "resp3", "resp3-no-raw"])
def test_plain_commands(both, mode: list[str]) -> None:
    for cmd in SCRIPT:
        same_output(both, *mode, *cmd)


def test_commands_from_stdin(both) -> None:
    """Non-interactive: one command per line on stdin, quoting as in the interactive prompt."""
    script = b'SET a 1\nINCR a\nSET "key with space" "v\\tx"\nGET "key with space"\nGET a\nBADCMD\nMGET a nokey\n'
    for mode in ([], ["--no-raw"]):
        same_output(both, *mode, stdin=script)


def test_x_reads_last_argument_from_stdin(both) -> None:
    same_output(both, "-x", "SET", "fromstdin", stdin=b"line1\nline2\x00\xff")
    same_output(both, "GET", "fromstdin")
    same_output(both, "STRLEN", "fromstdin")


def test_repeat_and_errors(both) -> None:
    same_output(both, "-r", "5", "INCR", "counter")
    same_output(both, "GET", "counter")
    same_output(both, "-e", "INCR", "nokeyx", "extra")  # -e: exit status 1 on an error reply


def pipe_input(n: int) -> bytes:
    parts = []
    for i in range(n):
        k = b"key:%d" % i
        v = b"value-%d" % i
        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    return b"".join(parts)


@pytest.mark.parametrize("engine", ["memory", "lsm"])
def test_pipe_mass_insertion_of_100k_keys(request: pytest.FixtureRequest, engine: str) -> None:
    sp: ServerProcess = request.getfixturevalue("respkv_mem" if engine == "memory" else "respkv_lsm")
    flushall(sp.port)  # fetched here, so the autouse flush did not cover it
    data = pipe_input(100_000)
    t0 = time.monotonic()
    out, err, rc = cli(sp, "--pipe", stdin=data, timeout=170)
    elapsed = time.monotonic() - t0
    text = out.decode() + err.decode()
    assert rc == 0, text
    assert "errors: 0, replies: 100000" in text, text
    with RawConn(sp.port) as c:
        assert c.call("DBSIZE")[1] == b":100000\r\n"
        assert c.call("GET", "key:99999")[1] == b"$11\r\nvalue-99999\r\n"
    print(f"redis-cli --pipe 100k SETs into respkv ({engine}): {elapsed:.1f}s")


def test_pipe_mass_insertion_small(both) -> None:
    """The same --pipe path with 5k keys, compared with redis-server (fast, always run)."""
    data = pipe_input(5000) + b"*2\r\n$4\r\nINCR\r\n$7\r\nkey:100\r\n"  # one error reply at the end
    for sp in both:
        out, err, rc = cli(sp, "--pipe", stdin=data)
        text = out.decode() + err.decode()
        assert "errors: 1, replies: 5001" in text, text
        with RawConn(sp.port) as c:
            assert c.call("DBSIZE")[1] == b":5000\r\n"
