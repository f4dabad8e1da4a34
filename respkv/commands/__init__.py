"""Redis command semantics, sans I/O. Importing this package registers every command."""

from respkv.commands import client, cluster_cmds, connection, keys, server, strings  # noqa: F401
