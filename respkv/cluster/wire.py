"""The peer dialect, sans I/O: frames, requests and replies, and the handshake state machines.

Format document: docs/formats/wire.md (version 1). Nothing here touches a socket, a clock or a
random source: nonces and timeouts come in as arguments (the h11 habit), so the whole dialect is
tested with byte strings.

* :func:`encode_frame` / :class:`FrameDecoder`: RESP2 arrays of bulk strings, with limits.
* :func:`encode_request` / :func:`decode_request` and :func:`encode_reply` /
  :func:`decode_reply`: the replica messages (``RR``, ``RW``, ``CW``, ``PING``), service calls
  (``C``), and their replies.
* The hot-path forms of the same bytes: ``encode_read`` / ``encode_write`` / ``encode_coordinate``
  / ``encode_ping`` / ``encode_call`` / ``encode_ok_empty`` take the fields (no message object),
  and ``FrameDecoder.next_request`` / ``next_reply`` decode while they take the frame.
  bench/bench_wire.py times them against the codec as it was before them.
* :class:`Acceptor` / :class:`Initiator`: mutual challenge-response authentication with
  HMAC-SHA256 over the cluster secret (RFC 2104); the secret never crosses the wire.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import hiredis

from respkv.cluster.codec import put_bytes
from respkv.cluster.messages import (  # noqa: F401 (re-exported: the dialect's message types)
    CoordinateWrite,
    Ping,
    ReplicaRead,
    ReplicaWrite,
    Reply,
    Request,
    ServiceCall,
)

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
_MAX_PENDING_BYTES = MAX_FRAME_BYTES + 64 * 1024  # one frame, plus the read that completes it
_NOT_BULK = "expected bulk strings only"

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
    """One frame of ``parts``: the generic encoder (the handshake uses it) and the reference the
    fixed-shape encoders below are tested against. Each part is copied once."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n" % len(p))
        out.append(p)
        out.append(b"\r\n")
    return b"".join(out)


class FrameDecoder:
    """Bytes in, frames out. ``feed(data)`` then ``next_frame()`` (or ``next_request()`` /
    ``next_reply()``, which also decode the message) until it returns None. Raises
    :class:`WireError` on anything but an array of at most ``MAX_FRAME_PARTS`` bulk strings;
    the decoder is then unusable. Holds at most one incomplete frame (plus one read)."""

    __slots__ = ("_reader", "_pending")

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._pending = 0

    def feed(self, data: bytes) -> None:
        self._pending += len(data)
        if self._pending > _MAX_PENDING_BYTES:
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
                raise WireError(_NOT_BULK)
        return item

    # next_request / next_reply repeat next_frame's opening rather than call it (the call is a
    # measurable part of decoding a request: bench/bench_wire.py), and they skip its loop over
    # the parts: the decoders reject every part that is not bytes on their own (see "Decoders").

    def next_request(self) -> Request | None:
        """``decode_request(next_frame())``: the next whole request, None when none is buffered."""
        try:
            item = self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise WireError(f"protocol error: {exc}") from None
        if item is False:
            return None
        self._pending = 0
        if type(item) is not list or not 1 <= len(item) <= MAX_FRAME_PARTS:
            raise WireError("expected an array of 1 to 16 bulk strings")
        try:
            decode = _REQUEST_DECODERS.get(item[0])
            if decode is None:
                raise WireError(f"unknown request kind {item[0][:16]!r}")
            return decode(item)
        except (TypeError, AttributeError):
            _check_bulk(item)
            raise  # every part is bytes: a bug, not bad input

    def next_reply(self) -> Reply | None:
        """``decode_reply(next_frame())``: the next whole reply, None when none is buffered."""
        try:
            item = self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise WireError(f"protocol error: {exc}") from None
        if item is False:
            return None
        self._pending = 0
        if type(item) is not list:
            raise WireError("expected an array of 1 to 16 bulk strings")
        try:
            return decode_reply(item)
        except (TypeError, AttributeError):
            _check_bulk(item)
            raise


def _check_bulk(frame: list[Any]) -> None:
    """WireError unless every part of ``frame`` is a bulk string."""
    for part in frame:
        if type(part) is not bytes:
            raise WireError(_NOT_BULK)


# The canonical spelling of every integer below 4096 -> its value (about 0.4 MB). A hit is a valid
# unsigned integer by construction (no sign, no leading zero), so it skips parse_uint's checks:
# databases and timeouts (request_timeout_ms defaults to 2000) hit; anything else takes
# parse_uint. Built from the rule, never edited.
_SMALL_UINTS: dict[bytes, int] = {b"%d" % i: i for i in range(4096)}


def parse_uint(raw: bytes) -> int:
    """Unsigned decimal ASCII, no sign, no leading zeros, at most 20 digits; WireError otherwise."""
    # bytes.isdigit() is ASCII-only and False for b"", so int() sees only digits.
    if raw.isdigit() and len(raw) <= 20 and (raw[0] != 48 or len(raw) == 1):
        return int(raw)
    raise WireError(f"bad unsigned integer {raw[:24]!r}")


def _small_uint(raw: bytes) -> int:
    """parse_uint, faster for the fields that are usually small (db, timeout)."""
    v = _SMALL_UINTS.get(raw)
    return parse_uint(raw) if v is None else v


def _sender(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise WireError("sender is not UTF-8") from None


# -- requests and replies -----------------------------------------------------------------------
#
# The message types are in respkv/cluster/messages.py (re-exported here).

_new = tuple.__new__


def encode_read(req_id: int, sender: bytes, timeout_ms: int, db: int, key: bytes) -> bytes:
    """The ``RR`` frame of these fields (as ``encode_request(ReplicaRead(...))``)."""
    r = b"%d" % req_id
    t = b"%d" % timeout_ms
    d = b"%d" % db
    return (b"*6\r\n$2\r\nRR\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
            % (len(r), r, len(sender), sender, len(t), t, len(d), d, len(key), key))


def encode_write(
    req_id: int, sender: bytes, timeout_ms: int, db: int, key: bytes, sibling_set: bytes
) -> bytes:
    """The ``RW`` frame of these fields (as ``encode_request(ReplicaWrite(...))``)."""
    r = b"%d" % req_id
    t = b"%d" % timeout_ms
    d = b"%d" % db
    return (b"*7\r\n$2\r\nRW\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
            b"$%d\r\n%b\r\n"
            % (len(r), r, len(sender), sender, len(t), t, len(d), d, len(key), key,
               len(sibling_set), sibling_set))


def encode_coordinate(
    req_id: int, sender: bytes, timeout_ms: int, db: int, key: bytes, context: bytes,
    value: bytes | None, expire_at_ms: int, timestamp_ms: int,
) -> bytes:
    """The ``CW`` frame of these fields (as ``encode_request(CoordinateWrite(...))``)."""
    r = b"%d" % req_id
    t = b"%d" % timeout_ms
    d = b"%d" % db
    x = b"%d" % expire_at_ms
    s = b"%d" % timestamp_ms
    flags_value = b"$1\r\nt\r\n$0\r\n\r\n" if value is None else b"$1\r\nv\r\n$%d\r\n%b\r\n" % (
        len(value), value)
    return (b"*11\r\n$2\r\nCW\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
            b"$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n"
            % (len(r), r, len(sender), sender, len(t), t, len(d), d, len(key), key,
               len(context), context, flags_value, len(x), x, len(s), s))


def encode_ping(req_id: int, sender: bytes, timeout_ms: int) -> bytes:
    """The ``PING`` frame of these fields (as ``encode_request(Ping(...))``)."""
    r = b"%d" % req_id
    t = b"%d" % timeout_ms
    return (b"*4\r\n$4\r\nPING\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
            % (len(r), r, len(sender), sender, len(t), t))


def encode_call(
    req_id: int, sender: bytes, timeout_ms: int, service: bytes,
    args: tuple[bytes, ...] | list[bytes],
) -> bytes:
    """The ``C`` frame of these fields (as ``encode_request(ServiceCall(...))``); ValueError for
    more than ``MAX_CALL_ARGS`` arguments."""
    if len(args) > MAX_CALL_ARGS:
        raise ValueError(f"a service call takes at most {MAX_CALL_ARGS} arguments")
    return encode_frame((KIND_CALL, b"%d" % req_id, sender, b"%d" % timeout_ms, service, *args))


_REQUEST_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    ReplicaRead: lambda r: encode_read(r[0], r[1].encode(), r[2], r[3], r[4]),
    ReplicaWrite: lambda r: encode_write(r[0], r[1].encode(), r[2], r[3], r[4], r[5]),
    CoordinateWrite: lambda r: encode_coordinate(r[0], r[1].encode(), *r[2:]),
    Ping: lambda r: encode_ping(r[0], r[1].encode(), r[2]),
    ServiceCall: lambda r: encode_call(r[0], r[1].encode(), r[2], r[3], r[4]),
}


def encode_request(r: Request) -> bytes:
    encode = _REQUEST_ENCODERS.get(type(r))
    if encode is None:
        raise TypeError(f"not a request: {r!r}")
    return encode(r)


# Decoders, one per kind, of a frame whose first field named the kind. They also take the frames
# FrameDecoder.next_request did not check part by part, so a part that is not bytes (hiredis
# also returns ints, None, lists...) must make them raise: WireError, or TypeError /
# AttributeError from parse_uint, _small_uint or _sender (which next_request turns into a
# WireError). The parts a decoder passes through unparsed (key, sibling set, ...) it checks
# itself. tests/cluster/test_wire.py puts a non-bytes value in every position of every kind.


def _arity_error(frame: list[bytes], want: int) -> WireError:
    return WireError(f"{frame[0].decode()} takes {want} fields, got {len(frame)}")


def _decode_read(frame: list[bytes]) -> ReplicaRead:
    try:
        _, req_id, sender, timeout_ms, db, key = frame
    except ValueError:
        raise _arity_error(frame, 6) from None
    if type(key) is not bytes:
        raise WireError(_NOT_BULK)
    return _new(ReplicaRead, (parse_uint(req_id), _sender(sender), _small_uint(timeout_ms),
                              _small_uint(db), key))


def _decode_write(frame: list[bytes]) -> ReplicaWrite:
    try:
        _, req_id, sender, timeout_ms, db, key, sibling_set = frame
    except ValueError:
        raise _arity_error(frame, 7) from None
    if type(key) is not bytes or type(sibling_set) is not bytes:
        raise WireError(_NOT_BULK)
    return _new(ReplicaWrite, (parse_uint(req_id), _sender(sender), _small_uint(timeout_ms),
                               _small_uint(db), key, sibling_set))


def _decode_coordinate(frame: list[bytes]) -> CoordinateWrite:
    try:
        _, req_id, sender, timeout_ms, db, key, context, flags, value, expire, ts = frame
    except ValueError:
        raise _arity_error(frame, 11) from None
    if type(key) is not bytes or type(context) is not bytes or type(value) is not bytes:
        raise WireError(_NOT_BULK)
    req = (parse_uint(req_id), _sender(sender), _small_uint(timeout_ms), _small_uint(db))
    if flags != b"v" and flags != b"t":
        raise WireError("CW flags must be 'v' or 't'")
    return _new(CoordinateWrite, (*req, key, context, None if flags == b"t" else value,
                                  parse_uint(expire), parse_uint(ts)))


def _decode_ping(frame: list[bytes]) -> Ping:
    try:
        _, req_id, sender, timeout_ms = frame
    except ValueError:
        raise _arity_error(frame, 4) from None
    return _new(Ping, (parse_uint(req_id), _sender(sender), _small_uint(timeout_ms)))


def _decode_call(frame: list[bytes]) -> ServiceCall:
    if len(frame) < 5:
        raise WireError(f"C takes at least 5 fields, got {len(frame)}")
    _check_bulk(frame)  # service and args pass through
    return _new(ServiceCall, (parse_uint(frame[1]), _sender(frame[2]), _small_uint(frame[3]),
                              frame[4], tuple(frame[5:])))


_REQUEST_DECODERS: dict[bytes, Callable[[list[bytes]], Request]] = {
    KIND_READ: _decode_read,
    KIND_WRITE: _decode_write,
    KIND_COORDINATE: _decode_coordinate,
    KIND_PING: _decode_ping,
    KIND_CALL: _decode_call,
}


def decode_request(frame: list[bytes]) -> Request:
    """A request frame (from FrameDecoder) -> its message. WireError for an unknown kind or
    malformed fields."""
    decode = _REQUEST_DECODERS.get(frame[0])
    if decode is None:
        raise WireError(f"unknown request kind {frame[0][:16]!r}")
    return decode(frame)


def encode_reply(req_id: int, ok: bool, payload: bytes) -> bytes:
    r = b"%d" % req_id
    return (b"*4\r\n$1\r\nR\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n"
            % (len(r), r, b"$2\r\nOK\r\n" if ok else b"$3\r\nERR\r\n", len(payload), payload))


def encode_ok_empty(req_id: int) -> bytes:
    """``encode_reply(req_id, True, b"")``: the reply to an RW, a PING, a stored hint."""
    r = b"%d" % req_id
    return b"*4\r\n$1\r\nR\r\n$%d\r\n%b\r\n$2\r\nOK\r\n$0\r\n\r\n" % (len(r), r)


def decode_reply(frame: list[bytes]) -> Reply:
    """A reply frame (from FrameDecoder) -> its Reply; WireError when malformed."""
    try:
        tag, req_id, status, payload = frame
    except ValueError:
        raise WireError("malformed reply") from None
    if tag != b"R":
        raise WireError("malformed reply")
    if status == b"OK":
        ok = True
    elif status == b"ERR":
        ok = False
    else:
        raise WireError("malformed reply")
    if type(payload) is not bytes:
        raise WireError(_NOT_BULK)
    return _new(Reply, (parse_uint(req_id), ok, payload))


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
