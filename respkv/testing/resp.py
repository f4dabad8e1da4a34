"""RESP helpers for tests: a command as a client sends it, and a handler's reply as a client
reads it. Shared by the command tests (no sockets) and the node tests (real sockets)."""

from __future__ import annotations

from typing import Any

import hiredis

from respkv.protocol.resp import ErrorReply, encode_reply


def command_bytes(*args: bytes | str) -> bytes:
    """``args`` as one RESP multibulk command."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def wire(reply: object, resp3: bool = False) -> bytes:
    """A handler's reply as the bytes the server sends."""
    return encode_reply(reply, resp3)


def parsed(reply: object, resp3: bool = False) -> Any:
    """A handler's reply as hiredis (a client's parser) reads it."""
    r = hiredis.Reader()
    r.feed(wire(reply, resp3))
    return r.gets()


def err(reply: object) -> str:
    """The text of an error reply (fails the test when ``reply`` is not one)."""
    assert isinstance(reply, ErrorReply), reply
    return str(reply)
