"""MULTI, EXEC, DISCARD, WATCH, UNWATCH: Redis transactions on one node. Sans I/O.

As redis-server 7.0 (multi.c), checked against it by compat/test_transactions.py:

* After MULTI, a command is queued (``+QUEUED``) once the checks that do not depend on data pass:
  known, right arity, authenticated, allowed in a transaction. One that fails them gets its
  error and makes EXEC answer ``-EXECABORT`` (``core._queue``). EXEC, DISCARD, MULTI, WATCH,
  QUIT and RESET are not queued.
* EXEC runs the queued commands one after another with nothing in between: the node runs
  commands on one thread and a handler never awaits, so no other client's command can
  interleave. Its reply is the array of their replies, errors included (a command failing at
  run time, e.g. INCR of a non-integer, does not stop the others: no rollback, as Redis).
* Statistics (INFO commandstats, errorstats, the slow log, latency histograms): a queued
  command counts nothing when it is queued; EXEC counts each command as it runs it
  (``core.account_command``: its call, time, and failure if it answered an error), then the
  node counts EXEC itself, its time including theirs, failed only if EXEC's own reply is an
  error (EXECABORT, EXEC without MULTI). A command refused while queuing counts as rejected.
* WATCH: EXEC answers a null array and runs nothing when a watched key changed since it was
  watched -- written by anyone (this client too), deleted, expired, flushed -- or is expired at
  EXEC time though it was not when watched. The keyspace touches watched keys on every write
  (``keyspace.touch``). EXEC, DISCARD, UNWATCH and RESET forget the watches.

In cluster mode MULTI and WATCH answer that they are not supported (a transaction cannot be
atomic across replicas); EXEC and DISCARD then answer as without MULTI.
"""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import TABLE, Client, account_command, execute
from respkv.commands.errors import CommandError
from respkv.commands.keyspace import unwatch_all
from respkv.protocol.resp import NULL_ARRAY, OK

cmd = TABLE.command
FLAGS = "noscript loading stale fast allow_busy"


@cmd("multi", 1, FLAGS, group="transactions", summary="Start a transaction", since="1.2.0")
def multi(client: Client, args: list[bytes]) -> Any:
    if client.multi is not None:
        raise CommandError(E.MULTI_NESTED)
    client.multi = []
    client.multi_error = False
    return OK


@cmd("exec", 1, "noscript loading stale skip_slowlog", group="transactions",
     summary="Execute all commands issued after MULTI", since="1.2.0",
     complexity="Depends on commands in the transaction")
def exec_(client: Client, args: list[bytes]) -> Any:
    queued = client.multi
    if queued is None:
        raise CommandError(E.EXEC_WITHOUT_MULTI)
    client.multi = None
    if client.multi_error:
        discard_transaction(client)
        raise CommandError(E.EXECABORT)
    if client.dirty_cas or _watched_key_expired(client):
        discard_transaction(client)
        return NULL_ARRAY
    unwatch_all(client)  # as redis-server: before running, so the commands touch nothing
    client.executing = len(queued)
    server = client.server
    perf = server.perf_us
    replies = []
    try:
        for spec, argv in queued:
            t0 = perf() if perf is not None else 0
            reply = execute(spec, client, argv)
            account_command(server, spec, client, argv, reply,
                            perf() - t0 if perf is not None else 0)
            replies.append(reply)
    finally:
        client.executing = -1
    return replies


@cmd("discard", 1, FLAGS, group="transactions", summary="Discard all commands issued after MULTI",
     since="2.0.0", complexity="O(N), when N is the number of queued commands")
def discard(client: Client, args: list[bytes]) -> Any:
    if client.multi is None:
        raise CommandError(E.DISCARD_WITHOUT_MULTI)
    discard_transaction(client)
    return OK


@cmd("watch", -2, FLAGS, (1, -1, 1), "transactions",
     "Monitor changes to keys to determine execution of the MULTI/EXEC block", since="2.2.0",
     complexity="O(1) for every key.")
def watch(client: Client, args: list[bytes]) -> Any:
    if client.multi is not None:
        raise CommandError(E.WATCH_IN_MULTI)
    if client.dirty_cas:  # EXEC will fail anyway: no point in watching more
        return OK
    ks = client.db
    now = client.server.clock_ms()
    for key in args[1:]:
        if any(w[0] is ks and w[1] == key for w in client.watched):
            continue
        rec = ks.engine.get(ks.prefix + key)  # not ks.get: watching deletes nothing
        expired = rec is not None and 0 < rec.expire_at_ms <= now
        w = [ks, key, expired, client]
        ks.watchers.setdefault(key, []).append(w)
        client.watched.append(w)
    return OK


@cmd("unwatch", 1, FLAGS, group="transactions", summary="Forget about all watched keys",
     since="2.2.0")
def unwatch(client: Client, args: list[bytes]) -> Any:
    unwatch_all(client)
    client.dirty_cas = False
    return OK


def discard_transaction(client: Client) -> None:
    """Leave MULTI (if in it) and forget every watch: DISCARD, EXEC, RESET, a closed
    connection."""
    client.multi = None
    client.multi_error = False
    client.dirty_cas = False
    unwatch_all(client)


def _watched_key_expired(client: Client) -> bool:
    """A key that was live when watched is expired now (redis-server's isWatchedKeyExpired)."""
    if not client.watched:
        return False
    now = client.server.clock_ms()
    for ks, key, expired_then, _ in client.watched:
        if expired_then:
            continue
        rec = ks.engine.get(ks.prefix + key)
        if rec is not None and 0 < rec.expire_at_ms <= now:
            return True
    return False
