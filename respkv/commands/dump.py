"""DUMP and RESTORE: Redis's serialized-value format for string keys (redis-server 7.0 cluster.c
and rdb.c semantics).

The payload codec is ``respkv.protocol.rdb`` (format: docs/formats/dump.md). What respkv does
differently from Redis, on purpose:

* DUMP never LZF-compresses: a value longer than 20 bytes that LZF shrinks by at least 4 bytes
  is written plain where Redis writes it compressed (same value; each server restores the
  other's payload). Every other payload is byte for byte Redis's.
* RESTORE's IDLETIME and FREQ are parsed and checked exactly as in Redis, then ignored: respkv
  keeps no access time or frequency per key.
* A valid payload of a type respkv does not store (list, set, hash, ...) gets
  ``E.DUMP_UNSUPPORTED_TYPE`` naming the type; an LZF string longer than proto-max-bulk-len
  gets ``E.STRING_TOO_LONG`` (Redis would allocate it).
"""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import INT64_MAX, TABLE, Client, parse_int
from respkv.commands.errors import CommandError
from respkv.protocol import rdb
from respkv.protocol.resp import OK

cmd = TABLE.command

_DUMP_COMPLEXITY = (
    "O(1) to access the key and additional O(N*M) to serialize it, where N is the number of "
    "Redis objects composing the value and M their average size. For small string values the "
    "time complexity is thus O(1)+O(1*M) where M is small, so simply O(1)."
)
_RESTORE_COMPLEXITY = (
    "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value, "
    "where N is the number of Redis objects composing the value and M their average size. For "
    "small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply "
    "O(1). However for sorted set values the complexity is O(N*M*log(N)) because inserting "
    "values into sorted sets is O(log(N))."
)


@cmd("dump", 2, "readonly", (1, 1, 1), "generic",
     "Return a serialized version of the value stored at the specified key.", since="2.6.0",
     complexity=_DUMP_COMPLEXITY)
def dump(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[1])
    return None if rec is None else rdb.dump_string(rec.value)


@cmd("restore", -4, "write denyoom", (1, 1, 1), "generic",
     "Create a key using the provided serialized value, previously obtained using DUMP.",
     since="2.6.0", complexity=_RESTORE_COMPLEXITY)
def restore(client: Client, args: list[bytes]) -> Any:
    """cluster.c restoreCommand: options, the existing key, the TTL, the payload, in that order."""
    replace = absttl = False
    idle = freq = -1
    i, n = 4, len(args)
    while i < n:
        opt = args[i].lower()
        more = n - i - 1
        if opt == b"replace":
            replace = True
        elif opt == b"absttl":
            absttl = True
        elif opt == b"idletime" and more >= 1 and freq == -1:
            idle = parse_int(args[i + 1])
            if idle < 0:
                raise CommandError(E.INVALID_IDLETIME)
            i += 1
        elif opt == b"freq" and more >= 1 and idle == -1:
            freq = parse_int(args[i + 1])
            if freq < 0 or freq > 255:
                raise CommandError(E.INVALID_FREQ)
            i += 1
        else:
            raise CommandError(E.SYNTAX)
        i += 1
    db = client.db
    key = args[1]
    if not replace and db.get(key) is not None:
        raise CommandError(E.BUSYKEY)
    ttl = parse_int(args[2])
    if ttl < 0:
        raise CommandError(E.INVALID_TTL)
    try:
        value = rdb.load_string(args[3], client.server.config.proto_max_bulk_len)
    except rdb.ChecksumError:
        raise CommandError(E.DUMP_PAYLOAD) from None
    except rdb.UnsupportedTypeError as e:
        raise CommandError(E.DUMP_UNSUPPORTED_TYPE % e.type_name) from None
    except rdb.TooLargeError:
        raise CommandError(E.STRING_TOO_LONG) from None
    except rdb.PayloadError:
        raise CommandError(E.BAD_DATA_FORMAT) from None
    # IDLETIME and FREQ are valid and ignored: no access time or frequency is kept per key.
    if ttl:
        now = client.server.clock_ms()
        if not absttl:
            ttl += now
            if ttl > INT64_MAX:
                ttl = -1  # redis-server's signed addition wraps: a time long past
        if ttl <= now:  # already expired: the key is not created (REPLACE still deletes)
            if replace:
                db.delete(key)
            return OK
    db.set(key, value, ttl)
    return OK
