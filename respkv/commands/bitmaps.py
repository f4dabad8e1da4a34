"""Bit commands on string values (redis-server 7.0 bitops.c semantics, replies and errors)."""

from __future__ import annotations
