"""The peer dialect, sans I/O: frames, requests and replies, and the handshake state machines.

Format document: docs/formats/wire.md (version 1). Nothing here touches a socket, a clock or a
random source: nonces and timeouts come in as arguments (the h11 habit), so the whole dialect is
tested with byte strings.

* :func:`encode_frame` / :class:`FrameDecoder`: RESP2 arrays of bulk strings, with limits.
* :func:`encode_request` / :func:`decode_request` and :func:`encode_reply` /
  :func:`decode_reply`: the replica messages (``RR``, ``RW``, ``CW``, ``PING``), service calls
  (``C``), and their replies.
* :class:`Acceptor` / :class:`Initiator`: mutual challenge-response authentication with
  HMAC-SHA256 over the cluster secret (RFC 2104); the secret never crosses the wire.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import hiredis

from respkv.cluster.codec import put_bytes

WIRE_VERSION = b"1"
GREETING = b"RESPKV-PEER"
MAX_FRAME_PARTS = 16
MAX_FRAME_BYTES = 1 << 30
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
MAX_NODE_ID_BYTES = 128
MIN_SECRET_BYTES = 16
HANDSHAKE_TIMEOUT_MS = 5000
RECONNECT_BACKOFF_MS = 500
DENIED_REASON = b"authentication failed"
_TRANSCRIPT_LABEL = b"respkv-peer-v1"

KIND_READ = b"RR"
KIND_WRITE = b"RW"
KIND_COORDINATE = b"CW"
KIND_PING = b"PING"
KIND_CALL = b"C"
MAX_CALL_ARGS = MAX_FRAME_PARTS - 5


class WireError(ValueError):
    """Bytes that break the dialect; the connection must be closed."""


class HandshakeError(Exception):
    """Authentication failed. ``reply`` holds the bytes to send before closing (may be empty);
    ``detail`` says why, for the log only (never sent)."""

    def __init__(self, detail: str, reply: bytes = b"") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reply = reply


# -- frames ---------------------------------------------------------------------------------------


def encode_frame(parts: list[bytes] | tuple[bytes, ...]) -> bytes:
    out = bytearray(b"*%d\r\n" % len(parts))
    for p in parts:
        out += b"$%d\r\n" % len(p)
        out += p
        out += b"\r\n"
    return bytes(out)


class FrameDecoder:
    """Bytes in, frames out. ``feed(data)`` then ``next_frame()`` until it returns None.
    Raises :class:`WireError` on anything but an array of at most ``MAX_FRAME_PARTS`` bulk
    strings; the decoder is then unusable. Holds at most one incomplete frame (plus one read)."""

    __slots__ = ("_reader", "_pending")

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._pending = 0

    def feed(self, data: bytes) -> None:
        self._pending += len(data)
        if self._pending > MAX_FRAME_BYTES + 64 * 1024:
            raise WireError("frame too large")
        self._reader.feed(data)

    def next_frame(self) -> list[bytes] | None:
        try:
            item = self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise WireError(f"protocol error: {exc}") from None
        if item is False:
            return None
        self._pending = 0  # bytes fed since the last complete frame (an upper bound)
        if type(item) is not list or not 1 <= len(item) <= MAX_FRAME_PARTS:
            raise WireError("expected an array of 1 to 16 bulk strings")
        for part in item:
            if type(part) is not bytes:
                raise WireError("expected bulk strings only")
        return item


def parse_uint(raw: bytes) -> int:
    """Unsigned decimal ASCII, no sign, no leading zeros; WireError otherwise."""
    if not raw or not raw.isdigit() or len(raw) > 20 or (raw[0] == 48 and len(raw) > 1):
        raise WireError(f"bad unsigned integer {raw[:24]!r}")
    return int(raw)


# -- requests and replies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaRead:
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes


@dataclass(frozen=True, slots=True)
class ReplicaWrite:
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes
    sibling_set: bytes  # encode_sibling_set() bytes


@dataclass(frozen=True, slots=True)
class CoordinateWrite:
    req_id: int
    sender: str
    timeout_ms: int
    db: int
    key: bytes
    context: bytes  # encode_context_bytes(); empty: overwrite the replica's own copy
    value: bytes | None  # None: a tombstone
    expire_at_ms: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Ping:
    req_id: int
    sender: str
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class ServiceCall:
    """A request to a named service of the peer (gossip, anti-entropy, streaming, hints, admin):
    the extension point of the dialect. Each service documents its arguments and reply payload
    in docs/formats/wire.md; an unknown service gets an ERR reply, never a closed connection."""

    req_id: int
    sender: str
    timeout_ms: int
    service: bytes
    args: tuple[bytes, ...]


Request = ReplicaRead | ReplicaWrite | CoordinateWrite | Ping | ServiceCall


@dataclass(frozen=True, slots=True)
class Reply:
    req_id: int
    ok: bool
    payload: bytes  # OK: the payload; ERR: the message (UTF-8)


def _head(kind: bytes, r: Request) -> list[bytes]:
    return [kind, b"%d" % r.req_id, r.sender.encode(), b"%d" % r.timeout_ms]


def encode_request(r: Request) -> bytes:
    if type(r) is ReplicaRead:
        return encode_frame([*_head(KIND_READ, r), b"%d" % r.db, r.key])
    if type(r) is ReplicaWrite:
        return encode_frame([*_head(KIND_WRITE, r), b"%d" % r.db, r.key, r.sibling_set])
    if type(r) is CoordinateWrite:
        flags = b"t" if r.value is None else b"v"
        return encode_frame([
            *_head(KIND_COORDINATE, r), b"%d" % r.db, r.key, r.context, flags, r.value or b"",
            b"%d" % r.expire_at_ms, b"%d" % r.timestamp_ms,
        ])
    if type(r) is Ping:
        return encode_frame(_head(KIND_PING, r))
    if type(r) is ServiceCall:
        if len(r.args) > MAX_CALL_ARGS:
            raise ValueError(f"a service call takes at most {MAX_CALL_ARGS} arguments")
        return encode_frame([*_head(KIND_CALL, r), r.service, *r.args])
    raise TypeError(f"not a request: {r!r}")


_ARITY = {KIND_READ: 6, KIND_WRITE: 7, KIND_COORDINATE: 11, KIND_PING: 4}


def decode_request(frame: list[bytes]) -> Request:
    """A request frame -> its message. WireError for an unknown kind or malformed fields."""
    kind = frame[0]
    if kind == KIND_CALL:
        if len(frame) < 5:
            raise WireError(f"C takes at least 5 fields, got {len(frame)}")
        try:
            sender = frame[2].decode()
        except UnicodeDecodeError:
            raise WireError("sender is not UTF-8") from None
        return ServiceCall(parse_uint(frame[1]), sender, parse_uint(frame[3]), frame[4],
                           tuple(frame[5:]))
    want = _ARITY.get(kind)
    if want is None:
        raise WireError(f"unknown request kind {kind[:16]!r}")
    if len(frame) != want:
        raise WireError(f"{kind.decode()} takes {want} fields, got {len(frame)}")
    req_id = parse_uint(frame[1])
    try:
        sender = frame[2].decode()
    except UnicodeDecodeError:
        raise WireError("sender is not UTF-8") from None
    timeout_ms = parse_uint(frame[3])
    if kind == KIND_PING:
        return Ping(req_id, sender, timeout_ms)
    db = parse_uint(frame[4])
    if kind == KIND_READ:
        return ReplicaRead(req_id, sender, timeout_ms, db, frame[5])
    if kind == KIND_WRITE:
        return ReplicaWrite(req_id, sender, timeout_ms, db, frame[5], frame[6])
    flags = frame[7]
    if flags not in (b"v", b"t"):
        raise WireError("CW flags must be 'v' or 't'")
    value = None if flags == b"t" else frame[8]
    return CoordinateWrite(
        req_id, sender, timeout_ms, db, frame[5], frame[6], value,
        parse_uint(frame[9]), parse_uint(frame[10]),
    )


def encode_reply(req_id: int, ok: bool, payload: bytes) -> bytes:
    return encode_frame([b"R", b"%d" % req_id, b"OK" if ok else b"ERR", payload])


def decode_reply(frame: list[bytes]) -> Reply:
    if len(frame) != 4 or frame[0] != b"R" or frame[2] not in (b"OK", b"ERR"):
        raise WireError("malformed reply")
    return Reply(parse_uint(frame[1]), frame[2] == b"OK", frame[3])


# -- handshake ------------------------------------------------------------------------------------


def check_secret(secret: bytes) -> bytes:
    """The secret as used: trailing whitespace removed; ValueError when too short."""
    s = secret.rstrip()
    if len(s) < MIN_SECRET_BYTES:
        raise ValueError(f"cluster secret must be at least {MIN_SECRET_BYTES} bytes")
    return s


def _valid_node_id(raw: bytes) -> bool:
    if not 1 <= len(raw) <= MAX_NODE_ID_BYTES or any(c <= 32 for c in raw):
        return False
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def transcript(
    role: bytes, acceptor_id: bytes, acceptor_dc: bytes, nonce_a: bytes, initiator_id: bytes,
    initiator_dc: bytes, nonce_i: bytes, initiator_addr: bytes,
) -> bytes:
    out = bytearray(_TRANSCRIPT_LABEL)
    out += role
    for f in (acceptor_id, acceptor_dc, nonce_a, initiator_id, initiator_dc, nonce_i,
              initiator_addr):
        put_bytes(out, f)
    return bytes(out)


def mac(secret: bytes, role: bytes, *fields: bytes) -> bytes:
    return hmac.new(secret, transcript(role, *fields), hashlib.sha256).digest()


def _check_nonce(nonce: bytes) -> None:
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise ValueError("nonce must be 16 to 64 bytes")


class Acceptor:
    """The accepting side. ``greeting()`` -> bytes to send first; then feed the first frame the
    peer sends to ``on_auth(frame)``: it returns the WELCOME bytes and sets ``peer_id`` /
    ``peer_dc`` / ``peer_addr``, or raises :class:`HandshakeError` whose ``reply`` is the DENIED frame."""

    def __init__(self, secret: bytes, node_id: str, nonce: bytes, dc: str = "dc1") -> None:
        _check_nonce(nonce)
        self.secret = check_secret(secret)
        self.node_id = node_id.encode()
        self.dc = dc.encode()
        self.nonce = nonce
        self.peer_id: str | None = None
        self.peer_dc = ""
        self.peer_addr = ""

    def greeting(self) -> bytes:
        return encode_frame([GREETING, WIRE_VERSION, self.node_id, self.dc, self.nonce])

    def on_auth(self, frame: list[bytes]) -> bytes:
        denied = encode_frame([b"DENIED", DENIED_REASON])
        if len(frame) != 6 or frame[0] != b"AUTH":
            raise HandshakeError("expected AUTH", denied)
        _, peer_id, peer_dc, nonce_i, addr, mac_i = frame
        if not _valid_node_id(peer_id) or not _valid_node_id(peer_dc):
            raise HandshakeError("bad node id", denied)
        if peer_id == self.node_id:
            raise HandshakeError("peer claims our own node id", denied)
        if not MIN_NONCE_BYTES <= len(nonce_i) <= MAX_NONCE_BYTES or nonce_i == self.nonce:
            raise HandshakeError("bad or reflected nonce", denied)
        fields = (self.node_id, self.dc, self.nonce, peer_id, peer_dc, nonce_i, addr)
        if not hmac.compare_digest(mac(self.secret, b"I", *fields), mac_i):
            raise HandshakeError(f"wrong MAC from node {peer_id.decode()!r}", denied)
        self.peer_id = peer_id.decode()
        self.peer_dc = peer_dc.decode()
        try:
            self.peer_addr = addr.decode("ascii")
        except UnicodeDecodeError:
            self.peer_addr = ""
        return encode_frame([b"WELCOME", mac(self.secret, b"A", *fields)])


class SelfConnection(HandshakeError):
    """The initiator dialled its own node (a seed list naming itself): close quietly."""


class Initiator:
    """The connecting side. ``on_greeting(frame)`` -> the AUTH bytes to send (sets
    ``peer_id`` and ``peer_dc``); ``on_welcome(frame)`` checks the acceptor's proof. Both raise
    :class:`HandshakeError` (reply empty: just close)."""

    def __init__(
        self, secret: bytes, node_id: str, nonce: bytes, addr: str = "", dc: str = "dc1"
    ) -> None:
        _check_nonce(nonce)
        self.secret = check_secret(secret)
        self.node_id = node_id.encode()
        self.dc = dc.encode()
        self.nonce = nonce
        self.addr = addr.encode("ascii")
        self.peer_id: str | None = None
        self.peer_dc = ""
        self._fields: tuple[bytes, ...] | None = None

    def on_greeting(self, frame: list[bytes]) -> bytes:
        if len(frame) < 2 or frame[0] != GREETING:
            raise HandshakeError("not a respkv peer port")
        if frame[1] != WIRE_VERSION:
            raise HandshakeError(f"unsupported peer dialect version {frame[1][:8]!r}")
        if len(frame) != 5:
            raise HandshakeError("malformed greeting")
        acceptor_id, acceptor_dc, nonce_a = frame[2], frame[3], frame[4]
        if not _valid_node_id(acceptor_id) or not _valid_node_id(acceptor_dc):
            raise HandshakeError("bad acceptor node id")
        if acceptor_id == self.node_id:
            raise SelfConnection("dialled our own node")
        if not MIN_NONCE_BYTES <= len(nonce_a) <= MAX_NONCE_BYTES or nonce_a == self.nonce:
            raise HandshakeError("bad or reflected acceptor nonce")
        self._fields = (acceptor_id, acceptor_dc, nonce_a, self.node_id, self.dc, self.nonce,
                        self.addr)
        self.peer_id = acceptor_id.decode()
        self.peer_dc = acceptor_dc.decode()
        return encode_frame([b"AUTH", self.node_id, self.dc, self.nonce, self.addr,
                             mac(self.secret, b"I", *self._fields)])

    def on_welcome(self, frame: list[bytes]) -> None:
        if self._fields is None:
            raise HandshakeError("WELCOME before the greeting")
        if len(frame) == 2 and frame[0] == b"DENIED":
            raise HandshakeError(f"refused by {self.peer_id!r}: "
                                 f"{frame[1].decode('utf-8', 'replace')}")
        if len(frame) != 2 or frame[0] != b"WELCOME":
            raise HandshakeError("expected WELCOME")
        if not hmac.compare_digest(mac(self.secret, b"A", *self._fields), frame[1]):
            raise HandshakeError(f"node {self.peer_id!r} failed to prove the cluster secret")
