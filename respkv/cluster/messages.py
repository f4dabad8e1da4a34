"""The peer dialect's messages: the requests and replies respkv/cluster/wire.py encodes and
decodes (docs/formats/wire.md).

They live apart from the codec so that the codec can be compiled (respkv/compiled.py): a
compiled function set as a class's ``__eq__`` does not bind as a method, and these classes
need their own equality (below). wire.py re-exports every name here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Messages are NamedTuples: immutable, built in one C call by the decoders (tuple.__new__, which
# skips the generated __new__), read by attribute. Equality is by kind and fields, as the frozen
# dataclasses they replace had it: a message never equals a plain tuple or another kind
# (_same_kind_eq below). wire.py's encode_* functions take the fields directly (``sender`` already
# UTF-8), for callers that would otherwise build a message only to encode it.


class ReplicaRead(NamedTuple):
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes


class ReplicaWrite(NamedTuple):
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes
    sibling_set: bytes  # encode_sibling_set() bytes


class CoordinateWrite(NamedTuple):
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes
    context: bytes  # encode_context_bytes(); empty: overwrite the replica's own copy
    value: bytes | None  # None: a tombstone
    expire_at_ms: int
    timestamp_ms: int


class Ping(NamedTuple):
    req_id: int
    sender: str
    timeout_ms: int


class ServiceCall(NamedTuple):
    """A request to a named service of the peer (gossip, anti-entropy, streaming, hints, admin):
    the extension point of the dialect. Each service documents its arguments and reply payload
    in docs/formats/wire.md; an unknown service gets an ERR reply, never a closed connection."""

    req_id: int
    sender: str
    timeout_ms: int
    service: bytes
    args: tuple[bytes, ...]


Request = ReplicaRead | ReplicaWrite | CoordinateWrite | Ping | ServiceCall


class Reply(NamedTuple):
    req_id: int
    ok: bool
    payload: bytes  # OK: the payload; ERR: the message (UTF-8)


def _same_kind_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(other) is type(self) and tuple.__eq__(self, other)  # type: ignore[operator]


def _same_kind_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _same_kind_eq(self, other)


for _kind in (ReplicaRead, ReplicaWrite, CoordinateWrite, Ping, ServiceCall, Reply):
    setattr(_kind, "__eq__", _same_kind_eq)  # noqa: B010 (NamedTuple allows no mixin)
    setattr(_kind, "__ne__", _same_kind_ne)  # noqa: B010
    setattr(_kind, "__hash__", tuple.__hash__)  # noqa: B010 (equal messages, equal hashes)
