"""Cluster-mode commands: CONSISTENCY (per-connection levels) and SIBLINGS (every version).

Both are pure. They are registered in the command table only in cluster mode (``register()``,
called by the node's ``Cluster``), so a single node's command table -- COMMAND, COMMAND COUNT,
unknown-command errors -- stays exactly redis-server's. In cluster mode the node sets
``server.cluster`` (an object with ``describe_levels(client)`` and ``check_level(level)``) and
runs keyed commands against a cluster view whose ``sibling_set(key)`` is the merged quorum read;
called without those, both reply ``CLUSTER_DISABLED``.
"""

from __future__ import annotations

from typing import Any

from respkv.cluster.quorum import InvalidLevelError, parse_level
from respkv.cluster.versions import encode_context
from respkv.commands import errors as E
from respkv.commands.core import Client
from respkv.commands.errors import CommandError
from respkv.protocol.resp import OK

_commands: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = []


def cmd(*a: Any, **kw: Any) -> Any:
    """Like ``TABLE.command`` but deferred until :func:`register`."""

    def deco(fn: Any) -> Any:
        _commands.append((a, kw, fn))
        return fn

    return deco


def register(table: Any) -> None:
    """Add CONSISTENCY, SIBLINGS and RESPKV (admin_cmds) to ``table``, a cluster node's own
    copy of TABLE (idempotent); the shared TABLE keeps exactly redis-server's commands."""
    for a, kw, fn in _commands:
        table.command(*a, **kw)(fn)
    from respkv.commands import admin_cmds

    admin_cmds.register(table)

_READ_WORDS = (b"READ", b"R")
_WRITE_WORDS = (b"WRITE", b"W")


def _cluster(client: Client) -> Any:
    cluster = getattr(client.server, "cluster", None)
    if cluster is None:
        raise CommandError(E.CLUSTER_DISABLED)
    return cluster


@cmd("consistency", -1, "fast", (0, 0, 0), "cluster",
     "Show or set this connection's read and write consistency levels (respkv)", since="respkv")
def consistency(client: Client, args: list[bytes]) -> Any:
    """``CONSISTENCY`` -> the current levels; ``CONSISTENCY [READ|R level] [WRITE|W level]``
    sets them (``DEFAULT`` returns to the server's). Levels: ONE TWO THREE QUORUM ALL LOCAL_ONE
    LOCAL_QUORUM EACH_QUORUM or an integer (at most N)."""
    cluster = _cluster(client)
    if len(args) == 1:
        return cluster.describe_levels(client)
    if len(args) % 2 == 0:
        raise CommandError(E.SYNTAX)
    read = client.read_level
    write = client.write_level
    for i in range(1, len(args), 2):
        word, raw = args[i].upper(), args[i + 1]
        if raw.upper() == b"DEFAULT":
            level = None
        else:
            try:
                level = cluster.check_level(parse_level(raw))
            except InvalidLevelError as e:
                raise CommandError(E.INVALID_LEVEL % e) from None
        if word in _READ_WORDS:
            read = level
        elif word in _WRITE_WORDS:
            write = level
        else:
            raise CommandError(E.SYNTAX)
    client.read_level = read
    client.write_level = write
    return OK


@cmd("siblings", 2, "readonly", (1, 1, 1), "cluster",
     "Get the causal context and every concurrent version of a key (respkv)", since="respkv")
def siblings(client: Client, args: list[bytes]) -> Any:
    """A map ``{context, siblings: [{value, deleted, expire_at_ms, timestamp_ms, dot}]}`` (a
    flat array in RESP2). Pass the context back with ``SET key value CONTEXT ctx`` to replace
    exactly the siblings shown."""
    get = getattr(client.db, "sibling_set", None)
    if get is None:
        raise CommandError(E.CLUSTER_DISABLED)
    s = get(args[1])
    now = client.server.clock_ms()
    out = []
    for sib in s.siblings:
        expired = bool(sib.expire_at_ms and sib.expire_at_ms <= now)
        out.append({
            "value": sib.value,
            "deleted": 1 if sib.value is None or expired else 0,
            "expire_at_ms": sib.expire_at_ms,
            "timestamp_ms": sib.timestamp_ms,
            "dot": f"{sib.dot.node}:{sib.dot.counter}",
        })
    return {"context": encode_context(s.clock), "siblings": out}
