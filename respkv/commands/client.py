"""CLIENT subcommands (redis-server 7.0 networking.c; SETINFO and NO-TOUCH as 7.2 has them).

Contracts:

* CLIENT LIST / CLIENT INFO print exactly redis-server 7.0's fields in its order (respkv reports
  redis_version 7.0.15; SETINFO's values are kept but 7.2's lib-name/lib-ver fields are not
  printed, so the differential tests match). Fields respkv has no counterpart for are printed with the
  value a quiet Redis connection shows (sub=0, multi=-1, events=r, redir=-1); ``fd=-1`` because
  commands never see sockets.
* CLIENT KILL does not close anything itself: it calls ``server.kill_client(target)`` (set by
  the node, which cancels the target's task); without a node it marks ``target.killed``. The
  caller itself is never killed mid-reply: it is closed after its reply, as redis-server does.
* CLIENT REPLY OFF|SKIP, PAUSE and TRACKING would need the node to hold back replies or
  commands; respkv does not, and says so with an error rather than pretending.
"""

from __future__ import annotations

from typing import Any

from respkv.commands import errors as E
from respkv.commands.connection import validate_client_name
from respkv.commands.core import Client, ServerState, parse_int
from respkv.commands.errors import CommandError
from respkv.commands.server import Container, SetReply, encode_tree, help_reply
from respkv.protocol.resp import OK, Verbatim

CLIENT = Container("client", -2, "connection", "A container for client connection commands",
                   "2.4.0")
_FLAGS = "noscript loading stale"
_ADMIN = "admin noscript loading stale"

CLIENT_TYPES = ("normal", "slave", "replica", "pubsub", "master")
"""Redis's client type names (getClientTypeByName); every respkv client is "normal"."""


def _s(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# The order redis-server writes CLIENT LIST flags in (those respkv can show): O a monitor,
# b blocked in WAIT (both set by the node).
FLAG_ORDER = "OxbdeT"


def set_flag(client: Client, letter: str, on: bool) -> None:
    """CLIENT LIST flags: letters, or "N" when there are none."""
    letters = set(client.flags.replace("N", "").replace(letter, ""))
    if on:
        letters.add(letter)
    client.flags = "".join(f for f in FLAG_ORDER if f in letters) or "N"


def client_info_line(c: Client, now_ms: int, current_cmd: str | None = None) -> str:
    """One line of CLIENT LIST (no trailing newline). In a transaction (queuing, or while
    EXEC runs its commands) flags gain ``x`` and ``multi`` counts the queued commands; a
    command run by EXEC shows ``cmd=exec``, as redis-server."""
    name = _s(c.name)
    flags = c.flags
    multi = -1
    if c.multi is not None or c.executing >= 0 or c.dirty_cas:
        letters = set(flags)
        if c.multi is not None or c.executing >= 0:
            letters.add("x")
            multi = len(c.multi) if c.multi is not None else c.executing
        if c.dirty_cas:
            letters.add("d")  # a watched key changed: EXEC will fail
        flags = "".join(f for f in FLAG_ORDER if f in letters)
    cmd = "exec" if c.executing >= 0 else current_cmd or c.last_cmd
    return (
        f"id={c.id} addr={c.peer} laddr={c.laddr} fd=-1 name={name} "
        f"age={max(0, (now_ms - c.created_ms) // 1000)} idle={max(0, (now_ms - c.last_ms) // 1000)} "
        f"flags={flags} db={c.dbnum} sub=0 psub=0 ssub=0 multi={multi} qbuf={c.qbuf} qbuf-free=0 "
        f"argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl={c.obuf} oll=0 omem=0 tot-mem={c.qbuf + c.obuf} "
        f"events=r cmd={cmd} user={c.user} redir=-1 resp={3 if c.resp3 else 2}"
    )


def _type_of(raw: bytes) -> str:
    t = _s(raw).lower()
    if t not in CLIENT_TYPES:
        raise CommandError(E.UNKNOWN_CLIENT_TYPE % _s(raw))
    return t


def _listing(caller: Client, clients: list[Client], cmd: str) -> Verbatim:
    now = caller.server.clock_ms()
    return Verbatim("".join(
        client_info_line(c, now, cmd if c is caller else None) + "\n" for c in clients
    ))


@CLIENT.sub("id", 2, _FLAGS, "Returns the client ID for the current connection", "5.0.0")
def client_id(client: Client, args: list[bytes]) -> Any:
    return client.id


@CLIENT.sub("setname", 3, _FLAGS, "Set the current connection name", "2.6.9")
def client_setname(client: Client, args: list[bytes]) -> Any:
    validate_client_name(args[2])
    client.name = args[2]
    return OK


@CLIENT.sub("getname", 2, _FLAGS, "Get the current connection name", "2.6.9")
def client_getname(client: Client, args: list[bytes]) -> Any:
    return client.name or None


@CLIENT.sub("info", 2, _FLAGS, "Returns information about the current client connection.",
            "6.2.0", tips="nondeterministic_output")
def client_info(client: Client, args: list[bytes]) -> Any:
    return _listing(client, [client], "client|info")


@CLIENT.sub("list", -2, _ADMIN, "Get the list of client connections", "2.4.0",
            "O(N) where N is the number of client connections", tips="nondeterministic_output")
def client_list(client: Client, args: list[bytes]) -> Any:
    clients = client.server.clients
    if len(args) == 2:
        chosen = list(clients.values())
    elif len(args) == 4 and args[2].upper() == b"TYPE":
        chosen = list(clients.values()) if _type_of(args[3]) == "normal" else []
    elif len(args) > 3 and args[2].upper() == b"ID":
        chosen = []
        for raw in args[3:]:
            cid = parse_int(raw, E.INVALID_CLIENT_ID)
            if cid in clients:
                chosen.append(clients[cid])
    else:
        raise CommandError(E.SYNTAX)
    return _listing(client, chosen, "client|list")


def kill(caller: Client, target: Client) -> None:
    """Close ``target``: the caller after its reply, anyone else through the node at once."""
    if target is caller:
        caller.close_after_reply = True
        return
    killer = getattr(caller.server, "kill_client", None)
    if killer is not None:
        killer(target)
    else:
        target.killed = True


@CLIENT.sub("kill", -3, _ADMIN, "Kill the connection of a client", "2.4.0",
            "O(N) where N is the number of client connections")
def client_kill(client: Client, args: list[bytes]) -> Any:
    server: ServerState = client.server
    if len(args) == 3:  # old form: CLIENT KILL addr:port
        addr = _s(args[2])
        for c in list(server.clients.values()):
            if c.peer == addr:
                kill(client, c)
                return OK
        raise CommandError(E.NO_SUCH_CLIENT)
    want_id: int | None = None
    want_type: str | None = None
    addr_f: str | None = None
    laddr_f: str | None = None
    user_f: str | None = None
    skipme = True
    i = 2
    while i < len(args):
        opt = args[i].upper()
        more = i + 1 < len(args)
        if not more:
            raise CommandError(E.SYNTAX)
        val = args[i + 1]
        if opt == b"ID":
            try:
                want_id = parse_int(val)
            except CommandError:
                raise CommandError(E.CLIENT_ID_POSITIVE) from None
            if want_id < 1:
                raise CommandError(E.CLIENT_ID_POSITIVE)
        elif opt == b"TYPE":
            want_type = _type_of(val)
        elif opt == b"ADDR":
            addr_f = _s(val)
        elif opt == b"LADDR":
            laddr_f = _s(val)
        elif opt == b"USER":
            if val != b"default":
                raise CommandError(E.NO_SUCH_USER % _s(val))
            user_f = "default"
        elif opt == b"SKIPME":
            low = val.lower()
            if low not in (b"yes", b"no"):
                raise CommandError(E.SYNTAX)
            skipme = low == b"yes"
        else:
            raise CommandError(E.SYNTAX)
        i += 2
    killed = 0
    for c in list(server.clients.values()):
        if addr_f is not None and c.peer != addr_f:
            continue
        if laddr_f is not None and c.laddr != laddr_f:
            continue
        if want_type is not None and want_type != "normal":
            continue
        if want_id is not None and c.id != want_id:
            continue
        if user_f is not None and c.user != user_f:
            continue
        if c is client and skipme:
            continue
        kill(client, c)
        killed += 1
    return killed


def _on_off(raw: bytes) -> bool:
    low = raw.lower()
    if low == b"on":
        return True
    if low == b"off":
        return False
    raise CommandError(E.SYNTAX)


@CLIENT.sub("no-evict", 3, _ADMIN, "Set client eviction mode for the current connection", "7.0.0")
def client_no_evict(client: Client, args: list[bytes]) -> Any:
    set_flag(client, "e", _on_off(args[2]))  # respkv never evicts clients: a flag only
    return OK


@CLIENT.sub("no-touch", 3, _FLAGS,
            "Controls whether commands sent by the client will alter the LRU/LFU of the keys "
            "they access.", "7.2.0")
def client_no_touch(client: Client, args: list[bytes]) -> Any:
    set_flag(client, "T", _on_off(args[2]))  # respkv keeps no LRU/LFU: a flag only
    return OK


@CLIENT.sub("setinfo", 4, "noscript loading stale allow_busy",
            "Set client or connection specific info", "7.2.0")
def client_setinfo(client: Client, args: list[bytes]) -> Any:
    attr = args[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        raise CommandError(E.UNRECOGNIZED_OPTION % _s(args[2]))
    for ch in args[3]:
        if ch < 33 or ch > 126:
            raise CommandError(E.CLIENT_ATTR_SPACES % _s(args[2]))
    if attr == b"lib-name":
        client.lib_name = args[3]
    else:
        client.lib_ver = args[3]
    return OK


@CLIENT.sub("reply", 3, _FLAGS, "Instruct the server whether to reply to commands", "3.2.0")
def client_reply(client: Client, args: list[bytes]) -> Any:
    mode = args[2].upper()
    if mode == b"ON":
        return OK  # replies are always on
    if mode in (b"OFF", b"SKIP"):
        raise CommandError(E.MULTI_UNSUPPORTED % ("CLIENT REPLY " + _s(mode), "every command "
                                                  "gets a reply"))
    raise CommandError(E.SYNTAX)


@CLIENT.sub("pause", -3, _ADMIN, "Stop processing commands from clients for some time",
            "2.9.50")
def client_pause(client: Client, args: list[bytes]) -> Any:
    if len(args) > 4:
        raise CommandError(E.SUBCOMMAND_SYNTAX % (_s(args[1]), "CLIENT"))
    if len(args) == 4 and args[3].upper() not in (b"WRITE", b"ALL"):
        raise CommandError(E.PAUSE_MODE)
    timeout = parse_int(args[2], E.PAUSE_TIMEOUT)
    if timeout < 0:
        raise CommandError(E.PAUSE_TIMEOUT_NEGATIVE)
    raise CommandError(E.MULTI_UNSUPPORTED % ("CLIENT PAUSE", "clients are never paused"))


@CLIENT.sub("unpause", 2, _ADMIN, "Resume processing of clients that were paused", "6.2.0",
            "O(N) Where N is the number of paused clients")
def client_unpause(client: Client, args: list[bytes]) -> Any:
    return OK  # nothing is ever paused


@CLIENT.sub("unblock", -3, _ADMIN,
            "Unblock a client blocked in a blocking command from a different connection",
            "5.0.0", "O(log N) where N is the number of client connections")
def client_unblock(client: Client, args: list[bytes]) -> Any:
    if len(args) > 4:
        raise CommandError(E.SUBCOMMAND_SYNTAX % (_s(args[1]), "CLIENT"))
    if len(args) == 4 and args[3].upper() not in (b"TIMEOUT", b"ERROR"):
        raise CommandError(E.UNBLOCK_REASON)
    target = client.server.clients.get(parse_int(args[2]))
    unblock = getattr(client.server, "unblock_client", None)  # set by the node (WAIT)
    if target is None or unblock is None:
        return 0
    return 1 if unblock(target, len(args) == 4 and args[3].upper() == b"ERROR") else 0


@CLIENT.sub("tracking", -3, _FLAGS,
            "Enable or disable server assisted client side caching support", "6.0.0",
            "O(1). Some options may introduce additional complexity.")
def client_tracking(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.MULTI_UNSUPPORTED % ("CLIENT TRACKING", "no client side caching "
                                              "invalidations are sent"))


@CLIENT.sub("caching", 3, _FLAGS,
            "Instruct the server about tracking or not keys in the next request", "6.0.0")
def client_caching(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.CACHING_WITHOUT_TRACKING)  # tracking is never on


@CLIENT.sub("getredir", 2, _FLAGS,
            "Get tracking notifications redirection client ID if any", "6.0.0")
def client_getredir(client: Client, args: list[bytes]) -> Any:
    return -1  # tracking is never on


@CLIENT.sub("trackinginfo", 2, _FLAGS,
            "Return information about server assisted client side caching for the current "
            "connection", "6.2.0")
def client_trackinginfo(client: Client, args: list[bytes]) -> Any:
    return encode_tree(
        {b"flags": SetReply([b"off"]), b"redirect": -1, b"prefixes": []}, client.resp3
    )


_CLIENT_HELP = (
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
)


@CLIENT.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
            "5.0.0")
def client_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("CLIENT", _CLIENT_HELP)
