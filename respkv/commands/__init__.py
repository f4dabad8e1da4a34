"""Redis command semantics, sans I/O. Importing this package registers every command."""

from respkv.commands import (  # noqa: F401
    bitmaps,
    client,
    cluster_cmds,
    connection,
    databases,
    dump,
    keys,
    maintenance,
    server,
    strings,
    transactions,
)
