"""``respkv admin``: what a node says about itself and its cluster, as readable tables or JSON.

``respkv admin [-h HOST] [-p PORT] [-a PASSWORD] [--tls] [--json] COMMAND``, COMMAND one of
``status``, ``ring``, ``hints``, ``repair [start|status]``, ``purge [start|status]``,
``decommission [start|status]``, ``removenode [start NODE|status]``, ``join HOST:PEERPORT``
(docs/admin.md). The connection options may also follow the command.
Everything but ``status`` is the server's ``RESPKV`` command (cluster mode only), read over
RESP3; ``repair start``, ``purge start``, ``decommission start`` and ``removenode start`` poll
its STATUS and draw a progress bar on stderr.

``status``: what one node says about itself, as a readable table or as JSON.

It asks the node for ``INFO everything`` over the client protocol (plain or TLS, with AUTH when a
password is given) and prints a summary: identity, uptime, clients, throughput, keys, memory,
persistence, the engine, and in cluster mode the ring and every peer's link. ``--json`` prints
the summary and every INFO section, parsed, for scripts.

Exit codes: 0 the node answered; 1 it could not be reached or refused us (the reason on stderr).
The client here is a blocking socket speaking just enough RESP2 (no redis-py at runtime).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time
from typing import Any


class AdminError(Exception):
    pass


# -- a minimal blocking RESP2 client ----------------------------------------------------------------


class RespConnection:
    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as e:
            raise AdminError(f"cannot connect to {host}:{port}: {e}") from None
        self.sock = sock
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError as e:
            raise AdminError(f"connection lost: {e}") from None
        if not chunk:
            raise AdminError("the node closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self) -> Any:
        """One reply, RESP2 or RESP3 (maps as dicts, sets as lists, doubles as floats);
        an error reply raises AdminError with its text."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            if kind == b"!":
                raise AdminError(data.decode("utf-8", "replace"))
            return data[4:] if kind == b"=" else data
        if kind in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b"%":
            return {_text(self.read()): self.read() for _ in range(int(rest))}
        if kind == b"|":  # attributes: read and drop, the reply follows
            for _ in range(2 * int(rest)):
                self.read()
            return self.read()
        if kind in (b":", b"("):
            return int(rest)
        if kind == b",":
            return float(rest)
        if kind == b"#":
            return rest == b"t"
        if kind == b"_":
            return None
        if kind == b"-":
            raise AdminError(rest.decode("utf-8", "replace"))
        return rest

    def call(self, *args: str) -> Any:
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        try:
            self.sock.sendall(out)
        except OSError as e:
            raise AdminError(f"connection lost: {e}") from None
        return self.read()


def _text(v: Any) -> Any:
    """Reply bytes as text, recursively (for tables and JSON)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_text(x) for x in v]
    if isinstance(v, dict):
        return {_text(k): _text(x) for k, x in v.items()}
    return v


# -- INFO ---------------------------------------------------------------------------------------


def _value(v: str) -> Any:
    """An INFO value: an int, a float, a sub-record (``a=1,b=x``) as a dict, or the text."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if "=" in v and "," in v or v.count("=") == 1:
        parts = [p.split("=", 1) for p in v.split(",")]
        if all(len(p) == 2 for p in parts):
            return {k: _value(x) for k, x in parts}
    return v


def parse_info(text: str) -> dict[str, dict[str, Any]]:
    """INFO's text as {section title, lower case: {field: value}}."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("# "):
            current = sections.setdefault(line[2:].strip().lower(), {})
        elif line and current is not None and ":" in line:
            k, v = line.split(":", 1)
            current[k] = _value(v)
    return sections


def human_duration(seconds: int) -> str:
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def summary(info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The facts an operator looks at first, from parsed INFO."""
    server = info.get("server", {})
    clients = info.get("clients", {})
    stats = info.get("stats", {})
    memory = info.get("memory", {})
    persistence = info.get("persistence", {})
    cluster = info.get("cluster", {})
    keyspace = info.get("keyspace", {})
    out: dict[str, Any] = {
        "version": server.get("respkv_version"),
        "redis_version": server.get("redis_version"),
        "pid": server.get("process_id"),
        "port": server.get("tcp_port"),
        "uptime_seconds": server.get("uptime_in_seconds"),
        "connected_clients": clients.get("connected_clients"),
        "maxclients": clients.get("maxclients"),
        "total_commands_processed": stats.get("total_commands_processed"),
        "instantaneous_ops_per_sec": stats.get("instantaneous_ops_per_sec"),
        "keys": {db: v.get("keys") if isinstance(v, dict) else v for db, v in keyspace.items()},
        "used_memory_rss": memory.get("used_memory_rss"),
        "engine": persistence.get("engine", info.get("respkv", {}).get("engine")),
        "appendfsync": persistence.get("appendfsync"),
        "aof_last_write_status": persistence.get("aof_last_write_status"),
        "cluster": bool(cluster.get("respkv_cluster")),
    }
    if out["cluster"]:
        out["node_id"] = cluster.get("node_id")
        out["dc"] = cluster.get("dc")
        out["ring_nodes"] = cluster.get("ring_nodes")
        out["up_nodes"] = cluster.get("up_nodes")
        out["n_replicas"] = cluster.get("n_effective", cluster.get("n_replicas"))
        out["consistency"] = {"read": cluster.get("read_consistency"),
                              "write": cluster.get("write_consistency")}
        out["peers"] = {k[len("peer_"):]: v for k, v in cluster.items()
                        if k.startswith("peer_") and isinstance(v, dict)}
    return out


def format_table(target: str, s: dict[str, Any]) -> str:
    def human_bytes(n: Any) -> str:
        if not isinstance(n, int):
            return "?"
        for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if n >= size:
                return f"{n / size:.1f}{unit}"
        return f"{n}B"

    rows = [
        ("node", target),
        ("version", f"respkv {s['version']} (redis protocol {s['redis_version']}), pid {s['pid']}"),
        ("uptime", human_duration(s["uptime_seconds"] or 0)),
        ("clients", f"{s['connected_clients']} connected, {s['maxclients']} max"),
        ("commands", f"{s['total_commands_processed']} processed, "
                     f"{s['instantaneous_ops_per_sec']} ops/s"),
        ("keys", ", ".join(f"{db}={n}" for db, n in s["keys"].items()) or "none"),
        ("memory", f"{human_bytes(s['used_memory_rss'])} resident"),
        ("storage", f"{s['engine']}, appendfsync {s['appendfsync']}, "
                    f"last write {s['aof_last_write_status']}"),
    ]
    if s["cluster"]:
        rows.append(("cluster", f"node {s['node_id']} in {s['dc']}: {s['up_nodes']} of "
                                f"{s['ring_nodes']} nodes up, N={s['n_replicas']}, "
                                f"R={s['consistency']['read']} W={s['consistency']['write']}"))
    else:
        rows.append(("cluster", "no (a single node)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    peers = s.get("peers") or {}
    if peers:
        lines.append("")
        header = ("peer", "address", "state", "outstanding", "sent", "refused", "connects")
        table = [header] + [
            (name, str(p.get("address", "")), str(p.get("state", "")), str(p.get("outstanding", "")),
             str(p.get("sent", "")), str(p.get("refused", "")), str(p.get("connects", "")))
            for name, p in sorted(peers.items())
        ]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


# -- tables and progress --------------------------------------------------------------------------


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, dict):
        return ",".join(f"{k}={_cell(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ",".join(_cell(x) for x in v)
    return str(v)


def render_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """``rows`` as an aligned text table; ``columns`` are (key, header). Missing keys are blank;
    trailing spaces are stripped."""
    table = [[h for _, h in columns]] + [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                   + "\n" for line in table)


def render_fields(d: dict[str, Any]) -> str:
    """A map as ``key  value`` lines (nested maps as ``k=v,...``)."""
    if not d:
        return ""
    width = max(len(str(k)) for k in d)
    return "".join(f"{k:<{width}}  {_cell(v)}".rstrip() + "\n" for k, v in d.items())


def percent(share: Any) -> str:
    return f"{share * 100:.1f}%" if isinstance(share, int | float) else ""


RING_COLUMNS = [("node", "node"), ("dc", "dc"), ("rack", "rack"), ("status", "status"),
                ("state", "state"), ("phi", "phi"), ("vnodes", "vnodes"), ("owns", "owns"),
                ("replicated", "replicated"), ("address", "address")]


def format_ring(rows: list[dict[str, Any]]) -> str:
    """RESPKV RING as a table, this node marked with ``*``: ``owns`` is the share of the token
    space the node is the first replica of, ``replicated`` the share it holds a replica of."""
    shown = []
    for r in rows:
        shown.append({**r, "node": ("*" if r.get("self") else "") + str(r.get("node", "")),
                      "owns": percent(r.get("ownership")),
                      "replicated": percent(r.get("replicated"))})
    up = sum(1 for r in rows if r.get("state") == "up")
    return (render_table(shown, RING_COLUMNS)
            + f"\n{len(rows)} members, {up} up; * = the node asked\n")


def format_hints(h: dict[str, Any]) -> str:
    """RESPKV HINTS: the counters, then one row per target with hints pending."""
    pending = h.get("pending") or {}
    rest = {k: v for k, v in h.items() if k != "pending"}
    out = render_fields(rest)
    if pending:
        out += "\n" + render_table([{"target": t, "pending": n} for t, n in
                                    sorted(pending.items())],
                                   [("target", "target"), ("pending", "hints pending")])
    else:
        out += "\nno hints pending\n"
    return out


def progress_bar(fraction: float, width: int = 30) -> str:
    """``[#########---------------------]  30.0%``; fraction clamped to [0, 1]."""
    f = min(1.0, max(0.0, float(fraction)))
    full = int(f * width)
    return "[" + "#" * full + "-" * (width - full) + f"] {f * 100:5.1f}%"


TERMINAL_STATES = ("done", "failed", "idle", "cancelled")


def job_fraction(st: dict[str, Any]) -> float:
    """A long operation's progress (docs/admin.md: ``done`` of ``total`` steps)."""
    if st.get("state") == "done":
        return 1.0
    done, total = st.get("done"), st.get("total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return done / total
    return 0.0


def progress_line(kind: str, st: dict[str, Any], elapsed_s: float) -> str:
    detail = ""
    if isinstance(st.get("total"), int) and st["total"]:
        detail = f" {st.get('done', 0)}/{st['total']}"
    return (f"{kind} {progress_bar(job_fraction(st))} {st.get('state', '?')}{detail}"
            f" {elapsed_s:.0f}s")


# -- the command --------------------------------------------------------------------------------


def _connection_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """-h/-p/-a as redis-cli spells them (and the long forms). On the subcommands the defaults
    are suppressed, so options given before the subcommand are kept."""

    def d(v: Any) -> Any:
        return argparse.SUPPRESS if suppress else v

    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "--host", default=d("127.0.0.1"), help="node address (127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=d(6379), help="client port (6379)")
    p.add_argument("-a", "--password", default=d(None), help="AUTH with this password first")
    p.add_argument("--tls", action="store_true", default=d(False), help="connect with TLS")
    p.add_argument("--cacert", default=d(None), help="CA file to verify the node's certificate")
    p.add_argument("--timeout", type=float, default=d(5.0), help="seconds per request (5)")
    p.add_argument("--json", action="store_true", default=d(False), help="print JSON")


def add_admin_parser(sub: Any) -> None:
    p = sub.add_parser("admin", help="ask a running node (status, ring, hints, repair, "
                       "purge, decommission, join)", add_help=False)
    _connection_options(p, suppress=False)
    asub = p.add_subparsers(dest="admin_command", required=True)

    def verb(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        v = asub.add_parser(name, help=help_, add_help=False)
        _connection_options(v, suppress=True)
        v.set_defaults(func=func)
        return v

    verb("status", "what the node says about itself (INFO, summarised)", cmd_admin_status)
    verb("ring", "the ring: every member, up/down, phi, vnodes, ownership", cmd_admin_ring)
    verb("hints", "hinted handoff: hints pending per target", cmd_admin_hints)
    for name, help_ in (("repair", "start an anti-entropy repair (progress bar) or show it"),
                        ("purge", "start a sweep of keys dead for gc_grace_seconds, or show it"),
                        ("decommission", "stream this node's ranges away and leave the ring")):
        v = verb(name, help_, cmd_admin_job)
        v.add_argument("action", nargs="?", choices=("start", "status"), default="status",
                       help="start it (and follow it), or show its state (default)")
        v.add_argument("--no-wait", action="store_true", help="start and return at once")
        v.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    v = verb("removenode", "remove a member that is down for good (its ranges are refilled "
             "from the other replicas)", cmd_admin_job)
    v.add_argument("action", nargs="?", choices=("start", "status"), default="status",
                   help="start it (and follow it), or show its state (default)")
    v.add_argument("node", nargs="?", default=None, help="the member's node id (with start)")
    v.add_argument("--no-wait", action="store_true", help="start and return at once")
    v.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    v = verb("join", "join a cluster through a seed", cmd_admin_join)
    v.add_argument("seed", metavar="HOST:PEERPORT")
    v.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait until this node is a NORMAL member of a ring of 2+ nodes")


def _connect(ns: argparse.Namespace, resp3: bool) -> RespConnection:
    tls = None
    if ns.tls or ns.cacert:
        tls = ssl.create_default_context(cafile=ns.cacert)
    conn = RespConnection(ns.host, ns.port, ns.timeout, tls)
    try:
        if ns.password is not None:
            conn.call("AUTH", ns.password)
        if resp3:
            conn.call("HELLO", "3")
    except AdminError:
        conn.close()
        raise
    return conn


def _fail(ns: argparse.Namespace, e: AdminError) -> int:
    msg = str(e)
    if msg.startswith("ERR unknown command 'RESPKV'") or msg.startswith(
            "ERR unknown command 'respkv'"):
        msg = "not a cluster node (RESPKV is served in cluster mode only)"
    print(f"respkv admin: {ns.host}:{ns.port}: {msg}", file=sys.stderr)
    return 1


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _respkv(ns: argparse.Namespace, *args: str) -> Any:
    conn = _connect(ns, resp3=True)
    try:
        return _text(conn.call("RESPKV", *args))
    finally:
        conn.close()


def cmd_admin_status(ns: argparse.Namespace) -> int:
    target = f"{ns.host}:{ns.port}"
    try:
        conn = _connect(ns, resp3=False)
        try:
            raw = conn.call("INFO", "everything")
        finally:
            conn.close()
    except AdminError as e:
        return _fail(ns, e)
    info = parse_info(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    s = summary(info)
    if ns.json:
        _print_json({"node": target, "summary": s, "info": info})
    else:
        sys.stdout.write(format_table(target, s))
    return 0


def _view(sub: str, render: Any) -> Any:
    """A read-only admin verb: ``RESPKV <sub>``, printed as JSON or by ``render``."""

    def cmd(ns: argparse.Namespace) -> int:
        try:
            data = _respkv(ns, sub)
        except AdminError as e:
            return _fail(ns, e)
        if ns.json:
            _print_json(data)
        else:
            sys.stdout.write(render(data))
        return 0

    return cmd


cmd_admin_ring = _view("RING", format_ring)
cmd_admin_hints = _view("HINTS", format_hints)


def cmd_admin_job(ns: argparse.Namespace) -> int:
    """repair / purge / decommission: STATUS once, or START and poll STATUS with a progress bar on
    stderr until the job is done, failed or gone; exit 1 unless it is done."""
    kind = ns.admin_command
    sub = kind.upper()
    extra: tuple[str, ...] = ()
    if kind == "removenode" and ns.action == "start":
        if not ns.node:
            print("respkv admin: removenode start needs the member's node id", file=sys.stderr)
            return 2
        extra = (ns.node,)
    try:
        st = _respkv(ns, sub, ns.action.upper(), *extra)
        if ns.action == "start" and not ns.no_wait:
            tty = sys.stderr.isatty()
            t0 = time.monotonic()
            last = ""
            while st.get("state") not in TERMINAL_STATES:
                line = progress_line(kind, st, time.monotonic() - t0)
                if tty:
                    sys.stderr.write("\r" + line)
                elif line.split(" ", 2)[:2] != last.split(" ", 2)[:2]:
                    sys.stderr.write(line + "\n")
                sys.stderr.flush()
                last = line
                time.sleep(ns.interval)
                st = _respkv(ns, sub, "STATUS")
            sys.stderr.write(("\r" if tty else "") + progress_line(kind, st, time.monotonic()
                                                                   - t0) + "\n")
    except AdminError as e:
        return _fail(ns, e)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nrespkv admin: stopped following the {kind}; it goes on "
                         f"(`respkv admin {kind} status`)\n")
        return 130
    if ns.json:
        _print_json(st)
    else:
        sys.stdout.write(render_fields(st))
    if ns.action == "start" and not ns.no_wait:
        return 0 if st.get("state") == "done" else 1
    return 1 if st.get("state") == "failed" else 0


def cmd_admin_join(ns: argparse.Namespace) -> int:
    try:
        reply = _respkv(ns, "JOIN", ns.seed)
        if ns.wait > 0:
            deadline = time.monotonic() + ns.wait
            while True:
                st = _respkv(ns, "STATUS")
                if st.get("status") == "normal" and (st.get("ring_nodes") or 0) > 1:
                    reply = {**reply, "status": st}
                    break
                if time.monotonic() > deadline:
                    raise AdminError(f"not a NORMAL member of a multi-node ring after "
                                     f"{ns.wait:g}s (status {st.get('status')}, ring "
                                     f"{st.get('ring_nodes')} nodes)")
                time.sleep(0.2)
    except AdminError as e:
        return _fail(ns, e)
    if ns.json:
        _print_json(reply)
    else:
        sys.stdout.write(render_fields(reply))
    return 0
