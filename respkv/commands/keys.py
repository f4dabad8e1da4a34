"""Keyspace commands (redis-server 7.0 db.c, expire.c and object.c semantics, replies and errors).

DEL UNLINK EXISTS TOUCH TYPE RENAME RENAMENX KEYS SCAN RANDOMKEY DBSIZE FLUSHDB FLUSHALL COPY
MOVE OBJECT, and the expiry family EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME TTL
PTTL PERSIST.

Expiry times are absolute unix milliseconds in the record (0: none). A TTL is rewritten by writing
the record again with the same value; the keyspace keeps its TTL index (for the active expiry
cycle) up to date on every such write.

``stringmatch`` is Redis's glob matcher (util.c stringmatchlen) for KEYS and SCAN MATCH; it is
pure and shared with any other command that takes a Redis pattern.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import INT64_MAX, TABLE, Client, parse_int
from respkv.commands.errors import CommandError
from respkv.commands.keyspace import Keyspace, key_successor
from respkv.commands.keyspace import touch as keyspace_touch
from respkv.commands.server import KEY_SPEC_FLAGS, Container, help_reply
from respkv.protocol.resp import OK, SimpleString, string2ll
from respkv.storage.api import Record

cmd = TABLE.command

# -- glob patterns (stringmatchlen) -------------------------------------------------------------
#
# Every pattern element but '*' consumes exactly one byte of the string, and which pattern bytes
# make up an element never depends on the string; so a pattern compiles to segments of one-byte
# classes separated by stars. Placing each inner segment at its leftmost fit is then optimal,
# which is what the atomic groups below do: matching stays O(len(pattern) * len(string)), as
# Redis's own (skipLongerMatches) does, with no exponential backtracking.

_STAR = None


def _signed(b: int) -> int:
    """A byte as the signed ``char`` Redis compares in [a-z] ranges (x86-64)."""
    return b - 256 if b > 127 else b


def _pattern_elements(p: bytes) -> list[frozenset[int] | None]:
    """The pattern as Redis walks it: None for a run of '*', else the set of bytes matched."""
    out: list[frozenset[int] | None] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == 0x2A:  # '*'
            while i + 1 < n and p[i + 1] == 0x2A:
                i += 1
            out.append(_STAR)
        elif c == 0x3F:  # '?'
            out.append(frozenset(range(256)))
        elif c == 0x5B:  # '['
            i += 1
            negate = i < n and p[i] == 0x5E
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                if i < n and p[i] == 0x5C and n - i >= 2:  # '\x' inside a class
                    i += 1
                    members.add(p[i])
                elif i < n and p[i] == 0x5D:  # ']'
                    break
                elif i >= n:  # unterminated: the class ends with the pattern
                    i -= 1
                    break
                elif n - i >= 3 and p[i + 1] == 0x2D:  # 'a-z' (either order)
                    lo, hi = sorted((_signed(p[i]), _signed(p[i + 2])))
                    members.update(b for b in range(256) if lo <= _signed(b) <= hi)
                    i += 2
                else:
                    members.add(p[i])
                i += 1
            out.append(frozenset(range(256)) - members if negate else frozenset(members))
        else:
            if c == 0x5C and n - i >= 2:  # '\x' outside a class: x literally
                i += 1
            out.append(frozenset((p[i],)))
        i += 1
    return out


def _byte_class(members: frozenset[int]) -> bytes:
    if len(members) == 256:
        return b"."
    if not members:
        return b"(?!)"
    if len(members) == 1:
        return re.escape(bytes(members))
    parts = []
    run: list[int] = []
    for b in sorted(members):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            parts.append(b"\\x%02x-\\x%02x" % (run[0], run[-1]))
        run = [b]
    parts.append(b"\\x%02x-\\x%02x" % (run[0], run[-1]))
    return b"[" + b"".join(parts) + b"]"


@lru_cache(maxsize=256)
def _compile(pattern: bytes) -> Any:
    segments: list[bytes] = [b""]
    for el in _pattern_elements(pattern):
        if el is _STAR:
            segments.append(b"")
        else:
            segments[-1] += _byte_class(el)
    if len(segments) == 1:
        rx = segments[0] + rb"\Z"
    else:
        inner = b"".join(b"(?>.*?" + s + b")" for s in segments[1:-1] if s)
        rx = segments[0] + inner + b".*" + segments[-1] + rb"\Z"
    return re.compile(rx, re.DOTALL).match


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """True if ``string`` matches the Redis glob ``pattern`` (case-sensitive).

    Exactly stringmatchlen: ``*`` ``?`` ``[abc]`` ``[^abc]`` ``[a-z]`` ``\\x``; an unterminated
    class runs to the end of the pattern; an empty string matches only the empty pattern (Redis
    never enters its loop), although KEYS and SCAN treat the pattern ``*`` as "everything".
    """
    if not string:
        return not pattern
    return _compile(pattern)(string) is not None


def glob_literal_prefix(pattern: bytes) -> bytes:
    """The bytes every key matching ``pattern`` starts with (to narrow an ordered scan)."""
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c in b"*?[":
            break
        if c == 0x5C and i + 1 < n:
            i += 1
            c = pattern[i]
        out.append(c)
        i += 1
    return bytes(out)


# -- DEL UNLINK EXISTS TOUCH TYPE ---------------------------------------------------------------

@cmd("del", -2, "write", (1, -1, 1), "generic", "Delete a key",
     complexity="O(N) where N is the number of keys that will be removed. When a key to remove "
     "holds a value other than a string, the individual complexity for this key is O(M) where M "
     "is the number of elements in the list, set, sorted set or hash. Removing a single key that "
     "holds a string value is O(1).")
def del_(client: Client, args: list[bytes]) -> Any:
    delete = client.db.delete
    return sum(1 for key in args[1:] if delete(key))


@cmd("unlink", -2, "write fast", (1, -1, 1), "generic",
     "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non "
     "blocking.", since="4.0.0",
     complexity="O(1) for each key removed regardless of its size. Then the command does O(N) "
     "work in a different thread in order to reclaim memory, where N is the number of "
     "allocations the deleted objects where composed of.")
def unlink(client: Client, args: list[bytes]) -> Any:
    delete = client.db.delete
    return sum(1 for key in args[1:] if delete(key))


def _count_existing(client: Client, keys: list[bytes]) -> int:
    lookup = client.db.lookup_read
    return sum(1 for key in keys if lookup(key) is not None)  # repeats count each time


@cmd("exists", -2, "readonly fast", (1, -1, 1), "generic", "Determine if a key exists",
     complexity="O(N) where N is the number of keys to check.")
def exists(client: Client, args: list[bytes]) -> Any:
    return _count_existing(client, args[1:])


@cmd("touch", -2, "readonly fast", (1, -1, 1), "generic",
     "Alters the last access time of a key(s). Returns the number of existing keys specified.",
     since="3.2.1", complexity="O(N) where N is the number of keys that will be touched.")
def touch(client: Client, args: list[bytes]) -> Any:
    return _count_existing(client, args[1:])  # no access times are kept: nothing else to do


_STRING = SimpleString("string")
_NONE = SimpleString("none")


@cmd("type", 2, "readonly fast", (1, 1, 1), "generic", "Determine the type stored at key")
def type_(client: Client, args: list[bytes]) -> Any:
    return _NONE if client.db.lookup_read(args[1]) is None else _STRING


# -- expiry ----------------------------------------------------------------------------------------

_NX, _XX, _GT, _LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"NX": _NX, b"XX": _XX, b"GT": _GT, b"LT": _LT}
_SECONDS_LIMIT = INT64_MAX // 1000  # LLONG_MAX / 1000; LLONG_MIN / 1000 (truncated) is -that


def _expire_generic(client: Client, args: list[bytes], relative: bool, seconds: bool) -> int:
    """expire.c expireGenericCommand: options, then the time, then the key."""
    flags = 0
    for opt in args[3:]:
        flag = _EXPIRE_FLAGS.get(opt.upper())
        if flag is None:
            raise CommandError(E.UNSUPPORTED_OPTION % E.arg_text(opt, None))
        flags |= flag
    if flags & _NX and flags & (_XX | _GT | _LT):
        raise CommandError(E.NX_XX_GT_LT)
    if flags & _GT and flags & _LT:
        raise CommandError(E.GT_LT_NX)
    when = parse_int(args[2])
    name = E.arg_text(args[0]).lower()
    if seconds:
        if when > _SECONDS_LIMIT or when < -_SECONDS_LIMIT:
            raise CommandError(E.INVALID_EXPIRE % name)
        when *= 1000
    now = client.server.clock_ms()
    base = now if relative else 0
    if when > INT64_MAX - base:
        raise CommandError(E.INVALID_EXPIRE % name)
    when += base
    db = client.db
    key = args[1]
    rec = db.get(key)
    if rec is None:
        return 0
    if flags:
        current = rec.expire_at_ms or -1  # -1: no TTL, an infinite one for GT and LT
        if flags & _NX and current != -1:
            return 0
        if flags & _XX and current == -1:
            return 0
        if flags & _GT and (when <= current or current == -1):
            return 0
        if flags & _LT and current != -1 and when >= current:
            return 0
    if when <= now:
        db.discard(key)  # a time already past deletes the key, and counts as set
    else:
        db.set(key, rec.value, when)
    return 1


@cmd("expire", -3, "write fast", (1, 1, 1), "generic", "Set a key's time to live in seconds")
def expire(client: Client, args: list[bytes]) -> Any:
    return _expire_generic(client, args, relative=True, seconds=True)


@cmd("pexpire", -3, "write fast", (1, 1, 1), "generic",
     "Set a key's time to live in milliseconds", since="2.6.0")
def pexpire(client: Client, args: list[bytes]) -> Any:
    return _expire_generic(client, args, relative=True, seconds=False)


@cmd("expireat", -3, "write fast", (1, 1, 1), "generic",
     "Set the expiration for a key as a UNIX timestamp", since="1.2.0")
def expireat(client: Client, args: list[bytes]) -> Any:
    return _expire_generic(client, args, relative=False, seconds=True)


@cmd("pexpireat", -3, "write fast", (1, 1, 1), "generic",
     "Set the expiration for a key as a UNIX timestamp specified in milliseconds", since="2.6.0")
def pexpireat(client: Client, args: list[bytes]) -> Any:
    return _expire_generic(client, args, relative=False, seconds=False)


def _ttl_generic(client: Client, key: bytes, ms: bool, absolute: bool) -> int:
    rec = client.db.lookup_read(key)
    if rec is None:
        return -2
    if not rec.expire_at_ms:
        return -1
    ttl = rec.expire_at_ms if absolute else max(rec.expire_at_ms - client.server.clock_ms(), 0)
    return ttl if ms else (ttl + 500) // 1000


@cmd("ttl", 2, "readonly fast", (1, 1, 1), "generic", "Get the time to live for a key in seconds")
def ttl(client: Client, args: list[bytes]) -> Any:
    return _ttl_generic(client, args[1], ms=False, absolute=False)


@cmd("pttl", 2, "readonly fast", (1, 1, 1), "generic",
     "Get the time to live for a key in milliseconds", since="2.6.0")
def pttl(client: Client, args: list[bytes]) -> Any:
    return _ttl_generic(client, args[1], ms=True, absolute=False)


@cmd("expiretime", 2, "readonly fast", (1, 1, 1), "generic",
     "Get the expiration Unix timestamp for a key", since="7.0.0")
def expiretime(client: Client, args: list[bytes]) -> Any:
    return _ttl_generic(client, args[1], ms=False, absolute=True)


@cmd("pexpiretime", 2, "readonly fast", (1, 1, 1), "generic",
     "Get the expiration Unix timestamp for a key in milliseconds", since="7.0.0")
def pexpiretime(client: Client, args: list[bytes]) -> Any:
    return _ttl_generic(client, args[1], ms=True, absolute=True)


@cmd("persist", 2, "write fast", (1, 1, 1), "generic", "Remove the expiration from a key",
     since="2.2.0")
def persist(client: Client, args: list[bytes]) -> Any:
    db = client.db
    rec = db.get(args[1])
    if rec is None or not rec.expire_at_ms:
        return 0
    db.set(args[1], rec.value, 0)
    return 1


# -- RENAME RENAMENX ---------------------------------------------------------------------------

def _rename(client: Client, args: list[bytes], nx: bool) -> Any:
    db = client.db
    src, dst = args[1], args[2]
    rec = db.get(src)
    if rec is None:
        raise CommandError(E.NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    if nx and db.get(dst) is not None:
        return 0
    db.rename(src, dst, rec)  # the TTL moves with the value
    return 1 if nx else OK


@cmd("rename", 3, "write", (1, 2, 1), "generic", "Rename a key")
def rename(client: Client, args: list[bytes]) -> Any:
    return _rename(client, args, nx=False)


@cmd("renamenx", 3, "write fast", (1, 2, 1), "generic",
     "Rename a key, only if the new key does not exist")
def renamenx(client: Client, args: list[bytes]) -> Any:
    return _rename(client, args, nx=True)


# -- KEYS SCAN RANDOMKEY DBSIZE ------------------------------------------------------------------

@cmd("keys", 2, "readonly", (0, 0, 0), "generic", "Find all keys matching the given pattern",
     complexity="O(N) with N being the number of keys in the database, under the assumption "
     "that the key names in the database and the given pattern have limited length.")
def keys(client: Client, args: list[bytes]) -> Any:
    pattern = args[1]
    db = client.db
    if pattern == b"*":
        return list(db.keys())
    prefix = glob_literal_prefix(pattern)
    match = _compile(pattern)
    if prefix:
        it = db.items(prefix, key_successor(prefix))
    else:
        it = db.items()
    return [k for k, _ in it if (match(k) is not None if k else not pattern)]


_ULONG_MAX = (1 << 64) - 1
_CURSOR = re.compile(rb"([+-]?)([0-9]*)")


def parse_scan_cursor(arg: bytes) -> int:
    """Redis's parseScanCursorOrReply: strtoul(base 10) over the whole argument.

    So "" is 0, "-1" wraps to 2**64-1, a leading space or anything after the digits is an error
    (strtoul, like any C string function, stops at a NUL byte).
    """
    s = arg.split(b"\x00", 1)[0]
    if s[:1] in (b" ", b"\t", b"\n", b"\v", b"\f", b"\r"):
        raise CommandError(E.INVALID_CURSOR)
    m = _CURSOR.match(s)
    assert m is not None
    sign, digits = m.groups()
    if not digits:
        if s:
            raise CommandError(E.INVALID_CURSOR)
        return 0
    if m.end() != len(s):
        raise CommandError(E.INVALID_CURSOR)
    digits = digits.lstrip(b"0")
    if len(digits) > 20:
        raise CommandError(E.INVALID_CURSOR)
    v = int(digits or b"0")
    if v > _ULONG_MAX:
        raise CommandError(E.INVALID_CURSOR)
    return (-v) & _ULONG_MAX if sign == b"-" else v


@cmd("scan", -2, "readonly", (0, 0, 0), "generic", "Incrementally iterate the keys space",
     since="2.8.0",
     complexity="O(1) for every call. O(N) for a complete iteration, including enough command "
     "calls for the cursor to return back to 0. N is the number of elements inside the "
     "collection.")
def scan(client: Client, args: list[bytes]) -> Any:
    cursor = parse_scan_cursor(args[1])
    count = 10
    pattern: bytes | None = None
    type_name: bytes | None = None
    i, n = 2, len(args)
    while i < n:
        opt = args[i].lower()
        if n - i < 2:
            raise CommandError(E.SYNTAX)
        if opt == b"count":
            count = parse_int(args[i + 1])
            if count < 1:
                raise CommandError(E.SYNTAX)
        elif opt == b"match":
            pattern = args[i + 1]
            if pattern == b"*":
                pattern = None  # a no-op, as in Redis
        elif opt == b"type":
            type_name = args[i + 1]
        else:
            raise CommandError(E.SYNTAX)
        i += 2
    prefix = b"" if pattern is None else glob_literal_prefix(pattern)
    next_cursor, page = client.db.scan_page(cursor, count, prefix)
    if type_name is not None and type_name.lower() != b"string":
        page = []  # every value is a string; an unknown type name matches nothing
    elif pattern is not None:
        page = [k for k in page if stringmatch(pattern, k)]
    return [b"%d" % next_cursor, page]


@cmd("randomkey", 1, "readonly", (0, 0, 0), "generic", "Return a random key from the keyspace")
def randomkey(client: Client, args: list[bytes]) -> Any:
    # Without an injected ``server.rng`` (pure tests) the first key is returned.
    return client.db.random_key(client.server.rng)


@cmd("dbsize", 1, "readonly fast", (0, 0, 0), "server",
     "Return the number of keys in the selected database")
def dbsize(client: Client, args: list[bytes]) -> Any:
    return client.db.size()


def _flush_mode(args: list[bytes]) -> None:
    """FLUSHDB/FLUSHALL [ASYNC|SYNC]: both modes empty the database before replying here."""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"SYNC", b"ASYNC")):
        raise CommandError(E.SYNTAX)


@cmd("flushdb", -1, "write", (0, 0, 0), "server", "Remove all keys from the current database",
     complexity="O(N) where N is the number of keys in the selected database")
def flushdb(client: Client, args: list[bytes]) -> Any:
    _flush_mode(args)
    client.db.flush()
    return OK


@cmd("flushall", -1, "write", (0, 0, 0), "server", "Remove all keys from all databases",
     complexity="O(N) where N is the total number of keys in all databases")
def flushall(client: Client, args: list[bytes]) -> Any:
    _flush_mode(args)
    for db in client.server.dbs:
        db.flush()
    return OK


# -- COPY MOVE ------------------------------------------------------------------------------------
#
# Both reach another database (server.dbs[n]) and MOVE writes two at once, so both need the
# node's own Keyspaces: in cluster mode the coordinator refuses them before they run
# (MULTI_KEY_ATOMIC), and ``_local_keyspace`` refuses a view defensively.

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


def _keyword(arg: bytes) -> bytes:
    """An option as redis-server's strcasecmp sees it: up to the first NUL, any case."""
    return arg.split(b"\0", 1)[0].lower()


def _db_index(client: Client, arg: bytes) -> int:
    """getIntFromObjectOrReply, then selectDb's range check (its error)."""
    n = parse_int(arg)
    if n < _INT_MIN or n > _INT_MAX:
        raise CommandError(E.INT_RANGE % (_INT_MIN, _INT_MAX))
    if n < 0 or n >= len(client.server.dbs):
        raise CommandError(E.DB_INDEX)
    return n


def _local_keyspace(client: Client, name: str) -> Keyspace:
    db = client.db
    if not isinstance(db, Keyspace):  # a cluster view: another database is not reachable
        raise CommandError(E.CLUSTER_UNSUPPORTED % (name, "keys cannot move between databases "
                                                    "across replicas"))
    return db


@cmd("copy", -3, "write denyoom", (1, 2, 1), "generic", "Copy a key", since="6.2.0",
     complexity="O(N) worst case for collections, where N is the number of nested items. O(1) "
     "for string values.")
def copy(client: Client, args: list[bytes]) -> Any:
    """db.c copyCommand: options (DB checked as it is parsed), the same-key check, the source,
    the destination. The copy keeps the TTL; with REPLACE it overwrites the destination."""
    src = _local_keyspace(client, "COPY")
    dbnum = client.dbnum
    replace = False
    i, n = 3, len(args)
    while i < n:
        opt = _keyword(args[i])
        if opt == b"replace":
            replace = True
        elif opt == b"db" and i + 1 < n:
            dbnum = _db_index(client, args[i + 1])
            i += 1
        else:
            raise CommandError(E.SYNTAX)
        i += 1
    key, newkey = args[1], args[2]
    if dbnum == client.dbnum and key == newkey:
        raise CommandError(E.SAME_OBJECT)
    rec = src.lookup_read(key)
    if rec is None:
        return 0
    dst = client.server.dbs[dbnum]
    if not replace and dst.get(newkey) is not None:
        return 0
    dst.set(newkey, rec.value, rec.expire_at_ms)  # one write: the old destination is replaced
    return 1


@cmd("move", 3, "write fast", (1, 1, 1), "generic", "Move a key to another database")
def move(client: Client, args: list[bytes]) -> Any:
    """db.c moveCommand. The key arrives in the target database and leaves this one in one
    engine batch, so a crash keeps it in exactly one of them."""
    src = _local_keyspace(client, "MOVE")
    dbnum = _db_index(client, args[2])
    if dbnum == client.dbnum:
        raise CommandError(E.SAME_OBJECT)
    key = args[1]
    rec = src.get(key)
    if rec is None:
        return 0
    dst = client.server.dbs[dbnum]
    if dst.get(key) is not None:
        return 0
    if src.watchers:
        keyspace_touch(src, key)
    if dst.watchers:
        keyspace_touch(dst, key)
    src.engine.write_batch([(dst.prefix + key, Record(rec.value, rec.expire_at_ms)),
                            (src.prefix + key, None)])
    if rec.expire_at_ms:
        dst.note_ttl(key, rec.expire_at_ms)  # the active expiry cycle of the target finds it
    return 1


# -- OBJECT ---------------------------------------------------------------------------------------
#
# respkv stores every value as bytes and keeps no per-key object metadata, so what Redis reads
# from its robj is computed from the value, by the rule redis-server applies when a value is
# stored by SET/MSET/GETSET/SETNX/SETEX/RESTORE (object.c tryObjectEncoding):
#
# * ENCODING: "int" for the canonical decimal of a 64-bit signed integer (at most 20 bytes,
#   string2l), else "embstr" up to 44 bytes (OBJ_ENCODING_EMBSTR_SIZE_LIMIT), else "raw".
#   Redis answers otherwise for a value it built without that step: "raw" after APPEND to an
#   existing key or SETRANGE, "embstr" for an integer INCRBYFLOAT printed, and a COPY keeps the
#   source's encoding. respkv does not track how a value was made.
# * REFCOUNT: 2147483647 (OBJ_SHARED_REFCOUNT) for an integer in [0, 10000), which redis-server
#   stores as one of its shared integers (maxmemory is always 0 in respkv, so they are always
#   used), else 1. Same caveat: Redis's copies, APPEND and SETRANGE results are never shared.
# * FREQ: redis-server's error when no LFU maxmemory policy is set, which is always the case.
# * IDLETIME: an error (E.IDLETIME_NOT_TRACKED). respkv keeps no access time; redis-server
#   itself refuses IDLETIME when it does not track it (an LFU policy), rather than answer a
#   number, and a made-up 0 would tell every idle-key scan that every key is hot.
# A missing key answers nil first, for every subcommand, as in Redis.
#
# The container's key positions are (2, -1, 1) where Redis reports (0, 0, 0): the cluster
# coordinator routes by the top-level spec, and so quorum-reads OBJECT's key (OBJECT HELP has
# none); the subcommands report Redis's (2, 2, 1).

OBJECT_SHARED_INTEGERS = 10000
OBJECT_SHARED_REFCOUNT = (1 << 31) - 1
OBJECT_EMBSTR_SIZE_LIMIT = 44

OBJECT = Container("object", -2, "generic", "A container for object introspection commands",
                   "2.2.3")
OBJECT.spec = dataclasses.replace(OBJECT.spec, first_key=2, last_key=-1, step=1)
TABLE.register(OBJECT.spec)


def _object_sub(name: str, arity: int, flags: str, summary: str, since: str,
                tips: str = "nondeterministic_output", key: bool = True) -> Any:
    """``OBJECT.sub``; a subcommand on a key gets Redis's key positions and key-spec flags."""
    register = OBJECT.sub(name, arity, flags, summary, since, tips=tips if key else "")

    def deco(fn: Any) -> Any:
        register(fn)
        if key:
            full = f"object|{name}"
            OBJECT.subs[name] = dataclasses.replace(OBJECT.subs[name], first_key=2, last_key=2,
                                                    step=1)
            KEY_SPEC_FLAGS[full] = ("RO",)
        return fn

    return deco


def object_encoding_of(value: bytes) -> bytes:
    """OBJECT ENCODING of a string value stored by SET (see the rule above)."""
    if string2ll(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= OBJECT_EMBSTR_SIZE_LIMIT else b"raw"


def object_refcount_of(value: bytes) -> int:
    """OBJECT REFCOUNT of a string value stored by SET (see the rule above)."""
    n = string2ll(value)
    if n is not None and 0 <= n < OBJECT_SHARED_INTEGERS:
        return OBJECT_SHARED_REFCOUNT
    return 1


@_object_sub("encoding", 3, "readonly", "Inspect the internal encoding of a Redis object",
             "2.2.3")
def object_encoding(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[2])
    return None if rec is None else object_encoding_of(rec.value)


@_object_sub("refcount", 3, "readonly", "Get the number of references to the value of the key",
             "2.2.3")
def object_refcount(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[2])
    return None if rec is None else object_refcount_of(rec.value)


@_object_sub("freq", 3, "readonly",
             "Get the logarithmic access frequency counter of a Redis object", "4.0.0")
def object_freq(client: Client, args: list[bytes]) -> Any:
    if client.db.lookup_read(args[2]) is None:
        return None
    raise CommandError(E.LFU_NOT_SELECTED)


@_object_sub("idletime", 3, "readonly", "Get the time since a Redis object was last accessed",
             "2.2.3")
def object_idletime(client: Client, args: list[bytes]) -> Any:
    if client.db.lookup_read(args[2]) is None:
        return None
    raise CommandError(E.IDLETIME_NOT_TRACKED)


_OBJECT_HELP = (
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
)


@_object_sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
             "6.2.0", key=False)
def object_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("OBJECT", _OBJECT_HELP)
