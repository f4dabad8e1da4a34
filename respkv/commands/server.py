"""Server and introspection commands: COMMAND, INFO, CONFIG, TIME, SHUTDOWN, SLOWLOG, LASTSAVE,
SAVE and BGSAVE, MONITOR, ROLE, WAIT, MEMORY, LATENCY and ACL, with redis-server 7.0's replies
and errors (src/server.c, config.c, slowlog.c, replication.c, object.c, latency.c, acl.c).

Contracts:

* **One source of truth.** COMMAND, COMMAND INFO/DOCS/LIST/COUNT/GETKEYS are generated at call
  time from ``TABLE`` (other modules register their commands at import). What a ``CommandSpec``
  cannot say is derived the way redis-server derives it (ACL categories from flags and group) or
  looked up in the small tables of Redis facts below (key-spec flags, tips of the commands
  defined here); nothing else describes a command twice.
* **Containers.** CONFIG, COMMAND, SLOWLOG (and CLIENT, in client.py) are ``Container``s: a
  CommandSpec whose ``subcommands`` holds one CommandSpec per subcommand, named "config|get" as
  Redis 7 names them. The container's handler finds the subcommand and checks its arity, so the
  errors name 'config|get' exactly as redis-server does.
* **Purity.** Nothing here reads a clock other than ``server.clock_ms`` (and ``server.clock_us``
  when the node sets one), or the process: pid, OS, RSS and CPU time come from
  ``server.info_providers`` (registered by the node, respkv/node/info.py). Without providers
  (pure tests) those INFO fields are zero or absent.
* **Effects are requests.** SHUTDOWN only sets ``server.shutdown_requested``; the node stops
  after the reply batch. CONFIG SET calls ``server.on_config_set(key, value)`` when set.

SAVE and BGSAVE: respkv has no RDB snapshot. Every acknowledged write is already in the commit
log (fsynced per ``appendfsync``), so there is nothing for SAVE to do, and "+Background saving
started" would promise a snapshot that never happens. Both reply with an error saying so
(``E.NO_SNAPSHOT``); LASTSAVE reports the start time of the server, as redis-server does when it
has not saved since it started.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from respkv import __version__ as RESPKV_VERSION
from respkv.commands import errors as E
from respkv.commands.connection import REDIS_VERSION
from respkv.commands.core import (
    NOT_QUEUED,
    TABLE,
    Client,
    CommandSpec,
    Handler,
    ServerState,
    parse_int,
)
from respkv.commands.errors import CommandError
from respkv.config import SETTINGS_BY_REDIS_NAME, ConfigError, Setting, coerce, parse_memory
from respkv.protocol.resp import NO_REPLY, OK, Raw, SimpleString, Verbatim, encode

cmd = TABLE.command

# -- replies with RESP3 sets ---------------------------------------------------------------------


class SetReply(list):  # type: ignore[type-arg]
    """An ordered RESP3 set (``~``); an array in RESP2. Encoded by ``encode_tree`` only."""

    __slots__ = ()


def _encode_tree(value: Any, resp3: bool, out: bytearray) -> None:
    t = type(value)
    if t is SetReply or t is list:
        out += (b"~%d\r\n" if resp3 and t is SetReply else b"*%d\r\n") % len(value)
        for v in value:
            _encode_tree(v, resp3, out)
    elif t is dict:
        out += (b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) if resp3 else 2 * len(value))
        for k, v in value.items():
            _encode_tree(k, resp3, out)
            _encode_tree(v, resp3, out)
    else:
        encode(value, resp3, out)


def encode_tree(value: Any, resp3: bool) -> Raw:
    """Pre-encode a reply holding ``SetReply`` values for a client speaking RESP2 or RESP3."""
    out = bytearray()
    _encode_tree(value, resp3, out)
    return Raw(bytes(out))


# -- containers ----------------------------------------------------------------------------------

COMMAND_TIPS: dict[str, tuple[str, ...]] = {
    "dbsize": ("request_policy:all_shards", "response_policy:agg_sum"),
    "del": ("request_policy:multi_shard", "response_policy:agg_sum"),
    "dump": ("nondeterministic_output",),
    "exists": ("request_policy:multi_shard", "response_policy:agg_sum"),
    "flushall": ("request_policy:all_shards", "response_policy:all_succeeded"),
    "flushdb": ("request_policy:all_shards", "response_policy:all_succeeded"),
    "keys": ("request_policy:all_shards", "nondeterministic_output_order"),
    "mget": ("request_policy:multi_shard",),
    "mset": ("request_policy:multi_shard", "response_policy:all_succeeded"),
    "msetnx": ("request_policy:multi_shard", "response_policy:agg_min"),
    "ping": ("request_policy:all_shards", "response_policy:all_succeeded"),
    "pttl": ("nondeterministic_output",),
    "randomkey": ("request_policy:all_shards", "nondeterministic_output"),
    "scan": ("nondeterministic_output", "request_policy:special"),
    "touch": ("request_policy:multi_shard", "response_policy:agg_sum"),
    "ttl": ("nondeterministic_output",),
    "unlink": ("request_policy:multi_shard", "response_policy:agg_sum"),
}
"""Full name -> Redis 7.0 command tips (src/commands/*.json). Seeded with the generic, string and
connection commands defined in other modules; the commands defined here add theirs."""

COMMAND_ACL: dict[str, tuple[str, ...]] = {
    "dbsize": ("@keyspace",),
    "flushall": ("@keyspace", "@dangerous"),
    "flushdb": ("@keyspace", "@dangerous"),
    "keys": ("@dangerous",),
    "restore": ("@dangerous",),
    "swapdb": ("@keyspace", "@dangerous"),
}
"""Full name -> ACL categories redis-server 7.0 lists explicitly, beyond those implied by the
command's flags and group (same seeding as COMMAND_TIPS)."""


def _note(full: str, tips: str, acl: str) -> None:
    if tips:
        COMMAND_TIPS[full] = tuple(tips.split())
    if acl:
        COMMAND_ACL[full] = tuple(acl.split())


def command(
    name: str, arity: int, flags: str = "", group: str = "server", summary: str = "",
    since: str = "1.0.0", complexity: str = "O(1)", tips: str = "", acl: str = "",
) -> Callable[[Handler], Handler]:
    """``TABLE.command`` for the keyless commands defined here, plus their Redis tips and ACL."""
    _note(name, tips, acl)
    return cmd(name, arity, flags, (0, 0, 0), group, summary, since, complexity)


class Container:
    """A command with subcommands ("CONFIG GET"); see the module docstring."""

    def __init__(
        self, name: str, arity: int, group: str, summary: str, since: str,
        complexity: str = "Depends on subcommand.", flags: str = "", acl: str = "",
        bare: Handler | None = None, table: Any = TABLE,
    ) -> None:
        self.name = name
        self.group = group
        self.subs: dict[str, CommandSpec] = {}
        self.bare = bare  # handler for the container called alone (COMMAND), if it may be
        _note(name, "", acl)
        self.spec = CommandSpec(
            name, arity, tuple(flags.split()), 0, 0, 0, handler=self.dispatch, group=group,
            summary=summary, since=since, complexity=complexity, subcommands=self.subs,
        )
        if table is not None:
            table.register(self.spec)

    def sub(
        self, name: str, arity: int, flags: str, summary: str, since: str,
        complexity: str = "O(1)", tips: str = "", acl: str = "",
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            full = f"{self.name}|{name}"
            _note(full, tips, acl)
            self.subs[name] = CommandSpec(
                full, arity, tuple(flags.split()), 0, 0, 0, handler=fn, group=self.group,
                summary=summary, since=since, complexity=complexity,
            )
            return fn

        return deco

    def dispatch(self, client: Client, args: list[bytes]) -> Any:
        if len(args) == 1 and self.bare is not None:
            return self.bare(client, args)
        spec = self.subs.get(args[1].lower().decode("utf-8", "replace"))
        if spec is None:
            raise CommandError(
                E.UNKNOWN_SUBCOMMAND
                % (E.arg_text(args[1]), E.arg_text(args[0]).upper())
            )
        if not spec.arity_ok(len(args)):
            raise CommandError(E.WRONG_ARGS % spec.name)
        return spec.handler(client, args)


def help_reply(container: str, lines: Iterable[str]) -> list[SimpleString]:
    """The reply of "<CONTAINER> HELP", as addReplyHelp builds it."""
    out = [SimpleString(f"{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")]
    out += [SimpleString(line) for line in lines]
    out += [SimpleString("HELP"), SimpleString("    Prints this help.")]
    return out


# -- glob matching (Redis stringmatchlen) ----------------------------------------------------------


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    """Redis's stringmatchlen: ``*``, ``?``, ``[a-z]``, ``[^...]`` and ``\\`` escapes."""
    if nocase:
        pattern, s = pattern.lower(), s.lower()
    return _match(pattern, 0, s, 0)


def _match(p: bytes, pi: int, s: bytes, si: int) -> bool:
    pn, sn = len(p), len(s)
    while pi < pn:
        c = p[pi]
        if c == 0x2A:  # *
            while pi + 1 < pn and p[pi + 1] == 0x2A:
                pi += 1
            if pi + 1 == pn:
                return True
            for k in range(si, sn + 1):
                if _match(p, pi + 1, s, k):
                    return True
            return False
        if si >= sn:
            return False
        if c == 0x3F:  # ?
            si += 1
        elif c == 0x5B:  # [
            pi += 1
            negate = pi < pn and p[pi] == 0x5E
            if negate:
                pi += 1
            matched = False
            while pi < pn and p[pi] != 0x5D:
                if p[pi] == 0x5C and pi + 1 < pn:
                    pi += 1
                    matched |= p[pi] == s[si]
                elif pi + 2 < pn and p[pi + 1] == 0x2D:
                    lo, hi = sorted((p[pi], p[pi + 2]))
                    matched |= lo <= s[si] <= hi
                    pi += 2
                else:
                    matched |= p[pi] == s[si]
                pi += 1
            if pi >= pn:
                pi -= 1  # unterminated class: Redis treats the end as ']'
            if matched == negate:
                return False
            si += 1
        elif c == 0x5C and pi + 1 < pn:  # \x
            pi += 1
            if p[pi] != s[si]:
                return False
            si += 1
        else:
            if c != s[si]:
                return False
            si += 1
        pi += 1
    return si == sn


# -- COMMAND -------------------------------------------------------------------------------------

_FLAG_NAMES = {"noauth": "no_auth"}  # respkv's flag spelling -> what COMMAND reports

# Redis's ACLCommandCategories order, in which COMMAND lists a command's categories.
_CATEGORY_ORDER = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
    "connection", "transaction", "scripting",
)
_GROUP_CATEGORY = {
    "generic": "keyspace", "string": "string", "list": "list", "set": "set",
    "sorted_set": "sortedset", "hash": "hash", "bitmap": "bitmap", "hyperloglog": "hyperloglog",
    "geo": "geo", "stream": "stream", "pubsub": "pubsub", "connection": "connection",
    "transactions": "transaction", "scripting": "scripting",
}

KEY_SPEC_FLAGS: dict[str, tuple[str, ...]] = {
    "append": ("RW", "insert"), "decr": ("RW", "access", "update"),
    "decrby": ("RW", "access", "update"), "del": ("RM", "delete"), "dump": ("RO", "access"),
    "exists": ("RO",), "watch": ("RO",), "expire": ("RW", "update"), "expireat": ("RW", "update"),
    "expiretime": ("RO", "access"), "get": ("RO", "access"), "getdel": ("RW", "access", "delete"),
    "getex": ("RW", "access", "update"), "getrange": ("RO", "access"),
    "getset": ("RW", "access", "update"), "incr": ("RW", "access", "update"),
    "incrby": ("RW", "access", "update"), "incrbyfloat": ("RW", "access", "update"),
    "lcs": ("RO", "access"), "mget": ("RO", "access"), "move": ("RW", "access", "update"),
    "mset": ("OW", "update"), "msetnx": ("OW", "insert"), "persist": ("RW", "update"),
    "pexpire": ("RW", "update"), "pexpireat": ("RW", "update"), "pexpiretime": ("RO", "access"),
    "psetex": ("OW", "update"), "setbit": ("RW", "access", "update"),
    "bitfield": ("RW", "access", "update", "variable_flags"), "memory|usage": ("RO",), "pttl": ("RO", "access"), "restore": ("OW", "update"),
    "set": ("RW", "access", "update", "variable_flags"), "setex": ("OW", "update"),
    "setnx": ("OW", "insert"), "setrange": ("RW", "update"), "strlen": ("RO",),
    "substr": ("RO", "access"), "touch": ("RO",), "ttl": ("RO", "access"), "type": ("RO",),
    "unlink": ("RM", "delete"),
}
"""Redis 7.0's key-spec flags of the commands with one key spec (src/commands/*.json)."""

TWO_KEY_SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rename": (("RW", "access", "delete"), ("OW", "update")),
    "renamenx": (("RW", "access", "delete"), ("OW", "insert")),
    "copy": (("RO", "access"), ("OW", "update")),
    "smove": (("RW", "access", "delete"), ("RW", "insert")),
    "lmove": (("RW", "access", "delete"), ("RW", "insert")),
    "rpoplpush": (("RW", "access", "delete"), ("RW", "insert")),
    "bitop": (("OW", "update"), ("RO", "access")),
}
"""Commands whose first key has a key spec and the keys after it another, in Redis 7.0."""
KEY_SPEC_NOTES = {"bitfield": "This command allows both access and modification of the key"}


def _is_container(spec: CommandSpec) -> bool:
    return spec.subcommands is not None


NO_GROUP_CATEGORY = frozenset({"wait"})
"""Commands whose group gives them no ACL category in redis-server (WAIT is documented in the
generic group but is @slow @connection only)."""


def acl_categories(spec: CommandSpec) -> list[str]:
    """Categories as redis-server's setImplicitACLCategories adds them, plus explicit ones."""
    flags = spec.flags
    cats = set(c.lstrip("@") for c in COMMAND_ACL.get(spec.name, ()))
    if not _is_container(spec) and spec.name not in NO_GROUP_CATEGORY:
        g = _GROUP_CATEGORY.get(spec.group)
        if g is not None:
            cats.add(g)
    if "write" in flags:
        cats.add("write")
    elif "readonly" in flags and "scripting" not in cats:
        cats.add("read")
    if "admin" in flags:
        cats.update(("admin", "dangerous"))
    if "pubsub" in flags:
        cats.add("pubsub")
    if "fast" in flags:
        cats.add("fast")
    if "blocking" in flags:
        cats.add("blocking")
    if "fast" not in cats:
        cats.add("slow")
    return ["@" + c for c in _CATEGORY_ORDER if c in cats]


def _key_spec(flags: Iterable[str], index: int, lastkey: int, step: int,
              notes: str | None = None) -> dict[bytes, Any]:
    head = {} if notes is None else {b"notes": notes.encode()}
    return {
        **head,
        b"flags": SetReply(SimpleString(f) for f in flags),
        b"begin_search": {b"type": b"index", b"spec": {b"index": index}},
        b"find_keys": {
            b"type": b"range",
            b"spec": {b"lastkey": lastkey, b"keystep": step, b"limit": 0},
        },
    }


def key_spec_flags(spec: CommandSpec) -> tuple[str, ...]:
    known = KEY_SPEC_FLAGS.get(spec.name)
    if known is not None:
        return known
    return ("RW", "update") if spec.is_write else ("RO", "access")


def key_specs(spec: CommandSpec) -> list[dict[bytes, Any]]:
    """Redis 7 key specs from the legacy (first, last, step) triple."""
    if spec.first_key <= 0:
        return []
    first, last = spec.first_key, spec.last_key
    two = TWO_KEY_SPECS.get(spec.name)
    if two is not None:
        return [_key_spec(two[0], first, 0, 1),
                _key_spec(two[1], first + 1, last - first - 1 if last >= 0 else last, 1)]
    lastkey = last - first if last >= 0 else last
    return [_key_spec(key_spec_flags(spec), first, lastkey, spec.step,
                      KEY_SPEC_NOTES.get(spec.name))]


def command_info(spec: CommandSpec) -> list[Any]:
    """One entry of COMMAND / COMMAND INFO (ten fields, Redis 7 order)."""
    subs = spec.subcommands or {}
    return [
        spec.name.encode(),
        spec.arity,
        SetReply(SimpleString(_FLAG_NAMES.get(f, f)) for f in spec.flags),
        spec.first_key,
        spec.last_key,
        spec.step,
        SetReply(SimpleString(c) for c in acl_categories(spec)),
        SetReply(t.encode() for t in COMMAND_TIPS.get(spec.name, ())),
        SetReply(key_specs(spec)),
        SetReply(command_info(s) for s in subs.values()),
    ]


def command_docs(spec: CommandSpec) -> dict[bytes, Any]:
    """COMMAND DOCS of one command: summary, since, group, complexity (and subcommands).

    respkv's specs carry no argument grammar, so "arguments" is omitted (as Redis omits it for a
    command without arguments); redis-cli then shows no argument hints for that command.
    """
    doc: dict[bytes, Any] = {
        b"summary": spec.summary.encode(),
        b"since": spec.since.encode(),
        b"group": spec.group.encode(),
        b"complexity": spec.complexity.encode(),
    }
    if spec.subcommands:
        doc[b"subcommands"] = {s.name.encode(): command_docs(s) for s in spec.subcommands.values()}
    return doc


def lookup_full_name(name: bytes, table: Any = TABLE) -> CommandSpec | None:
    """A command by name, or a subcommand by "container|sub" (case-insensitive)."""
    if b"|" in name:
        container, _, sub = name.partition(b"|")
        spec = table.lookup(container)
        if spec is None or not spec.subcommands:
            return None
        return spec.subcommands.get(sub.lower().decode("utf-8", "replace"))
    return table.lookup(name)


def all_commands(table: Any = TABLE) -> list[CommandSpec]:
    return table.unique()


def _command_bare(client: Client, args: list[bytes]) -> Any:
    return encode_tree([command_info(s) for s in all_commands(client.server.table)], client.resp3)


COMMAND = Container(
    "command", -1, "server", "Get array of Redis command details", "2.8.13",
    "O(N) where N is the total number of Redis commands", flags="loading stale",
    acl="@connection", bare=_command_bare,
)
COMMAND_TIPS["command"] = ("nondeterministic_output_order",)
_CMD_FLAGS = "loading stale"
_CMD_ACL = "@connection"


@COMMAND.sub("count", 2, _CMD_FLAGS, "Get total number of Redis commands", "2.8.13", acl=_CMD_ACL)
def command_count(client: Client, args: list[bytes]) -> Any:
    return len(all_commands(client.server.table))


@COMMAND.sub(
    "info", -2, _CMD_FLAGS,
    "Get array of specific Redis command details, or all when no argument is given.", "2.8.13",
    "O(N) where N is the number of commands to look up", tips="nondeterministic_output_order",
    acl=_CMD_ACL,
)
def command_info_cmd(client: Client, args: list[bytes]) -> Any:
    if len(args) == 2:
        return _command_bare(client, args)
    out: list[Any] = []
    for name in args[2:]:
        spec = lookup_full_name(name, client.server.table)
        out.append(None if spec is None else command_info(spec))
    return encode_tree(out, client.resp3)


@COMMAND.sub(
    "docs", -2, _CMD_FLAGS, "Get array of specific Redis command documentation", "7.0.0",
    "O(N) where N is the number of commands to look up", tips="nondeterministic_output_order",
    acl=_CMD_ACL,
)
def command_docs_cmd(client: Client, args: list[bytes]) -> Any:
    if len(args) == 2:
        specs = all_commands(client.server.table)
    else:
        specs = [s for s in (lookup_full_name(n, client.server.table) for n in args[2:]) if s is not None]
    return {s.name.encode(): command_docs(s) for s in specs}


def _list_filter(args: list[bytes]) -> Callable[[CommandSpec], bool]:
    if len(args) == 2:
        return lambda s: True
    if len(args) != 5 or args[2].upper() != b"FILTERBY":
        raise CommandError(E.SYNTAX)
    kind, value = args[3].upper(), args[4]
    if kind == b"MODULE":
        return lambda s: False  # respkv has no modules
    if kind == b"ACLCAT":
        cat = "@" + value.lower().decode("utf-8", "replace")
        return lambda s: cat in acl_categories(s)
    if kind == b"PATTERN":
        return lambda s: glob_match(value, s.name.encode(), nocase=True)
    raise CommandError(E.SYNTAX)


@COMMAND.sub(
    "list", -2, _CMD_FLAGS, "Get an array of Redis command names", "7.0.0",
    "O(N) where N is the total number of Redis commands", tips="nondeterministic_output_order",
    acl=_CMD_ACL,
)
def command_list(client: Client, args: list[bytes]) -> Any:
    keep = _list_filter(args)
    out: list[bytes] = []
    for spec in all_commands(client.server.table):
        for s in (spec, *(spec.subcommands or {}).values()):
            if keep(s):
                out.append(s.name.encode())
    return out


def _getkeys_spec(args: list[bytes], table: Any = TABLE) -> tuple[CommandSpec, list[bytes]]:
    """The spec COMMAND GETKEYS[ANDFLAGS] applies to ``args[2:]``, arity-checked."""
    target = args[2:]
    spec = table.lookup(target[0])
    if spec is not None and spec.subcommands is not None and len(target) >= 2:
        sub = spec.subcommands.get(target[1].lower().decode("utf-8", "replace"))
        if sub is not None:
            spec = sub
        elif spec.subcommands:
            spec = None
    if spec is None:
        raise CommandError(E.GETKEYS_INVALID_COMMAND)
    if not spec.arity_ok(len(target)):
        raise CommandError(E.GETKEYS_INVALID_ARGS)
    if spec.first_key <= 0:
        raise CommandError(E.GETKEYS_NO_KEYS)
    return spec, target


def _resolved_key_flags(spec: CommandSpec, target: list[bytes], flags: tuple[str, ...]) -> tuple[str, ...]:
    """Resolve variable key-spec flags for one call, as setGetKeys does for SET."""
    if "variable_flags" not in flags:
        return flags
    if spec.name == "set" and not any(a.upper() == b"GET" for a in target[3:]):
        return ("OW", "update")
    return tuple(f for f in flags if f != "variable_flags")


def _keys_with_specs(spec: CommandSpec, target: list[bytes]) -> list[tuple[bytes, tuple[str, ...]]]:
    specs = key_specs(spec)
    out = []
    for pos in spec.key_positions(len(target)):
        if pos >= len(target):
            break
        ks = specs[1] if len(specs) > 1 and pos == 2 else specs[0]
        out.append((target[pos], _resolved_key_flags(spec, target, tuple(ks[b"flags"]))))
    return out


@COMMAND.sub(
    "getkeys", -4, _CMD_FLAGS, "Extract keys given a full Redis command", "2.8.13",
    "O(N) where N is the number of arguments to the command", acl=_CMD_ACL,
)
def command_getkeys(client: Client, args: list[bytes]) -> Any:
    spec, target = _getkeys_spec(args, client.server.table)
    return [k for k, _ in _keys_with_specs(spec, target)]


@COMMAND.sub(
    "getkeysandflags", -4, _CMD_FLAGS, "Extract keys and access flags given a full Redis command",
    "7.0.0", "O(N) where N is the number of arguments to the command", acl=_CMD_ACL,
)
def command_getkeysandflags(client: Client, args: list[bytes]) -> Any:
    spec, target = _getkeys_spec(args, client.server.table)
    out = [[k, SetReply(SimpleString(f) for f in flags)] for k, flags in _keys_with_specs(spec, target)]
    return encode_tree(out, client.resp3)


_COMMAND_HELP = (
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
)


@COMMAND.sub("help", 2, _CMD_FLAGS, "Show helpful text about the different subcommands", "5.0.0",
             acl=_CMD_ACL)
def command_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("COMMAND", _COMMAND_HELP)


# -- INFO ----------------------------------------------------------------------------------------

DEFAULT_SECTIONS = (
    "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
    "errorstats", "cluster", "keyspace",
)
ALL_SECTIONS = (
    "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
    "commandstats", "errorstats", "latencystats", "cluster", "storage", "hints", "repair",
    "staleness", "keyspace", "respkv",
)
"""Every section, in the order INFO prints them. "respkv" is only in all/everything."""
PROVIDED_ONLY = frozenset({"storage", "hints", "repair", "staleness"})
"""Sections shown only when the node registered a provider for them (cluster-mode ones)."""

_TITLES = {"cpu": "CPU", "modules": "Modules", "respkv": "Respkv"}


def human_bytes(n: float) -> str:
    """Redis's bytesToHuman: 1.16M, 200B, 23.54G."""
    for unit, size in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return "%.2f%s" % (n / size, unit)
    return "%dB" % n


KEYSPACE_SCAN_LIMIT = 100_000
"""INFO keyspace counts exactly up to this many keys in all; past it the line is a lower bound
marked ``partial=1``. respkv's engine is ordered, not a hash table with a size field, so an exact
count is a scan: INFO (polled by monitoring) must not stall a large node. DBSIZE stays exact."""


def _keyspace_counts(server: ServerState) -> dict[int, tuple[int, int, int, bool]]:
    """db -> (keys, keys with a TTL, average remaining TTL in ms, partial) for non-empty dbs."""
    now = server.clock_ms()
    out = {}
    budget = KEYSPACE_SCAN_LIMIT
    for n, db in enumerate(server.dbs):  # n: the database's number (SWAPDB may have moved it)
        keys = expires = ttl_sum = 0
        partial = False
        for _, rec in db.items():
            if budget <= 0:
                partial = True
                break
            budget -= 1
            keys += 1
            if rec.expire_at_ms:
                expires += 1
                ttl_sum += rec.expire_at_ms - now
        if keys:
            out[n] = (keys, expires, ttl_sum // expires if expires else 0, partial)
        if partial:
            break
    return out


def _db_stat(server: ServerState, name: str) -> int:
    return server.stats.get(name, 0) + sum(db.stats.get(name, 0) for db in server.dbs)


def now_us(server: ServerState) -> int:
    clock_us = getattr(server, "clock_us", None)
    return clock_us() if clock_us is not None else server.clock_ms() * 1000


def _server_section(server: ServerState) -> dict[str, Any]:
    uptime = max(0, (server.clock_ms() - server.start_ms) // 1000)
    hz = server.config.hz
    return {
        "redis_version": REDIS_VERSION,
        "redis_git_sha1": "00000000",
        "redis_git_dirty": 0,
        "redis_build_id": "0",
        "redis_mode": "standalone",
        "os": "",
        "arch_bits": 64,
        "monotonic_clock": "",
        "multiplexing_api": "",
        "process_id": 0,
        "process_supervised": "no",
        "run_id": server.run_id,
        "tcp_port": server.config.port,
        "server_time_usec": now_us(server),
        "uptime_in_seconds": uptime,
        "uptime_in_days": uptime // 86400,
        "hz": hz,
        "configured_hz": hz,
        "lru_clock": (server.clock_ms() // 1000) & ((1 << 24) - 1),
        "executable": "",
        "config_file": "",
        "io_threads_active": 0,
        "respkv_version": RESPKV_VERSION,
    }


def _clients_section(server: ServerState) -> dict[str, Any]:
    clients = list(server.clients.values())
    return {
        "connected_clients": len(clients),
        "cluster_connections": 0,
        "maxclients": server.config.maxclients,
        "client_recent_max_input_buffer": max((c.qbuf for c in clients), default=0),
        "client_recent_max_output_buffer": max((c.obuf for c in clients), default=0),
        "blocked_clients": sum(1 for c in clients if "b" in c.flags),  # in WAIT
        "tracking_clients": 0,
        "clients_in_timeout_table": 0,
    }


def _memory_section(server: ServerState, provided: dict[str, Any]) -> dict[str, Any]:
    used = int(provided.get("used_memory", 0))
    rss = int(provided.get("used_memory_rss", used))
    peak = max(int(provided.get("used_memory_peak", used)), used)
    total = int(provided.get("total_system_memory", 0))
    return {
        "used_memory": used,
        "used_memory_human": human_bytes(used),
        "used_memory_rss": rss,
        "used_memory_rss_human": human_bytes(rss),
        "used_memory_peak": peak,
        "used_memory_peak_human": human_bytes(peak),
        "used_memory_peak_perc": "%.2f%%" % (100.0 * used / peak if peak else 100.0),
        "total_system_memory": total,
        "total_system_memory_human": human_bytes(total),
        "maxmemory": 0,
        "maxmemory_human": "0B",
        "maxmemory_policy": "noeviction",
        "mem_fragmentation_ratio": "%.2f" % (rss / used if used else 1.0),
        "mem_allocator": "libc",
        "lazyfree_pending_objects": 0,
    }


def _persistence_section(server: ServerState) -> dict[str, Any]:
    return {
        "loading": 0,
        "async_loading": 0,
        "rdb_changes_since_last_save": 0,
        "rdb_bgsave_in_progress": 0,
        "rdb_last_save_time": server.start_ms // 1000,
        "rdb_last_bgsave_status": "ok",
        "rdb_saves": 0,
        "aof_enabled": 1 if server.config.engine == "lsm" else 0,
        # BGREWRITEAOF (respkv/commands/maintenance.py); the node's provider fills them in
        "aof_rewrite_in_progress": 0,
        "aof_rewrite_scheduled": 0,
        "aof_last_rewrite_time_sec": -1,
        "aof_current_rewrite_time_sec": -1,
        "aof_last_bgrewrite_status": "ok",
        "aof_rewrites": 0,
        "aof_rewrites_consecutive_failures": 0,
        "aof_last_write_status": "ok",
    }


def _stats_section(server: ServerState) -> dict[str, Any]:
    st = server.stats
    return {
        "total_connections_received": st.get("total_connections_received", 0),
        "total_commands_processed": st.get("total_commands_processed", 0),
        "instantaneous_ops_per_sec": 0,
        "total_net_input_bytes": st.get("total_net_input_bytes", 0),
        "total_net_output_bytes": st.get("total_net_output_bytes", 0),
        "instantaneous_input_kbps": "0.00",
        "instantaneous_output_kbps": "0.00",
        "rejected_connections": st.get("rejected_connections", 0),
        "sync_full": 0,
        "sync_partial_ok": 0,
        "sync_partial_err": 0,
        "expired_keys": _db_stat(server, "expired_keys"),
        "expired_stale_perc": "0.00",
        "expired_time_cap_reached_count": 0,
        "evicted_keys": 0,
        "evicted_clients": 0,
        "keyspace_hits": _db_stat(server, "keyspace_hits"),
        "keyspace_misses": _db_stat(server, "keyspace_misses"),
        "pubsub_channels": 0,
        "pubsub_patterns": 0,
        "pubsubshard_channels": 0,
        "latest_fork_usec": 0,
        "total_forks": 0,
        "total_error_replies": sum(server.errorstats.values()),
    }


def _replication_section(server: ServerState) -> dict[str, Any]:
    return {
        "role": "master",
        "connected_slaves": 0,
        "master_failover_state": "no-failover",
        "master_replid": server.run_id,
        "master_replid2": "0" * 40,
        "master_repl_offset": 0,
        "second_repl_offset": -1,
        "repl_backlog_active": 0,
        "repl_backlog_size": 1048576,
        "repl_backlog_first_byte_offset": 0,
        "repl_backlog_histlen": 0,
    }


def _cpu_section(server: ServerState) -> dict[str, Any]:
    return {
        "used_cpu_sys": "0.000000",
        "used_cpu_user": "0.000000",
        "used_cpu_sys_children": "0.000000",
        "used_cpu_user_children": "0.000000",
    }


def _commandstats_section(server: ServerState) -> dict[str, Any]:
    out = {}
    for name in sorted(server.cmdstats):
        calls, usec, rejected, failed = server.cmdstats[name]
        if not (calls or rejected or failed):
            continue
        out["cmdstat_" + name] = "calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d" % (
            calls, usec, usec / calls if calls else 0.0, rejected, failed,
        )
    return out


def _errorstats_section(server: ServerState) -> dict[str, Any]:
    """``errorstat_ERR:count=3``, by error code in byte order (redis-server's rax order)."""
    return {"errorstat_" + code: "count=%d" % n for code, n in sorted(server.errorstats.items())}


def _keyspace_section(server: ServerState) -> dict[str, Any]:
    return {
        "db%d" % n: "keys=%d,expires=%d,avg_ttl=%d" % (keys, expires, avg) + (",partial=1" if part else "")
        for n, (keys, expires, avg, part) in sorted(_keyspace_counts(server).items())
    }


def _respkv_section(server: ServerState) -> dict[str, Any]:
    return {
        "respkv_version": RESPKV_VERSION,
        "engine": server.config.engine,
        "appendfsync": server.config.appendfsync,
        "databases": len(server.dbs),
        "slowlog_len": len(server.slowlog),
    }


_SECTION_BUILDERS: dict[str, Callable[[ServerState], dict[str, Any]]] = {
    "server": _server_section,
    "clients": _clients_section,
    "persistence": _persistence_section,
    "stats": _stats_section,
    "replication": _replication_section,
    "cpu": _cpu_section,
    "commandstats": _commandstats_section,
    "errorstats": _errorstats_section,
    "cluster": lambda server: {"cluster_enabled": 0},
    "keyspace": _keyspace_section,
    "respkv": _respkv_section,
}


def info_section(server: ServerState, name: str) -> dict[str, Any]:
    """The fields of one INFO section: respkv's own, then what the node's provider adds.

    A provider's field replaces a field of the same name in place (keeping Redis's order) and
    new fields are appended.
    """
    provider = server.info_providers.get(name)
    provided = provider() if provider is not None else {}
    if name == "memory":
        fields = _memory_section(server, provided)
    else:
        builder = _SECTION_BUILDERS.get(name)
        fields = builder(server) if builder is not None else {}
    fields.update(provided)
    return fields


def _format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "%.2f" % v
    return str(v)


def info_text(server: ServerState, sections: Iterable[str]) -> str:
    wanted = set(sections)
    parts = []
    for name in ALL_SECTIONS:
        if name not in wanted or (name in PROVIDED_ONLY and name not in server.info_providers):
            continue
        title = _TITLES.get(name, name.capitalize())
        lines = [f"# {title}"]
        lines += [f"{k}:{_format_value(v)}" for k, v in info_section(server, name).items()]
        parts.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(parts)


def info_sections(args: list[bytes]) -> set[str]:
    """Which sections ``INFO args...`` asks for (Redis 7: several; default/all/everything)."""
    if not args:
        return set(DEFAULT_SECTIONS)
    wanted: set[str] = set()
    for a in args:
        s = a.lower().decode("utf-8", "replace")
        if s == "default":
            wanted.update(DEFAULT_SECTIONS)
        elif s in ("all", "everything"):
            wanted.update(ALL_SECTIONS)
        elif s == "module_list":
            wanted.add("modules")
        else:
            wanted.add(s)
    return wanted


@command(
    "info", -1, "loading stale", summary="Get information and statistics about the server",
    tips="nondeterministic_output request_policy:all_shards response_policy:special",
    acl="@dangerous",
)
def info(client: Client, args: list[bytes]) -> Any:
    return Verbatim(info_text(client.server, info_sections(args[1:])))


# -- TIME, LASTSAVE, SAVE, BGSAVE ----------------------------------------------------------------


@command("time", 1, "loading stale fast", summary="Return the current server time", since="2.6.0",
         tips="nondeterministic_output")
def time_(client: Client, args: list[bytes]) -> Any:
    us = now_us(client.server)
    return [b"%d" % (us // 1_000_000), b"%d" % (us % 1_000_000)]


@command("lastsave", 1, "loading stale fast",
         summary="Get the UNIX time stamp of the last successful save to disk",
         tips="nondeterministic_output", acl="@admin @dangerous")
def lastsave(client: Client, args: list[bytes]) -> Any:
    return client.server.start_ms // 1000


@command("save", 1, "admin noscript no_async_loading no_multi",
         summary="Synchronously save the dataset to disk",
         complexity="O(N) where N is the total number of keys in all databases")
def save(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.NO_SNAPSHOT % "SAVE")


@command("bgsave", -1, "admin noscript no_async_loading",
         summary="Asynchronously save the dataset to disk")
def bgsave(client: Client, args: list[bytes]) -> Any:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() != b"SCHEDULE"):
        raise CommandError(E.SYNTAX)
    raise CommandError(E.NO_SNAPSHOT % "BGSAVE")


# -- SHUTDOWN ------------------------------------------------------------------------------------


@command(
    "shutdown", -1, "admin noscript loading stale no_multi allow_busy",
    summary="Synchronously save the dataset to disk and then shut down the server",
    complexity="O(N) when saving, where N is the total number of keys in all databases when "
    "saving data, otherwise O(1)",
)
def shutdown(client: Client, args: list[bytes]) -> Any:
    """SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. On success there is no reply: the node
    closes every connection once this batch is done (``shutdown_requested`` is "save",
    "nosave" or "" for neither)."""
    nosave = save_ = abort = False
    for a in args[1:]:
        opt = a.upper()
        if opt == b"NOSAVE":
            nosave = True
        elif opt == b"SAVE":
            save_ = True
        elif opt == b"ABORT":
            abort = True
        elif opt in (b"NOW", b"FORCE"):
            pass  # respkv never waits for replicas and its shutdown cannot fail to save
        else:
            raise CommandError(E.SYNTAX)
    if (abort and len(args) > 2) or (nosave and save_):
        raise CommandError(E.SYNTAX)
    if abort:
        raise CommandError(E.NO_SHUTDOWN_IN_PROGRESS)
    client.server.shutdown_requested = "nosave" if nosave else ("save" if save_ else "")
    return NO_REPLY


# -- CONFIG --------------------------------------------------------------------------------------

LLONG_MAX = (1 << 63) - 1

REDIS_ONLY_CONFIG: dict[str, Callable[[ServerState], str]] = {
    "save": lambda s: "",
    "appendonly": lambda s: "yes" if s.config.engine == "lsm" else "no",
    "maxmemory": lambda s: "0",
    "maxmemory-policy": lambda s: "noeviction",
    "cluster-enabled": lambda s: "no",
    "notify-keyspace-events": lambda s: "",
    "io-threads": lambda s: "1",
}
"""Redis parameters clients ask for (redis-benchmark: save, appendonly) whose value is fixed by
what respkv is. CONFIG SET accepts the current value only."""

REDIS_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "maxclients": (1, 4294967295),
    "timeout": (0, 2147483647),
    "hz": (0, 2147483647),
    "slowlog-log-slower-than": (-1, LLONG_MAX),
    "proto-max-bulk-len": (1024 * 1024, LLONG_MAX),
    "client-query-buffer-limit": (1024 * 1024, LLONG_MAX),
}
"""CONFIG SET ranges as redis-server 7.0 declares them (config.c), for the shared parameters."""

REDIS_ENUM_ORDER = {"appendfsync": ("everysec", "always", "no")}
"""Choices in the order redis-server lists them in its error message."""

MAX_HZ = 500  # CONFIG_MAX_HZ: a larger hz is accepted and clamped


def config_get_all(server: ServerState) -> dict[str, str]:
    out = {name: fn(server) for name, fn in REDIS_ONLY_CONFIG.items()}
    for name in SETTINGS_BY_REDIS_NAME:
        out[name] = server.config.get_redis(name)
    return out


def _int_bounds(s: Setting) -> tuple[int, int]:
    known = REDIS_INT_BOUNDS.get(s.redis_name)
    if known is not None:
        return known
    lo = int(s.minimum) if s.minimum is not None else -LLONG_MAX - 1
    hi = int(s.maximum) if s.maximum is not None else LLONG_MAX
    return lo, hi


def parse_config_value(s: Setting, raw: bytes) -> Any:
    """A CONFIG SET value checked as redis-server checks it; CommandError with Redis's text."""
    name = s.redis_name
    text = raw.decode("utf-8", "replace")

    def fail(why: str) -> CommandError:
        return CommandError(E.INVALID_CONFIG % (name, why))

    if s.type is bool:
        low = text.lower()
        if low not in ("yes", "no"):
            raise fail("argument must be 'yes' or 'no'")
        return low == "yes"
    if s.type is int:
        try:
            if s.unit == "bytes":
                v = parse_memory(text)
            else:
                v = parse_int(raw)
        except (ValueError, CommandError):
            raise fail("argument must be a memory value" if s.unit == "bytes"
                       else "argument couldn't be parsed into an integer") from None
        lo, hi = _int_bounds(s)
        if v < lo or v > hi:
            raise fail("argument must be between %d and %d inclusive" % (lo, hi))
        if s.key == "hz":
            v = min(max(v, 1), MAX_HZ)
        return v
    if s.choices:
        order = REDIS_ENUM_ORDER.get(name, s.choices)
        if text.lower() not in s.choices:
            raise fail("argument(s) must be one of the following: " + ", ".join(order))
    try:
        return coerce(s, text)
    except ConfigError as e:
        raise fail(str(e)) from None


CONFIG = Container("config", -2, "server", "A container for server configuration commands", "2.0.0")
_CFG_FLAGS = "admin noscript loading stale"


@CONFIG.sub(
    "get", -3, _CFG_FLAGS, "Get the values of configuration parameters", "2.0.0",
    "O(N) when N is the number of configuration parameters provided",
)
def config_get(client: Client, args: list[bytes]) -> Any:
    # redis-server 7.0 configGetCommand: a name without glob characters is looked up directly
    # and answered under the spelling the client typed; globs answer under the canonical name.
    # One entry per setting, the first pattern that names it wins.
    everything = config_get_all(client.server)
    seen: set[str] = set()
    out: dict[bytes, bytes] = {}
    for pattern in args[2:]:
        if not any(c in pattern for c in b"[*?"):
            name = pattern.lower().decode("latin-1")
            if name in everything and name not in seen:
                seen.add(name)
                out[pattern] = everything[name].encode()
            continue
        for name, value in everything.items():
            bname = name.encode()
            if name not in seen and glob_match(pattern, bname, nocase=True):
                seen.add(name)
                out[bname] = value.encode()
    return out


@CONFIG.sub(
    "set", -4, _CFG_FLAGS, "Set configuration parameters to the given values", "2.0.0",
    "O(N) when N is the number of configuration parameters provided",
    tips="request_policy:all_nodes response_policy:all_succeeded",
)
def config_set(client: Client, args: list[bytes]) -> Any:
    server = client.server
    if len(args) % 2:
        raise CommandError(E.SYNTAX)
    changes: list[tuple[Setting, Any, str]] = []
    seen: set[str] = set()
    for i in range(2, len(args), 2):
        name = args[i].lower().decode("utf-8", "replace")
        shown = E.arg_text(args[i], None)
        if name in REDIS_ONLY_CONFIG:
            if args[i + 1].decode("utf-8", "replace") != REDIS_ONLY_CONFIG[name](server):
                raise CommandError(E.INVALID_CONFIG % (shown, E.CONFIG_FIXED_BY_RESPKV))
            seen.add(name)
            continue
        setting = SETTINGS_BY_REDIS_NAME.get(name)
        if setting is None:
            raise CommandError(E.UNKNOWN_CONFIG % shown)
        if name in seen:
            raise CommandError(E.INVALID_CONFIG % (shown, "duplicate parameter"))
        seen.add(name)
        if not setting.runtime:
            raise CommandError(E.INVALID_CONFIG % (shown, "can't set immutable config"))
        changes.append((setting, parse_config_value(setting, args[i + 1]), name))
    # Every value is valid: apply them all (CONFIG SET is all or nothing).
    for setting, value, name in changes:
        server.config.set(setting.key, value)
        if server.on_config_set is not None:
            server.on_config_set(setting.key, server.config.get_redis(name))
    return OK


def reset_stats(server: ServerState) -> None:
    """CONFIG RESETSTAT: the counters INFO reports go back to zero (the slow log stays)."""
    for k in server.stats:
        server.stats[k] = 0
    for db in server.dbs:
        for k in db.stats:
            db.stats[k] = 0
    server.cmdstats.clear()
    server.errorstats.clear()


@CONFIG.sub("resetstat", 2, _CFG_FLAGS, "Reset the stats returned by INFO", "2.0.0")
def config_resetstat(client: Client, args: list[bytes]) -> Any:
    reset_stats(client.server)
    return OK


@CONFIG.sub("rewrite", 2, _CFG_FLAGS,
            "Rewrite the configuration file with the in memory configuration", "2.8.0")
def config_rewrite(client: Client, args: list[bytes]) -> Any:
    if not getattr(client.server, "config_file", ""):
        raise CommandError(E.NO_CONFIG_FILE)
    raise CommandError(E.MULTI_UNSUPPORTED % ("CONFIG REWRITE", "the TOML config file is "
                                              "maintained by the operator"))


_CONFIG_HELP = (
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
)


@CONFIG.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
            "5.0.0")
def config_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("CONFIG", _CONFIG_HELP)


# -- SLOWLOG -------------------------------------------------------------------------------------

SLOWLOG = Container("slowlog", -2, "server", "A container for slow log commands", "2.2.12")
_SLOW_FLAGS = "admin loading stale"


@SLOWLOG.sub(
    "get", -2, _SLOW_FLAGS, "Get the slow log's entries", "2.2.12",
    "O(N) where N is the number of entries returned",
    tips="request_policy:all_nodes nondeterministic_output",
)
def slowlog_get(client: Client, args: list[bytes]) -> Any:
    if len(args) > 3:
        raise CommandError(E.SUBCOMMAND_SYNTAX % (E.arg_text(args[1], None), "SLOWLOG"))
    count = 10
    if len(args) == 3:
        try:
            count = parse_int(args[2])
        except CommandError:
            raise CommandError(E.SLOWLOG_COUNT) from None
        if count < -1:
            raise CommandError(E.SLOWLOG_COUNT)
    entries = list(client.server.slowlog)
    if count != -1:
        entries = entries[:count]
    return [
        [e.id, e.time_s, e.duration_us, list(e.args), e.peer.encode(), e.name.encode()]
        for e in entries
    ]


@SLOWLOG.sub(
    "len", 2, _SLOW_FLAGS, "Get the slow log's length", "2.2.12",
    tips="request_policy:all_nodes response_policy:agg_sum nondeterministic_output",
)
def slowlog_len(client: Client, args: list[bytes]) -> Any:
    return len(client.server.slowlog)


@SLOWLOG.sub(
    "reset", 2, _SLOW_FLAGS, "Clear all entries from the slow log", "2.2.12",
    "O(N) where N is the number of entries in the slowlog",
    tips="request_policy:all_nodes response_policy:all_succeeded",
)
def slowlog_reset(client: Client, args: list[bytes]) -> Any:
    client.server.slowlog.clear()
    return OK


_SLOWLOG_HELP = (
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
)


@SLOWLOG.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
             "6.2.0")
def slowlog_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("SLOWLOG", _SLOWLOG_HELP)


# -- MONITOR -------------------------------------------------------------------------------------
#
# Sans I/O, as everything here: MONITOR asks the node to feed this connection
# (``server.start_monitor(client)``, set by respkv/node/server.py), and the node asks the
# functions below which commands a monitor is shown and how (redis-server 7.0: call() feeds a
# command once it ran, with the database the client has then; replicationFeedMonitors formats
# it; commands refused before running, queued in a transaction, or flagged admin are not shown).

_ARG_QUOTED = tuple(
    {0x5C: b"\\\\", 0x22: b'\\"', 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x07: b"\\a",
     0x08: b"\\b"}.get(c, bytes((c,)) if 0x20 <= c <= 0x7E else b"\\x%02x" % c)
    for c in range(256)
)
_NEEDS_QUOTING = re.compile(rb'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def quote_arg(arg: bytes) -> bytes:
    """``arg`` as redis-server's sdscatrepr writes it: in double quotes, ``\\`` and ``"``
    escaped, \\n \\r \\t \\a \\b by name, other bytes outside 0x20..0x7e as \\xhh."""
    if _NEEDS_QUOTING.search(arg) is None:
        return b'"' + arg + b'"'
    return b'"' + b"".join([_ARG_QUOTED[c] for c in arg]) + b'"'


def monitor_line(time_us: int, db: int, peer: str, args: list[bytes]) -> bytes:
    """One line of MONITOR output: ``+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"``."""
    return b"+%d.%06d [%d %s] %s\r\n" % (
        time_us // 1_000_000, time_us % 1_000_000, db, peer.encode("utf-8", "replace"),
        b" ".join([quote_arg(a) for a in args]),
    )


def called_spec(spec: CommandSpec, args: list[bytes]) -> CommandSpec | None:
    """The command or subcommand ``args`` runs, or None when redis-server refuses them before
    running anything (wrong arity, unknown subcommand: processCommand's checks)."""
    if not spec.arity_ok(len(args)):
        return None
    subs = spec.subcommands
    if subs is None or len(args) == 1:
        return spec
    sub = subs.get(args[1].lower().decode("utf-8", "replace"))
    if sub is None or not sub.arity_ok(len(args)):
        return None
    return sub


def hidden_from_monitors(spec: CommandSpec) -> bool:
    """Administrative commands are not shown ("too dangerous to be shown": CONFIG, CLIENT
    LIST, SLOWLOG, ACL LIST, LATENCY LATEST, MONITOR itself...), nor skip_monitor ones."""
    flags = spec.flags
    return "admin" in flags or "skip_monitor" in flags


def shown_to_monitors(spec: CommandSpec | None, client: Client, args: list[bytes]) -> bool:
    """Whether redis-server 7.0 feeds this command to its monitors, asked right after it ran for
    ``client``: it was run (known, right arity, authenticated, not queued in -- nor refused
    while queuing for -- a transaction) and is not hidden. EXEC feeds the commands it ran
    itself (``hidden_from_monitors`` for each), before EXEC."""
    if spec is None:
        return False
    called = called_spec(spec, args)
    if called is None:
        return False
    if not client.authenticated and "noauth" not in spec.flags:
        return False
    if client.multi is not None and spec.name not in NOT_QUEUED:
        return False
    return not hidden_from_monitors(called)


def touches_keyspace(spec: CommandSpec, args: list[bytes]) -> bool:
    """A command a monitor connection may not run (redis-server treats a monitor as a replica:
    "Replica can't interact with the keyspace"): one that reads or writes keys."""
    called = called_spec(spec, args) or spec
    flags = called.flags
    return "readonly" in flags or "write" in flags or "may_replicate" in flags


@command("monitor", 1, "admin noscript loading stale",
         summary="Listen for all requests received by the server in real time")
def monitor(client: Client, args: list[bytes]) -> Any:
    """From now on the connection is sent every command the server runs (the node feeds it,
    see respkv/node/server.py); a second MONITOR on it gets no reply at all, as redis-server."""
    if client.executing >= 0:  # run by EXEC: its client expects one reply per command
        raise CommandError(E.MONITOR_DENY_BLOCKING)
    start = getattr(client.server, "start_monitor", None)
    if start is None:
        raise CommandError(E.MONITOR_NO_NODE)
    return OK if start(client) else NO_REPLY


# -- ROLE, WAIT ----------------------------------------------------------------------------------


@command("role", 1, "noscript loading stale fast",
         summary="Return the role of the instance in the context of replication", since="2.8.12",
         acl="@admin @dangerous")
def role(client: Client, args: list[bytes]) -> Any:
    """A master with no replicas and replication offset 0: what a standalone redis-server says.
    In cluster mode too: every node accepts writes (a master in Redis's words) and no node
    replicates another's whole dataset, so there is no replica to list (each key's copies live
    on the N nodes of its preference list: RESPKV RING shows them)."""
    return [b"master", 0, []]


def _as_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


@command("wait", 3, "noscript", group="generic",
         summary="Wait for the synchronous replication of all the write commands sent in the "
         "context of the current connection", since="3.0.0",
         tips="request_policy:all_shards response_policy:agg_min", acl="@connection")
def wait(client: Client, args: list[bytes]) -> Any:
    """WAIT numreplicas timeout on a node without replicas: 0 at once when no replica is asked
    for (redis-server keeps a blocked client's count as a C int: 2^31, 2^32... count as 0 or
    negative, and such a WAIT is answered at once too) or
    when run by EXEC (a transaction never blocks); otherwise the connection waits ``timeout``
    ms (0: until CLIENT UNBLOCK or a disconnect) and gets 0. The waiting is the node's:
    ``server.block_client(client, timeout_ms)`` returns the marker it awaits after this batch's
    earlier replies went out; without a node there is nobody to wait, and the answer is 0.

    Cluster mode: every write already waited for its W acknowledgements before it was
    answered, so WAIT has nothing to add; it answers an error saying how to ask for more."""
    server = client.server
    if getattr(server, "cluster", None) is not None:
        raise CommandError(E.CLUSTER_UNSUPPORTED % ("WAIT", E.WAIT_CLUSTER_REASON))
    numreplicas = parse_int(args[1])
    timeout = parse_int(args[2], E.PAUSE_TIMEOUT)  # getTimeoutFromObjectOrReply's texts
    if timeout < 0:
        raise CommandError(E.PAUSE_TIMEOUT_NEGATIVE)
    if numreplicas <= 0 or _as_int32(numreplicas) <= 0 or client.executing >= 0:
        return 0
    block = getattr(server, "block_client", None)
    if block is None:
        return 0
    return block(client, timeout)


# -- MEMORY --------------------------------------------------------------------------------------

MEMORY_USAGE_ENTRY_OVERHEAD = 280
"""Bytes MEMORY USAGE adds to a key's own bytes: the Python memory one stored entry costs beyond
its key, value and meta bytes (dict slot, record tuple, object headers), the figure respkv's
storage measured with tracemalloc and sizes its memtables with (respkv/storage/lsm.py
ENTRY_OVERHEAD; a test keeps the two equal)."""

MEMORY_DOCTOR_EMPTY = (
    "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be "
    "used in these conditions. Please, leave for your mission on Earth and fill it with some "
    "data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n"
)
MEMORY_DOCTOR_FINE = (
    "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs "
    "on this base.\n"
)
MEMORY_DOCTOR_ISSUES = "Sam, I detected a few issues in this Redis instance memory implants:\n\n"
MEMORY_DOCTOR_PEAK = (
    " * Peak memory: In the past this instance used more than 150% the memory that is currently "
    "using. The allocator is normally not able to release memory after a peak, so you can expect "
    "to see a big fragmentation ratio, however this is actually harmless and is only due to the "
    "memory peak, and if the Redis instance Resident Set Size (RSS) is currently bigger than "
    "expected, the memory will be used as soon as you fill the Redis instance with more data. If "
    "the memory peak was only occasional and you want to try to reclaim memory, please try the "
    "MEMORY PURGE command, otherwise the only other option is to shutdown and restart the "
    "instance.\n\n"
)
MEMORY_DOCTOR_CLIENT_BUFFERS = (
    " * Big client buffers: The clients output buffers in this instance are greater than 200K per "
    "client (on average). This may result from different causes, like Pub/Sub clients subscribed "
    "to channels bot not receiving data fast enough, so that data piles on the Redis instance "
    "output buffer, or clients sending commands with large replies or very large sequences of "
    "commands in the same pipeline. Please use the CLIENT LIST command in order to investigate "
    "the issue if it causes problems in your instance, or to understand better why certain "
    "clients are using a big amount of memory.\n\n"
)
MEMORY_DOCTOR_END = "I'm here to keep you safe, Sam. I want to help you.\n"
MALLOC_STATS = "Stats not supported for the current allocator"
"""redis-server's MEMORY MALLOC-STATS without jemalloc; respkv runs on CPython's allocator."""

MEMORY = Container("memory", -2, "server", "A container for memory diagnostics commands", "4.0.0")
_MEMORY_TIPS = "nondeterministic_output request_policy:all_shards response_policy:special"


def memory_usage(key_bytes: int, stored_bytes: int) -> int:
    """MEMORY USAGE's estimate of one entry: the stored key (with respkv's prefix), the stored
    value and meta, and the per-entry overhead of the storage (MEMORY_USAGE_ENTRY_OVERHEAD)."""
    return key_bytes + stored_bytes + MEMORY_USAGE_ENTRY_OVERHEAD


def _memory_usage_of(client: Client, key: bytes) -> int | None:
    cluster = getattr(client.server, "cluster", None)
    if cluster is not None:
        # This node's own copy of the key (nil when it holds none, or only a deletion).
        from respkv.cluster.hashing import token_of, token_prefix
        from respkv.cluster.versions import decode_sibling_set, live_value

        raw = cluster.replica.read_raw(client.dbnum, key)
        if not raw or live_value(decode_sibling_set(raw), client.server.clock_ms()) is None:
            return None
        return memory_usage(len(token_prefix(token_of(key))) + 2 + len(key), len(raw))
    db = client.db
    # As redis-server's dictFind: the stored entry, expired or not, untouched.
    rec = db.engine.get(db.prefix + key)
    if rec is None:
        return None
    return memory_usage(len(db.prefix) + len(key), len(rec.value) + len(rec.meta))


def memory_usage_cmd(client: Client, args: list[bytes]) -> Any:
    """MEMORY USAGE key [SAMPLES count]: see ``memory_usage``; SAMPLES is checked as
    redis-server checks it and otherwise unused (a value is one string: nothing to sample)."""
    i = 3
    while i < len(args):
        if args[i].lower() == b"samples" and i + 1 < len(args):
            if parse_int(args[i + 1]) < 0:
                raise CommandError(E.SYNTAX)
            i += 2
        else:
            raise CommandError(E.SYNTAX)
    return _memory_usage_of(client, args[2])


_note("memory|usage", "", "")
MEMORY.subs["usage"] = CommandSpec(
    "memory|usage", -3, ("readonly",), 2, 2, 1, handler=memory_usage_cmd, group="server",
    summary="Estimate the memory usage of a key", since="4.0.0",
    complexity="O(N) where N is the number of samples.",
)


@MEMORY.sub("malloc-stats", 2, "", "Show allocator internal stats", "4.0.0",
            "Depends on how much memory is allocated, could be slow", tips=_MEMORY_TIPS)
def memory_malloc_stats(client: Client, args: list[bytes]) -> Any:
    return MALLOC_STATS.encode()


def _f32(x: float) -> float:
    """``x`` through a C float, as redis-server computes its percentages."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def memory_overview(server: ServerState) -> dict[str, int | float]:
    """The figures MEMORY STATS reports (a subset of redis-server's, those respkv can compute).

    Memory is the process's resident set (respkv counts no allocations; ``used_memory`` in INFO
    is the RSS too), ``startup.allocated`` the RSS when the node started, ``clients.normal``
    the client buffers respkv holds (query buffers, pending replies, pending MONITOR output);
    there is no replication backlog, replica, Lua or function cache. ``keys.count`` is INFO
    keyspace's count (exact up to KEYSPACE_SCAN_LIMIT keys)."""
    provider = server.info_providers.get("memory")
    mem = provider() if provider is not None else {}
    used = int(mem.get("used_memory", 0))
    peak = max(int(mem.get("used_memory_peak", used)), used)
    startup = int(getattr(server, "memory_startup_bytes", 0))
    clients = sum(c.qbuf + c.obuf for c in list(server.clients.values()))
    overhead = startup + clients
    keys = sum(n for n, _, _, _ in _keyspace_counts(server).values())
    net = used - startup if used > startup else 1
    dataset = max(0, used - overhead)
    return {
        "peak.allocated": peak,
        "total.allocated": used,
        "startup.allocated": startup,
        "replication.backlog": 0,
        "clients.slaves": 0,
        "clients.normal": clients,
        "lua.caches": 0,
        "functions.caches": 0,
        "overhead.total": overhead,
        "keys.count": keys,
        "keys.bytes-per-key": net // keys if keys else 0,
        "dataset.bytes": dataset,
        "dataset.percentage": _f32(dataset * 100 / net),
        "peak.percentage": _f32(used * 100 / peak) if peak else 0.0,
    }


@MEMORY.sub("stats", 2, "", "Show memory usage details", "4.0.0", tips=_MEMORY_TIPS)
def memory_stats(client: Client, args: list[bytes]) -> Any:
    return {k.encode(): v for k, v in memory_overview(client.server).items()}


@MEMORY.sub("purge", 2, "", "Ask the allocator to release memory", "4.0.0",
            "Depends on how much memory is allocated, could be slow",
            tips="request_policy:all_shards response_policy:all_succeeded")
def memory_purge(client: Client, args: list[bytes]) -> Any:
    return OK  # as redis-server without jemalloc: CPython returns free arenas by itself


_MEMORY_HELP = (
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
)


@MEMORY.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
            "4.0.0")
def memory_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("MEMORY", _MEMORY_HELP)


def memory_doctor_report(server: ServerState) -> str:
    """redis-server's getMemoryDoctorReport, with the checks that mean something in respkv:
    almost no memory in use, a peak above 150% of the current use, client buffers above 200 KB
    per client (on average). Fragmentation, allocator and script checks have no counterpart."""
    m = memory_overview(server)
    used = int(m["total.allocated"])
    if used < 5 * 1024 * 1024:
        return MEMORY_DOCTOR_EMPTY
    big_peak = m["peak.allocated"] / used > 1.5
    nclients = len(server.clients)
    big_buffers = nclients > 0 and m["clients.normal"] // nclients > 200 * 1024
    if not (big_peak or big_buffers):
        return MEMORY_DOCTOR_FINE
    return (MEMORY_DOCTOR_ISSUES + (MEMORY_DOCTOR_PEAK if big_peak else "")
            + (MEMORY_DOCTOR_CLIENT_BUFFERS if big_buffers else "") + MEMORY_DOCTOR_END)


@MEMORY.sub("doctor", 2, "", "Outputs memory problems report", "4.0.0", tips=_MEMORY_TIPS)
def memory_doctor(client: Client, args: list[bytes]) -> Any:
    return Verbatim(memory_doctor_report(client.server))


# -- LATENCY -------------------------------------------------------------------------------------
#
# respkv has no latency monitor (redis-server's latency-monitor-threshold, off by default there
# too): no latency event is ever recorded, so LATEST, HISTORY and RESET answer as redis-server
# with the monitor off and GRAPH has no samples. HISTOGRAM is real: the node keeps a latency
# histogram per command (INFO latencystats, /metrics) and ``server.command_latency()`` hands
# them over as {command: (calls, [(bucket upper bound in us, cumulative count), ...])}.

LATENCY_DOCTOR = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is not implemented in respkv: no "
    "latency events are recorded, so LATENCY LATEST, HISTORY and GRAPH have no samples. The "
    "latency distribution of every command is in LATENCY HISTOGRAM and INFO latencystats.\n"
)

LATENCY = Container("latency", -2, "server", "A container for latency diagnostics commands",
                    "2.8.13")
_LAT_FLAGS = "admin noscript loading stale"
_LAT_TIPS = "nondeterministic_output request_policy:all_nodes response_policy:special"


@LATENCY.sub("reset", -2, _LAT_FLAGS, "Reset latency data for one or more events.", "2.8.13",
             tips="request_policy:all_nodes response_policy:all_succeeded")
def latency_reset(client: Client, args: list[bytes]) -> Any:
    return 0  # events reset: there are none


@LATENCY.sub("history", 3, _LAT_FLAGS, "Return timestamp-latency samples for the event.",
             "2.8.13", tips=_LAT_TIPS)
def latency_history(client: Client, args: list[bytes]) -> Any:
    return []


@LATENCY.sub("latest", 2, _LAT_FLAGS, "Return the latest latency samples for all events.",
             "2.8.13", tips=_LAT_TIPS)
def latency_latest(client: Client, args: list[bytes]) -> Any:
    return []


@LATENCY.sub("graph", 3, _LAT_FLAGS, "Return a latency graph for the event.", "2.8.13",
             tips=_LAT_TIPS)
def latency_graph(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.NO_LATENCY_SAMPLES % E.arg_text(args[2], None))


_LATENCY_HELP = (
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the "
    "specified command names.",
    "    If no commands are specified then all histograms are replied.",
)


@LATENCY.sub("help", 2, "loading stale", "Show helpful text about the different subcommands.",
             "2.8.13")
def latency_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("LATENCY", _LATENCY_HELP)


@LATENCY.sub("doctor", 2, _LAT_FLAGS, "Return a human readable latency analysis report.",
             "2.8.13", tips=_LAT_TIPS)
def latency_doctor(client: Client, args: list[bytes]) -> Any:
    return Verbatim(LATENCY_DOCTOR)


def _latency_entry(calls: int, buckets: list[tuple[int, int]]) -> dict[bytes, Any]:
    return {b"calls": calls, b"histogram_usec": dict(buckets)}


@LATENCY.sub("histogram", -2, _LAT_FLAGS, "Return the cumulative distribution of latencies of a "
             "subset of commands or all.", "7.0.0",
             "O(N) where N is the number of commands with latency information being retrieved.",
             tips=_LAT_TIPS)
def latency_histogram(client: Client, args: list[bytes]) -> Any:
    """{command: {calls, histogram_usec: {bucket upper bound (us): calls at or below it}}}, for
    the commands that ran since the last CONFIG RESETSTAT, as redis-server 7.0 (its buckets are
    powers of two; respkv's are the node's latency buckets, 1-1.2-1.5-2-...-9 per decade, and
    only buckets where the cumulative count grows are listed, as redis-server does). A command's
    subcommands are timed under the command's name (CONFIG, not CONFIG|GET). Named commands
    that do not exist or never ran are left out."""
    source = getattr(client.server, "command_latency", None)
    known: dict[str, tuple[int, list[tuple[int, int]]]] = source() if source is not None else {}
    out: dict[bytes, Any] = {}
    if len(args) == 2:
        for name, (calls, buckets) in known.items():
            out[name.encode()] = _latency_entry(calls, buckets)
        return out
    for raw in args[2:]:
        spec = lookup_full_name(raw, client.server.table)
        if spec is None:
            continue
        for s in (spec, *(spec.subcommands or {}).values()):
            entry = known.get(s.name)
            if entry is not None:
                out[s.name.encode()] = _latency_entry(*entry)
    return out


# -- ACL -----------------------------------------------------------------------------------------
#
# respkv has one user, "default", allowed everything, with requirepass as its password (none:
# nopass). What can be answered about that user is answered as redis-server answers it; what
# would create, change or record users (SETUSER, LOG) is an error saying so.

ACL = Container("acl", -2, "server", "A container for Access List Control commands ", "6.0.0")
_ACL_FLAGS = "noscript loading stale"
_ACL_ADMIN = "admin noscript loading stale"
DEFAULT_USER = "default"


def _acl_subcommand_syntax(args: list[bytes]) -> CommandError:
    return CommandError(E.SUBCOMMAND_SYNTAX % (E.arg_text(args[1]), E.arg_text(args[0]).upper()))


def _password_hash(server: ServerState) -> str | None:
    password = server.config.requirepass
    return hashlib.sha256(password.encode()).hexdigest() if password else None


@ACL.sub("genpass", -2, _ACL_FLAGS, "Generate a pseudorandom secure password to use for ACL users",
         "6.0.0")
def acl_genpass(client: Client, args: list[bytes]) -> Any:
    """``bits`` (default 256) random bits as hex, from the node's secure random source
    (``server.nonce``, os.urandom)."""
    if len(args) > 3:
        raise _acl_subcommand_syntax(args)
    bits = parse_int(args[2]) if len(args) == 3 else 256
    if bits <= 0 or bits > 4096:
        raise CommandError(E.ACL_GENPASS_BITS)
    nonce = getattr(client.server, "nonce", None)
    if nonce is None:
        raise CommandError(E.MULTI_UNSUPPORTED % ("ACL GENPASS", "no secure random source here"))
    chars = (bits + 3) // 4
    return bytes(nonce((chars + 1) // 2)).hex()[:chars].encode()


@ACL.sub("getuser", 3, _ACL_ADMIN, "Get the rules for a specific ACL user", "6.0.0",
         "O(N). Where N is the number of password, command and pattern rules that the user has.")
def acl_getuser(client: Client, args: list[bytes]) -> Any:
    if args[2] != DEFAULT_USER.encode():
        return None
    digest = _password_hash(client.server)
    flags = SetReply([b"on"] if digest else [b"on", b"nopass"])
    return encode_tree({
        b"flags": flags,
        b"passwords": [digest.encode()] if digest else [],
        b"commands": b"+@all",
        b"keys": b"~*",
        b"channels": b"&*",
        b"selectors": [],
    }, client.resp3)


@ACL.sub("log", -2, _ACL_ADMIN, "List latest events denied because of ACLs in place", "6.0.0",
         "O(N) with N being the number of entries shown.")
def acl_log(client: Client, args: list[bytes]) -> Any:
    if len(args) > 3:
        raise _acl_subcommand_syntax(args)
    if len(args) == 3:
        if args[2].lower() == b"reset":
            return OK  # nothing recorded, nothing to forget
        parse_int(args[2])
    raise CommandError(E.MULTI_UNSUPPORTED % ("ACL LOG", E.ACL_LOG_REASON))


_ACL_HELP = (
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
)


@ACL.sub("help", 2, "loading stale", "Show helpful text about the different subcommands",
         "6.0.0")
def acl_help(client: Client, args: list[bytes]) -> Any:
    return help_reply("ACL", _ACL_HELP)


@ACL.sub("dryrun", -4, _ACL_ADMIN, "Returns whether the user can execute the given command "
         "without executing the command.", "7.0.0", "O(1).")
def acl_dryrun(client: Client, args: list[bytes]) -> Any:
    """The default user may run every command: OK for any command this server has, with the
    arity redis-server checks; its errors otherwise."""
    if args[2] != DEFAULT_USER.encode():
        raise CommandError(E.ACL_USER_NOT_FOUND % E.arg_text(args[2], None))
    target = args[3:]
    spec = client.server.table.lookup(target[0])
    if spec is not None and spec.subcommands and len(target) >= 2:
        spec = spec.subcommands.get(target[1].lower().decode("utf-8", "replace"))
    if spec is None:
        raise CommandError(E.ACL_COMMAND_NOT_FOUND % E.arg_text(target[0], None))
    if not spec.arity_ok(len(target)):
        raise CommandError(E.WRONG_ARGS % spec.name)
    return OK


@ACL.sub("setuser", -3, _ACL_ADMIN, "Modify or create the rules for a specific ACL user",
         "6.0.0", "O(N). Where N is the number of rules provided.")
def acl_setuser(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.MULTI_UNSUPPORTED % ("ACL SETUSER", E.ACL_ONE_USER_REASON))


@ACL.sub("whoami", 2, _ACL_FLAGS, "Return the name of the user associated to the current "
         "connection", "6.0.0")
def acl_whoami(client: Client, args: list[bytes]) -> Any:
    return client.user.encode()


@ACL.sub("save", 2, _ACL_ADMIN, "Save the current ACL rules in the configured ACL file", "6.0.0",
         "O(N). Where N is the number of configured users.")
def acl_save(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.ACL_NO_FILE)  # respkv has no ACL file, as this redis-server had none


@ACL.sub("list", 2, _ACL_ADMIN, "List the current ACL rules in ACL config file format", "6.0.0",
         "O(N). Where N is the number of configured users.")
def acl_list(client: Client, args: list[bytes]) -> Any:
    digest = _password_hash(client.server)
    password = "#" + digest if digest else "nopass"
    return [f"user {DEFAULT_USER} on {password} ~* &* +@all".encode()]


@ACL.sub("cat", -2, _ACL_FLAGS, "List the ACL categories or the commands inside a category",
         "6.0.0", "O(1) since the categories and commands are a fixed set.")
def acl_cat(client: Client, args: list[bytes]) -> Any:
    """The 21 categories, or the commands and subcommands of this server in one (by name; the
    order of redis-server's is its hash table's)."""
    if len(args) > 3:
        raise _acl_subcommand_syntax(args)
    if len(args) == 2:
        return [c.encode() for c in _CATEGORY_ORDER]
    cat = args[2].lower().decode("latin-1")
    if cat not in _CATEGORY_ORDER:
        raise CommandError(E.ACL_UNKNOWN_CATEGORY % E.arg_text(args[2], None))
    want = "@" + cat
    out: list[bytes] = []
    for spec in all_commands(client.server.table):
        for s in (spec, *(spec.subcommands or {}).values()):
            if want in acl_categories(s):
                out.append(s.name.encode())
    return out


@ACL.sub("users", 2, _ACL_ADMIN, "List the username of all the configured ACL rules", "6.0.0",
         "O(N). Where N is the number of configured users.")
def acl_users(client: Client, args: list[bytes]) -> Any:
    return [DEFAULT_USER.encode()]


@ACL.sub("deluser", -3, _ACL_ADMIN, "Remove the specified ACL users and the associated rules",
         "6.0.0", "O(1) amortized time considering the typical user.")
def acl_deluser(client: Client, args: list[bytes]) -> Any:
    """No user but "default" exists, and "default" cannot be removed: 0, or that error."""
    if any(a == DEFAULT_USER.encode() for a in args[2:]):
        raise CommandError(E.ACL_DEFAULT_UNDELETABLE)
    return 0


@ACL.sub("load", 2, _ACL_ADMIN, "Reload the ACLs from the configured ACL file", "6.0.0",
         "O(N). Where N is the number of configured users.")
def acl_load(client: Client, args: list[bytes]) -> Any:
    raise CommandError(E.ACL_NO_FILE)
