"""Per-command latency histograms, INFO (every section an operator reads) and the Prometheus
endpoint, against a real `respkv server` process over real connections."""

from __future__ import annotations

import os
import re
import socket
import urllib.error
import urllib.request
from bisect import bisect_left

import pytest

from respkv.compiled import MODULES, compiled_modules
from respkv.node.metrics import (
    BUCKET_OF_US,
    FAST_US,
    LATENCY_BOUNDS_US,
    N_BUCKETS,
    PROMETHEUS_BOUNDS_US,
    CommandLatency,
    percentile_us,
)
from respkv.testing.procs import ServerProcess, free_port, start_respkv

# -- the histogram, pure ----------------------------------------------------------------------------


def test_bounds() -> None:
    assert list(LATENCY_BOUNDS_US) == sorted(set(LATENCY_BOUNDS_US))
    assert LATENCY_BOUNDS_US[0] == 1 and LATENCY_BOUNDS_US[-1] == 100_000_000
    assert set(PROMETHEUS_BOUNDS_US) <= set(LATENCY_BOUNDS_US)
    # from 10 us up, neighbouring bounds are at most a third apart: percentiles are that precise
    for lo, hi in zip(LATENCY_BOUNDS_US, LATENCY_BOUNDS_US[1:], strict=False):
        if lo >= 10:
            assert hi / lo <= 4 / 3 + 1e-9, (lo, hi)


def test_the_fast_table_is_the_bisect() -> None:
    assert len(BUCKET_OF_US) == FAST_US
    assert all(BUCKET_OF_US[us] == bisect_left(LATENCY_BOUNDS_US, us) for us in range(FAST_US))


def test_percentiles() -> None:
    h = [0] * N_BUCKETS
    assert percentile_us(h, 50) == 0.0
    for us in [3] * 90 + [40] * 9 + [10**9]:  # the last one is above every bound
        h[bisect_left(LATENCY_BOUNDS_US, us)] += 1
    assert percentile_us(h, 50) == 3.0
    assert percentile_us(h, 90) == 3.0
    assert percentile_us(h, 99) == 40.0
    assert percentile_us(h, 99.9) == 100_000_000.0


def test_latencystats_follow_cmdstats() -> None:
    cmdstats: dict[str, list[int]] = {}
    lat = CommandLatency(cmdstats)
    cmdstats["get"] = [2, 10, 0, 0]
    h = lat.new_histogram("get")
    h[bisect_left(LATENCY_BOUNDS_US, 5)] += 2
    assert lat.latencystats() == {"latency_percentiles_usec_get": "p50=5.000,p99=5.000,p99.9=5.000"}
    cmdstats.clear()  # CONFIG RESETSTAT
    assert lat.latencystats() == {}


# -- a real node --------------------------------------------------------------------------------


class Resp:
    """A blocking RESP2 client just big enough for these tests."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        if kind == b":":
            return int(rest)
        if kind == b"-":
            return Exception(rest.decode())
        return rest

    def call(self, *args: str | bytes) -> object:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()


@pytest.fixture(scope="module")
def node() -> ServerProcess:
    sp = start_respkv("--metrics-port", str(free_port()), engine="lsm")
    yield sp
    sp.stop()


def metrics_port(sp: ServerProcess) -> int:
    return int(sp.args[sp.args.index("--metrics-port") + 1])


def scrape(sp: ServerProcess, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(sp)}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        m = SAMPLE.match(line)
        assert m, line
        family = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or family in types, f"sample before its TYPE: {line}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_scrape(node: ServerProcess) -> None:
    c = Resp(node.port)
    try:
        for i in range(50):
            assert c.call("SET", f"m{i}", "v") == b"OK"
            assert c.call("GET", f"m{i}") == b"v"
        c.call("GET")  # wrong arity: rejected
        status, ctype, text = scrape(node)
    finally:
        c.close()
    assert status == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_metrics(text)
    assert m['respkv_commands_total{cmd="set"}'] >= 50
    assert m['respkv_commands_total{cmd="get"}'] >= 50
    assert m["respkv_connected_clients"] >= 1
    assert m["respkv_commands_processed_total"] >= 101
    assert m["respkv_keyspace_hits_total"] >= 50
    assert m["respkv_engine_tables"] >= 0 and "respkv_engine_aof_size" in m
    for cmd in ("get", "set"):
        buckets = [(k, v) for k, v in m.items()
                   if k.startswith("respkv_command_duration_seconds_bucket{" + f'cmd="{cmd}"')]
        assert len(buckets) == len(PROMETHEUS_BOUNDS_US) + 1
        values = [v for _, v in buckets]
        assert values == sorted(values), "buckets are cumulative"
        assert buckets[-1][0].endswith('le="+Inf"}')
        count = m[f'respkv_command_duration_seconds_count{{cmd="{cmd}"}}']
        assert values[-1] == count == m[f'respkv_commands_total{{cmd="{cmd}"}}']
        assert m[f'respkv_command_duration_seconds_sum{{cmd="{cmd}"}}'] >= 0


def test_metrics_http_edges(node: ServerProcess) -> None:
    assert scrape(node, "/nope")[0] == 404
    assert scrape(node, "/")[0] == 200
    with socket.create_connection(("127.0.0.1", metrics_port(node)), timeout=10) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 405 ")
    with socket.create_connection(("127.0.0.1", metrics_port(node)), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")


INFO_SECTIONS = ("Server", "Clients", "Memory", "Persistence", "Stats", "Commandstats",
                 "Latencystats", "Keyspace")


def info(c: Resp, *sections: str) -> dict[str, dict[str, str]]:
    raw = c.call("INFO", *sections)
    assert isinstance(raw, bytes)
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in raw.decode().split("\r\n"):
        if line.startswith("# "):
            current = out.setdefault(line[2:], {})
        elif line:
            k, v = line.split(":", 1)
            current[k] = v
    return out


def test_info_sections_over_a_connection(node: ServerProcess) -> None:
    c = Resp(node.port)
    try:
        for i in range(20):
            c.call("SET", f"i{i}", "v")
            c.call("GET", f"i{i}")
        c.call("SET", "ttl", "v", "EX", "100")
        every = info(c, "everything")
        default = info(c)
        assert set(info(c, "latencystats")) == {"Latencystats"}
    finally:
        c.close()
    for s in INFO_SECTIONS:
        assert s in every, s
    assert "Commandstats" not in default and "Latencystats" not in default  # as Redis 7
    assert every["Server"]["tcp_port"] == str(node.port)
    assert every["Server"]["redis_version"]
    # the server runs the same form of the hot path as this test process (respkv/compiled.py)
    assert every["Server"]["respkv_compiled"] == f"{len(compiled_modules())}/{len(MODULES)}"
    assert int(every["Clients"]["connected_clients"]) >= 1
    assert int(every["Memory"]["used_memory"]) >= 0
    assert every["Persistence"]["aof_enabled"] == "1"
    assert int(every["Stats"]["total_commands_processed"]) >= 41
    assert re.fullmatch(r"calls=\d+,usec=\d+,usec_per_call=[\d.]+,rejected_calls=\d+,failed_calls=\d+",
                        every["Commandstats"]["cmdstat_set"])
    for cmd in ("get", "set"):
        v = every["Latencystats"]["latency_percentiles_usec_" + cmd]
        m = re.fullmatch(r"p50=([\d.]+),p99=([\d.]+),p99\.9=([\d.]+)", v)
        assert m, v
        p50, p99, p999 = map(float, m.groups())
        assert 0 < p50 <= p99 <= p999
    keys = re.fullmatch(r"keys=(\d+),expires=(\d+),avg_ttl=(\d+)", every["Keyspace"]["db0"])
    assert keys and int(keys.group(1)) >= 21 and int(keys.group(2)) >= 1


def test_resetstat_resets_latencystats(node: ServerProcess) -> None:
    c = Resp(node.port)
    try:
        c.call("PING")
        assert c.call("CONFIG", "RESETSTAT") == b"OK"
        lat = info(c, "latencystats")["Latencystats"]
    finally:
        c.close()
    assert "latency_percentiles_usec_ping" not in lat
    assert "latency_percentiles_usec_config" in lat or lat == {}


def test_metrics_off_by_default() -> None:
    sp = start_respkv(engine="memory")
    try:
        assert "event=metrics_listening" not in sp.log()
    finally:
        sp.stop()


# -- per consistency level (the coordinator's figures) and process metrics, in process -------------


def test_coordinator_and_process_families() -> None:
    from types import SimpleNamespace

    from respkv.config import Config
    from respkv.node.metrics import observe_us, render
    from respkv.node.server import Node

    node = Node(Config(engine="memory"))
    try:
        hists: dict[tuple[str, str], list[int]] = {}
        for us in (300, 900, 5000):
            observe_us(hists, ("read", "QUORUM"), us)
        node.cluster = SimpleNamespace(
            level_stats={("read", "QUORUM"): [3, 1, 6200], ("write", "ONE"): [2, 0, 40]},
            level_hists=hists,
        )
        m = parse_metrics(render(node))
    finally:
        node.engine.close()
    assert m['respkv_coordinator_requests_total{kind="read",level="quorum"}'] == 3
    assert m['respkv_coordinator_failed_total{kind="read",level="quorum"}'] == 1
    assert m['respkv_coordinator_requests_total{kind="write",level="one"}'] == 2
    assert m['respkv_coordinator_time_seconds_total{kind="read",level="quorum"}'] == 0.0062
    b = 'respkv_command_duration_seconds'.replace("command", "coordinator")
    assert m[b + '_bucket{kind="read",level="quorum",le="0.00025"}'] == 0
    assert m[b + '_bucket{kind="read",level="quorum",le="0.001"}'] == 2
    assert m[b + '_bucket{kind="read",level="quorum",le="+Inf"}'] == 3
    assert m[b + '_count{kind="read",level="quorum"}'] == 3
    assert m["process_resident_memory_bytes"] > 0
    assert m["process_cpu_seconds_total"] > 0
    assert "process_open_fds" in m or not os.path.exists("/proc/self/fd")
