"""RESPKV: the operator's view of a cluster node, for ``respkv admin`` (docs/admin.md).

``RESPKV STATUS | RING | HINTS | REPAIR [START|STATUS] | PURGE [START|STATUS] |
DECOMMISSION [START|STATUS] |
REMOVENODE [START node-id | STATUS] | JOIN host:peerport | HELP``. Replies are maps in RESP3 and flat arrays in RESP2 (``RING`` is an
array of maps); the CLI speaks RESP3 and prints them as tables or JSON.

Sans I/O, like every handler: they read the node's ``Cluster`` (``client.server.cluster``) and
never wait. Long work (repair, decommission) is *started* by ``START`` -- the cluster runs it in
its own task -- and followed by polling ``STATUS``; the CLI draws its progress bar that way.

The Cluster interface these handlers call is docs/admin.md (the method names and dict shapes;
implemented by respkv/node/topology.py): ``admin_status()``, ``admin_ring()``,
``admin_hints()``, ``admin_repair(action)``, ``admin_decommission(action)``,
``admin_join(seed)``, ``admin_removenode(action, node_id)``, ``action`` being ``"start"`` or ``"status"``. A cluster without the method
answers ``ERR RESPKV <SUB> is not available on this node``. A method refuses (the only member
cannot leave, the node holds data and cannot join) by raising ``ValueError`` or
``RuntimeError`` with the reason: ``ERR RESPKV <SUB>: <reason>``.

Registered only in cluster mode (by ``cluster_cmds.register``), so a single node's command table
stays redis-server's.
"""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import Client
from respkv.commands.errors import CommandError

ACTIONS = ("start", "status")

_HELP = (
    "STATUS",
    "    This node: id, datacenter, membership status, ring and up counts, N and levels.",
    "RING",
    "    Every member: dc, rack, status, up/down, phi, vnodes, ownership, replicated share.",
    "HINTS",
    "    Hinted handoff: hints pending per target node, replay counters.",
    "REPAIR [START|STATUS]",
    "    Start an anti-entropy repair of this node's ranges, or show its progress.",
    "PURGE [START|STATUS]",
    "    Start a sweep removing keys dead for gc_grace_seconds, or show its progress.",
    "DECOMMISSION [START|STATUS]",
    "    Start streaming this node's ranges away and leave the ring, or show progress.",
    "REMOVENODE [START <node-id>|STATUS]",
    "    Remove a member that is down for good (it cannot decommission): its row is written",
    "    LEFT, and the nodes that gain its ranges pull them from the other replicas.",
    "JOIN <host:peerport>",
    "    Contact a seed and join its cluster.",
)

_spec: Any = None


def register(table: Any) -> None:
    """Add RESPKV to ``table`` (a cluster node's own command table)."""
    global _spec
    if _spec is not None:
        table.register(_spec)
        return
    from respkv.commands.server import Container, help_reply

    c = Container("respkv", -2, "cluster", "Operate a respkv cluster node (respkv admin)",
                  "respkv", flags="admin loading stale", table=None)
    c.sub("status", 2, "admin loading stale", "This node's cluster status", "respkv")(
        respkv_status)
    c.sub("ring", 2, "admin loading stale", "The ring's members and their ownership",
          "respkv", "O(N) with N the vnodes")(respkv_ring)
    c.sub("hints", 2, "admin loading stale", "Hints pending per target", "respkv")(respkv_hints)
    c.sub("repair", -2, "admin", "Start or follow an anti-entropy repair", "respkv")(
        respkv_repair)
    c.sub("purge", -2, "admin", "Start or follow a sweep of keys dead for gc_grace_seconds",
          "respkv")(respkv_purge)
    c.sub("decommission", -2, "admin", "Start or follow this node's decommission", "respkv")(
        respkv_decommission)
    c.sub("removenode", -2, "admin", "Remove a member that is down for good, or follow it",
          "respkv")(respkv_removenode)
    c.sub("join", 3, "admin", "Join a cluster through a seed", "respkv")(respkv_join)
    c.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
          "respkv")(lambda client, args: help_reply("RESPKV", _HELP))
    _spec = c.spec
    table.register(_spec)


def _cluster(client: Client) -> Any:
    cluster = getattr(client.server, "cluster", None)
    if cluster is None:
        raise CommandError(E.CLUSTER_DISABLED)
    return cluster


def _call(client: Client, sub: str, method: str, *args: Any) -> Any:
    fn = getattr(_cluster(client), method, None)
    if fn is None:
        raise CommandError(E.ADMIN_UNAVAILABLE % sub)
    try:
        return fn(*args)
    except (ValueError, RuntimeError) as e:  # a refusal, with the reason for the operator
        raise CommandError(E.ADMIN_REFUSED % (sub, e)) from None


def _action(args: list[bytes], sub: str) -> str:
    if len(args) == 2:
        return "status"
    if len(args) > 3:
        raise CommandError(E.SYNTAX)
    action = args[2].lower().decode("utf-8", "replace")
    if action not in ACTIONS:
        raise CommandError(E.SYNTAX)
    return action


def respkv_status(client: Client, args: list[bytes]) -> Any:
    return _call(client, "STATUS", "admin_status")


def respkv_ring(client: Client, args: list[bytes]) -> Any:
    return _call(client, "RING", "admin_ring")


def respkv_hints(client: Client, args: list[bytes]) -> Any:
    return _call(client, "HINTS", "admin_hints")


def respkv_repair(client: Client, args: list[bytes]) -> Any:
    return _call(client, "REPAIR", "admin_repair", _action(args, "REPAIR"))


def respkv_purge(client: Client, args: list[bytes]) -> Any:
    return _call(client, "PURGE", "admin_purge", _action(args, "PURGE"))


def respkv_decommission(client: Client, args: list[bytes]) -> Any:
    return _call(client, "DECOMMISSION", "admin_decommission", _action(args, "DECOMMISSION"))


def respkv_removenode(client: Client, args: list[bytes]) -> Any:
    """``REMOVENODE`` / ``REMOVENODE STATUS``: the operation's state; ``REMOVENODE START id``."""
    if len(args) == 2 or (len(args) == 3 and args[2].lower() == b"status"):
        return _call(client, "REMOVENODE", "admin_removenode", "status")
    if len(args) != 4 or args[2].lower() != b"start":
        raise CommandError(E.SYNTAX)
    return _call(client, "REMOVENODE", "admin_removenode", "start",
                 args[3].decode("utf-8", "replace"))


def respkv_join(client: Client, args: list[bytes]) -> Any:
    seed = args[2].decode("utf-8", "replace")
    host, _, port = seed.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(E.ADMIN_REFUSED % ("JOIN", f"the seed must be host:peerport, got "
                                              f"{E.arg_text(args[2])!r}"))
    return _call(client, "JOIN", "admin_join", seed)
