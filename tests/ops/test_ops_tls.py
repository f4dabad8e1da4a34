"""TLS for clients: redis-py with ssl=True against a real node, certificates made by the openssl
command-line tool for this test (a throwaway CA, a server certificate for 127.0.0.1, a client
certificate for mutual TLS)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys

import pytest
import redis

from respkv.testing.procs import free_port, start_respkv

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


def openssl(*args: str, cwd: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(d: str, name: str, cn: str, ext: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(ext + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("tls"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=respkv test CA",
            "-days", "2", cwd=d)
    issue(d, "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    issue(d, "client", "respkv-client", "extendedKeyUsage=clientAuth")
    return d


def tls_args(d: str, port: int, mutual: bool = False) -> list[str]:
    args = ["--tls-port", str(port), "--tls-cert-file", os.path.join(d, "server.crt"),
            "--tls-key-file", os.path.join(d, "server.key")]
    if mutual:
        args += ["--tls-ca-cert-file", os.path.join(d, "ca.crt")]
    return args


def tls_client(d: str, port: int, cert: bool = False) -> redis.Redis:
    kw = {}
    if cert:
        kw = {"ssl_certfile": os.path.join(d, "client.crt"),
              "ssl_keyfile": os.path.join(d, "client.key")}
    return redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=os.path.join(d, "ca.crt"),
                       socket_timeout=10, **kw)


def test_tls_round_trip(certs: str) -> None:
    tls_port = free_port()
    sp = start_respkv(*tls_args(certs, tls_port), engine="memory")
    try:
        r = tls_client(certs, tls_port)
        assert r.ping()
        assert r.set("k", b"v" * 100_000)
        assert r.get("k") == b"v" * 100_000
        pipe = r.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"p{i}", i)
        assert pipe.execute() == [True] * 200
        assert r.info("clients")["connected_clients"] >= 1
        r.close()
        plain = redis.Redis(host="127.0.0.1", port=sp.port, socket_timeout=10)
        assert plain.get("p7") == b"7"  # the plain port serves the same node
        plain.close()
        # a plain-text client on the TLS port gets no RESP reply, and the node stays up
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as s:
            s.sendall(b"PING\r\n")
            assert b"PONG" not in s.recv(100)
        with tls_client(certs, tls_port) as r:
            assert r.ping()
    finally:
        assert sp.stop() == 0
    assert f"event=tls_listening port={tls_port}" in sp.log()


def test_mutual_tls(certs: str) -> None:
    tls_port = free_port()
    sp = start_respkv(*tls_args(certs, tls_port, mutual=True), engine="memory")
    try:
        with tls_client(certs, tls_port, cert=True) as r:
            assert r.ping()
        with tls_client(certs, tls_port, cert=False) as r:
            with pytest.raises((redis.ConnectionError, ssl.SSLError, OSError)):
                r.ping()
    finally:
        sp.stop()


@pytest.mark.parametrize("broken", ["missing", "no_key"])
def test_bad_certificate_stops_start_up(certs: str, tmp_path, broken: str) -> None:
    args = tls_args(certs, free_port())
    if broken == "missing":
        args[args.index("--tls-cert-file") + 1] = str(tmp_path / "nope.crt")
        want = "tls_cert_file"
    else:
        args = args[:-2]
        want = "tls_cert_file and tls_key_file are required"
    r = subprocess.run([sys.executable, "-m", "respkv.cli", "server", "--port", str(free_port()),
                        "--engine", "memory", *args], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "respkv: cannot start:" in r.stderr and want in r.stderr


def test_config_check_loads_the_certificates(certs: str, tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(f'tls_port = 6380\ntls_cert_file = "{certs}/server.crt"\n'
                    f'tls_key_file = "{certs}/server.key"\ntls_ca_cert_file = "{certs}/ca.crt"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(f'tls_port = 6380\ntls_cert_file = "{certs}/server.crt"\n'
                   f'tls_key_file = "{certs}/client.key"\n')  # the wrong key
    check = [sys.executable, "-m", "respkv.cli", "config", "check"]
    r = subprocess.run([*check, str(good)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*check, str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith(f"respkv: configuration error: {bad}: tls_cert_file ")


def test_admin_status_over_tls(certs: str) -> None:
    tls_port = free_port()
    sp = start_respkv(*tls_args(certs, tls_port), engine="memory")
    try:
        r = subprocess.run([sys.executable, "-m", "respkv.cli", "admin", "status", "--port",
                            str(tls_port), "--tls", "--cacert", os.path.join(certs, "ca.crt")],
                           capture_output=True, text=True, timeout=30)
    finally:
        sp.stop()
    assert r.returncode == 0, r.stderr
    assert f"node      127.0.0.1:{tls_port}" in r.stdout
