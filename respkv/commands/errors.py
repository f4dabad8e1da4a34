"""The one catalogue of Redis-exact error strings (redis-server 7.0, src/server.c, t_string.c...).

Handlers raise ``CommandError(TEXT)`` or ``CommandError(TEXT % args)`` with these; nothing else in
respkv spells a Redis error message.
"""

from __future__ import annotations

from respkv.protocol.resp import ErrorReply


class CommandError(ErrorReply):
    """Raised by a handler; the dispatcher turns it into the error reply."""


def arg_text(arg: bytes, limit: int | None = 128) -> str:
    """A client argument as redis-server prints it in an error (``%.128s``): cut at the first
    NUL and at ``limit`` bytes, bytes kept as they are (latin-1 round-trips them exactly)."""
    return arg.split(b"\0", 1)[0][:limit].decode("latin-1")


WRONG_ARGS = "ERR wrong number of arguments for '%s' command"
UNKNOWN_COMMAND = "ERR unknown command '%s', with args beginning with: %s"
UNKNOWN_SUBCOMMAND = "ERR unknown subcommand '%s'. Try %s HELP."
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
INT_RANGE = "ERR value is out of range, value must between %d and %d"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
DECR_OVERFLOW = "ERR decrement would overflow"
INCR_NAN = "ERR increment would produce NaN or Infinity"
NO_SUCH_KEY = "ERR no such key"
INVALID_EXPIRE = "ERR invalid expire time in '%s' command"
DB_INDEX = "ERR DB index is out of range"
SWAPDB_FIRST_INDEX = "ERR invalid first DB index"
SWAPDB_SECOND_INDEX = "ERR invalid second DB index"
NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NOT_CONFIGURED = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = "NOPROTO unsupported protocol version"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE = "ERR offset is out of range"
NX_XX_GT_LT = "ERR NX and XX, GT or LT options at the same time are not compatible"
GT_LT_NX = "ERR GT and LT options at the same time are not compatible"
UNSUPPORTED_OPTION = "ERR Unsupported option %s"
INVALID_CURSOR = "ERR invalid cursor"
MAX_CLIENTS = "ERR max number of clients reached"
UNKNOWN_CONFIG = "ERR Unknown option or number of arguments for CONFIG SET - '%s'"
INVALID_CONFIG = "ERR CONFIG SET failed (possibly related to argument '%s') - %s"
NO_SUCH_CLIENT = "ERR No such client"
CLIENT_NAME_SPACES = "ERR Client names cannot contain spaces, newlines or special characters."
PROTECTED_MODE = (
    "DENIED Redis is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from the "
    "loopback interface. If you want to connect from external computers to Redis you may adopt "
    "one of the following solutions: 1) Just disable protected mode sending the command "
    "'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the "
    "same host the server is running, however MAKE SURE Redis is not publicly accessible from "
    "internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively "
    "you can just disable the protected mode by editing the Redis configuration file, and "
    "setting the protected mode option to 'no', and then restarting the server. 3) If you "
    "started the server manually just for testing, restart it with the '--protected-mode no' "
    "option. 4) Setup a bind address or an authentication password. NOTE: You only need to do "
    "one of the above things in order for the server to start accepting connections from the "
    "outside."
)
INTERNAL = "ERR internal error while running '%s' (the server logged it)"
MULTI_UNSUPPORTED = "ERR %s is not supported by respkv: %s"

# -- transactions (respkv/commands/transactions.py) ----------------------------------------------
NOT_IN_TRANSACTION = "ERR Command not allowed inside a transaction"
MULTI_NESTED = "ERR MULTI calls can not be nested"
EXEC_WITHOUT_MULTI = "ERR EXEC without MULTI"
DISCARD_WITHOUT_MULTI = "ERR DISCARD without MULTI"
WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
EXECABORT_BECAUSE = "EXECABORT Transaction discarded because of: %s"

# -- server and client commands (respkv/commands/server.py, client.py) --------------------------
SUBCOMMAND_SYNTAX = "ERR unknown subcommand or wrong number of arguments for '%s'. Try %s HELP."
GETKEYS_INVALID_COMMAND = "ERR Invalid command specified"
GETKEYS_INVALID_ARGS = "ERR Invalid number of arguments specified for command"
GETKEYS_NO_KEYS = "ERR The command has no key arguments"
NO_CONFIG_FILE = "ERR The server is running without a config file"
CONFIG_FIXED_BY_RESPKV = "respkv does not support changing this parameter"
SLOWLOG_COUNT = "ERR count should be greater than or equal to -1"
NO_SHUTDOWN_IN_PROGRESS = "ERR No shutdown in progress."
NO_SNAPSHOT = (
    "ERR %s is not supported by respkv: there are no snapshots; every acknowledged write is "
    "already in the commit log (see appendfsync)"
)
UNKNOWN_CLIENT_TYPE = "ERR Unknown client type '%s'"
INVALID_CLIENT_ID = "ERR Invalid client ID"
CLIENT_ID_POSITIVE = "ERR client-id should be greater than 0"
NO_SUCH_USER = "ERR No such user '%s'"
UNRECOGNIZED_OPTION = "ERR Unrecognized option '%s'"
CLIENT_ATTR_SPACES = "ERR %s cannot contain spaces, newlines or special characters."
PAUSE_TIMEOUT = "ERR timeout is not an integer or out of range"
PAUSE_TIMEOUT_NEGATIVE = "ERR timeout is negative"
PAUSE_MODE = "ERR CLIENT PAUSE mode must be WRITE or ALL"
UNBLOCK_REASON = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
CACHING_WITHOUT_TRACKING = (
    "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or "
    "OPTOUT mode enabled"
)

# -- MONITOR WAIT ROLE MEMORY LATENCY ACL (respkv/commands/server.py; redis-server 7.0
# replication.c, networking.c, object.c, latency.c, acl.c) ---------------------------------------
MONITOR_DENY_BLOCKING = "ERR MONITOR isn't allowed for DENY BLOCKING client"
MONITOR_NO_NODE = "ERR MONITOR is not available here: no node delivers its output"
REPLICA_KEYSPACE = "ERR Replica can't interact with the keyspace"
UNBLOCKED = "UNBLOCKED client unblocked via CLIENT UNBLOCK"
WAIT_CLUSTER_REASON = (
    "every write already waits for W replicas to acknowledge it (set W per connection with "
    "CONSISTENCY W <level>, or per command with a trailing W <level>)"
)  # with CLUSTER_UNSUPPORTED
NO_LATENCY_SAMPLES = "ERR No samples available for event '%s'"
ACL_UNKNOWN_CATEGORY = "ERR Unknown category '%s'"
ACL_USER_NOT_FOUND = "ERR User '%s' not found"
ACL_COMMAND_NOT_FOUND = "ERR Command '%s' not found"
ACL_DEFAULT_UNDELETABLE = "ERR The 'default' user cannot be removed"
ACL_GENPASS_BITS = (
    "ERR ACL GENPASS argument must be the number of bits for the output password, a positive "
    "number up to 4096"
)
ACL_NO_FILE = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration."
)
ACL_ONE_USER_REASON = "respkv has one user, 'default', whose password is requirepass"
ACL_LOG_REASON = "denied commands and failed authentications are not recorded"

# -- bit commands (respkv/commands/bitmaps.py; redis-server 7.0 bitops.c) ----------------------
BIT_OFFSET = "ERR bit offset is not an integer or out of range"  # also BITFIELD's offsets
BIT_VALUE = "ERR bit is not an integer or out of range"
BITPOS_BIT = "ERR The bit argument must be 1 or 0."
BITOP_NOT_ONE_SOURCE = "ERR BITOP NOT must be called with a single source key."
BITFIELD_TYPE = (
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "
    "i64 is."
)
BITFIELD_OVERFLOW = "ERR Invalid OVERFLOW type specified"
BITFIELD_RO_GET_ONLY = "ERR BITFIELD_RO only supports the GET subcommand"

# -- cluster mode (respkv/node/coordinator.py, respkv/commands/cluster_cmds.py) ------------------
NOREPLICAS_WRITE = (
    "NOREPLICAS Not enough replicas: needed %d, answered %d "
    "(the write may still be applied on some replicas)"
)
HINT_FAILED = ("NOREPLICAS a hint for a down replica could not be made durable: %s "
               "(the write may still be applied on some replicas)")
NOREPLICAS_READ = "NOREPLICAS Not enough replicas: needed %d, answered %d"
NOREPLICAS_UP = "NOREPLICAS Not enough replicas up: needed %d, up %d (nothing was sent)"
CLUSTER_UNSUPPORTED = "ERR %s is not supported in cluster mode: %s"
CLUSTER_DISABLED = "ERR This instance has cluster support disabled"
INVALID_CONTEXT = "ERR invalid causal context"
INVALID_LEVEL = "ERR %s"  # the text of respkv.cluster.quorum.InvalidLevelError
# RESPKV (respkv/commands/admin_cmds.py, docs/admin.md)
ADMIN_UNAVAILABLE = "ERR RESPKV %s is not available on this node"
ADMIN_REFUSED = "ERR RESPKV %s: %s"

# -- COPY MOVE OBJECT LCS (respkv/commands/keys.py, strings.py) ----------------------------------
SAME_OBJECT = "ERR source and destination objects are the same"
LFU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust."
)
IDLETIME_NOT_TRACKED = (
    "ERR OBJECT IDLETIME is not supported by respkv: access times are not tracked"
)
LCS_LEN_AND_IDX = "ERR If you want both the length and indexes, please just use IDX."
LCS_STRING_TOO_LONG = "ERR String too long for LCS"
LCS_TOO_MUCH_MEMORY = (
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
)

# -- DUMP RESTORE (respkv/commands/dump.py, docs/formats/dump.md) -------------------------------
DUMP_PAYLOAD = "ERR DUMP payload version or checksum are wrong"
BAD_DATA_FORMAT = "ERR Bad data format"
BUSYKEY = "BUSYKEY Target key name already exists."
INVALID_TTL = "ERR Invalid TTL value, must be >= 0"
INVALID_IDLETIME = "ERR Invalid IDLETIME value, must be >= 0"
INVALID_FREQ = "ERR Invalid FREQ value, must be >= 0 and <= 255"
DUMP_UNSUPPORTED_TYPE = "ERR DUMP payload holds a %s value: respkv stores strings only"

# -- BGREWRITEAOF LOLWUT DEBUG REPLICAOF READONLY (respkv/commands/maintenance.py; redis-server
# 7.0 aof.c, debug.c, replication.c, cluster.c) -------------------------------------------------


class RejectedError(CommandError):
    """An error given before the command ran (wrong arity, not authenticated, not allowed in a
    transaction, DEBUG not enabled): INFO commandstats counts it as ``rejected_calls`` and not
    as a call, as redis-server's rejectCommand does; any other error reply of a command that
    ran is one of its ``failed_calls``."""


AOF_REWRITE_IN_PROGRESS = "ERR Background append only file rewriting already in progress"
AOF_REWRITE_FAILED = (
    "ERR Can't execute an AOF background rewriting. Please check the server logs for more "
    "information."
)
DEBUG_NOT_ALLOWED = (
    "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you "
    "can run it from a local connection, otherwise you need to set this option in the "
    "configuration file, and then restart the server."
)
INVALID_MASTER_PORT = "ERR Invalid master port"
REPLICAOF_REASON = (
    "respkv replicates through its cluster, not through master-replica links; to make a node a "
    "copy of others, start it as a cluster member (`respkv server --node-id ID --seed "
    "HOST:PEERPORT`, docs/cluster.md) and it joins and streams its share of the keys"
)  # with MULTI_UNSUPPORTED
