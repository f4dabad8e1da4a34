"""A tiny blocking RESP client for compat tests: exact bytes in, exact bytes (and a tree) out.

Why not redis-py: the differential tests must see replies exactly as the server wrote them --
error strings byte for byte, simple vs bulk strings, RESP3 types -- with no client-side
decoding, retry or command-specific response callbacks in between.

A reply is returned twice: as the raw bytes of that one reply and as a tagged tree:
``("+", b"OK")``, ``("-", b"ERR ...")``, ``(":", 5)``, ``("$", b"v" | None)``,
``("*", [...] | None)`` and, in RESP3, ``("%", [(k, v), ...])``, ``("~", [...])``, ``("_", None)``,
``(",", b"1.5")``, ``("#", True)``, ``("=", b"txt:...")``, ``("(", 123)``, ``(">", [...])``.
Attributes (``|``) are read and dropped. Trees compare with ``==``.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import Any

from hypothesis import settings

Reply = tuple[str, Any]

COMPARED: Counter[str] = Counter()
"""Replies compared respkv-vs-redis per command name (the session summary reports the total)."""


def examples(share: float = 1.0, minimum: int = 5) -> int:
    """Examples for one property test: a share of the loaded Hypothesis profile's max_examples."""
    return max(minimum, int(settings.default.max_examples * share))


def encode_command(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _NeedMore(Exception):
    pass


def _parse(buf: bytes | bytearray, pos: int) -> tuple[Reply, int]:
    """Parse one reply starting at ``pos``; returns (tree, end). Raises _NeedMore if incomplete."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise _NeedMore
    t = chr(buf[pos])
    line = bytes(buf[pos + 1 : nl])
    end = nl + 2
    if t in "+-":
        return (t, line), end
    if t in ":(":
        return (t, int(line)), end
    if t == ",":
        return (t, line), end
    if t == "#":
        return (t, line == b"t"), end
    if t == "_":
        return (t, None), end
    if t in "$=!":
        n = int(line)
        if n < 0:
            return (t, None), end
        if len(buf) < end + n + 2:
            raise _NeedMore
        return (t, bytes(buf[end : end + n])), end + n + 2
    if t in "*~>%|":
        n = int(line)
        if n < 0:
            return (t, None), end
        items: list[Any] = []
        for _ in range(n * 2 if t in "%|" else n):
            item, end = _parse(buf, end)
            items.append(item)
        if t == "|":  # an attribute precedes the real reply: drop it
            return _parse(buf, end)
        if t == "%":
            return (t, list(zip(items[::2], items[1::2], strict=True))), end
        return (t, items), end
    raise ValueError(f"not RESP: {bytes(buf[pos:pos + 40])!r}")


class RawConn:
    """One connection; ``call(*args)`` -> (tree, raw bytes). Not thread-safe."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> tuple[Reply, bytes]:
        while True:
            try:
                tree, end = _parse(self.buf, 0)
            except _NeedMore:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(
                        f"server closed the connection; unparsed: {bytes(self.buf[:200])!r}"
                    ) from None
                self.buf += chunk
                continue
            raw = bytes(self.buf[:end])
            del self.buf[:end]
            return tree, raw

    def call(self, *args: bytes | str | int) -> tuple[Reply, bytes]:
        self.send(encode_command(*args))
        return self.read_reply()

    def value(self, *args: bytes | str | int) -> Any:
        """The reply's payload (for setup/assert code that wants plain values)."""
        return self.call(*args)[0][1]

    def read_until_close(self, timeout: float = 10.0) -> bytes:
        """Everything the server still sends until it closes the connection (or timeout)."""
        self.sock.settimeout(timeout)
        out = bytes(self.buf)
        self.buf.clear()
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return out
            if not chunk:
                return out
            out += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flushall(port: int) -> None:
    """FLUSHALL on a fresh connection; raises if the server does not answer +OK."""
    with RawConn(port) as c:
        tree, raw = c.call("FLUSHALL")
        if tree != ("+", b"OK"):
            raise RuntimeError(f"FLUSHALL on port {port} answered {raw!r}")


SLEEP = "sleep"
"""A script step ``(SLEEP, seconds)``: pause between commands (to let PX keys expire)."""


def run_script(port: int, script: list[tuple[Any, ...]], resp3: bool,
               connections: int = 2) -> list[bytes]:
    """Run ``script`` on ``connections`` fresh connections after a FLUSHALL (and HELLO 3 on
    each when ``resp3``): each step is ``(connection index, *command)`` or ``(SLEEP, s)``.
    Returns every command's raw reply bytes, in order, for comparing two servers."""
    conns = [RawConn(port) for _ in range(connections)]
    try:
        conns[0].call("FLUSHALL")
        if resp3:
            for c in conns:
                c.call("HELLO", "3")
        out = []
        for step in script:
            if step[0] == SLEEP:
                time.sleep(step[1])
                continue
            _, raw = conns[step[0]].call(*step[1:])
            out.append(raw)
        return out
    finally:
        for c in conns:
            c.close()
