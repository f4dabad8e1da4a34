"""``respkv admin status``: what one node says about itself, as a readable table or as JSON.

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
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b":":
            return int(rest)
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


# -- the command --------------------------------------------------------------------------------


def add_admin_parser(sub: Any) -> None:
    p = sub.add_parser("admin", help="ask a running node (status)")
    asub = p.add_subparsers(dest="admin_command", required=True)
    s = asub.add_parser("status", help="what the node says about itself (INFO, summarised)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=6379)
    s.add_argument("--password", default=None, help="AUTH with this password first")
    s.add_argument("--tls", action="store_true", help="connect with TLS")
    s.add_argument("--cacert", default=None, help="CA file to verify the node's certificate")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds")
    s.add_argument("--json", action="store_true", help="print JSON: the summary and every section")
    s.set_defaults(func=cmd_admin_status)


def cmd_admin_status(ns: argparse.Namespace) -> int:
    tls = None
    if ns.tls or ns.cacert:
        tls = ssl.create_default_context(cafile=ns.cacert)
    target = f"{ns.host}:{ns.port}"
    try:
        conn = RespConnection(ns.host, ns.port, ns.timeout, tls)
        try:
            if ns.password is not None:
                conn.call("AUTH", ns.password)
            raw = conn.call("INFO", "everything")
        finally:
            conn.close()
    except AdminError as e:
        print(f"respkv admin: {target}: {e}", file=sys.stderr)
        return 1
    info = parse_info(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    s = summary(info)
    if ns.json:
        json.dump({"node": target, "summary": s, "info": info}, sys.stdout, indent=2,
                  sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(target, s))
    return 0
