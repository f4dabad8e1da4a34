"""`respkv admin` beyond status: the RESPKV command (STATUS, RING, and the verbs the Cluster
provides, docs/admin.md) and the CLI's tables, JSON and progress bar.

Unit tests call the handlers with a stand-in cluster and render fixed replies; the slow test
runs a real 3-node cluster (processes started and stopped by PID by LocalCluster)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import pytest
import redis

import respkv.commands  # noqa: F401  (the command table)
from respkv import admin
from respkv.commands import admin_cmds
from respkv.commands import errors as E
from respkv.commands.errors import CommandError
from respkv.testing.cluster import LocalCluster
from respkv.testing.procs import start_respkv


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "respkv.cli", "admin", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


# -- the handlers, with a stand-in cluster -----------------------------------------------------


class _Server:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster


class _Client:
    def __init__(self, cluster: Any) -> None:
        self.server = _Server(cluster)


class BareCluster:
    """A cluster without any admin_* method (what every node had before docs/admin.md)."""


class JobCluster:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def admin_repair(self, action: str) -> dict[str, Any]:
        self.calls.append(("repair", action))
        if action == "start" and ("repair", "start") in self.calls[:-1]:
            raise ValueError("a repair is already running")
        return {"state": "running", "progress": 0.0}

    def admin_join(self, seed: str) -> dict[str, Any]:
        self.calls.append(("join", seed))
        return {"seed": seed, "state": "dialing"}


def run(cluster: Any, *words: str) -> Any:
    args = [w.encode() for w in words]
    handler = {"hints": admin_cmds.respkv_hints, "repair": admin_cmds.respkv_repair,
               "decommission": admin_cmds.respkv_decommission,
               "join": admin_cmds.respkv_join}[words[1].lower()]
    return handler(_Client(cluster), args)  # type: ignore[arg-type]


@pytest.mark.parametrize("words, sub", [
    (("RESPKV", "HINTS"), "HINTS"),
    (("RESPKV", "REPAIR"), "REPAIR"),
    (("RESPKV", "REPAIR", "START"), "REPAIR"),
    (("RESPKV", "DECOMMISSION", "status"), "DECOMMISSION"),
    (("RESPKV", "JOIN", "127.0.0.1:17000"), "JOIN"),
])
def test_a_verb_the_cluster_lacks_is_a_clear_error(words: tuple[str, ...], sub: str) -> None:
    with pytest.raises(CommandError) as exc:
        run(BareCluster(), *words)
    assert str(exc.value) == f"ERR RESPKV {sub} is not available on this node"
    assert str(exc.value) == E.ADMIN_UNAVAILABLE % sub


def test_verbs_call_the_cluster_and_report_refusals() -> None:
    c = JobCluster()
    assert run(c, "RESPKV", "REPAIR") == {"state": "running", "progress": 0.0}
    assert run(c, "RESPKV", "REPAIR", "start")["state"] == "running"
    with pytest.raises(CommandError, match=r"^ERR RESPKV REPAIR: a repair is already running$"):
        run(c, "RESPKV", "REPAIR", "START")
    with pytest.raises(CommandError, match="^ERR syntax error$"):
        run(c, "RESPKV", "REPAIR", "later")
    with pytest.raises(CommandError, match="^ERR syntax error$"):
        run(c, "RESPKV", "REPAIR", "START", "now")
    assert c.calls == [("repair", "status"), ("repair", "start"), ("repair", "start")]
    assert run(c, "RESPKV", "JOIN", "10.0.0.1:17001") == {"seed": "10.0.0.1:17001",
                                                         "state": "dialing"}
    with pytest.raises(CommandError, match="must be host:peerport"):
        run(c, "RESPKV", "JOIN", "nohost")
    with pytest.raises(CommandError, match=E.CLUSTER_DISABLED):
        run(None, "RESPKV", "HINTS")


# -- the CLI's rendering ------------------------------------------------------------------------


RING = [
    {"node": "n0", "dc": "dc1", "rack": "rack1", "status": "normal", "state": "up", "phi": 0.0,
     "address": "127.0.0.1:17000", "vnodes": 64, "ownership": 0.3312, "replicated": 1.0,
     "self": True},
    {"node": "n1", "dc": "dc1", "rack": "rack1", "status": "leaving", "state": "down",
     "phi": 12.5, "address": "127.0.0.1:17001", "vnodes": 64, "ownership": 0.33,
     "replicated": 1.0, "self": False},
]


def test_ring_table() -> None:
    text = admin.format_ring(RING)
    lines = text.splitlines()
    assert lines[0].split() == ["node", "dc", "rack", "status", "state", "phi", "vnodes", "owns",
                                "replicated", "address"]
    assert lines[1].split() == ["*n0", "dc1", "rack1", "normal", "up", "0.00", "64", "33.1%",
                                "100.0%", "127.0.0.1:17000"]
    assert lines[2].split()[:6] == ["n1", "dc1", "rack1", "leaving", "down", "12.50"]
    assert len({ln.index("dc1") for ln in lines[1:3]}) == 1  # columns aligned
    assert lines[-1] == "2 members, 1 up; * = the node asked"
    assert all(ln == ln.rstrip() for ln in lines)


def test_table_fields_hints_and_progress() -> None:
    assert admin.render_table([{"a": 1, "b": None}, {"a": "long value"}],
                              [("a", "A"), ("b", "B")]) == (
        "A           B\n1\nlong value\n")
    assert admin.render_fields({"state": "running", "ok": True, "x": {"a": 1}}) == (
        "state  running\nok     yes\nx      a=1\n")
    hints = admin.format_hints({"hinted_handoff": "on", "hints_replayed": 5,
                                "pending": {"n2": 7, "n1": 3}})
    assert "hints_replayed  5" in hints
    assert hints.splitlines()[-3:] == ["target  hints pending", "n1      3", "n2      7"]
    assert admin.format_hints({"pending": {}}).endswith("no hints pending\n")
    assert admin.progress_bar(0) == "[" + "-" * 30 + "]   0.0%"
    assert admin.progress_bar(0.5, 10) == "[#####-----]  50.0%"
    assert admin.progress_bar(7) == "[" + "#" * 30 + "] 100.0%"
    assert admin.job_fraction({"state": "running", "done": 3, "total": 12}) == 0.25
    assert admin.job_fraction({"state": "running", "done": 0, "total": 0}) == 0.0
    assert admin.job_fraction({"state": "done", "done": 0, "total": 0}) == 1.0
    line = admin.progress_line("repair", {"state": "running", "done": 4, "total": 16}, 3.2)
    assert line == "repair [#######-----------------------]  25.0% running 4/16 3s"


def test_resp3_replies_are_read_as_maps() -> None:
    class Fake(admin.RespConnection):
        def __init__(self, data: bytes) -> None:  # no socket
            self.buf = data

        def _fill(self) -> None:
            raise admin.AdminError("short")

    reply = Fake(b"%3\r\n+state\r\n$7\r\nrunning\r\n+progress\r\n,0.5\r\n"
                 b"+pending\r\n%1\r\n$2\r\nn1\r\n:4\r\n").read()
    assert admin._text(reply) == {"state": "running", "progress": 0.5, "pending": {"n1": 4}}
    assert Fake(b"*2\r\n#t\r\n_\r\n").read() == [True, None]
    with pytest.raises(admin.AdminError, match="^ERR RESPKV HINTS is not available"):
        Fake(b"-ERR RESPKV HINTS is not available on this node\r\n").read()


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    admin.add_admin_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["admin", *argv])


def test_options_before_or_after_the_verb() -> None:
    ns = parse("-h", "10.1.1.1", "-p", "7001", "-a", "pw", "--json", "ring")
    assert (ns.host, ns.port, ns.password, ns.json, ns.func) == (
        "10.1.1.1", 7001, "pw", True, admin.cmd_admin_ring)
    ns = parse("repair", "start", "--port", "7002", "--no-wait")
    assert (ns.host, ns.port, ns.action, ns.no_wait, ns.json) == (
        "127.0.0.1", 7002, "start", True, False)
    assert parse("-p", "7003", "decommission").action == "status"
    assert parse("join", "h:1").seed == "h:1"


def test_repair_start_polls_and_draws_progress(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    states = iter([{"operation": "repair", "state": "running", "done": 0, "total": 0},
                   {"operation": "repair", "state": "running", "done": 2, "total": 4},
                   {"operation": "repair", "state": "done", "done": 4, "total": 4,
                    "result": {"keys_repaired": 9}}])
    asked: list[tuple[str, ...]] = []

    def fake(ns: argparse.Namespace, *args: str) -> Any:
        asked.append(args)
        return next(states)

    monkeypatch.setattr(admin, "_respkv", fake)
    ns = parse("--json", "repair", "start", "--interval", "0")
    assert ns.func(ns) == 0
    out = capsys.readouterr()
    assert asked == [("REPAIR", "START"), ("REPAIR", "STATUS"), ("REPAIR", "STATUS")]
    assert json.loads(out.out)["result"] == {"keys_repaired": 9}
    assert "repair [" in out.err and " 50.0% running 2/4" in out.err
    assert out.err.rstrip().splitlines()[-1].startswith("repair [" + "#" * 30 + "] 100.0% done")
    failed = iter([{"state": "running"}, {"state": "failed", "error": "n2 unreachable"}])
    monkeypatch.setattr(admin, "_respkv", lambda ns, *a: next(failed))
    ns = parse("decommission", "start", "--interval", "0")
    assert ns.func(ns) == 1
    assert "error  n2 unreachable" in capsys.readouterr().out


# -- against real nodes --------------------------------------------------------------------------


def test_ring_of_a_single_node_is_refused() -> None:
    sp = start_respkv(engine="memory")
    try:
        r = cli("-p", str(sp.port), "ring")
    finally:
        sp.stop()
    assert r.returncode == 1
    assert r.stderr == (f"respkv admin: 127.0.0.1:{sp.port}: not a cluster node (RESPKV is "
                        "served in cluster mode only)\n")


@pytest.mark.slow
def test_status_ring_and_refusals_on_a_three_node_cluster() -> None:
    cluster = LocalCluster(3, engine="memory")
    try:
        port = str(cluster.ports[1])
        conn = admin.RespConnection("127.0.0.1", cluster.ports[1], 10, None)
        try:
            flat = conn.call("RESPKV", "STATUS")  # RESP2: a flat array
        finally:
            conn.close()
        c3 = redis.Redis(port=cluster.ports[1], protocol=3, socket_timeout=10)
        status3 = c3.execute_command("RESPKV", "STATUS")  # RESP3: a map
        ring3 = c3.execute_command("RESPKV", "RING")
        help_ = c3.execute_command("RESPKV", "HELP")
        with pytest.raises(redis.ResponseError, match="^unknown subcommand 'NOPE'. Try RESPKV HELP"):
            c3.execute_command("RESPKV", "NOPE")
        ring = cli("-p", port, "ring")
        ring_json = cli("--json", "-p", port, "ring")
        hints = cli("hints", "-p", port)
        hints_json = cli("hints", "-p", port, "--json")
        repair = cli("-p", port, "--json", "repair", "status")
        decommission = cli("-p", port, "decommission")
        join = cli("-p", port, "join", "127.0.0.1:1")
    finally:
        cluster.stop()
    status = dict(zip(flat[::2], flat[1::2], strict=True))
    assert status[b"node_id"] == b"n1" and status[b"ring_nodes"] == 3
    assert status[b"up_nodes"] == 3 and status[b"status"] == b"normal"
    assert status3[b"n_effective"] == 3 and status3[b"hints_pending"] == 0
    assert len(ring3) == 3 and {r[b"node"] for r in ring3} == {b"n0", b"n1", b"n2"}
    assert any(b"REPAIR [START|STATUS]" in line for line in help_)

    assert ring.returncode == 0, ring.stderr
    lines = ring.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:4]] == ["n0", "*n1", "n2"]
    assert all(ln.split()[3:5] == ["normal", "up"] for ln in lines[1:4])
    assert lines[-1] == "3 members, 3 up; * = the node asked"
    rows = json.loads(ring_json.stdout)
    assert [r["node"] for r in rows] == ["n0", "n1", "n2"]
    assert [r["self"] for r in rows] == [False, True, False]
    assert all(r["state"] == "up" and r["vnodes"] > 0 for r in rows)
    assert sum(r["ownership"] for r in rows) == pytest.approx(1.0, abs=1e-3)
    assert all(r["replicated"] == pytest.approx(1.0) for r in rows)  # N = 3 of 3 nodes

    assert hints.returncode == 0, hints.stderr
    assert hints.stdout.endswith("no hints pending\n")
    assert json.loads(hints_json.stdout)["total_pending"] == 0
    assert repair.returncode == 0, repair.stderr
    assert json.loads(repair.stdout)["state"] == "idle"
    assert decommission.returncode == 0 and "state" in decommission.stdout
    assert join.returncode == 1
    assert join.stderr == (f"respkv admin: 127.0.0.1:{port}: ERR RESPKV JOIN: this node is "
                           "already a member of a cluster\n")


def test_removenode_start_sends_the_node_id_and_follows(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    states = iter([{"operation": "removenode", "state": "running", "done": 0, "total": 1},
                   {"operation": "removenode", "state": "done", "done": 1, "total": 1,
                    "result": {"removed": "n3", "refill_keys": 12}}])
    asked: list[tuple[str, ...]] = []

    def fake(ns: argparse.Namespace, *args: str) -> Any:
        asked.append(args)
        return next(states)

    monkeypatch.setattr(admin, "_respkv", fake)
    ns = parse("--json", "removenode", "start", "n3", "--interval", "0")
    assert ns.func(ns) == 0
    assert asked == [("REMOVENODE", "START", "n3"), ("REMOVENODE", "STATUS")]
    assert json.loads(capsys.readouterr().out)["result"]["removed"] == "n3"
    ns = parse("removenode", "start")  # no node id: a usage error, nothing sent
    assert ns.func(ns) == 2 and "needs the member's node id" in capsys.readouterr().err
    monkeypatch.setattr(admin, "_respkv", lambda ns, *a: asked.append(a) or {"state": "idle"})
    ns = parse("removenode")
    assert ns.func(ns) == 0 and asked[-1] == ("REMOVENODE", "STATUS")


def test_removenode_command_parses_its_arguments() -> None:
    calls: list[tuple[str, str]] = []

    class C:
        def admin_removenode(self, action: str, node_id: str = "") -> dict[str, str]:
            calls.append((action, node_id))
            return {"state": "running"}

    cl = _Client(C())
    h = admin_cmds.respkv_removenode
    h(cl, [b"RESPKV", b"REMOVENODE"])  # type: ignore[arg-type]
    h(cl, [b"RESPKV", b"REMOVENODE", b"status"])  # type: ignore[arg-type]
    h(cl, [b"RESPKV", b"REMOVENODE", b"START", b"n7"])  # type: ignore[arg-type]
    assert calls == [("status", ""), ("status", ""), ("start", "n7")]
    for bad in ([b"RESPKV", b"REMOVENODE", b"START"], [b"RESPKV", b"REMOVENODE", b"GO", b"n7"],
                [b"RESPKV", b"REMOVENODE", b"START", b"n7", b"x"]):
        with pytest.raises(CommandError, match="^ERR syntax error$"):
            h(cl, bad)  # type: ignore[arg-type]
