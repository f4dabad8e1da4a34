"""SWAPDB: exchange two databases, as redis-server 7.0's dbSwapDatabases (db.c). Sans I/O.

Redis swaps the two ``redisDb`` dicts: no key is copied, and a client that SELECTed either number
sees the other database's keys from its next command on. respkv keeps each database in its own
stored key range (a physical database, ``Keyspace.db``); ``ServerState.dbs[n]`` is the Keyspace
the number ``n`` uses, and ``ServerState.db_map[n]`` its physical database. A swap exchanges two
entries of each, re-points the clients that SELECTed either number (``Client.db`` is their
resolved Keyspace, so GET/SET pay nothing for the map) and writes the map as one engine record
(docs/formats/dbmap.md), so it is durable and ordered like any write: the node sends the reply
only once that record is as durable as ``appendfsync`` makes writes.

What stays with the database *number*, as in Redis: the WATCHed keys (``Keyspace.watchers`` and
each watch entry's Keyspace move to the Keyspace now under that number) and the clients' SELECT.
What moves with the data: TTL hints for active expiry and the SCAN cursor registry (a SCAN
running across a SWAPDB goes on over the other data, which Redis does not promise anything about
either). Cost: O(clients + watched keys of both databases), one engine put.
"""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import TABLE, Client, ServerState, parse_int
from respkv.commands.errors import CommandError
from respkv.commands.keyspace import DB_MAP_KEY, Keyspace, encode_db_map, unwatch_all
from respkv.protocol.resp import OK

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


def _db_arg(arg: bytes, error: str) -> int:
    """getIntFromObjectOrReply with its own message: not an integer, or outside a C int."""
    n = parse_int(arg, error)
    if n < _INT_MIN or n > _INT_MAX:
        raise CommandError(error)
    return n


@TABLE.command("swapdb", 3, "write fast", (0, 0, 0), "server", "Swaps two Redis databases",
               since="4.0.0", complexity="O(N) where N is the count of clients watching or "
               "blocking on keys from both databases.")
def swapdb(client: Client, args: list[bytes]) -> Any:
    a = _db_arg(args[1], E.SWAPDB_FIRST_INDEX)
    b = _db_arg(args[2], E.SWAPDB_SECOND_INDEX)
    server = client.server
    if not (0 <= a < len(server.dbs) and 0 <= b < len(server.dbs)):
        raise CommandError(E.DB_INDEX)
    swap_databases(server, a, b)
    return OK


def swap_databases(server: ServerState, a: int, b: int) -> None:
    """Exchange databases ``a`` and ``b`` (both in range): WATCHes first (as Redis, before the
    swap), then the map, the clients, the stored map. ``a == b`` changes nothing."""
    if a == b:
        return
    dbs = server.dbs
    ka, kb = dbs[a], dbs[b]
    touch_swapped(ka, kb)
    touch_swapped(kb, ka)
    # The watches stay with the numbers: a's watchers now watch kb, b's watch ka.
    ka.watchers, kb.watchers = kb.watchers, ka.watchers
    for ks in (ka, kb):
        for entries in ks.watchers.values():
            for w in entries:
                w[0] = ks
    dbs[a], dbs[b] = kb, ka
    m = server.db_map
    m[a], m[b] = m[b], m[a]
    for c in server.clients.values():
        if c.dbnum == a or c.dbnum == b:
            c.db = dbs[c.dbnum]
    server.engine.put(DB_MAP_KEY, encode_db_map(m))


def touch_swapped(emptied: Keyspace, replaced_with: Keyspace) -> None:
    """redis-server 7.0's touchAllWatchedKeysInDb(emptied, replaced_with) for SWAPDB: a watched
    key of ``emptied``'s number that is stored (live or not yet reclaimed) in either database
    dirties its watchers, except that an expired watched key (watched while expired) that stays
    expired, or becomes absent, is no change, and an absent one that becomes an expired one only
    becomes "watched while expired". A dirty client stops watching (``keyspace.touch``)."""
    if not emptied.watchers:
        return
    now = emptied.clock_ms()
    for key, entries in list(emptied.watchers.items()):
        in_emptied = emptied.engine.get(emptied.prefix + key) is not None
        other = replaced_with.engine.get(replaced_with.prefix + key)
        if not in_emptied and other is None:
            continue
        other_expired = other is not None and 0 < other.expire_at_ms <= now
        for w in list(entries):
            if w[2]:  # watched while expired
                if other is None:
                    w[2] = False  # the expired key is gone: no logical change
                    continue
                if other_expired:
                    continue  # expired, and still expired
            elif not in_emptied and other_expired:
                w[2] = True  # nothing replaced by an expired key: still nothing
                continue
            client = w[3]
            client.dirty_cas = True
            unwatch_all(client)
