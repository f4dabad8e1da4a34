"""TLS between cluster peers: the Network of respkv/node/network.py over ``trio.SSLStream``.

Mutual TLS with one cluster CA. Settings (respkv/config.py): ``peer_tls`` (on/off),
``peer_tls_cert_file`` / ``peer_tls_key_file`` (this node's certificate chain and key, PEM; the
certificate is presented both when accepting and when dialling, so it must allow TLS server and
client use -- no extendedKeyUsage, or both serverAuth and clientAuth) and
``peer_tls_ca_cert_file`` (the CA every peer certificate must be signed by). A connection is
accepted only from a peer presenting a certificate that chains to that CA, and a node dials only
peers that do. Host names are not checked: peers are dialled at the addresses seeds and gossip
announce (often IP addresses), so the CA is the authority -- use a CA that signs the cluster's
nodes and nothing else. The HMAC handshake over the cluster secret (docs/formats/wire.md) still
runs inside the TLS connection: a node needs both a certificate and the secret.

Contracts, as the Network protocol states them: ``listen`` returns listeners whose ``accept``
returns at once (the TLS handshake runs lazily on the first send or receive, inside the peer
server's handshake deadline, so a slow or hostile client never holds the accept loop); a failed
handshake on the accepting side surfaces there as ``trio.BrokenResourceError`` and the peer
server counts and logs the refusal. ``connect`` completes the TLS handshake (within
``HANDSHAKE_TIMEOUT_MS``) and raises ``OSError`` naming the reason when it fails -- an
untrusted server certificate, a refused client certificate -- so the link counts it as a
connect failure. Streams have no ``sock`` attribute: the peer layer drives them through their
methods only. ``receive_some`` returns b"" when the connection is gone (a TLS failure
included), ``send_all`` raises ``trio.BrokenResourceError``, ``close_now`` closes the socket at
once without a close_notify.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import trio

from respkv.cluster.wire import HANDSHAKE_TIMEOUT_MS
from respkv.config import Config

log = logging.getLogger("respkv.node.tls")


def peer_ssl_contexts(config: Config) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) from the peer_tls_* settings; OSError naming the
    setting on any problem (start-up stops with it)."""
    missing = [k for k in ("peer_tls_cert_file", "peer_tls_key_file", "peer_tls_ca_cert_file")
               if not getattr(config, k)]
    if missing:
        raise OSError(f"peer_tls is on: {', '.join(missing)} "
                      f"{'is' if len(missing) == 1 else 'are'} required")
    # Plain contexts, not create_default_context: that one also trusts the system's CAs (its
    # default verify paths), and only the cluster CA may vouch for a peer.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(config.peer_tls_cert_file, config.peer_tls_key_file)
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"peer_tls_cert_file {config.peer_tls_cert_file!r} / "
                          f"peer_tls_key_file {config.peer_tls_key_file!r}: {e}") from None
        try:
            ctx.load_verify_locations(cafile=config.peer_tls_ca_cert_file)
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"peer_tls_ca_cert_file {config.peer_tls_ca_cert_file!r}: {e}") from None
    server.verify_mode = ssl.CERT_REQUIRED  # mutual: a peer must present a certificate
    client.check_hostname = False  # peers are dialled by announced address; the CA decides
    client.verify_mode = ssl.CERT_REQUIRED
    return server, client


class PeerTlsStream:
    """One peer connection over TLS, with the stream interface the peer layer uses."""

    __slots__ = ("tls", "transport", "remote")

    def __init__(self, transport: trio.SocketStream, tls: trio.SSLStream[Any],
                 remote: str) -> None:
        self.transport = transport
        self.tls = tls
        self.remote = remote  # "host:port", for the peer layer's logs

    async def receive_some(self, max_bytes: int = 65536) -> bytes | bytearray:
        try:
            return await self.tls.receive_some(max_bytes)
        except trio.BrokenResourceError as e:
            log.debug("event=peer_tls_closed remote=%s error=%r", self.remote,
                      str(e.__cause__ or e))
            return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def do_handshake(self) -> None:
        await self.tls.do_handshake()

    async def aclose(self) -> None:
        await self.tls.aclose()

    def close_now(self) -> None:
        self.transport.socket.close()


def _peername(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


class _TlsListener(trio.abc.Listener[Any]):
    def __init__(self, inner: trio.SocketListener, context: ssl.SSLContext) -> None:
        self.inner = inner
        self.socket = inner.socket
        self.context = context

    async def accept(self) -> PeerTlsStream:
        raw = await self.inner.accept()
        return PeerTlsStream(raw, trio.SSLStream(raw, self.context, server_side=True),
                             _peername(raw))

    async def aclose(self) -> None:
        await self.inner.aclose()


class TlsNetwork:
    """Peers over mutual TLS (module docstring). ``server_context`` accepts, ``client_context``
    dials; :func:`peer_ssl_contexts` makes both from the settings."""

    def __init__(self, server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
        self.server_context = server_context
        self.client_context = client_context

    async def listen(self, host: str, port: int) -> tuple[list[Any], int]:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        bound = listeners[0].socket.getsockname()[1]
        return [_TlsListener(x, self.server_context) for x in listeners], bound

    async def connect(self, host: str, port: int) -> PeerTlsStream:
        raw = await trio.open_tcp_stream(host, port)
        stream = PeerTlsStream(raw, trio.SSLStream(raw, self.client_context,
                                                   server_hostname=host), f"{host}:{port}")
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT_MS / 1000):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError) as e:
            stream.close_now()
            why = e.__cause__ or e
            raise OSError(f"TLS handshake with {host}:{port} failed: "
                          f"{getattr(why, 'reason', None) or why}") from None
        except BaseException:
            stream.close_now()  # cancelled mid-handshake: the caller never gets the stream
            raise
        return stream
