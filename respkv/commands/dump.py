"""DUMP and RESTORE: Redis's serialized-value format for string keys (redis-server 7.0 cluster.c
and rdb.c semantics)."""

from __future__ import annotations
