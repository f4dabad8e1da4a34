"""Per-command latency histograms, INFO latencystats, and the Prometheus text endpoint.

Histograms: the node times every command in ``Node.serve_client`` (whole microseconds, the
figure INFO commandstats sums) and counts it in one bucket of ``LATENCY_BOUNDS_US`` with a bisect:
one dict lookup, one tuple index (a bisect over ~90 ints above 4 ms) and one list increment
per command: about 60 ns, measured with bench/bench_hotpath.py as +0.05..0.1 us on a pipelined
GET or SET (2.1..2.4 us) and within noise unpipelined (8.5 us). (Keeping the histogram on a list
subclass as the cmdstats entry was slower: CPython 3.11 only specialises indexing of exact lists.) The bounds grow
by 1-1.2-1.5-2-2.5-3-4-5-6-7-8-9 steps per decade, so a percentile read from them is at most a
third above the exact value (Redis 7 uses an HdrHistogram for ``latency_percentiles_usec_<cmd>``; this is
the same idea at a coarser precision). Bucket ``i`` counts ``BOUNDS[i-1] < dt <= BOUNDS[i]``; the
last one counts everything above the largest bound.

Ownership: ``CommandLatency.hists`` is written only by the node's serve loop. A histogram is
created with its ``cmdstats`` entry, so CONFIG RESETSTAT (which clears ``cmdstats``) also starts
a command's histogram afresh at its next call; reports only show commands present in cmdstats.

The endpoint (``metrics_port``, 0: off) speaks just enough HTTP/1.1 for a Prometheus scraper:
``GET /metrics`` answers the text exposition format 0.0.4 and closes the connection. It binds the
client port's address and has no authentication of its own; protected mode applies to it as to
the client port (no password set: loopback peers only, others get 403).
"""

from __future__ import annotations

import logging
import math
import os
import resource
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import trio

from respkv.node.info import process_rss_bytes

if TYPE_CHECKING:
    from respkv.node.server import Node

log = logging.getLogger("respkv.node.metrics")

_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)
LATENCY_BOUNDS_US: tuple[int, ...] = tuple(
    sorted({max(1, round(m * 10**e)) for e in range(8) for m in _STEPS} | {10**8})
)
"""Upper bounds (inclusive, microseconds) of the latency buckets: 1 us .. 100 s."""

N_BUCKETS = len(LATENCY_BOUNDS_US) + 1  # + one bucket above the largest bound

FAST_US = 4096
BUCKET_OF_US: tuple[int, ...] = tuple(bisect_left(LATENCY_BOUNDS_US, us) for us in range(FAST_US))
"""The bucket of every latency below FAST_US microseconds, precomputed: the serve loop indexes
this table (one tuple index) and bisects only for slower commands."""

PROMETHEUS_BOUNDS_US: tuple[int, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
)
"""The ``le`` bounds exported to Prometheus: a subset of LATENCY_BOUNDS_US, so exact."""

INFO_PERCENTILES = (50.0, 99.0, 99.9)  # Redis 7's default latency-tracking-info-percentiles

assert set(PROMETHEUS_BOUNDS_US) <= set(LATENCY_BOUNDS_US)


def percentile_us(hist: list[int], q: float) -> float:
    """The bucket bound at or below which ``q`` percent of the counted latencies lie."""
    total = sum(hist)
    if not total:
        return 0.0
    rank = max(1, math.ceil(total * q / 100.0))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return float(LATENCY_BOUNDS_US[min(i, len(LATENCY_BOUNDS_US) - 1)])
    return float(LATENCY_BOUNDS_US[-1])


def _fmt_pct(q: float) -> str:
    return f"p{q:g}"


class CommandLatency:
    """The node's per-command histograms and the INFO ``latencystats`` section built on them."""

    def __init__(self, cmdstats: dict[str, list[int]]) -> None:
        self.cmdstats = cmdstats
        self.hists: dict[str, list[int]] = {}

    def new_histogram(self, name: str) -> list[int]:
        h = self.hists[name] = [0] * N_BUCKETS
        return h

    def current(self) -> Iterable[tuple[str, list[int]]]:
        """(command, histogram) for the commands INFO commandstats reports, sorted by name."""
        for name in sorted(self.cmdstats):
            h = self.hists.get(name)
            if h is not None and any(h):
                yield name, h

    def latencystats(self) -> dict[str, Any]:
        """INFO latencystats, as Redis 7: ``latency_percentiles_usec_get:p50=1.003,...``."""
        return {
            "latency_percentiles_usec_" + name: ",".join(
                f"{_fmt_pct(q)}={percentile_us(h, q):.3f}" for q in INFO_PERCENTILES
            )
            for name, h in self.current()
        }


# -- Prometheus text exposition format 0.0.4 ------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_num(value)}")
        else:
            self.lines.append(f"{name} {_num(value)}")

    def histogram(self, name: str, hist: list[int], sum_us: int, **labels: str) -> None:
        """The samples of one histogram (buckets of LATENCY_BOUNDS_US) in seconds."""
        running = 0
        start = 0
        for bound, idx in zip(PROMETHEUS_BOUNDS_US, _PROM_INDEX, strict=True):
            running += sum(hist[start : idx + 1])
            start = idx + 1
            self.sample(name + "_bucket", running, **labels, le=repr(bound / 1e6))
        count = sum(hist)
        self.sample(name + "_bucket", count, **labels, le="+Inf")
        self.sample(name + "_sum", sum_us / 1e6, **labels)
        self.sample(name + "_count", count, **labels)

    def one(self, name: str, kind: str, help_: str, value: float) -> None:
        self.family(name, kind, help_)
        self.sample(name, value)


_PROM_INDEX = tuple(LATENCY_BOUNDS_US.index(b) for b in PROMETHEUS_BOUNDS_US)

_STATS_COUNTERS = (
    ("total_connections_received", "connections_received_total", "Client connections accepted."),
    ("rejected_connections", "rejected_connections_total", "Connections refused (maxclients)."),
    ("total_commands_processed", "commands_processed_total", "Commands processed."),
    ("total_net_input_bytes", "net_input_bytes_total", "Bytes read from clients."),
    ("total_net_output_bytes", "net_output_bytes_total", "Bytes written to clients."),
)


def render(node: Node) -> str:
    """Every metric of ``node`` in the Prometheus text format (cheap: no per-key work)."""
    state = node.state
    o = _Out()
    o.family("respkv_info", "gauge", "Constant 1, labelled with the node's version and engine.")
    from respkv import __version__

    o.sample("respkv_info", 1, version=__version__, engine=node.config.engine,
             run_id=state.run_id)
    o.one("respkv_uptime_seconds", "gauge", "Seconds since the node started.",
          max(0, (state.clock_ms() - state.start_ms) // 1000))
    o.one("respkv_connected_clients", "gauge", "Client connections open now.", len(state.clients))
    o.one("respkv_maxclients", "gauge", "The maxclients setting.", node.config.maxclients)
    for key, name, help_ in _STATS_COUNTERS:
        o.one("respkv_" + name, "counter", help_, state.stats.get(key, 0))
    for key, help_ in (("keyspace_hits", "Key lookups that found the key."),
                       ("keyspace_misses", "Key lookups that did not find the key."),
                       ("expired_keys", "Keys removed because their TTL passed.")):
        total = state.stats.get(key, 0) + sum(db.stats.get(key, 0) for db in state.dbs)
        o.one(f"respkv_{key}_total", "counter", help_, total)
    o.one("respkv_slowlog_length", "gauge", "Entries in the slow log.", len(state.slowlog))
    o.one("respkv_aof_fsyncs_total", "counter", "Commit-log fsyncs.", node.commit.fsyncs)
    o.one("respkv_write_stalls_total", "counter",
          "Times a client waited for the engine's background work.", node.write_stalls)

    cmdstats = state.cmdstats
    names = sorted(cmdstats)
    o.family("respkv_commands_total", "counter", "Calls, by command.")
    for n in names:
        o.sample("respkv_commands_total", cmdstats[n][0], cmd=n)
    o.family("respkv_command_failed_total", "counter", "Calls that replied with an error.")
    for n in names:
        o.sample("respkv_command_failed_total", cmdstats[n][3], cmd=n)
    o.family("respkv_command_rejected_total", "counter",
             "Calls refused before running (arity, authentication).")
    for n in names:
        o.sample("respkv_command_rejected_total", cmdstats[n][2], cmd=n)
    hname = "respkv_command_duration_seconds"
    o.family(hname, "histogram", "Time to execute a command (not counting network and fsync).")
    hists = node.latency.hists
    for n in names:
        h = hists.get(n)
        if h is None:
            continue
        o.histogram(hname, h, cmdstats[n][1], cmd=n)

    for key, value in node.engine.stats().items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = "respkv_engine_" + "".join(c if c.isalnum() else "_" for c in key)
        o.one(name, "untyped", f"Storage engine statistic {key}.", value)
    cluster = getattr(node, "cluster", None)
    if cluster is not None:
        _coordinator_metrics(o, cluster)
    _process_metrics(o)
    return "\n".join(o.lines) + "\n"


def observe_us(hists: dict[Any, list[int]], key: Any, us: int) -> None:
    """Count a latency of ``us`` microseconds in ``hists[key]`` (created on first use), for
    latencies off the single-node hot path (the coordinator's, per consistency level)."""
    h = hists.get(key)
    if h is None:
        h = hists[key] = [0] * N_BUCKETS
    h[BUCKET_OF_US[us] if us < FAST_US else bisect_left(LATENCY_BOUNDS_US, us)] += 1


def _coordinator_metrics(o: _Out, cluster: Any) -> None:
    """Per consistency level: the coordinator's ``level_stats`` ((kind, level) -> [calls,
    failures, usec]) and, when it keeps them, ``level_hists`` ((kind, level) -> histogram, filled
    with ``observe_us``)."""
    level_stats: dict[tuple[str, str], list[int]] = getattr(cluster, "level_stats", {})
    items = sorted(level_stats.items())
    o.family("respkv_coordinator_requests_total", "counter",
             "Quorum operations coordinated here, by kind (read/write) and consistency level.")
    for (kind, level), st in items:
        o.sample("respkv_coordinator_requests_total", st[0], kind=kind, level=level.lower())
    o.family("respkv_coordinator_failed_total", "counter",
             "Quorum operations that did not reach their consistency level.")
    for (kind, level), st in items:
        o.sample("respkv_coordinator_failed_total", st[1], kind=kind, level=level.lower())
    o.family("respkv_coordinator_time_seconds_total", "counter",
             "Time from sending quorum operations to their outcome, summed.")
    for (kind, level), st in items:
        o.sample("respkv_coordinator_time_seconds_total", st[2] / 1e6, kind=kind,
                 level=level.lower())
    hists: dict[tuple[str, str], list[int]] = getattr(cluster, "level_hists", {})
    if hists:
        name = "respkv_coordinator_duration_seconds"
        o.family(name, "histogram", "Time from sending a quorum operation to its outcome.")
        for (kind, level), h in sorted(hists.items()):
            totals = level_stats.get((kind, level))
            o.histogram(name, h, totals[2] if totals else 0, kind=kind, level=level.lower())
    pbs = getattr(cluster, "pbs", None)
    if pbs is not None:
        pbs_metrics(o, pbs, cluster.pbs_levels())


PBS_T_MS = (0, 1, 5, 10, 100)


def pbs_metrics(o: _Out, estimator: Any, levels: Iterable[Any]) -> None:
    """Probabilistically bounded staleness (respkv/cluster/pbs.py, docs/cluster.md): per
    (read, write) level pair the estimated P(consistent read) at t ms after commit and the time
    to 99.9% visibility; per read level the reads checked by late replies and those that missed
    a newer version. Estimates are cached by the estimator (recomputed every few hundred
    samples), so a scrape costs a simulation at most that often."""
    rows = []
    for lv in levels:
        est = estimator.estimate(lv.n, lv.r, lv.w)
        if est is not None:
            rows.append((lv, est))
    labels = lambda lv: {"level": lv.name, "n": str(lv.n), "r": str(lv.r), "w": str(lv.w)}  # noqa: E731
    name = "respkv_pbs_consistent_read_probability"
    o.family(name, "gauge", "Estimated probability that a read t ms after a write's commit "
             "returns it or newer (PBS, WARS model).")
    for lv, est in rows:
        for t in PBS_T_MS:
            o.sample(name, est.p_consistent(t), **labels(lv), t_ms=str(t))
    name = "respkv_pbs_visibility_seconds"
    o.family(name, "gauge", "Estimated time after commit until 99.9% of reads see a write.")
    for lv, est in rows:
        o.sample(name, est.t_visible() / 1000, **labels(lv))
    name = "respkv_pbs_latency_samples"
    o.family(name, "gauge", "WARS latency samples held, by kind (w, a, r, s).")
    for kind, count in estimator.samples.counts().items():
        o.sample(name, count, kind=kind)
    observed = sorted(estimator.observed.items())
    for idx, (metric, help_) in enumerate((
            ("respkv_pbs_reads_total", "Reads answered, by read level."),
            ("respkv_pbs_reads_checked_total", "Reads whose every asked replica replied, some "
             "after the answer (the reads staleness can be observed on)."),
            ("respkv_pbs_stale_reads_total", "Checked reads where a late replica held a newer "
             "version than the one returned."))):
        o.family(metric, "counter", help_)
        for level, st in observed:
            o.sample(metric, st[idx], level=level)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_metrics(o: _Out) -> None:
    """The standard ``process_*`` families (as prometheus_client's process collector names
    them), from getrusage and /proc where there is one."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    o.one("process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.",
          ru.ru_utime + ru.ru_stime)
    o.one("process_resident_memory_bytes", "gauge", "Resident set size, in bytes.",
          process_rss_bytes())
    try:
        o.one("process_open_fds", "gauge", "Open file descriptors.", len(os.listdir("/proc/self/fd")))
    except OSError:
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        o.one("process_max_fds", "gauge", "Limit of open file descriptors.", soft)
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime "))
        o.one("process_start_time_seconds", "gauge", "Start time since the epoch, in seconds.",
              btime + start_ticks / _CLK_TCK)
    except (OSError, ValueError, IndexError, StopIteration):
        pass


# -- the HTTP responder ----------------------------------------------------------------------------

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              head: bool = False) -> bytes:
    header = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return header if head else header + body


def respond(node: Node, request: bytes) -> bytes:
    """The response to one request head (pure apart from reading the node's counters)."""
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _response("400 Bad Request", b"bad request\n")
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET\n")
    if target == "/metrics":
        return _response("200 OK", render(node).encode(), CONTENT_TYPE, head=method == "HEAD")
    if target == "/":
        return _response("200 OK", b"respkv metrics: GET /metrics\n", head=method == "HEAD")
    return _response("404 Not Found", b"not found\n", head=method == "HEAD")


def protected(node: Node, stream: trio.SocketStream) -> bool:
    """Protected mode covers the endpoint as it covers the client port: with no password set,
    only loopback peers are answered."""
    from respkv.node.server import _is_loopback  # the one decision; imported late (cycle)

    cfg = node.config
    if not cfg.protected_mode or cfg.requirepass:
        return False
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return True
    return not _is_loopback(peer[0] if isinstance(peer, tuple) else "")


async def _serve_one(node: Node, stream: trio.SocketStream) -> None:
    async with stream:
        buf = b""
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            while b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST_BYTES:
                try:
                    chunk = await stream.receive_some(4096)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                buf += chunk
            if b"\r\n\r\n" not in buf:
                out = _response("431 Request Header Fields Too Large", b"too large\n")
            elif protected(node, stream):
                out = _response("403 Forbidden", b"protected mode: no password is set, so only "
                                b"loopback clients may scrape (set requirepass, or "
                                b"protected_mode = false)\n")
            else:
                out = respond(node, buf)
            try:
                await stream.send_all(out)
            except trio.BrokenResourceError:
                return


async def serve_metrics(
    node: Node, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve GET /metrics on (host, port) until cancelled; ``started(port)`` once listening."""
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    bound = listeners[0].socket.getsockname()[1]
    log.info("event=metrics_listening port=%d", bound)

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_one(node, stream)

    task_status.started(bound)
    await trio.serve_listeners(handler, listeners)
