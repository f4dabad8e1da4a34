"""The network a node's peer layer runs on: real TCP, or a simulated one (respkv/sim).

Contract (what ``respkv/node/peer.py`` and ``respkv/node/coordinator.py`` rely on):

* ``await network.listen(host, port) -> (listeners, bound_port)``: trio ``Listener`` objects
  whose ``accept()`` returns a stream; ``port`` 0 picks a free one.
* ``await network.connect(host, port) -> stream``: raises ``OSError`` when nobody listens.
* A stream has ``receive_some(max_bytes)`` (``b""`` at end of stream or a reset),
  ``send_all(data)`` (``trio.BrokenResourceError`` when the other side is gone), ``aclose()``
  and ``close_now()``. A stream with a ``sock`` attribute is a real non-blocking socket, and the
  peer layer then takes syscall shortcuts on it (a plain ``recv`` before parking, a direct
  ``send`` on an idle link); any other stream is driven through the methods only.

The real network is :class:`TcpNetwork`; its streams are ``RawSocketStream`` (the lean stream
the client port uses). Nothing else in the node layer opens peer connections.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

import trio

from respkv.node.streams import RawSocketStream


class Network(Protocol):
    async def listen(self, host: str, port: int) -> tuple[list[Any], int]: ...

    async def connect(self, host: str, port: int) -> Any: ...


def to_raw(stream: trio.SocketStream) -> RawSocketStream:
    """The lean stream over the same connection. Takes ownership of the socket: ``stream``
    must not be used afterwards."""
    return RawSocketStream(socket.socket(fileno=stream.socket.detach()))


class _RawListener(trio.abc.Listener[Any]):
    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.socket = inner.socket

    async def accept(self) -> RawSocketStream:
        return to_raw(await self.inner.accept())

    async def aclose(self) -> None:
        await self.inner.aclose()


class TcpNetwork:
    """The real network: TCP on the host's interfaces."""

    async def listen(self, host: str, port: int) -> tuple[list[Any], int]:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        bound = listeners[0].socket.getsockname()[1]
        return [_RawListener(x) for x in listeners], bound

    async def connect(self, host: str, port: int) -> RawSocketStream:
        return to_raw(await trio.open_tcp_stream(host, port))


TCP = TcpNetwork()
