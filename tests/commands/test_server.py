"""COMMAND, INFO, CONFIG, TIME, SHUTDOWN, SLOWLOG, LASTSAVE, SAVE/BGSAVE.

Expected bytes and error strings were captured from redis-server 7.0.15 (RESP2 and RESP3, via
raw sockets); the comments name the differences that are deliberate.
"""

from __future__ import annotations

import pytest

from respkv.commands import errors as E
from respkv.commands.core import TABLE
from respkv.commands.server import (
    COMMAND_TIPS,
    KEY_SPEC_FLAGS,
    acl_categories,
    glob_match,
    human_bytes,
    info_sections,
)
from respkv.protocol.resp import NO_REPLY, ErrorReply, Verbatim
from respkv.testing.resp import err, parsed, wire


def resp3(conn) -> None:  # type: ignore[no-untyped-def]
    conn.client.resp3 = True


# -- containers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["CONFIG"], "ERR wrong number of arguments for 'config' command"),
        (["CONFIG", "GET"], "ERR wrong number of arguments for 'config|get' command"),
        (["CONFIG", "SET", "x"], "ERR wrong number of arguments for 'config|set' command"),
        (["CONFIG", "REWRITE", "x"], "ERR wrong number of arguments for 'config|rewrite' command"),
        (["CONFIG", "RESETSTAT", "x"],
         "ERR wrong number of arguments for 'config|resetstat' command"),
        (["CONFIG", "FOO"], "ERR unknown subcommand 'FOO'. Try CONFIG HELP."),
        (["config", "foo"], "ERR unknown subcommand 'foo'. Try CONFIG HELP."),
        (["COMMAND", "FOO"], "ERR unknown subcommand 'FOO'. Try COMMAND HELP."),
        (["COMMAND", "COUNT", "x"], "ERR wrong number of arguments for 'command|count' command"),
        (["COMMAND", "GETKEYS"], "ERR wrong number of arguments for 'command|getkeys' command"),
        (["COMMAND", "GETKEYS", "get"],
         "ERR wrong number of arguments for 'command|getkeys' command"),
        (["SLOWLOG"], "ERR wrong number of arguments for 'slowlog' command"),
        (["SLOWLOG", "FOO"], "ERR unknown subcommand 'FOO'. Try SLOWLOG HELP."),
        (["SLOWLOG", "LEN", "x"], "ERR wrong number of arguments for 'slowlog|len' command"),
        (["SLOWLOG", "RESET", "x"], "ERR wrong number of arguments for 'slowlog|reset' command"),
        (["SLOWLOG", "GET", "1", "2"],
         "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP."),
        (["TIME", "x"], "ERR wrong number of arguments for 'time' command"),
        (["LASTSAVE", "x"], "ERR wrong number of arguments for 'lastsave' command"),
        (["SAVE", "x"], "ERR wrong number of arguments for 'save' command"),
    ],
)
def test_arity_and_subcommand_errors(conn, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert err(conn(*args)) == expected


# -- COMMAND -------------------------------------------------------------------------------------

GET_INFO_RESP2 = (
    b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n"
    b"+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n"
    b"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex"
    b"\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\n"
    b"lastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
)
GET_INFO_RESP3 = (
    b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n"
    b"+@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n"
    b"$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex"
    b"\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\n"
    b"lastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n"
)


def test_command_info_get_is_byte_exact_in_resp2_and_resp3(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("COMMAND", "INFO", "get")) == GET_INFO_RESP2
    resp3(conn)
    assert wire(conn("COMMAND", "INFO", "get"), True) == GET_INFO_RESP3


def test_command_info_container_lists_subcommands(conn) -> None:  # type: ignore[no-untyped-def]
    [config] = parsed(conn("COMMAND", "INFO", "config"))
    assert config[:7] == [b"config", -2, [], 0, 0, 0, [b"@slow"]]
    subs = {s[0]: s for s in config[9]}
    assert set(subs) == {b"config|get", b"config|set", b"config|resetstat", b"config|rewrite",
                         b"config|help"}
    assert subs[b"config|set"] == [
        b"config|set", -4, [b"admin", b"noscript", b"loading", b"stale"], 0, 0, 0,
        [b"@admin", b"@slow", b"@dangerous"],
        [b"request_policy:all_nodes", b"response_policy:all_succeeded"], [], [],
    ]
    assert subs[b"config|help"][2] == [b"loading", b"stale"]
    assert subs[b"config|help"][6] == [b"@slow"]


def test_command_info_unknown_is_nil_and_subcommand_by_full_name(conn) -> None:  # type: ignore[no-untyped-def]
    reply = parsed(conn("COMMAND", "INFO", "nosuch", "CONFIG|GET"))
    assert reply[0] is None
    assert reply[1][0] == b"config|get"


def test_command_info_without_names_is_every_command(conn) -> None:  # type: ignore[no-untyped-def]
    everything = parsed(conn("COMMAND"))
    assert [e[0] for e in everything] == [e[0] for e in parsed(conn("COMMAND", "INFO"))]
    assert len(everything) == conn("COMMAND", "COUNT")
    names = {e[0] for e in everything}
    assert {b"get", b"set", b"ping", b"config", b"client", b"info", b"command"} <= names
    assert all(len(e) == 10 for e in everything)


def test_command_is_generated_at_call_time(conn) -> None:  # type: ignore[no-untyped-def]
    before = conn("COMMAND", "COUNT")

    @TABLE.command("zzz-test-only", 2, "readonly fast", (1, 1, 1), "string", "test")
    def _h(client, args):  # type: ignore[no-untyped-def]
        return None

    try:
        assert conn("COMMAND", "COUNT") == before + 1
        [info] = parsed(conn("COMMAND", "INFO", "zzz-test-only"))
        assert info[0] == b"zzz-test-only"
    finally:
        del TABLE.specs[b"zzz-test-only"]
        del TABLE.specs[b"ZZZ-TEST-ONLY"]
    assert conn("COMMAND", "COUNT") == before


def test_acl_categories_follow_redis_rules() -> None:
    spec = TABLE.lookup(b"get")
    assert acl_categories(spec) == ["@read", "@string", "@fast"]
    assert acl_categories(TABLE.lookup(b"set")) == ["@write", "@string", "@slow"]
    assert acl_categories(TABLE.lookup(b"ping")) == ["@fast", "@connection"]
    assert acl_categories(TABLE.lookup(b"info")) == ["@slow", "@dangerous"]
    assert acl_categories(TABLE.lookup(b"lastsave")) == ["@admin", "@fast", "@dangerous"]
    assert acl_categories(TABLE.lookup(b"command")) == ["@slow", "@connection"]
    assert acl_categories(TABLE.lookup(b"client")) == ["@slow"]
    client_list = TABLE.lookup(b"client").subcommands["list"]
    assert acl_categories(client_list) == ["@admin", "@slow", "@dangerous", "@connection"]


def test_key_spec_for_multi_key_step_two(conn) -> None:  # type: ignore[no-untyped-def]
    spec = TABLE.lookup(b"mset")
    if spec is None:
        pytest.skip("mset not registered")
    [info] = parsed(conn("COMMAND", "INFO", "mset"))
    assert info[3:6] == [1, -1, 2]
    assert info[8] == [[b"flags", [b"OW", b"update"], b"begin_search",
                        [b"type", b"index", b"spec", [b"index", 1]], b"find_keys",
                        [b"type", b"range", b"spec", [b"lastkey", -1, b"keystep", 2, b"limit", 0]]]]


def test_redis_fact_tables_only_name_known_flags() -> None:
    allowed = {"RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "variable_flags"}
    assert all(set(flags) <= allowed for flags in KEY_SPEC_FLAGS.values())
    assert COMMAND_TIPS["info"] == (
        "nondeterministic_output", "request_policy:all_shards", "response_policy:special")


def test_command_count_and_list(conn) -> None:  # type: ignore[no-untyped-def]
    n = conn("COMMAND", "COUNT")
    assert n == len(TABLE.unique())
    names = conn("COMMAND", "LIST")
    assert b"config|get" in names and b"get" in names
    assert len([x for x in names if b"|" not in x]) == n


def test_command_list_filters(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("COMMAND", "LIST", "FILTERBY", "pattern", "con*") == [
        b"config", b"config|get", b"config|set", b"config|resetstat", b"config|rewrite",
        b"config|help",
    ]
    assert conn("COMMAND", "LIST", "FILTERBY", "module", "x") == []
    assert conn("COMMAND", "LIST", "FILTERBY", "aclcat", "server") == []
    by_cat = conn("COMMAND", "LIST", "FILTERBY", "ACLCAT", "string")
    assert b"get" in by_cat and b"ping" not in by_cat
    assert err(conn("COMMAND", "LIST", "FILTERBY")) == E.SYNTAX
    assert err(conn("COMMAND", "LIST", "FILTERBY", "foo", "x")) == "ERR syntax error"
    assert err(conn("COMMAND", "LIST", "x")) == "ERR syntax error"


def test_command_docs(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("COMMAND", "DOCS", "lastsave", "time")) == (
        b"*4\r\n$8\r\nlastsave\r\n*8\r\n$7\r\nsummary\r\n$59\r\nGet the UNIX time stamp of the "
        b"last successful save to disk\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\n"
        b"server\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$4\r\ntime\r\n*8\r\n$7\r\nsummary\r\n$30"
        b"\r\nReturn the current server time\r\n$5\r\nsince\r\n$5\r\n2.6.0\r\n$5\r\ngroup\r\n"
        b"$6\r\nserver\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"
    )
    assert conn("COMMAND", "DOCS", "nosuch") == {}
    docs = conn("COMMAND", "DOCS", "config")
    cfg = docs[b"config"]
    assert cfg[b"summary"] == b"A container for server configuration commands"
    assert cfg[b"complexity"] == b"Depends on subcommand."
    assert cfg[b"subcommands"][b"config|get"][b"group"] == b"server"
    resp3(conn)
    assert wire(conn("COMMAND", "DOCS", "time"), True).startswith(b"%1\r\n$4\r\ntime\r\n%4\r\n")


def test_command_docs_without_names_covers_every_command(conn) -> None:  # type: ignore[no-untyped-def]
    docs = conn("COMMAND", "DOCS")
    assert len(docs) == conn("COMMAND", "COUNT")
    assert all(set(d) >= {b"summary", b"since", b"group", b"complexity"} for d in docs.values())


def test_command_getkeys(conn) -> None:  # type: ignore[no-untyped-def]
    assert conn("COMMAND", "GETKEYS", "set", "a", "b") == [b"a"]
    assert conn("COMMAND", "GETKEYS", "SET", "a", "b", "EX", "10") == [b"a"]
    assert err(conn("COMMAND", "GETKEYS", "nosuch", "a")) == "ERR Invalid command specified"
    assert err(conn("COMMAND", "GETKEYS", "get", "a", "b")) == (
        "ERR Invalid number of arguments specified for command")
    assert err(conn("COMMAND", "GETKEYS", "config", "get", "x")) == (
        "ERR The command has no key arguments")
    assert err(conn("COMMAND", "GETKEYS", "client", "setname", "x")) == (
        "ERR The command has no key arguments")
    assert err(conn("COMMAND", "GETKEYS", "config", "nosuch", "x")) == (
        "ERR Invalid command specified")


def test_command_getkeysandflags(conn) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("COMMAND", "GETKEYSANDFLAGS", "set", "a", "b")) == (
        b"*1\r\n*2\r\n$1\r\na\r\n*2\r\n+OW\r\n+update\r\n")
    assert parsed(conn("COMMAND", "GETKEYSANDFLAGS", "set", "a", "b", "GET")) == [
        [b"a", [b"RW", b"access", b"update"]]]
    assert parsed(conn("COMMAND", "GETKEYSANDFLAGS", "get", "k")) == [[b"k", [b"RO", b"access"]]]


def test_command_help(conn) -> None:  # type: ignore[no-untyped-def]
    lines = conn("COMMAND", "HELP")
    assert len(lines) == 21
    assert lines[0] == "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == ["HELP", "    Prints this help."]
    assert wire(lines).startswith(b"*21\r\n+COMMAND <subcommand>")


# -- INFO ----------------------------------------------------------------------------------------


def info_dict(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.split("\r\n"):
        if line.startswith("# "):
            current = line[2:]
            out[current] = {}
        elif line:
            k, _, v = line.partition(":")
            out[current][k] = v
    return out


def test_info_default_sections_in_redis_order(conn) -> None:  # type: ignore[no-untyped-def]
    reply = conn("INFO")
    assert isinstance(reply, Verbatim)
    assert list(info_dict(reply)) == [
        "Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Modules",
        "Errorstats", "Cluster", "Keyspace",
    ]


def test_info_all_everything_and_several_sections(conn) -> None:  # type: ignore[no-untyped-def]
    all_ = list(info_dict(conn("INFO", "all")))
    assert all_ == ["Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU",
                    "Modules", "Commandstats", "Errorstats", "Latencystats", "Cluster",
                    "Keyspace", "Respkv"]
    assert list(info_dict(conn("INFO", "everything"))) == all_
    assert list(info_dict(conn("INFO", "keyspace", "SERVER", "clients", "server"))) == [
        "Server", "Clients", "Keyspace"]
    assert list(info_dict(conn("INFO", "default", "commandstats"))) == [
        "Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Modules",
        "Commandstats", "Errorstats", "Cluster", "Keyspace"]
    assert conn("INFO", "bogus") == ""
    assert wire(conn("INFO", "bogus")) == b"$0\r\n\r\n"


def test_info_wire_format(conn) -> None:  # type: ignore[no-untyped-def]
    # redis-server 7.0.15: b'$12\r\n# Keyspace\r\n\r\n' and sections joined by a blank line.
    assert wire(conn("INFO", "keyspace")) == b"$12\r\n# Keyspace\r\n\r\n"
    assert conn("INFO", "cluster", "modules") == "# Modules\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n"
    resp3(conn)
    assert wire(conn("INFO", "keyspace"), True) == b"=16\r\ntxt:# Keyspace\r\n\r\n"


def test_info_server_fields(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    clock.advance(2 * 86400 * 1000 + 5000)
    s = info_dict(conn("INFO", "server"))["Server"]
    assert s["redis_version"] == "7.0.15"
    assert s["redis_mode"] == "standalone"
    assert s["run_id"] == server.run_id
    assert s["tcp_port"] == "6379"
    assert s["uptime_in_seconds"] == str(2 * 86400 + 5)
    assert s["uptime_in_days"] == "2"
    assert s["hz"] == "10"
    assert s["server_time_usec"] == str(clock.now_ms * 1000)
    assert "respkv_version" in s


def test_info_providers_replace_in_place_and_append(conn, server) -> None:  # type: ignore[no-untyped-def]
    server.info_providers["server"] = lambda: {"process_id": 4242, "os": "TestOS 1 x", "extra": "y"}
    s = info_dict(conn("INFO", "server"))["Server"]
    keys = list(s)
    assert s["process_id"] == "4242" and s["os"] == "TestOS 1 x"
    assert keys.index("os") < keys.index("process_id") < keys.index("run_id")
    assert keys[-1] == "extra"
    server.info_providers["memory"] = lambda: {"used_memory": 3 * 1024 * 1024,
                                               "used_memory_rss": 6 * 1024 * 1024}
    m = info_dict(conn("INFO", "memory"))["Memory"]
    assert m["used_memory"] == str(3 * 1024 * 1024)
    assert m["used_memory_human"] == "3.00M"
    assert m["mem_fragmentation_ratio"] == "2.00"
    assert m["maxmemory"] == "0" and m["maxmemory_policy"] == "noeviction"


def test_info_persistence_uses_the_node_provider(conn, server) -> None:  # type: ignore[no-untyped-def]
    server.info_providers["persistence"] = lambda: {"aof_enabled": 1, "aof_fsyncs": 7}
    p = info_dict(conn("INFO", "persistence"))["Persistence"]
    assert p["loading"] == "0"
    assert p["aof_enabled"] == "1" and p["aof_fsyncs"] == "7"
    assert p["rdb_last_save_time"] == str(server.start_ms // 1000)


def test_info_clients_and_stats(conn, server) -> None:  # type: ignore[no-untyped-def]
    server.new_client("127.0.0.1:2", "127.0.0.1:6379")
    server.stats["total_commands_processed"] = 17
    conn("SET", "k", "v")
    conn("GET", "k")
    conn("GET", "missing")
    info = info_dict(conn("INFO", "clients", "stats"))
    assert info["Clients"]["connected_clients"] == "2"
    assert info["Clients"]["maxclients"] == "10000"
    assert info["Clients"]["blocked_clients"] == "0"
    st = info["Stats"]
    assert st["total_connections_received"] == "2"
    assert st["total_commands_processed"] == "17"
    assert st["keyspace_hits"] == "1" and st["keyspace_misses"] == "1"
    assert st["expired_keys"] == "0"


def test_info_expired_keys_sums_the_databases(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "k", "v", "PX", "10")
    clock.advance(20)
    assert conn("GET", "k") is None
    assert info_dict(conn("INFO", "stats"))["Stats"]["expired_keys"] == "1"


def test_info_keyspace(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    conn("SET", "a", "1")
    conn("SET", "b", "1", "PX", "10000")
    conn("SET", "c", "1", "PX", "20000")
    server.dbs[3].set(b"x", b"1")
    ks = info_dict(conn("INFO", "keyspace"))["Keyspace"]
    assert ks == {"db0": "keys=3,expires=2,avg_ttl=15000", "db3": "keys=1,expires=0,avg_ttl=0"}


def test_info_commandstats_and_replication_and_cluster(conn, server) -> None:  # type: ignore[no-untyped-def]
    server.cmdstats["get"] = [3, 10, 0, 1]
    server.cmdstats["set"] = [0, 0, 0, 0]
    info = info_dict(conn("INFO", "commandstats", "replication", "cluster"))
    assert info["Commandstats"] == {
        "cmdstat_get": "calls=3,usec=10,usec_per_call=3.33,rejected_calls=0,failed_calls=1"}
    assert info["Replication"]["role"] == "master"
    assert info["Replication"]["connected_slaves"] == "0"
    assert info["Cluster"] == {"cluster_enabled": "0"}


def test_info_section_names() -> None:
    assert "commandstats" not in info_sections([])
    assert "respkv" in info_sections([b"all"])
    assert info_sections([b"module_list"]) == {"modules"}


def test_human_bytes() -> None:
    assert human_bytes(0) == "0B"
    assert human_bytes(200) == "200B"
    assert human_bytes(1212416) == "1.16M"
    assert human_bytes(25276502016) == "23.54G"
    assert human_bytes(33792) == "33.00K"


# -- TIME, LASTSAVE, SAVE, BGSAVE ----------------------------------------------------------------


def test_time_uses_the_server_clock(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    clock.now_ms = 1_795_594_123_292
    assert conn("TIME") == [b"1795594123", b"292000"]
    server.clock_us = lambda: 1_795_594_123_292_146
    assert conn("TIME") == [b"1795594123", b"292146"]
    assert wire(conn("TIME")) == b"*2\r\n$10\r\n1795594123\r\n$6\r\n292146\r\n"


def test_lastsave_is_start_time(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    clock.advance(10_000)
    assert conn("LASTSAVE") == server.start_ms // 1000


def test_save_and_bgsave_are_honest_errors(conn) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("SAVE")) == E.NO_SNAPSHOT % "SAVE"
    assert err(conn("BGSAVE")) == E.NO_SNAPSHOT % "BGSAVE"
    assert err(conn("BGSAVE", "SCHEDULE")) == E.NO_SNAPSHOT % "BGSAVE"
    assert err(conn("BGSAVE", "x")) == "ERR syntax error"
    assert err(conn("SAVE")).startswith("ERR SAVE is not supported by respkv")


# -- SHUTDOWN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, requested",
    [([], ""), (["NOSAVE"], "nosave"), (["save"], "save"), (["NOSAVE", "NOW", "FORCE"], "nosave"),
     (["NOW", "NOW"], "")],
)
def test_shutdown_requests_and_replies_nothing(conn, server, args, requested) -> None:  # type: ignore[no-untyped-def]
    assert conn("SHUTDOWN", *args) is NO_REPLY
    assert server.shutdown_requested == requested


@pytest.mark.parametrize(
    "args, expected",
    [(["foo"], "ERR syntax error"), (["NOSAVE", "SAVE"], "ERR syntax error"),
     (["ABORT", "NOW"], "ERR syntax error"), (["ABORT"], "ERR No shutdown in progress.")],
)
def test_shutdown_errors(conn, server, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("SHUTDOWN", *args)) == expected
    assert server.shutdown_requested is None


# -- CONFIG --------------------------------------------------------------------------------------


def test_config_get_fixed_redis_parameters(conn, server) -> None:  # type: ignore[no-untyped-def]
    assert wire(conn("CONFIG", "GET", "save")) == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert conn("CONFIG", "GET", "appendonly") == {b"appendonly": b"no"}  # memory engine
    server.config.engine = "lsm"
    assert conn("CONFIG", "GET", "appendonly") == {b"appendonly": b"yes"}
    assert conn("CONFIG", "GET", "maxmemory", "databases", "port") == {
        b"maxmemory": b"0", b"databases": b"16", b"port": b"6379"}
    assert conn("CONFIG", "GET", "nosuch") == {}


def test_config_get_glob_is_case_insensitive_and_deduplicated(conn) -> None:  # type: ignore[no-untyped-def]
    got = conn("CONFIG", "GET", "SLOWLOG*", "slowlog-max-len")
    assert got == {b"slowlog-log-slower-than": b"10000", b"slowlog-max-len": b"128"}
    everything = conn("CONFIG", "GET", "*")
    assert b"protected-mode" in everything and everything[b"protected-mode"] == b"yes"
    resp3(conn)
    assert wire(conn("CONFIG", "GET", "save"), True) == b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"


def test_config_set(conn, server) -> None:  # type: ignore[no-untyped-def]
    seen = []
    server.on_config_set = lambda k, v: seen.append((k, v))
    assert conn("CONFIG", "SET", "maxclients", "50", "Timeout", "7") is not None
    assert server.config.maxclients == 50 and server.config.timeout == 7
    assert seen == [("maxclients", "50"), ("timeout", "7")]
    assert conn("CONFIG", "GET", "timeout") == {b"timeout": b"7"}
    conn("CONFIG", "SET", "protected-mode", "NO", "appendfsync", "ALWAYS")
    assert server.config.protected_mode is False and server.config.appendfsync == "always"
    conn("CONFIG", "SET", "proto-max-bulk-len", "2mb")
    assert server.config.proto_max_bulk_len == 2 * 1024 * 1024
    conn("CONFIG", "SET", "hz", "1000")  # accepted and clamped, as Redis does
    assert conn("CONFIG", "GET", "hz") == {b"hz": b"500"}
    conn("CONFIG", "SET", "requirepass", "")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["x", "1"], "ERR Unknown option or number of arguments for CONFIG SET - 'x'"),
        (["hz", "10", "x"], "ERR syntax error"),
        (["maxclients", "abc"], "ERR CONFIG SET failed (possibly related to argument "
         "'maxclients') - argument couldn't be parsed into an integer"),
        (["maxclients", "0"], "ERR CONFIG SET failed (possibly related to argument 'maxclients')"
         " - argument must be between 1 and 4294967295 inclusive"),
        (["timeout", "-1"], "ERR CONFIG SET failed (possibly related to argument 'timeout') - "
         "argument must be between 0 and 2147483647 inclusive"),
        (["loglevel", "foo"], "ERR CONFIG SET failed (possibly related to argument 'loglevel') "
         "- argument(s) must be one of the following: debug, verbose, notice, warning"),
        (["appendfsync", "x"], "ERR CONFIG SET failed (possibly related to argument "
         "'appendfsync') - argument(s) must be one of the following: everysec, always, no"),
        (["databases", "3"], "ERR CONFIG SET failed (possibly related to argument 'databases') "
         "- can't set immutable config"),
        (["hz", "10", "hz", "11"], "ERR CONFIG SET failed (possibly related to argument 'hz') - "
         "duplicate parameter"),
        (["protected-mode", "maybe"], "ERR CONFIG SET failed (possibly related to argument "
         "'protected-mode') - argument must be 'yes' or 'no'"),
        (["proto-max-bulk-len", "abc"], "ERR CONFIG SET failed (possibly related to argument "
         "'proto-max-bulk-len') - argument must be a memory value"),
        (["proto-max-bulk-len", "10"], "ERR CONFIG SET failed (possibly related to argument "
         "'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 "
         "inclusive"),
    ],
)
def test_config_set_errors_match_redis(conn, args, expected) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("CONFIG", "SET", *args)) == expected


def test_config_set_is_all_or_nothing(conn, server) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(conn("CONFIG", "SET", "timeout", "5", "maxclients", "0"), ErrorReply)
    assert server.config.timeout == 0


def test_config_set_fixed_parameters_accept_their_value_only(conn) -> None:  # type: ignore[no-untyped-def]
    assert not isinstance(conn("CONFIG", "SET", "save", ""), ErrorReply)
    assert not isinstance(conn("CONFIG", "SET", "appendonly", "no"), ErrorReply)
    assert err(conn("CONFIG", "SET", "save", "900 1")) == (
        "ERR CONFIG SET failed (possibly related to argument 'save') - " + E.CONFIG_FIXED_BY_RESPKV)


def test_config_resetstat(conn, server) -> None:  # type: ignore[no-untyped-def]
    conn("GET", "nothing")
    server.cmdstats["get"] = [1, 1, 0, 0]
    server.stats["total_commands_processed"] = 9
    server.slowlog_record(10**9, [b"GET", b"x"], conn.client)
    assert conn("CONFIG", "RESETSTAT") is not None
    assert server.cmdstats == {}
    assert server.stats["total_commands_processed"] == 0
    assert server.dbs[0].stats["keyspace_misses"] == 0
    assert len(server.slowlog) == 1  # Redis keeps the slow log


def test_config_rewrite_and_help(conn, server) -> None:  # type: ignore[no-untyped-def]
    assert err(conn("CONFIG", "REWRITE")) == "ERR The server is running without a config file"
    assert wire(conn("CONFIG", "HELP")) == (
        b"*11\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
        b"+GET <pattern>\r\n+    Return parameters matching the glob-like <pattern> and their "
        b"values.\r\n+SET <directive> <value>\r\n+    Set the configuration <directive> to "
        b"<value>.\r\n+RESETSTAT\r\n+    Reset statistics reported by the INFO command.\r\n"
        b"+REWRITE\r\n+    Rewrite the configuration file.\r\n+HELP\r\n+    Prints this help.\r\n"
    )


@pytest.mark.parametrize(
    "pattern, s, ok",
    [(b"*", b"anything", True), (b"slowlog*", b"slowlog-max-len", True), (b"h?", b"hz", True),
     (b"h?", b"hzz", False), (b"[a-c]at", b"bat", True), (b"[^a-c]at", b"bat", False),
     (b"a\\*b", b"a*b", True), (b"a\\*b", b"axb", False), (b"*max-*-entries*",
     b"hash-max-listpack-entries", True), (b"", b"", True), (b"", b"a", False)],
)
def test_glob_match(pattern, s, ok) -> None:  # type: ignore[no-untyped-def]
    assert glob_match(pattern, s) is ok


# -- SLOWLOG -------------------------------------------------------------------------------------


def test_slowlog_get_len_reset(conn, server, clock) -> None:  # type: ignore[no-untyped-def]
    assert conn("SLOWLOG", "GET") == []
    conn.client.name = b"nm"
    server.slowlog_record(20_000, [b"config", b"set", b"x", b"0"], conn.client)
    server.slowlog_record(30_000, [b"client", b"setname", b"nm"], conn.client)
    assert conn("SLOWLOG", "LEN") == 2
    assert conn("SLOWLOG", "GET", "1") == [
        [1, clock.now_ms // 1000, 30_000, [b"client", b"setname", b"nm"], b"127.0.0.1:50000",
         b"nm"]]
    assert [e[0] for e in conn("SLOWLOG", "GET", "-1")] == [1, 0]
    assert [e[0] for e in conn("SLOWLOG", "GET")] == [1, 0]
    assert conn("SLOWLOG", "GET", "0") == []
    assert err(conn("SLOWLOG", "GET", "abc")) == "ERR count should be greater than or equal to -1"
    assert err(conn("SLOWLOG", "GET", "-2")) == "ERR count should be greater than or equal to -1"
    assert conn("SLOWLOG", "RESET") is not None
    assert conn("SLOWLOG", "LEN") == 0


def test_slowlog_help(conn) -> None:  # type: ignore[no-untyped-def]
    lines = conn("SLOWLOG", "HELP")
    assert len(lines) == 12
    assert lines[2] == "    Return top <count> entries from the slowlog (default: 10, -1 mean all)."


def test_info_keyspace_is_bounded(conn, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from respkv.commands import server as srv

    monkeypatch.setattr(srv, "KEYSPACE_SCAN_LIMIT", 5)
    for i in range(8):
        conn("SET", f"k{i}", "v")
    text = conn("INFO", "keyspace")
    text = text if isinstance(text, str) else text.decode()
    assert "db0:keys=5,expires=0,avg_ttl=0,partial=1" in text
    assert conn("DBSIZE") == 8  # DBSIZE stays exact
