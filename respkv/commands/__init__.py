"""Redis command semantics, sans I/O. Importing this package registers every command."""

from respkv.commands import (  # noqa: F401
    client,
    cluster_cmds,
    connection,
    keys,
    server,
    strings,
    transactions,
)
