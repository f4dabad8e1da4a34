"""Redis command semantics, sans I/O. Importing this package registers every command."""

from respkv.commands import connection, strings  # noqa: F401
