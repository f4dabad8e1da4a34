"""A lean byte stream over a non-blocking stdlib socket.

trio.SocketStream costs about 20% of a request at the rates respkv serves (see
../shared/ANCHORS.md: 51k vs 62k ops/s for the same dict server); this class keeps trio's
semantics that matter here -- every receive is a checkpoint, sends wait for writability -- with
nothing else on the path. Anything with ``receive_some``/``send_all``/``aclose`` (trio memory
streams in tests, a simulated network) can stand in for it.
"""

from __future__ import annotations

import socket

import trio
from trio.lowlevel import wait_readable, wait_writable


class RawSocketStream:
    __slots__ = ("sock", "_closed")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a unix socket pair in tests)
        self.sock = sock
        self._closed = False

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Wait for data and return it; b"" at end of stream or on a reset. A checkpoint."""
        sock = self.sock
        while True:
            await wait_readable(sock)
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                continue
            except (ConnectionResetError, OSError):
                return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte; raises trio.BrokenResourceError if the peer went away."""
        sock = self.sock
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            raise trio.BrokenResourceError(str(e)) from e
        if n == len(data):
            return
        view = memoryview(data)[n:]
        while view:
            await wait_writable(sock)
            try:
                n = sock.send(view)
            except BlockingIOError:
                continue
            except OSError as e:
                raise trio.BrokenResourceError(str(e)) from e
            view = view[n:]

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
        await trio.lowlevel.checkpoint()

    def close_now(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

