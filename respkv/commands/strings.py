"""String commands (redis-server 7.0 t_string.c semantics, replies and errors)."""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import TABLE, Client, parse_int
from respkv.commands.errors import CommandError
from respkv.protocol.resp import OK

cmd = TABLE.command

_EX, _PX, _EXAT, _PXAT, _KEEPTTL, _PERSIST = b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"PERSIST"


def expire_at_from(
    client: Client, unit: bytes, arg: bytes, command: str, now: int | None = None
) -> int:
    """Absolute expiry in ms for EX/PX/EXAT/PXAT ``arg``; Redis's checks and errors."""
    v = parse_int(arg)
    if v <= 0:
        raise CommandError(E.INVALID_EXPIRE % command)
    if unit == _EX or unit == _EXAT:
        if v > (1 << 63) // 1000:
            raise CommandError(E.INVALID_EXPIRE % command)
        v *= 1000
    if unit == _EX or unit == _PX:
        if now is None:
            now = client.server.clock_ms()
        if v > (1 << 63) - 1 - now:
            raise CommandError(E.INVALID_EXPIRE % command)
        v += now
    return v


@cmd("get", 2, "readonly fast", (1, 1, 1), "string", "Get the value of a key")
def get(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[1])
    return None if rec is None else rec.value


@cmd("set", -3, "write denyoom", (1, 1, 1), "string", "Set the string value of a key")
def set_(client: Client, args: list[bytes]) -> Any:
    db = client.db
    key = args[1]
    if len(args) == 3:  # the hot path: plain SET key value
        db.set(key, args[2])
        return OK
    nx = xx = keepttl = want_get = False
    expire_unit: bytes | None = None
    expire_arg = b""
    i = 3
    n = len(args)
    while i < n:
        opt = args[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            want_get = True
        elif opt == _KEEPTTL and expire_unit is None:
            keepttl = True
        elif opt in (_EX, _PX, _EXAT, _PXAT) and expire_unit is None and not keepttl and i + 1 < n:
            expire_unit = opt
            i += 1
            expire_arg = args[i]
        else:
            raise CommandError(E.SYNTAX)
        i += 1
    expire_at = 0
    if expire_unit is not None:
        expire_at = expire_at_from(client, expire_unit, expire_arg, "set")
    old = db.lookup_read(key) if (want_get or nx or xx or keepttl) else None
    if (nx and old is not None) or (xx and old is None):
        return (old.value if old is not None else None) if want_get else None
    if keepttl and old is not None:
        expire_at = old.expire_at_ms
    db.set(key, args[2], expire_at)
    if want_get:
        return None if old is None else old.value
    return OK
