"""Typed configuration: one table of settings serves the TOML file, command-line flags, CONFIG
GET/SET and conf/respkv.toml's documentation.

Each ``Setting`` names its TOML key (snake_case; CONFIG GET uses the Redis spelling with dashes),
type, default, unit and meaning. Loading validates everything: an unknown key or a bad value
raises ``ConfigError`` naming the key and why, so start-up stops with a clear message.
"""

from __future__ import annotations

import textwrap
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    type: type
    default: Any
    unit: str
    doc: str
    runtime: bool = False  # CONFIG SET may change it
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def redis_name(self) -> str:
        return self.key.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("bind", str, "127.0.0.1", "address", "Address the client port listens on."),
    Setting("port", int, 6379, "port", "Client (RESP) port.", minimum=0, maximum=65535),
    Setting("dir", str, "./data", "path", "Data directory (commit log, tables, hints)."),
    Setting("engine", str, "lsm", "", "Storage engine: lsm (durable) or memory (tests).",
            choices=("lsm", "memory")),
    Setting("databases", int, 16, "count", "Number of databases (SELECT 0..N-1).", minimum=1,
            maximum=65535),
    Setting("maxclients", int, 10000, "count", "Maximum simultaneous client connections.",
            runtime=True, minimum=1),
    Setting("timeout", int, 0, "seconds", "Close a client idle this long (0: never).",
            runtime=True, minimum=0),
    Setting("requirepass", str, "", "", "Password of the default user (empty: none).",
            runtime=True),
    Setting("protected_mode", bool, True, "", "Without a password, accept only loopback clients.",
            runtime=True),
    Setting("enable_debug_command", str, "no", "", "Who may run DEBUG (SLEEP, OBJECT, "
            "SET-ACTIVE-EXPIRE, HELP): nobody (no, redis-server 7.0's default), everyone (yes), "
            "or clients on a loopback address or unix socket (local).",
            choices=("no", "yes", "local")),
    Setting("proto_max_bulk_len", int, 512 * 1024 * 1024, "bytes",
            "Largest bulk string a client may send.", runtime=True, minimum=1024 * 1024),
    Setting("client_output_buffer_limit_hard", int, 0, "bytes",
            "Close a normal client whose pending output exceeds this (0: no limit; the server "
            "already stops reading from a client whose output is not draining).", runtime=True,
            minimum=0),
    Setting("client_query_buffer_limit", int, 1024 * 1024 * 1024, "bytes",
            "Largest query buffer of a client.", runtime=True, minimum=1024 * 1024),
    Setting("appendfsync", str, "everysec", "", "Commit-log fsync policy: always (acknowledge "
            "after fsync, group commit), everysec, or no.", runtime=True,
            choices=("always", "everysec", "no")),
    Setting("aof_load_truncated", bool, False, "", "Skip a corrupt commit-log record in the "
            "middle of the log at start-up instead of refusing to start.", runtime=True),
    Setting("memtable_bytes", int, 64 * 1024 * 1024, "bytes",
            "Memtable size at which it is frozen and flushed to a table.", minimum=64 * 1024),
    Setting("block_cache_bytes", int, 64 * 1024 * 1024, "bytes", "SSTable block cache size.",
            minimum=0),
    Setting("tombstone_grace_seconds", int, 864000, "seconds",
            "How long tombstones outlive their write before compaction may drop them.",
            minimum=0),
    Setting("hz", int, 10, "per second", "Frequency of background tasks (active expiry, client "
            "timeouts).", runtime=True, minimum=1, maximum=500),
    Setting("slowlog_log_slower_than", int, 10000, "microseconds",
            "Log commands slower than this (negative: never).", runtime=True),
    Setting("slowlog_max_len", int, 128, "entries", "Slow log length.", minimum=0),
    Setting("loglevel", str, "notice", "", "Log level: debug, verbose, notice, warning.",
            runtime=True, choices=("debug", "verbose", "notice", "warning")),
    Setting("metrics_port", int, 0, "port", "Port of the Prometheus text endpoint (GET /metrics, "
            "on the bind address; 0: off).", minimum=0, maximum=65535),
    Setting("tls_port", int, 0, "port", "Client port speaking RESP over TLS, on the bind address, "
            "next to the plain port (0: off).", minimum=0, maximum=65535),
    Setting("tls_cert_file", str, "", "path", "Server certificate chain (PEM), required with "
            "tls_port."),
    Setting("tls_key_file", str, "", "path", "Private key of tls_cert_file (PEM, unencrypted)."),
    Setting("tls_ca_cert_file", str, "", "path", "CA certificates (PEM) that client certificates "
            "must be signed by; set: clients must present one (mutual TLS); empty: none asked."),
    # -- cluster mode (docs/cluster.md): on when node_id or seeds is set --
    Setting("node_id", str, "", "", "This node's id in the cluster (empty with no seeds: a plain "
            "single node, not a cluster)."),
    Setting("dc", str, "dc1", "", "This node's datacenter (for LOCAL_* consistency levels)."),
    Setting("seeds", str, "", "HOST:PEERPORT,...", "Peers to connect to at start-up, comma "
            "separated (`respkv server --seed HOST:PEERPORT`, repeatable)."),
    Setting("cluster_secret_file", str, "", "path", "File holding the cluster secret (at least "
            "16 bytes; trailing whitespace ignored) that peers prove with HMAC-SHA256; required "
            "in cluster mode."),
    Setting("peer_port", int, 0, "port", "Peer (node-to-node) port (0: the client port + 10000).",
            minimum=0, maximum=65535),
    Setting("peer_advertise", str, "", "HOST:PORT", "The peer address this node announces (in "
            "the handshake and its gossip row) for other nodes to dial, instead of "
            "bind:peer_port: behind NAT or port forwarding, or a test's fault proxy (empty: "
            "bind:peer_port)."),
    Setting("n_replicas", int, 3, "count", "Replication factor N (capped at the number of nodes; "
            "per key prefix in the [n_replicas_by_prefix] table).", minimum=1, maximum=64),
    Setting("read_consistency", str, "quorum", "level", "Default read level R: one, two, three, "
            "quorum, all, local_one, local_quorum, each_quorum or an integer."),
    Setting("write_consistency", str, "quorum", "level", "Default write level W (as "
            "read_consistency)."),
    Setting("request_timeout_ms", int, 2000, "milliseconds", "How long a coordinator waits for "
            "replicas before replying NOREPLICAS.", minimum=1),
    Setting("replicas_per_dc", str, "", "DC:COUNT,...", "Replicas per datacenter (e.g. "
            "dc1:3,dc2:2, as Cassandra's NetworkTopologyStrategy); empty: n_replicas over the "
            "whole ring, datacenters ignored for placement."),
    Setting("rack", str, "rack1", "", "This node's rack (replicas of a key prefer distinct racks)."),
    Setting("gossip_interval_ms", int, 1000, "milliseconds", "How often this node gossips its "
            "membership row (heartbeat) to one random peer.", minimum=10),
    Setting("phi_threshold", float, 8.0, "", "Phi-accrual conviction threshold: a peer whose "
            "phi exceeds it is marked down (Cassandra's phi_convict_threshold).", minimum=1.0,
            maximum=30.0),
    Setting("hinted_handoff", bool, True, "", "Write to a fallback node with a hint when a "
            "replica is down, and replay the hint when it is back (Cassandra's "
            "hinted_handoff_enabled). Off: the write needs W natural replicas."),
    Setting("max_hint_window_ms", int, 3 * 3600 * 1000, "milliseconds", "Hints older than this "
            "are dropped; anti-entropy repairs the rest (Cassandra's max_hint_window).",
            minimum=1),
    Setting("hint_replay_per_second", int, 1000, "hints/second", "Rate limit of hint replay to "
            "a node that came back.", minimum=1),
    Setting("read_repair", str, "blocking", "", "How replicas found stale by a read are "
            "repaired: blocking (before the reply, as Cassandra's BLOCKING), background (after "
            "the reply) or none.", choices=("blocking", "background", "none")),
    Setting("read_repair_chance", float, 0.0, "probability", "Probability that a read also asks "
            "every other replica and repairs them (Cassandra's read_repair_chance).",
            minimum=0.0, maximum=1.0),
    Setting("clock_offset_ms", int, 0, "milliseconds", "Testing aid: added to this node's wall "
            "clock (expiry, write timestamps, hint ages), to inject clock skew between nodes. "
            "Leave 0 in production."),
    Setting("anti_entropy_interval_ms", int, 60000, "milliseconds", "How often this node "
            "compares one token range with one replica by Merkle tree and exchanges the keys "
            "that differ (jittered; 0: only on `respkv admin repair`).", minimum=0),
    Setting("gc_grace_seconds", int, 864000, "seconds", "A cluster key whose every version is a "
            "delete or an expired value, for at least this long, is removed from this node's "
            "storage with its history (Cassandra's gc_grace_seconds). Every replica must learn "
            "of a delete within it (the hint window and a full anti-entropy cycle are shorter), "
            "and a node down for longer must be wiped before it rejoins, or deleted keys can "
            "come back: such a node refuses to start (see allow_stale_rejoin).", minimum=0),
    Setting("allow_stale_rejoin", bool, False, "", "Let a cluster member start that was down "
            "longer than gc_grace_seconds. Its copy may hold keys deleted meanwhile whose "
            "deletes were purged elsewhere, and anti-entropy would bring them back (Cassandra's "
            "zombie keys), so by default it refuses; wipe its data directory to bring it back "
            "as a new member, or set this for one start when nothing was deleted meanwhile."),
    Setting("left_row_ttl_s", int, 3 * 86400, "seconds", "How long a member that left "
            "(decommission, removenode) keeps its row in the gossiped membership; then each "
            "node drops the row and refuses it for as long again (Cassandra keeps a LEFT "
            "state 3 days). 0: forever.", minimum=0),
    Setting("purge_interval_ms", int, 3600 * 1000, "milliseconds", "How often this node walks "
            "its stored keys to remove those past gc_grace_seconds (jittered; 0: never).",
            minimum=0),
    Setting("stream_page_bytes", int, 1024 * 1024, "bytes", "Size of one page of keys sent "
            "by range streaming (join, decommission) and anti-entropy.", minimum=4096,
            maximum=16 * 1024 * 1024),
    Setting("peer_tls", bool, False, "", "Peer (node-to-node) connections over mutual TLS: "
            "every node presents peer_tls_cert_file and accepts only peers whose certificate "
            "is signed by peer_tls_ca_cert_file (the HMAC handshake still runs inside). All "
            "nodes of a cluster must agree."),
    Setting("peer_tls_cert_file", str, "", "path", "This node's peer certificate chain (PEM), "
            "used both to accept and to dial (allow TLS server and client use); required with "
            "peer_tls."),
    Setting("peer_tls_key_file", str, "", "path", "Private key of peer_tls_cert_file (PEM, "
            "unencrypted)."),
    Setting("peer_tls_ca_cert_file", str, "", "path", "CA certificates (PEM) every peer's "
            "certificate must be signed by (a CA for the cluster's nodes only; host names are "
            "not checked); required with peer_tls."),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
LOG_LEVELS = {"debug": 10, "verbose": 20, "notice": 20, "warning": 30}
"""loglevel's choices as Python logging levels (DEBUG, INFO, INFO, WARNING)."""
SETTINGS_BY_REDIS_NAME = {s.redis_name: s for s in SETTINGS}


@dataclass(slots=True)
class Config:
    bind: str = "127.0.0.1"
    port: int = 6379
    dir: str = "./data"
    engine: str = "lsm"
    databases: int = 16
    maxclients: int = 10000
    timeout: int = 0
    requirepass: str = ""
    protected_mode: bool = True
    enable_debug_command: str = "no"
    proto_max_bulk_len: int = 512 * 1024 * 1024
    client_output_buffer_limit_hard: int = 0
    client_query_buffer_limit: int = 1024 * 1024 * 1024
    appendfsync: str = "everysec"
    aof_load_truncated: bool = False
    memtable_bytes: int = 64 * 1024 * 1024
    block_cache_bytes: int = 64 * 1024 * 1024
    tombstone_grace_seconds: int = 864000
    hz: int = 10
    slowlog_log_slower_than: int = 10000
    slowlog_max_len: int = 128
    loglevel: str = "notice"
    metrics_port: int = 0
    tls_port: int = 0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_cert_file: str = ""
    node_id: str = ""
    dc: str = "dc1"
    seeds: str = ""
    cluster_secret_file: str = ""
    peer_port: int = 0
    peer_advertise: str = ""
    n_replicas: int = 3
    read_consistency: str = "quorum"
    write_consistency: str = "quorum"
    request_timeout_ms: int = 2000
    replicas_per_dc: str = ""
    rack: str = "rack1"
    gossip_interval_ms: int = 1000
    phi_threshold: float = 8.0
    hinted_handoff: bool = True
    max_hint_window_ms: int = 3 * 3600 * 1000
    hint_replay_per_second: int = 1000
    read_repair: str = "blocking"
    read_repair_chance: float = 0.0
    clock_offset_ms: int = 0
    anti_entropy_interval_ms: int = 60000
    gc_grace_seconds: int = 864000
    purge_interval_ms: int = 3600 * 1000
    left_row_ttl_s: int = 3 * 86400
    allow_stale_rejoin: bool = False
    stream_page_bytes: int = 1024 * 1024
    peer_tls: bool = False
    peer_tls_cert_file: str = ""
    peer_tls_key_file: str = ""
    peer_tls_ca_cert_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def set(self, key: str, value: Any) -> None:
        """Validate and set one setting (TOML value, or a string from a flag or CONFIG SET)."""
        setting = SETTINGS_BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"unknown setting '{key}'")
        setattr(self, key, coerce(setting, value))

    def get_redis(self, redis_name: str) -> str:
        s = SETTINGS_BY_REDIS_NAME[redis_name]
        v = getattr(self, s.key)
        if s.type is bool:
            return "yes" if v else "no"
        return str(v)


def coerce(setting: Setting, value: Any) -> Any:
    key = setting.key
    t = setting.type
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("yes", "true", "1", "no", "false", "0"):
            return value.lower() in ("yes", "true", "1")
        raise ConfigError(f"'{key}' must be a boolean (yes/no), got {value!r}")
    if t is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = parse_memory(value) if setting.unit == "bytes" else int(value)
            except ValueError:
                raise ConfigError(f"'{key}' must be an integer, got {value!r}") from None
        if not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        if setting.minimum is not None and value < setting.minimum:
            raise ConfigError(f"'{key}' must be >= {_num(setting.minimum)}, got {value}")
        if setting.maximum is not None and value > setting.maximum:
            raise ConfigError(f"'{key}' must be <= {_num(setting.maximum)}, got {value}")
        return value
    if t is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"'{key}' must be a number, got {value!r}") from None
        if not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        value = float(value)
        if setting.minimum is not None and value < setting.minimum:
            raise ConfigError(f"'{key}' must be >= {_num(setting.minimum)}, got {value:g}")
        if setting.maximum is not None and value > setting.maximum:
            raise ConfigError(f"'{key}' must be <= {_num(setting.maximum)}, got {value:g}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"'{key}' must be a string, got {value!r}")
    if setting.choices and value.lower() not in setting.choices:
        raise ConfigError(f"'{key}' must be one of {', '.join(setting.choices)}, got {value!r}")
    return value.lower() if setting.choices else value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def parse_memory(text: str) -> int:
    """'64mb' -> 67108864, as redis.conf reads memory sizes."""
    t = text.strip().lower()
    for suffix in ("kb", "mb", "gb", "k", "m", "g"):
        if t.endswith(suffix):
            return int(t[: -len(suffix)]) * _UNITS[suffix]
    return int(t)


def load_toml(path: str, config: Config | None = None) -> Config:
    """Read a TOML file into ``config`` (default: a fresh Config); ConfigError on any problem."""
    config = config or Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    apply_mapping(config, data, path)
    return config


TABLES: dict[str, tuple[str, str]] = {
    "n_replicas_by_prefix": (
        "Replication factor N per key prefix, as Riak's bucket types: the longest matching "
        "prefix wins; other keys use n_replicas. Cluster mode only (docs/cluster.md).",
        '"session:" = 2\n"audit:" = 5',
    ),
}
"""The TOML tables ([name]) a config file may hold: name -> (meaning, example body). Their
contents belong to the layer that reads them (``config.extra[name]``), which validates them; a
table not listed here is an unknown key."""


def apply_mapping(config: Config, data: dict[str, Any], source: str = "config") -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            # Tables belong to later layers; keep them for their owners.
            if key not in TABLES:
                raise ConfigError(f"{source}: unknown table [{key}] (known: "
                                  f"{', '.join(sorted(TABLES))})")
            config.extra[key] = value
            continue
        try:
            config.set(key, value)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None


def config_field_names() -> list[str]:
    return [f.name for f in fields(Config) if f.name != "extra"]


# -- conf/respkv.toml ----------------------------------------------------------------------------

SAMPLE_VALUES: dict[str, Any] = {"dir": "/var/lib/respkv"}
"""Where conf/respkv.toml (the file systemd/respkv.service reads as /etc/respkv/respkv.toml)
departs from the defaults: the packaged layout keeps data in /var/lib/respkv."""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _describe_default(s: Setting) -> str:
    text = toml_value(s.default)
    if s.unit == "bytes" and s.default:
        for suffix, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
            if s.default % size == 0:
                return f"{text} ({s.default // size}{suffix})"
    return text


def sample_toml(values: dict[str, Any] | None = None) -> str:
    """conf/respkv.toml, generated from SETTINGS (``respkv config sample``): every key with its
    meaning, unit, default, limits and whether CONFIG SET may change it at runtime."""
    values = SAMPLE_VALUES if values is None else values
    out = [
        "# respkv configuration (TOML), read by `respkv server --config FILE`.",
        "#",
        "# GENERATED from SETTINGS in respkv/config.py by `respkv config sample`: do not edit the",
        "# copy in the repository by hand, change the table and regenerate. Every key is optional;",
        "# the value written is the default unless noted. A command-line flag",
        "# (`respkv server --some-key VALUE`) overrides the file. An unknown key or a bad value",
        "# stops start-up with a message naming the key; `respkv config check FILE` checks a file.",
        "# Sizes in bytes also accept strings with a unit, as redis.conf does: \"64mb\", \"1gb\".",
    ]
    for s in SETTINGS:
        out.append("")
        out += textwrap.wrap(s.doc, 98, initial_indent="# ", subsequent_indent="# ")
        facts = []
        if s.unit:
            facts.append(f"unit: {s.unit}")
        if s.choices:
            facts.append("one of: " + ", ".join(s.choices))
        if s.minimum is not None:
            facts.append(f"min: {_num(s.minimum)}")
        if s.maximum is not None:
            facts.append(f"max: {_num(s.maximum)}")
        facts.append(f"default: {_describe_default(s)}")
        facts.append("CONFIG SET: yes" if s.runtime else "CONFIG SET: no (restart)")
        out += textwrap.wrap("; ".join(facts), 98, initial_indent="# ", subsequent_indent="#   ")
        value = values.get(s.key, s.default)
        if value != s.default:
            out.append("# (packaged value, differs from the default)")
        out.append(f"{s.key} = {toml_value(coerce(s, value))}")
    for name, (doc, example) in TABLES.items():
        out.append("")
        out += textwrap.wrap(doc, 98, initial_indent="# ", subsequent_indent="# ")
        out.append("# (a table: none by default; for example)")
        out.append(f"# [{name}]")
        out += ["# " + line for line in example.splitlines()]
    return "\n".join(out) + "\n"
