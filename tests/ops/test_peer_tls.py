"""TLS between cluster peers (respkv/node/tls_network.py): two in-process nodes whose peer
connections run over mutual TLS with certificates from a throwaway CA (made by the openssl
tool, as test_ops_tls.py does), a write replicated between them, and peers without a valid
certificate refused in both directions."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess

import pytest
import redis
import trio

from respkv.cluster import wire
from respkv.config import Config
from respkv.node.peer import PeerIdentity, PeerLink
from respkv.node.server import Node
from respkv.node.tls_network import TlsNetwork, peer_ssl_contexts
from respkv.storage.memory import MemoryEngine

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
SECRET = b"a cluster secret for peer tls tests"


def openssl(*args: str, cwd: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: str, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}",
            "-days", "2", cwd=d)


def issue(d: str, ca: str, name: str) -> None:
    """A node certificate for 127.0.0.1, good for TLS server and client use."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = str(tmp_path_factory.mktemp("peer-tls"))
    make_ca(d, "cluster-ca")
    issue(d, "cluster-ca", "node")
    make_ca(d, "rogue-ca")
    issue(d, "rogue-ca", "rogue")
    with open(os.path.join(d, "secret"), "wb") as f:
        f.write(SECRET)
    return d


def tls_config(d: str, node_id: str, seeds: str = "", cert: str = "node") -> Config:
    c = Config(engine="memory", port=0, dir=d, node_id=node_id, seeds=seeds,
               cluster_secret_file=os.path.join(d, "secret"), n_replicas=2,
               gossip_interval_ms=100, hinted_handoff=False, anti_entropy_interval_ms=0,
               request_timeout_ms=2000)
    c.set("peer_tls", True)
    c.set("peer_tls_cert_file", os.path.join(d, f"{cert}.crt"))
    c.set("peer_tls_key_file", os.path.join(d, f"{cert}.key"))
    c.set("peer_tls_ca_cert_file", os.path.join(d, "cluster-ca.crt" if cert == "node"
                                                else "rogue-ca.crt"))
    return c


def tls_node(config: Config) -> Node:
    return Node(config, engine=MemoryEngine(), network=TlsNetwork(*peer_ssl_contexts(config)))


async def wait_for(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``cond`` (state owned by other tasks, no event to wait on) for up to 20 s."""
    with trio.fail_after(20):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.02)


async def command(port: int, *args: str) -> object:
    def run() -> object:
        r = redis.Redis(port=port, socket_timeout=10)
        try:
            return r.execute_command(*args)
        finally:
            r.close()

    return await trio.to_thread.run_sync(run)


def test_settings_are_checked(certs: str) -> None:
    c = Config(peer_tls=True, peer_tls_cert_file=os.path.join(certs, "node.crt"))
    with pytest.raises(OSError, match="^peer_tls is on: peer_tls_key_file, "
                                      "peer_tls_ca_cert_file are required$"):
        peer_ssl_contexts(c)
    c = tls_config(certs, "a")
    c.peer_tls_ca_cert_file = os.path.join(certs, "missing.crt")
    with pytest.raises(OSError, match="^peer_tls_ca_cert_file '.*missing.crt'"):
        peer_ssl_contexts(c)
    server, client = peer_ssl_contexts(tls_config(certs, "a"))
    assert server.verify_mode == client.verify_mode == ssl.CERT_REQUIRED
    # only the cluster CA is trusted, not the system's
    assert client.cert_store_stats()["x509_ca"] == server.cert_store_stats()["x509_ca"] == 1


async def test_two_nodes_replicate_over_tls_and_refuse_uncertified_peers(certs: str) -> None:
    async with trio.open_nursery() as nursery:
        a = tls_node(tls_config(certs, "a"))
        await nursery.start(a.run)
        assert a.cluster is not None and a.cluster.peer_port
        peer_a = a.cluster.peer_port
        b = tls_node(tls_config(certs, "b", seeds=f"127.0.0.1:{peer_a}"))
        await nursery.start(b.run)

        def converged() -> bool:
            return all(n.cluster.up_nodes() == {"a", "b"} and len(n.cluster.ring) == 2
                       for n in (a, b))

        await wait_for(converged, "the two nodes to form a ring over TLS")
        assert await command(a.port, "SET", "k", "over tls", "W", "2") is True
        # b reads its own replica only (R 1 on a replica asks no peer): the write reached it
        assert await command(b.port, "GET", "k", "R", "1") == b"over tls"
        assert a.cluster.server is not None
        refused_before = a.cluster.server.stats["peer_connections_refused"]

        # A peer knowing the secret but holding a certificate from another CA, and one with
        # no certificate at all: a refuses both during the TLS handshake.
        # (Both trust the cluster CA, so it is a's side that says no.)
        rogue_server, rogue_client = peer_ssl_contexts(tls_config(certs, "r", cert="rogue"))
        rogue_trusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        rogue_trusting.load_cert_chain(os.path.join(certs, "rogue.crt"),
                                       os.path.join(certs, "rogue.key"))
        for ctx in (rogue_trusting, no_cert):
            ctx.check_hostname = False
            ctx.load_verify_locations(os.path.join(certs, "cluster-ca.crt"))
        links = []
        for node_id, client_ctx in (("rogue", rogue_trusting), ("anonymous", no_cert)):
            ident = PeerIdentity(node_id, "dc1", SECRET, "", lambda n: os.urandom(n))
            link = PeerLink("127.0.0.1", peer_a, ident, lambda _link: None,
                            TlsNetwork(rogue_server, client_ctx))
            nursery.start_soon(link.run)
            links.append(link)
        await wait_for(lambda: all(x.stats["connect_failures"] >= 1 for x in links)
                       and a.cluster.server.stats["peer_connections_refused"]
                       >= refused_before + 2, "the uncertified peers to be refused")
        assert not any(x.connected or x.peer_id for x in links)
        assert all("CERTIFICATE_VERIFY_FAILED" not in x.last_error for x in links)
        assert set(a.cluster.links) == {"b"}

        # The other direction: a node dialling a listener whose certificate is not the
        # cluster CA's refuses it (OSError, a connect failure for its link).
        listeners, rogue_port = await TlsNetwork(rogue_server, rogue_client).listen(
            "127.0.0.1", 0)

        async def rogue_peer(stream) -> None:  # type: ignore[no-untyped-def]
            try:
                await stream.send_all(b"hello")
            except trio.BrokenResourceError:
                pass
            stream.close_now()

        await nursery.start(trio.serve_listeners, rogue_peer, listeners)
        good = TlsNetwork(*peer_ssl_contexts(tls_config(certs, "c")))
        with pytest.raises(OSError, match=f"^TLS handshake with 127.0.0.1:{rogue_port} failed: "
                                          "CERTIFICATE_VERIFY_FAILED"):
            await good.connect("127.0.0.1", rogue_port)
        nursery.cancel_scope.cancel()
    assert wire.HANDSHAKE_TIMEOUT_MS  # the TLS handshake runs inside the same deadline


async def test_a_dial_cancelled_in_the_tls_handshake_closes_its_connection(certs: str) -> None:
    """The dialler is cancelled (shutdown, a retired link) while the listener has not answered
    the TLS hello: the connection is closed then (the listener sees it end), not left to the
    garbage collector."""
    accepted: list[trio.SocketStream] = []

    async def mute(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    network = TlsNetwork(*peer_ssl_contexts(tls_config(certs, "c")))
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, mute, listeners)
        with trio.CancelScope() as dial:
            nursery.start_soon(cancel_when_accepted, accepted, dial)
            await network.connect("127.0.0.1", port)
        with trio.fail_after(10):
            while await accepted[0].receive_some(4096):  # the client hello, then the end
                pass
        nursery.cancel_scope.cancel()


async def cancel_when_accepted(accepted: list[trio.SocketStream], scope: trio.CancelScope) -> None:
    await wait_for(lambda: accepted, "the dial to arrive")
    scope.cancel()
