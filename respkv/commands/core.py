"""The command table, client and server state, and the dispatcher. Sans I/O.

The fakeredis habit: every command is one declarative ``CommandSpec`` (name, arity, flags, key
positions, handler) registered in a ``CommandTable``; COMMAND, COMMAND INFO/DOCS/COUNT, arity and
auth checks all read the table, so there is one source of truth.

A handler is ``handler(client: Client, args: list[bytes]) -> reply`` where ``args[0]`` is the
command name as sent. It is synchronous and does no I/O: it reads and writes through
``client.db`` (a ``Keyspace``) and the ``client.server`` state, and returns a reply value that
``respkv.protocol.resp.encode`` understands, or raises ``CommandError``. Effects on other
connections or on the process (CLIENT KILL, SHUTDOWN, QUIT) are requests recorded on the state
and carried out by the node layer.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from respkv.commands import errors as E
from respkv.commands.errors import CommandError, RejectedError
from respkv.commands.keyspace import Keyspace, load_db_map, unwatch_all
from respkv.config import Config
from respkv.protocol.resp import ErrorReply, SimpleString
from respkv.storage.api import Engine

log = logging.getLogger("respkv.commands")

Handler = Callable[["Client", list[bytes]], Any]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str  # lower case, as COMMAND reports it
    arity: int  # Redis convention: N exact, -N at least N (the name counts)
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    step: int
    handler: Handler
    group: str
    summary: str = ""
    since: str = "1.0.0"
    complexity: str = "O(1)"
    subcommands: dict[str, CommandSpec] | None = None

    @property
    def is_write(self) -> bool:
        return "write" in self.flags

    def key_positions(self, argc: int) -> range:
        if self.first_key == 0:
            return range(0)
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return range(self.first_key, last + 1, self.step)

    def arity_ok(self, argc: int) -> bool:
        a = self.arity
        return argc == a if a > 0 else argc >= -a


class CommandTable:
    def __init__(self) -> None:
        self.specs: dict[bytes, CommandSpec] = {}

    def register(self, spec: CommandSpec) -> None:
        self.specs[spec.name.encode()] = spec
        self.specs[spec.name.upper().encode()] = spec

    def command(
        self,
        name: str,
        arity: int,
        flags: str = "",
        keys: tuple[int, int, int] = (0, 0, 0),
        group: str = "generic",
        summary: str = "",
        since: str = "1.0.0",
        complexity: str = "O(1)",
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``@table.command("get", 2, "readonly fast", (1, 1, 1), "string")``."""

        def deco(fn: Handler) -> Handler:
            self.register(
                CommandSpec(
                    name, arity, tuple(flags.split()), *keys, handler=fn, group=group,
                    summary=summary, since=since, complexity=complexity,
                )
            )
            return fn

        return deco

    def lookup(self, name: bytes) -> CommandSpec | None:
        spec = self.specs.get(name)
        if spec is None:
            spec = self.specs.get(name.lower())
        return spec

    def copy(self) -> CommandTable:
        """A table with the same commands; registering into it leaves this one unchanged (a
        cluster node adds its commands to its own copy, never to the shared TABLE)."""
        t = CommandTable()
        t.specs = dict(self.specs)
        return t

    def unique(self) -> list[CommandSpec]:
        seen: dict[str, CommandSpec] = {}
        for s in self.specs.values():
            seen[s.name] = s
        return sorted(seen.values(), key=lambda s: s.name)


TABLE = CommandTable()
"""The table of every command; modules in respkv.commands register into it at import."""


@dataclass(slots=True)
class SlowlogEntry:
    id: int
    time_s: int
    duration_us: int
    args: list[bytes]
    peer: str
    name: str


class Client:
    """Per-connection state. Owned by the connection's task; read by CLIENT LIST elsewhere."""

    __slots__ = (
        "id", "server", "db", "dbnum", "resp3", "name", "lib_name", "lib_ver", "authenticated",
        "user", "peer", "laddr", "created_ms", "last_ms", "last_cmd", "close_after_reply",
        "killed", "read_level", "write_level", "qbuf", "obuf", "flags", "multi", "multi_error",
        "watched", "dirty_cas", "executing", "__weakref__",
    )

    def __init__(self, server: ServerState, client_id: int, peer: str = "", laddr: str = "") -> None:
        self.id = client_id
        self.server = server
        self.dbnum = 0
        self.db = server.dbs[0]
        self.resp3 = False
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.authenticated = not server.config.requirepass
        self.user = "default"
        self.peer = peer
        self.laddr = laddr
        self.created_ms = server.clock_ms()
        self.last_ms = self.created_ms
        self.last_cmd = "NULL"
        self.close_after_reply = False  # QUIT, or a protocol error: close once replies are sent
        self.killed = False  # CLIENT KILL: the node closes the connection at once
        self.read_level: Any = None  # per-connection consistency (cluster); None: server default
        self.write_level: Any = None
        self.qbuf = 0
        self.obuf = 0
        self.flags = "N"
        # Transactions (respkv/commands/transactions.py): the commands queued since MULTI (None:
        # not in MULTI), whether one was refused while queuing (EXEC then aborts), the keys this
        # client WATCHes ([keyspace, key, expired when watched, client]) and whether one of
        # them was touched since.
        self.multi: list[tuple[CommandSpec, list[bytes]]] | None = None
        self.multi_error = False
        self.watched: list[list[Any]] = []
        self.dirty_cas = False
        self.executing = -1  # while EXEC runs: how many commands it runs (CLIENT LIST multi=)

    def select(self, db: int) -> None:
        self.dbnum = db
        self.db = self.server.dbs[db]


class ServerState:
    """Everything commands may see of the server. Pure: the node injects clock and callbacks."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        clock_ms: Callable[[], int],
        *,
        run_id: str = "0" * 40,
        rng: Any = None,
        db_map: bool = True,
    ) -> None:
        """``db_map``: the databases follow the database map stored in ``engine`` (single-node
        mode, docs/formats/dbmap.md; DbMapError if it is damaged). A cluster node passes False:
        its keys are stored by ring token, the identity is all it uses and nothing is read."""
        self.table = TABLE  # the commands this server runs (a cluster node: its own copy)
        self.config = config
        # Randomness for RANDOMKEY and the like: any object with .random() and .randrange(n);
        # the node passes a random.Random(), tests a seeded one; None means "first choice".
        self.rng = rng
        self.engine = engine
        self.clock_ms = clock_ms
        self.run_id = run_id
        self.start_ms = clock_ms()
        # The database map: entry n is the physical database (stored key prefix) of the database
        # a client SELECTs as n, and dbs[n] is its Keyspace, so that a command pays nothing for
        # the map (a client holds its resolved Keyspace: Client.db). SWAPDB exchanges two of
        # each and persists the map (respkv/commands/databases.py).
        self.db_map = (load_db_map(engine, config.databases) if db_map
                       else list(range(config.databases)))
        self.dbs = [Keyspace(engine, p, clock_ms) for p in self.db_map[:config.databases]]
        self.clients: dict[int, Client] = {}
        self._next_client_id = 0
        self.stats: dict[str, int] = {
            "total_connections_received": 0,
            "total_commands_processed": 0,
            "rejected_connections": 0,
            "total_net_input_bytes": 0,
            "total_net_output_bytes": 0,
            "expired_keys": 0,
        }
        self.cmdstats: dict[str, list[int]] = {}  # name -> [calls, usec, rejected, failed]
        self.slowlog: deque[SlowlogEntry] = deque(maxlen=config.slowlog_max_len)
        self.slowlog_next_id = 0
        self.shutdown_requested: str | None = None  # "save"/"nosave"/"" once SHUTDOWN was called
        self.info_providers: dict[str, Callable[[], dict[str, Any]]] = {}
        self.on_config_set: Callable[[str, str], None] | None = None
        # INFO errorstats: error code ("ERR", "WRONGTYPE", ...) -> error replies sent with it
        # (total_error_replies is their sum); reset by CONFIG RESETSTAT with cmdstats.
        self.errorstats: dict[str, int] = {}
        # Set by the node: ``perf_us()`` a monotonic microsecond clock timing the commands EXEC
        # runs (None: they count 0 us); its latency histograms, ``on_new_cmdstat(name)`` called
        # when a cmdstats entry is made (the node makes the command's histogram with it) and
        # ``observe_latency(name, us)`` for each call counted by account_command.
        self.perf_us: Callable[[], int] | None = None
        self.on_new_cmdstat: Callable[[str], Any] | None = None
        self.observe_latency: Callable[[str, int], None] | None = None
        # DEBUG SET-ACTIVE-EXPIRE: the node's active expiry cycle runs only while this is true.
        self.active_expire_enabled = True

    def new_client(self, peer: str = "", laddr: str = "") -> Client:
        self._next_client_id += 1
        c = Client(self, self._next_client_id, peer, laddr)
        self.clients[c.id] = c
        self.stats["total_connections_received"] += 1
        return c

    def drop_client(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        if client.watched:
            unwatch_all(client)

    def cmdstat(self, name: str) -> list[int]:
        """The INFO commandstats entry of ``name``: [calls, usec, rejected, failed]."""
        st = self.cmdstats.get(name)
        if st is None:
            st = self.cmdstats[name] = [0, 0, 0, 0]
            if self.on_new_cmdstat is not None:
                self.on_new_cmdstat(name)
        return st

    def slowlog_record(self, duration_us: int, args: list[bytes], client: Client) -> None:
        if duration_us < self.config.slowlog_log_slower_than or self.config.slowlog_log_slower_than < 0:
            return
        shown = [a if len(a) <= 128 else a[:128] + b"... (%d more bytes)" % (len(a) - 128) for a in args[:32]]
        if len(args) > 32:
            shown[-1] = b"... (%d more arguments)" % (len(args) - 31)
        self.slowlog.appendleft(
            SlowlogEntry(
                self.slowlog_next_id, self.clock_ms() // 1000, duration_us, shown, client.peer,
                client.name.decode("utf-8", "replace"),
            )
        )
        self.slowlog_next_id += 1


def _unknown_command(args: list[bytes]) -> CommandError:
    # redis-server: arguments appended while the list is shorter than 128 bytes, each cut to
    # what is left of the 128.
    shown = ""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'%s' " % E.arg_text(a, 128 - len(shown))
    return CommandError(E.UNKNOWN_COMMAND % (E.arg_text(args[0]), shown))


def dispatch(table: CommandTable, client: Client, args: list[bytes]) -> Any:
    """Look the command up and run it for ``client``; returns the reply value."""
    spec = table.specs.get(args[0])
    if spec is None:
        spec = table.lookup(args[0])
    return execute(spec, client, args)


def execute(spec: CommandSpec | None, client: Client, args: list[bytes]) -> Any:
    """Run one looked-up command; returns the reply value (errors as ErrorReply values).

    The hot path: an arity check, an auth check, the handler. Timing, stats and slowlog are
    the caller's (the node's), so that this stays free of clocks. Between MULTI and EXEC the
    command is checked and queued instead (``_queue``; respkv/commands/transactions.py).
    """
    if client.multi is not None:
        return _queue(spec, client, args)
    if spec is None:
        return _unknown_command(args)
    a = spec.arity
    n = len(args)
    if (n != a) if a > 0 else (n < -a):
        return _reject(spec, client, (E.WRONG_ARGS % spec.name).removeprefix("ERR "))
    if not client.authenticated and "noauth" not in spec.flags:
        # (a protected command's own refusal comes first; when authenticated, its handler's)
        return _reject(spec, client, _protected_or(spec, client, E.NOAUTH))
    try:
        return spec.handler(client, args)
    except ErrorReply as e:
        return e
    except Exception:
        # A bug in one handler must not take the connection or the node down: the client gets
        # an error, the server log gets the traceback.
        return _handler_failed(spec, client)


# Run even between MULTI and EXEC, as redis-server's processCommand does (the others queue).
NOT_QUEUED = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})
PROTECTED_COMMANDS = frozenset({"debug"})
"""redis-server's CMD_PROTECTED commands (not a flag COMMAND shows): see protected_refusal."""
QUEUED = SimpleString("QUEUED")


def _queue(spec: CommandSpec | None, client: Client, args: list[bytes]) -> Any:
    """A command sent after MULTI: refused (and the transaction marked to abort) when EXEC
    could never run it -- unknown, wrong arity, not authenticated, not allowed in a transaction
    -- else queued (``+QUEUED``); EXEC, DISCARD, MULTI, WATCH, QUIT and RESET run now (their
    handlers see ``client.multi``)."""
    if spec is None:
        client.multi_error = True
        return _unknown_command(args)
    # execute's own checks, which it inlines (the hot path)
    a = spec.arity
    n = len(args)
    if (n != a) if a > 0 else (n < -a):
        return _reject(spec, client, (E.WRONG_ARGS % spec.name).removeprefix("ERR "))
    refusal = _protected_or(spec, client, None)  # DEBUG not enabled: refused now, as Redis
    if refusal is not None:
        return _reject(spec, client, refusal)
    if not client.authenticated and "noauth" not in spec.flags:
        return _reject(spec, client, E.NOAUTH)
    if "no_multi" in spec.flags:
        return _reject(spec, client, E.NOT_IN_TRANSACTION)
    if spec.name in NOT_QUEUED:
        try:
            return spec.handler(client, args)
        except ErrorReply as e:
            return e
        except Exception:
            return _handler_failed(spec, client)
    assert client.multi is not None
    client.multi.append((spec, args))
    return QUEUED


def _reject(spec: CommandSpec, client: Client, error: str) -> RejectedError:
    """redis-server's rejectCommand: inside MULTI the transaction will abort; a rejected EXEC
    (in MULTI or not) answers EXECABORT quoting the error (a formatted one without its ERR, a
    shared one whole) and leaves MULTI. ``error``: without ERR if it is a formatted one."""
    if client.multi is not None:
        client.multi_error = True
    if spec.name == "exec":
        from respkv.commands.transactions import discard_transaction

        discard_transaction(client)
        return RejectedError(E.EXECABORT_BECAUSE % error)
    return RejectedError(error if not error[0].islower() else "ERR " + error)


def _protected_or(spec: CommandSpec, client: Client, otherwise: Any) -> Any:
    if spec.name in PROTECTED_COMMANDS:
        refusal = protected_refusal(client)
        if refusal is not None:
            return refusal
    return otherwise


def protected_refusal(client: Client) -> str | None:
    """Why a ``protected`` command (DEBUG) may not run for ``client``, or None: redis-server
    7.0's enable-debug-command, ``no`` by default (refused), ``yes``, or ``local`` (only from a
    loopback address or a unix socket: a peer without a port)."""
    mode = client.server.config.enable_debug_command
    if mode == "yes" or (mode == "local" and is_local_peer(client.peer)):
        return None
    return E.DEBUG_NOT_ALLOWED


def is_local_peer(peer: str) -> bool:
    """redis-server's islocalClient for a peer "host:port" ("" or a path: a unix socket)."""
    host, sep, _ = peer.rpartition(":")
    if not sep:
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host in ("", "localhost")
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


# -- INFO commandstats and errorstats --------------------------------------------------------------


def count_error_reply(server: ServerState, reply: ErrorReply) -> None:
    """One error reply sent (redis-server's afterErrorReply): INFO errorstats counts it under its
    code, the text before the first space within its first 32 bytes ("ERR" without one)."""
    text = str(reply)
    space = text.find(" ", 0, 32)
    code = text[:space] if space >= 0 else "ERR"
    errorstats = server.errorstats
    errorstats[code] = errorstats.get(code, 0) + 1


def account_command(server: ServerState, spec: CommandSpec | None, client: Client,
                    args: list[bytes], reply: Any, dt_us: int) -> None:
    """The statistics of one dispatched command, as redis-server 7.0 keeps them: a command
    queued by MULTI counts nothing now (EXEC counts it when it runs it); a rejected one
    (``RejectedError``) one ``rejected_calls`` and no call; any other one call, its time, and
    one ``failed_calls`` if it answered an error; every error reply is counted in errorstats;
    the slow log records calls from ``slowlog-log-slower-than`` on (not EXEC's own: its
    commands are recorded one by one). The node's serve loop inlines the common case (no
    error); EXEC (respkv/commands/transactions.py) and the node's other paths call this."""
    if spec is None:
        if isinstance(reply, ErrorReply):
            count_error_reply(server, reply)
        return
    client.last_cmd = spec.name
    if reply is QUEUED:
        return
    st = server.cmdstat(spec.name)
    if isinstance(reply, ErrorReply):
        count_error_reply(server, reply)
        if isinstance(reply, RejectedError):
            st[2] += 1
            return
        st[3] += 1
    st[0] += 1
    st[1] += dt_us
    observe = server.observe_latency
    if observe is not None:
        observe(spec.name, dt_us)
    if dt_us >= server.config.slowlog_log_slower_than >= 0 and "skip_slowlog" not in spec.flags:
        server.slowlog_record(dt_us, args, client)


def _handler_failed(spec: CommandSpec, client: Client) -> CommandError:
    log.exception("event=command_failed command=%s", spec.name)
    client.server.stats["internal_errors"] = client.server.stats.get("internal_errors", 0) + 1
    return CommandError(E.INTERNAL % spec.name)


# -- argument helpers shared by the command modules ---------------------------------------------

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def parse_int(b: bytes, err: str = E.NOT_INTEGER) -> int:
    """Parse a Redis integer argument exactly as string2ll: no spaces, no '+', no leading zeros."""
    if not b or len(b) > 20:
        raise CommandError(err)
    c0 = b[0]
    if not (48 <= c0 <= 57 or (c0 == 45 and len(b) > 1)):
        raise CommandError(err)
    if (c0 == 48 and len(b) > 1) or b.startswith(b"-0"):
        raise CommandError(err)
    try:
        v = int(b)
    except ValueError:
        raise CommandError(err) from None
    if not b.lstrip(b"-").isdigit() or v < INT64_MIN or v > INT64_MAX:
        raise CommandError(err)
    return v


def parse_float(b: bytes, err: str = E.NOT_FLOAT) -> float:
    """Parse a Redis float argument as strtold does for INCRBYFLOAT/ZADD: no spaces, no NaN."""
    if not b or b[:1].isspace() or b[-1:].isspace():
        raise CommandError(err)
    try:
        v = float(b)
    except ValueError:
        raise CommandError(err) from None
    if v != v:
        raise CommandError(err)
    low = b.lower()
    if b"_" in b or low.startswith((b"0x", b"-0x", b"+0x")):
        raise CommandError(err)
    return v

