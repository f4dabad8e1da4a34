"""Transactions in cluster mode: MULTI and WATCH say they are not supported (a transaction
cannot be atomic across replicas) instead of queuing; EXEC and DISCARD then answer as without
MULTI, and commands keep running one by one (redis-py: ``pipeline(transaction=False)``)."""

from __future__ import annotations

from pathlib import Path

import hiredis

from respkv.testing.inproc import command, running_nodes


async def test_multi_and_watch_say_so_and_nothing_is_queued(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (node,):
        for args in (("MULTI",), ("WATCH", "k")):
            err = await command(node, *args)
            assert isinstance(err, hiredis.ReplyError)
            assert str(err) == (f"ERR {args[0]} is not supported in cluster mode: a transaction "
                                "cannot be atomic across replicas")
        assert str(await command(node, "EXEC")) == "ERR EXEC without MULTI"
        assert str(await command(node, "DISCARD")) == "ERR DISCARD without MULTI"
        assert await command(node, "UNWATCH") == b"OK"
        assert await command(node, "SET", "k", "v") == b"OK"
        assert await command(node, "GET", "k") == b"v"
