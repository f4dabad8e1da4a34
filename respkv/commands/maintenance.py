"""The server and connection commands of Redis 7.0 that belong to what respkv is not: a process
with an AOF (BGREWRITEAOF), a debugger (DEBUG), a replica (REPLICAOF, SLAVEOF), a Redis Cluster
node (READONLY, READWRITE, ASKING), and LOLWUT. Sans I/O. Checked against redis-server 7.0 by
compat/test_maintenance_compat.py; the differences are in docs/compatibility.md.

Contracts:

* **BGREWRITEAOF** shrinks what respkv has instead of an AOF, the commit log: the node seals the
  active memtable (``server.rewrite_aof()``, respkv/node/server.py), its background worker
  flushes it to a table and deletes the commit-log files that table covers. Redis's replies:
  "started", "scheduled" inside EXEC (the node starts it anyway: the flush is background work
  either way), "already in progress" while an earlier one's flush is pending. INFO persistence
  ``aof_rewrite_in_progress``, ``aof_rewrites``... report it (the node's provider). Without a
  node there is no commit log, and it is "started" and done. Cluster mode: this node's log only.
* **DEBUG** is refused unless ``enable_debug_command`` allows it (redis-server 7.0's default,
  ``no``, refuses it; the check is ``core.protected_refusal``, made before the command is run or
  queued, as Redis's). Subcommands: SLEEP, OBJECT, SET-ACTIVE-EXPIRE, HELP; any other one gets
  Redis's unknown-subcommand error. DEBUG SLEEP stops **this connection**, not the server: the
  handler asks the node (``server.sleep_client(client, us)``) to wait after the command, before
  the connection's next command; replies keep their order and other clients are served
  meanwhile. The slept time is the command's run time in INFO commandstats and the slow log,
  as in Redis.
* **REPLICAOF / SLAVEOF**: NO ONE answers OK (respkv never follows a master: nothing to stop);
  host port answers Redis's port error for a bad port, else an error saying how respkv
  replicates instead (``E.REPLICAOF_REASON``).
* **READONLY / READWRITE / ASKING**: a single node answers as redis-server with cluster support
  disabled; a cluster node answers OK (any node serves any key: there are no replica-only nodes
  to allow reads on, and no -ASK redirects to follow). READONLY does not lower the connection's
  read consistency: CONSISTENCY R ONE does that.
"""

from __future__ import annotations

import re
from typing import Any

from respkv import __version__ as RESPKV_VERSION
from respkv.commands import errors as E
from respkv.commands.connection import REDIS_VERSION
from respkv.commands.core import Client, parse_int, protected_refusal
from respkv.commands.errors import CommandError, RejectedError
from respkv.commands.keys import object_encoding_of, object_refcount_of
from respkv.commands.server import command, help_reply
from respkv.protocol import rdb
from respkv.protocol.resp import OK, SimpleString, Verbatim

# -- BGREWRITEAOF --------------------------------------------------------------------------------

AOF_REWRITE_STARTED = SimpleString("Background append only file rewriting started")
AOF_REWRITE_SCHEDULED = SimpleString("Background append only file rewriting scheduled")


@command("bgrewriteaof", 1, "admin noscript no_async_loading",
         summary="Asynchronously rewrite the append-only file")
def bgrewriteaof(client: Client, args: list[bytes]) -> Any:
    """``server.rewrite_aof()`` (the node's) answers "started", "in_progress" or "failed"."""
    start = getattr(client.server, "rewrite_aof", None)
    outcome = start() if start is not None else "started"
    if outcome == "in_progress":
        raise CommandError(E.AOF_REWRITE_IN_PROGRESS)
    if outcome != "started":
        raise CommandError(E.AOF_REWRITE_FAILED)
    return AOF_REWRITE_SCHEDULED if client.executing >= 0 else AOF_REWRITE_STARTED


# -- LOLWUT --------------------------------------------------------------------------------------


def lolwut_text() -> str:
    """The line every LOLWUT answers with (respkv draws no art)."""
    return f"respkv ver. {RESPKV_VERSION} (Redis ver. {REDIS_VERSION} compatible)\n"


@command("lolwut", -1, "readonly fast", summary="Display some computer art and the Redis version",
         since="5.0.0")
def lolwut(client: Client, args: list[bytes]) -> Any:
    """LOLWUT [VERSION v] [art arguments]: Redis's argument checks (VERSION's integer; versions
    5 and 6 read up to three or two integers after it), then ``lolwut_text()`` as a verbatim
    string, where redis-server draws art above its own version line."""
    rest = args[1:]
    version = None
    if len(args) >= 3 and args[1].lower() == b"version":
        version = parse_int(args[2]) & 0xFFFFFFFF  # snprintf("%u.0.0")
        rest = args[3:]
    arity = {5: 3, 6: 2}.get(version, 0) if version is not None else 0
    for arg in rest[:arity]:
        parse_int(arg)  # getLongFromObjectOrReply: columns, squares/rows...
    return Verbatim(lolwut_text())


# -- DEBUG ---------------------------------------------------------------------------------------

_DEBUG_HELP = (
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop this connection (not the server) for <seconds>. Decimals allowed.",
)

_STRTOD = re.compile(rb"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_STRTOL = re.compile(rb"\s*([+-]?\d+)")
_LONG_MAX = (1 << 63) - 1


def strtod_prefix(b: bytes) -> float:
    """C strtod of a decimal: the longest number at the start (after spaces), 0.0 if none."""
    m = _STRTOD.match(b)
    return float(m.group(1)) if m else 0.0


def atoi(b: bytes) -> int:
    """C atoi as glibc computes it: strtol (clamped to a long), then cut to a 32-bit int."""
    m = _STRTOL.match(b)
    if not m:
        return 0
    v = max(-_LONG_MAX - 1, min(_LONG_MAX, int(m.group(1)))) & 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _stored_value(client: Client, key: bytes) -> bytes | None:
    """The value stored for ``key``, as redis-server's dictFind sees it: a single node's entry
    even if expired but not yet removed; a cluster node's own live copy (nil when it has none)."""
    cluster = getattr(client.server, "cluster", None)
    if cluster is not None:
        from respkv.cluster.versions import decode_sibling_set, live_value

        raw = cluster.replica.read_raw(client.dbnum, key)
        return live_value(decode_sibling_set(raw), client.server.clock_ms()) if raw else None
    db = client.db
    rec = db.engine.get(db.prefix + key)
    return None if rec is None else rec.value


def debug_object_line(value: bytes, address: int) -> str:
    """DEBUG OBJECT's line for a string value, in Redis's format with what respkv knows: the
    Python object's address, OBJECT REFCOUNT's and OBJECT ENCODING's rule, and the length of
    DUMP's serialization (type byte, trailer and CRC left out, as rdbSavedObjectLen counts;
    respkv never LZF-compresses). No ``lru``/``lru_seconds_idle``: access times are not kept."""
    serialized = len(rdb.dump_string(value)) - 11
    return "Value at:0x%x refcount:%d encoding:%s serializedlength:%d" % (
        address, object_refcount_of(value), object_encoding_of(value).decode(), serialized)


@command("debug", -2, "admin noscript loading stale", summary="A container for debugging commands",
         complexity="Depends on subcommand.")
def debug(client: Client, args: list[bytes]) -> Any:
    refusal = protected_refusal(client)
    if refusal is not None:
        raise RejectedError(refusal)
    sub = args[1].lower()
    n = len(args)
    if sub == b"help" and n == 2:
        return help_reply("DEBUG", _DEBUG_HELP)
    if sub == b"sleep" and n == 3:
        seconds = strtod_prefix(args[2])  # decimal only: no inf, nan or hex floats
        us = int(seconds * 1_000_000) if abs(seconds) < 1e12 else 0  # (long long): truncated
        if us <= 0:  # nanosleep refuses a negative time (and C's overflowed casts are < 0)
            return OK  # Redis answers at once
        sleep = getattr(client.server, "sleep_client", None)
        if sleep is not None:
            sleep(client, us)
        return OK
    if sub == b"object" and n == 3:
        value = _stored_value(client, args[2])
        if value is None:
            raise CommandError(E.NO_SUCH_KEY)
        return SimpleString(debug_object_line(value, id(value)))
    if sub == b"set-active-expire" and n == 3:
        client.server.active_expire_enabled = atoi(args[2]) != 0
        return OK
    raise CommandError(E.SUBCOMMAND_SYNTAX % (E.arg_text(args[1]), "DEBUG"))


# -- REPLICAOF, SLAVEOF --------------------------------------------------------------------------


def _replicaof(client: Client, args: list[bytes]) -> Any:
    if args[1].lower() == b"no" and args[2].lower() == b"one":
        return OK  # not a replica: nothing to stop
    port = parse_int(args[2], E.INVALID_MASTER_PORT)
    if not 0 <= port <= 65535:
        raise CommandError(E.INVALID_MASTER_PORT)
    raise CommandError(E.MULTI_UNSUPPORTED % (E.arg_text(args[0]).upper(), E.REPLICAOF_REASON))


_REPLICAOF_SUMMARY = "Make the server a replica of another instance, or promote it as master."
command("replicaof", 3, "admin noscript stale no_async_loading", summary=_REPLICAOF_SUMMARY,
        since="5.0.0")(_replicaof)
command("slaveof", 3, "admin noscript stale no_async_loading", summary=_REPLICAOF_SUMMARY)(
    _replicaof)


# -- READONLY, READWRITE, ASKING -----------------------------------------------------------------


def _cluster_connection_flag(client: Client, args: list[bytes]) -> Any:
    if getattr(client.server, "cluster", None) is None:
        raise CommandError(E.CLUSTER_DISABLED)
    return OK


command("readonly", 1, "loading stale fast", group="cluster", since="3.0.0",
        summary="Enables read queries for a connection to a cluster replica node",
        acl="@connection")(_cluster_connection_flag)
command("readwrite", 1, "loading stale fast", group="cluster", since="3.0.0",
        summary="Disables read queries for a connection to a cluster replica node",
        acl="@connection")(_cluster_connection_flag)
command("asking", 1, "fast", group="cluster", since="3.0.0",
        summary="Sent by cluster clients after an -ASK redirect",
        acl="@connection")(_cluster_connection_flag)
