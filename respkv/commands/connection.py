"""Connection commands: PING ECHO QUIT RESET HELLO AUTH SELECT (CLIENT lives in client.py)."""

from __future__ import annotations

import hmac
from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import TABLE, Client, parse_int
from respkv.commands.errors import CommandError
from respkv.commands.transactions import discard_transaction
from respkv.protocol.resp import OK, PONG, SimpleString

cmd = TABLE.command

REDIS_VERSION = "7.0.15"
"""The redis-server version whose behaviour respkv matches (clients gate features on it)."""

REDACTED = b"(redacted)"
"""What AUTH and HELLO AUTH leave in place of a username or password in their ``args``, as
redis-server's redactClientCommandArgument: MONITOR and SLOWLOG, which read ``args`` after the
command ran, never show a password. Redacted before the check, so a wrong password is hidden
too; AUTH with too many arguments is refused before it redacts anything (as redis-server)."""


@cmd("ping", -1, "fast", group="connection", summary="Ping the server")
def ping(client: Client, args: list[bytes]) -> Any:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return args[1]
    raise CommandError(E.WRONG_ARGS % "ping")


@cmd("echo", 2, "fast", group="connection", summary="Echo the given string")
def echo(client: Client, args: list[bytes]) -> Any:
    return args[1]


@cmd("quit", -1, "fast noauth", group="connection", summary="Close the connection")
def quit_(client: Client, args: list[bytes]) -> Any:
    client.close_after_reply = True
    return OK


def check_password(client: Client, username: bytes, password: bytes) -> bool:
    required = client.server.config.requirepass
    if username != b"default":
        return False
    if not required:
        return True  # the default user has nopass
    return hmac.compare_digest(password, required.encode())


@cmd("auth", -2, "fast noauth", group="connection", summary="Authenticate to the server")
def auth(client: Client, args: list[bytes]) -> Any:
    if len(args) > 3:
        raise CommandError(E.SYNTAX)
    if len(args) == 2:
        user, password = b"default", args[1]
    else:
        user, password = args[1], args[2]
    args[1:] = [REDACTED] * (len(args) - 1)
    if len(args) == 2 and not client.server.config.requirepass:
        raise CommandError(E.AUTH_NOT_CONFIGURED)
    if not check_password(client, user, password):
        raise CommandError(E.WRONGPASS)
    client.authenticated = True
    return OK


@cmd("select", 2, "fast", group="connection", summary="Change the selected database")
def select(client: Client, args: list[bytes]) -> Any:
    db = parse_int(args[1])
    if db < -(1 << 31) or db >= 1 << 31:  # getIntFromObjectOrReply
        raise CommandError(E.INT_RANGE % (-(1 << 31), (1 << 31) - 1))
    if db < 0 or db >= len(client.server.dbs):
        raise CommandError(E.DB_INDEX)
    client.select(db)
    return OK


def hello_map(client: Client) -> dict[bytes, Any]:
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": 3 if client.resp3 else 2,
        b"id": client.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


@cmd("hello", -1, "fast noauth", group="connection", summary="Handshake with the server")
def hello(client: Client, args: list[bytes]) -> Any:
    proto = None
    if len(args) >= 2:
        try:
            proto = parse_int(args[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        if proto < 2 or proto > 3:
            raise CommandError(E.NOPROTO)
    i = 2
    name = None
    while i < len(args):
        opt = args[i].upper()
        left = len(args) - i - 1
        if opt == b"AUTH" and left >= 2:
            user, password = args[i + 1], args[i + 2]
            args[i + 1] = args[i + 2] = REDACTED
            if not check_password(client, user, password):
                raise CommandError(E.WRONGPASS)
            client.authenticated = True
            i += 3
        elif opt == b"SETNAME" and left >= 1:
            name = args[i + 1]
            validate_client_name(name)
            i += 2
        else:
            raise CommandError("ERR Syntax error in HELLO option '%s'" % E.arg_text(args[i], None))
    if not client.authenticated:
        raise CommandError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        client.name = name
    if proto is not None:
        client.resp3 = proto == 3
    return hello_map(client)


def validate_client_name(name: bytes) -> None:
    for c in name:
        if c < 33 or c > 126:
            raise CommandError(E.CLIENT_NAME_SPACES)


@cmd("reset", 1, "fast noauth", group="connection", summary="Reset the connection")
def reset(client: Client, args: list[bytes]) -> Any:
    discard_transaction(client)
    client.select(0)
    client.resp3 = False
    client.name = b""
    client.read_level = client.write_level = None
    client.authenticated = not client.server.config.requirepass
    stop_monitor = getattr(client.server, "stop_monitor", None)  # set by the node (MONITOR)
    if stop_monitor is not None:
        stop_monitor(client)
    return SimpleString("RESET")

