"""The node's per-command cost without sockets: serve_client driven by an in-memory stream.

Measures microseconds per command for SET and GET, unpipelined (one command per read, as
redis-benchmark -c 50 sends) and pipelined (16 per read), on the memory engine and the LSM
engine, and prints the baseline "bare loop" (hiredis parse + dict + encode) for comparison.
Figures are CPU time (process_time) per command, so a busy machine slows them less than it
slows wall-clock figures. Use it before and after touching the hot path.

    python bench/bench_hotpath.py [--n 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import hiredis
import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.config import Config  # noqa: E402
from respkv.node.server import Node  # noqa: E402
from respkv.storage.memory import MemoryEngine  # noqa: E402


def mb(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class ScriptedStream:
    """Hands out pre-built reads, swallows replies; counts bytes to check replies arrive."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.i = 0
        self.sent = 0

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        await trio.lowlevel.checkpoint()
        if self.i == len(self.reads):
            return b""
        self.i += 1
        return self.reads[self.i - 1]

    async def send_all(self, data: bytes) -> None:
        self.sent += len(data)


def build_reads(op: str, n: int, per_read: int) -> list[bytes]:
    value = b"x" * 100
    cmds = [
        mb(b"SET", b"key:%012d" % (i % 100000), value) if op == "SET"
        else mb(b"GET", b"key:%012d" % (i % 100000))
        for i in range(n)
    ]
    return [b"".join(cmds[i : i + per_read]) for i in range(0, n, per_read)]


async def run_node_loop(engine_name: str, op: str, n: int, per_read: int) -> float:
    d = tempfile.mkdtemp(prefix="respkv-hot-")
    cfg = Config(engine=engine_name, port=0, dir=d, appendfsync="everysec")
    node = Node(cfg, engine=MemoryEngine()) if engine_name == "memory" else Node(cfg)
    client = node.state.new_client("bench", "bench")
    # Preload keys so GET hits.
    await node.serve_client(ScriptedStream(build_reads("SET", 100000, 1000)), client)
    stream = ScriptedStream(build_reads(op, n, per_read))
    t0 = time.process_time()
    await node.serve_client(stream, client)
    dt = time.process_time() - t0
    node.engine.close()
    assert stream.sent > 0
    return dt / n * 1e6


def bare_loop(op: str, n: int, per_read: int) -> float:
    """The floor: hiredis parse, a dict, encode the reply -- what any Python server must do."""
    reads = build_reads(op, n, per_read)
    data: dict[bytes, bytes] = {b"key:%012d" % i: b"x" * 100 for i in range(100000)}
    reader = hiredis.Reader()
    t0 = time.process_time()
    for chunk in reads:
        reader.feed(chunk)
        out = bytearray()
        while (cmd := reader.gets()) is not False:
            if cmd[0] == b"SET":
                data[cmd[1]] = cmd[2]
                out += b"+OK\r\n"
            else:
                v = data.get(cmd[1])
                out += b"$%d\r\n%s\r\n" % (len(v), v) if v is not None else b"$-1\r\n"
    return (time.process_time() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100000)
    args = ap.parse_args()
    print(f"{'case':<28}{'bare loop us/cmd':>18}{'memory us/cmd':>15}{'lsm us/cmd':>12}")
    for per_read in (1, 16):
        for op in ("SET", "GET"):
            bare = bare_loop(op, args.n, per_read)
            mem = trio.run(run_node_loop, "memory", op, args.n, per_read)
            lsm = trio.run(run_node_loop, "lsm", op, args.n, per_read)
            print(f"{op + f' ({per_read}/read)':<28}{bare:>18.2f}{mem:>15.2f}{lsm:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
