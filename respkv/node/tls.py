"""TLS for clients: a second listener (``tls_port``) whose connections are served exactly as the
plain ones, through ``trio.SSLStream`` over the node's lean socket stream.

Settings: ``tls_port`` (0: off), ``tls_cert_file`` and ``tls_key_file`` (PEM, required with a
port), ``tls_ca_cert_file`` (when set, clients must present a certificate signed by it: mutual
TLS, as redis-server's ``tls-auth-clients yes``). TLS 1.2 is the minimum.

Contracts: ``open_tls_listener`` runs before the node serves anything and raises OSError naming
the file and the reason, so a bad certificate stops start-up (exit 1, "cannot start"). The stream
keeps ``RawSocketStream``'s semantics the serve loop relies on: ``receive_some`` returns b"" when
the peer is gone (a failed handshake included) and ``send_all`` raises trio.BrokenResourceError;
``close_now`` closes the socket without a TLS close_notify (the node's connection teardown is
synchronous).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import trio

from respkv.config import Config
from respkv.node.streams import RawSocketStream

log = logging.getLogger("respkv.node.tls")


def server_ssl_context(config: Config) -> ssl.SSLContext:
    """The server context from the tls_* settings; OSError naming the setting on any problem."""
    if not config.tls_cert_file or not config.tls_key_file:
        raise OSError("tls_port is set: tls_cert_file and tls_key_file are required")
    # A bare server context: only tls_ca_cert_file's CAs may vouch for client certificates
    # (create_default_context would also trust the system's CAs for client auth).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as e:
        raise OSError(f"tls_cert_file {config.tls_cert_file!r} / tls_key_file "
                      f"{config.tls_key_file!r}: {e}") from None
    if config.tls_ca_cert_file:
        try:
            ctx.load_verify_locations(cafile=config.tls_ca_cert_file)
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"tls_ca_cert_file {config.tls_ca_cert_file!r}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TLSStream:
    """A server-side TLS connection with the interface the serve loop uses."""

    __slots__ = ("raw", "tls")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.raw = RawSocketStream(sock)
        self.tls = trio.SSLStream(self.raw, context, server_side=True)  # type: ignore[arg-type, type-var]

    async def receive_some(self, max_bytes: int = 65536) -> bytes | bytearray:
        try:
            return await self.tls.receive_some(max_bytes)
        except trio.BrokenResourceError as e:
            log.debug("event=tls_closed error=%r", str(e.__cause__ or e))
            return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def aclose(self) -> None:
        await self.tls.aclose()

    def close_now(self) -> None:
        self.raw.close_now()


def open_tls_listener(config: Config) -> tuple[socket.socket, Callable[[socket.socket], Any]] | None:
    """(listening socket, stream factory) for ``tls_port``, or None when TLS is off."""
    if not config.tls_port:
        return None
    context = server_ssl_context(config)
    family = socket.AF_INET6 if ":" in config.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.bind, config.tls_port))
        sock.listen(511)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    log.info("event=tls_listening port=%d", sock.getsockname()[1])

    def wrap(client_sock: socket.socket) -> TLSStream:
        return TLSStream(client_sock, context)

    return sock, wrap
