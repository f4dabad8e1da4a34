"""The peer dialect without sockets: frames, messages, and the mutual HMAC handshake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respkv.cluster import wire
from respkv.cluster.wire import (
    Acceptor,
    CoordinateWrite,
    FrameDecoder,
    HandshakeError,
    Initiator,
    Ping,
    ReplicaRead,
    ReplicaWrite,
    SelfConnection,
    WireError,
)

SECRET = b"correct horse battery staple\n"
NA = b"A" * 16
NI = b"I" * 16


def frames_of(data: bytes, chunk: int = 1) -> list[list[bytes]]:
    dec = FrameDecoder()
    out = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        while (f := dec.next_frame()) is not None:
            out.append(f)
    return out


def one(data: bytes) -> list[bytes]:
    (f,) = frames_of(data, 7)
    return f


# -- frames -----------------------------------------------------------------------------------


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=16), max_size=5),
       st.integers(1, 50))
def test_frames_roundtrip_in_any_chunking(frames, chunk):
    data = b"".join(wire.encode_frame(f) for f in frames)
    assert frames_of(data, chunk) == frames


@pytest.mark.parametrize("bad", [
    b"+OK\r\n", b":1\r\n", b"*0\r\n", b"*1\r\n:5\r\n", b"*1\r\n*1\r\n$1\r\na\r\n",
    b"*17\r\n" + b"$1\r\na\r\n" * 17, b"*1\r\n$-1\r\n", b"!junk\r\n",
])
def test_frames_other_than_arrays_of_bulk_strings_are_refused(bad):
    with pytest.raises(WireError):
        frames_of(bad, len(bad))


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", [
    ReplicaRead(1, "n1", 2000, 0, b"key"),
    ReplicaRead(2**63, "n\u00e9", 0, 15, b"\x00\r\n"),
    ReplicaWrite(7, "n2", 10, 3, b"k", b"\x01\x02set"),
    CoordinateWrite(8, "n3", 99, 0, b"k", b"ctx", b"value", 1_700_000_000_000, 1_700_000_000),
    CoordinateWrite(9, "n3", 99, 0, b"k", b"", None, 0, 5),
    Ping(10, "n1", 1000),
])
def test_requests_roundtrip(msg):
    assert wire.decode_request(one(wire.encode_request(msg))) == msg


def test_replies_roundtrip_and_are_tagged():
    data = wire.encode_reply(5, True, b"payload") + wire.encode_reply(3, False, b"timeout")
    got = [wire.decode_reply(f) for f in frames_of(data, 3)]
    assert got == [wire.Reply(5, True, b"payload"), wire.Reply(3, False, b"timeout")]


@pytest.mark.parametrize("frame", [
    [b"XX", b"1", b"n", b"0"],
    [b"RR", b"1", b"n", b"0", b"0"],  # missing key
    [b"RR", b"01", b"n", b"0", b"0", b"k"],  # leading zero
    [b"RR", b"-1", b"n", b"0", b"0", b"k"],
    [b"RR", b"1", b"\xff", b"0", b"0", b"k"],
    [b"CW", b"1", b"n", b"0", b"0", b"k", b"", b"x", b"", b"0", b"0"],
])
def test_malformed_requests_raise(frame):
    with pytest.raises(WireError):
        wire.decode_request(frame)


def test_malformed_reply_raises():
    with pytest.raises(WireError):
        wire.decode_reply([b"R", b"1", b"MAYBE", b""])


# -- handshake --------------------------------------------------------------------------------


def handshake(acc: Acceptor, ini: Initiator) -> None:
    auth = ini.on_greeting(one(acc.greeting()))
    welcome = acc.on_auth(one(auth))
    ini.on_welcome(one(welcome))


def test_mutual_authentication_with_the_same_secret():
    acc = Acceptor(SECRET, "node-a", NA, dc="east")
    ini = Initiator(SECRET.rstrip(), "node-i", NI, "127.0.0.1:16379", dc="west")
    handshake(acc, ini)
    assert acc.peer_id == "node-i" and acc.peer_addr == "127.0.0.1:16379"
    assert acc.peer_dc == "west"
    assert ini.peer_id == "node-a" and ini.peer_dc == "east"


def test_the_secret_never_crosses_the_wire():
    acc = Acceptor(SECRET, "node-a", NA)
    ini = Initiator(SECRET, "node-i", NI)
    sent = acc.greeting()
    auth = ini.on_greeting(one(sent))
    welcome = acc.on_auth(one(auth))
    assert SECRET.strip() not in sent + auth + welcome


def test_wrong_secret_is_refused_by_the_acceptor():
    acc = Acceptor(SECRET, "node-a", NA)
    ini = Initiator(b"another secret of enough length", "intruder", NI)
    auth = ini.on_greeting(one(acc.greeting()))
    with pytest.raises(HandshakeError) as e:
        acc.on_auth(one(auth))
    assert one(e.value.reply) == [b"DENIED", b"authentication failed"]
    assert acc.peer_id is None
    with pytest.raises(HandshakeError, match="refused"):
        ini.on_welcome(one(e.value.reply))


def test_an_acceptor_without_the_secret_is_refused_by_the_initiator():
    ini = Initiator(SECRET, "node-i", NI)
    impostor = Acceptor(b"not the cluster secret at all", "node-a", NA)
    auth = ini.on_greeting(one(impostor.greeting()))
    # The impostor cannot verify; suppose it answers WELCOME with a forged proof anyway.
    forged = wire.encode_frame([b"WELCOME", b"\x00" * 32])
    with pytest.raises(HandshakeError, match="failed to prove"):
        ini.on_welcome(one(forged))
    assert auth  # it did get an AUTH, but the AUTH does not reveal the secret


def test_replayed_or_reflected_proofs_fail():
    acc1 = Acceptor(SECRET, "node-a", NA)
    ini = Initiator(SECRET, "node-i", NI)
    auth = ini.on_greeting(one(acc1.greeting()))
    acc1.on_auth(one(auth))
    # Replaying the same AUTH to a new challenge (fresh nonce) fails.
    acc2 = Acceptor(SECRET, "node-a", b"B" * 16)
    with pytest.raises(HandshakeError):
        acc2.on_auth(one(auth))
    # Reflecting the acceptor's nonce back fails.
    acc3 = Acceptor(SECRET, "node-a", NA)
    ini2 = Initiator(SECRET, "node-i", NA)
    with pytest.raises(HandshakeError):
        ini2.on_greeting(one(acc3.greeting()))
    # The initiator's MAC is not a valid acceptor proof (role byte).
    ini3 = Initiator(SECRET, "node-i", NI)
    auth3 = one(ini3.on_greeting(one(Acceptor(SECRET, "node-a", NA).greeting())))
    with pytest.raises(HandshakeError):
        ini3.on_welcome([b"WELCOME", auth3[5]])


def test_impersonating_the_acceptor_or_bad_frames_are_refused():
    acc = Acceptor(SECRET, "node-a", NA)
    ini = Initiator(SECRET, "node-a", NI)
    with pytest.raises(SelfConnection):
        ini.on_greeting(one(acc.greeting()))
    for bad in ([b"PING"], [b"AUTH", b"x y", b"dc1", NI, b"", b"m"],
                [b"AUTH", b"n", b"dc1", b"short", b"", b"m"], [b"AUTH", b"n", b"", NI, b"", b"m"]):
        with pytest.raises(HandshakeError):
            Acceptor(SECRET, "node-a", NA).on_auth(bad)
    with pytest.raises(HandshakeError, match="version"):
        Initiator(SECRET, "n", NI).on_greeting([wire.GREETING, b"2", b"node-a", b"dc1", NA])
    with pytest.raises(HandshakeError, match="not a respkv"):
        Initiator(SECRET, "n", NI).on_greeting([b"+OK"])


def test_short_secrets_and_nonces_are_rejected():
    with pytest.raises(ValueError):
        Acceptor(b"short\n", "a", NA)
    with pytest.raises(ValueError):
        Initiator(SECRET, "a", b"n")


def test_service_calls_roundtrip_and_are_bounded():
    call = wire.ServiceCall(7, "n1", 250, b"gossip", (b"syn", b"", b"\x00\xff"))
    frame = wire.FrameDecoder()
    frame.feed(wire.encode_request(call))
    assert wire.decode_request(frame.next_frame()) == call
    assert wire.decode_request([b"C", b"1", b"n", b"0", b"svc"]) == wire.ServiceCall(
        1, "n", 0, b"svc", ())
    with pytest.raises(ValueError):
        wire.encode_request(wire.ServiceCall(1, "n", 0, b"s", (b"x",) * (wire.MAX_CALL_ARGS + 1)))
    with pytest.raises(wire.WireError):
        wire.decode_request([b"C", b"1", b"n", b"0"])


# -- the fast encoders and decoders against the reference framing -----------------------------
#
# encode_frame is the reference: the format document's framing, part by part. Every fixed-shape
# encoder must produce exactly its bytes, and both decoding paths (next_frame + decode_request,
# and the fused next_request / next_reply) must give back the message, in any chunking.

uints = st.integers(0, 2**64 - 1)
small_uints = st.one_of(st.integers(0, 5000), uints)  # around the small-number table's edge
senders = st.text(min_size=1, max_size=20)
blobs = st.binary(max_size=300)


def reference_frame(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n" % len(p) + p + b"\r\n" for p in parts)


def fused(data: bytes, method: str, chunk: int) -> list[object]:
    dec = FrameDecoder()
    out = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        while (m := getattr(dec, method)()) is not None:
            out.append(m)
    return out


requests = st.one_of(
    st.builds(ReplicaRead, uints, senders, small_uints, small_uints, blobs),
    st.builds(ReplicaWrite, uints, senders, small_uints, small_uints, blobs, blobs),
    st.builds(CoordinateWrite, uints, senders, small_uints, small_uints, blobs, blobs,
              st.none() | blobs, uints, uints),
    st.builds(Ping, uints, senders, small_uints),
    st.builds(wire.ServiceCall, uints, senders, small_uints, blobs,
              st.lists(blobs, max_size=wire.MAX_CALL_ARGS).map(tuple)),
)


def reference_request(m: wire.Request) -> bytes:
    head = (b"%d" % m.req_id, m.sender.encode(), b"%d" % m.timeout_ms)
    if type(m) is ReplicaRead:
        return reference_frame(b"RR", *head, b"%d" % m.db, m.key)
    if type(m) is ReplicaWrite:
        return reference_frame(b"RW", *head, b"%d" % m.db, m.key, m.sibling_set)
    if type(m) is CoordinateWrite:
        return reference_frame(b"CW", *head, b"%d" % m.db, m.key, m.context,
                               b"t" if m.value is None else b"v", m.value or b"",
                               b"%d" % m.expire_at_ms, b"%d" % m.timestamp_ms)
    if type(m) is Ping:
        return reference_frame(b"PING", *head)
    assert type(m) is wire.ServiceCall
    return reference_frame(b"C", *head, m.service, *m.args)


def fast_encoding(m: wire.Request) -> bytes:
    s = m.sender.encode()
    if type(m) is ReplicaRead:
        return wire.encode_read(m.req_id, s, m.timeout_ms, m.db, m.key)
    if type(m) is ReplicaWrite:
        return wire.encode_write(m.req_id, s, m.timeout_ms, m.db, m.key, m.sibling_set)
    if type(m) is CoordinateWrite:
        return wire.encode_coordinate(m.req_id, s, m.timeout_ms, m.db, m.key, m.context, m.value,
                                      m.expire_at_ms, m.timestamp_ms)
    if type(m) is Ping:
        return wire.encode_ping(m.req_id, s, m.timeout_ms)
    assert type(m) is wire.ServiceCall
    return wire.encode_call(m.req_id, s, m.timeout_ms, m.service, m.args)


@given(st.lists(requests, min_size=1, max_size=4), st.integers(1, 64))
def test_request_encoders_match_the_reference_and_decode_back(msgs, chunk):
    data = b"".join(reference_request(m) for m in msgs)
    assert b"".join(wire.encode_request(m) for m in msgs) == data
    assert b"".join(fast_encoding(m) for m in msgs) == data
    assert [wire.decode_request(f) for f in frames_of(data, chunk)] == msgs
    assert fused(data, "next_request", chunk) == msgs


@given(st.lists(st.tuples(uints, st.booleans(), blobs), min_size=1, max_size=4),
       st.integers(1, 64))
def test_reply_encoders_match_the_reference_and_decode_back(replies, chunk):
    data = b"".join(reference_frame(b"R", b"%d" % i, b"OK" if ok else b"ERR", p)
                    for i, ok, p in replies)
    assert b"".join(wire.encode_reply(*r) for r in replies) == data
    want = [wire.Reply(*r) for r in replies]
    assert [wire.decode_reply(f) for f in frames_of(data, chunk)] == want
    assert fused(data, "next_reply", chunk) == want


@given(uints)
def test_encode_ok_empty_is_the_empty_ok_reply(req_id):
    assert wire.encode_ok_empty(req_id) == wire.encode_reply(req_id, True, b"") == (
        reference_frame(b"R", b"%d" % req_id, b"OK", b""))


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=16))
def test_encode_frame_is_the_reference_framing(parts):
    assert wire.encode_frame(parts) == wire.encode_frame(tuple(parts)) == reference_frame(*parts)


# -- numbers ----------------------------------------------------------------------------------


@given(st.one_of(st.binary(max_size=24), st.integers(-5, 10**21).map(lambda n: b"%d" % n),
                 st.integers(0, 9999).map(lambda n: b"0%d" % n),
                 st.text("0123456789+-_ \u0661", max_size=6).map(str.encode)))
def test_parse_uint_takes_exactly_the_canonical_spellings(raw):
    canonical = raw.isascii() and raw.isdigit() and len(raw) <= 20 and raw == b"%d" % int(raw)
    for parse in (wire.parse_uint, wire._small_uint):
        if canonical:
            assert parse(raw) == int(raw)
        else:
            with pytest.raises(WireError):
                parse(raw)


def test_small_numbers_exhaustively():
    for n in range(10_000):
        assert wire._small_uint(b"%d" % n) == wire.parse_uint(b"%d" % n) == n
        for bad in (b"0%d" % n, b"-%d" % n, b"+%d" % n, b"%d " % n):
            with pytest.raises(WireError):
                wire._small_uint(bad)


# -- malformed frames through both decoding paths ----------------------------------------------

# RESP elements that hiredis returns as something other than bytes.
NOT_BULK = [b":5\r\n", b"$-1\r\n", b"*1\r\n$1\r\na\r\n", b"-ERR x\r\n", b",1.5\r\n", b"#t\r\n",
            b"_\r\n", b"%1\r\n$1\r\na\r\n$1\r\nb\r\n", b"*0\r\n"]

VALID = [
    [b"RR", b"1", b"n", b"2000", b"0", b"k"],
    [b"RW", b"1", b"n", b"2000", b"0", b"k", b"set"],
    [b"CW", b"1", b"n", b"2000", b"0", b"k", b"", b"v", b"val", b"0", b"5"],
    [b"CW", b"1", b"n", b"2000", b"0", b"k", b"", b"t", b"", b"0", b"5"],
    [b"PING", b"1", b"n", b"2000"],
    [b"C", b"1", b"n", b"2000", b"svc"],
    [b"C", b"1", b"n", b"2000", b"svc", b"a", b"b"],
]


def raw_frame(parts: list[bytes], at: int, element: bytes) -> bytes:
    """``parts`` framed, with the part at ``at`` replaced by a raw RESP ``element``."""
    out = [b"*%d\r\n" % len(parts)]
    for i, p in enumerate(parts):
        out.append(element if i == at else b"$%d\r\n%b\r\n" % (len(p), p))
    return b"".join(out)


def both_paths_refuse(data: bytes, method: str, decode) -> None:
    with pytest.raises(WireError):
        for f in frames_of(data, len(data)):
            decode(f)
    with pytest.raises(WireError):
        fused(data, method, len(data))


def test_valid_examples_decode():
    for parts in VALID:
        data = reference_frame(*parts)
        assert fused(data, "next_request", 5) == [wire.decode_request(parts)]


@pytest.mark.parametrize("parts", VALID, ids=lambda p: p[0].decode())
@pytest.mark.parametrize("element", NOT_BULK)
def test_a_part_that_is_not_a_bulk_string_is_refused_anywhere(parts, element):
    for at in range(len(parts)):
        both_paths_refuse(raw_frame(parts, at, element), "next_request", wire.decode_request)


@pytest.mark.parametrize("parts", VALID, ids=lambda p: p[0].decode())
def test_a_malformed_number_is_refused_in_every_numeric_field(parts):
    numeric = [i for i, p in enumerate(parts) if i > 0 and p.isdigit()]
    assert numeric
    for at in numeric:
        for bad in (b"", b"01", b"-1", b"+1", b" 1", b"1_0", b"1" * 21, b"\xd9\xa1", b"0x1"):
            frame = [*parts[:at], bad, *parts[at + 1 :]]
            both_paths_refuse(reference_frame(*frame), "next_request", wire.decode_request)


@pytest.mark.parametrize("parts", VALID, ids=lambda p: p[0].decode())
def test_a_wrong_field_count_or_sender_is_refused(parts):
    fixed = parts[0] != b"C"
    for frame in ([*parts[:-1]] if fixed else parts[:4], [*parts, b"x"] if fixed else None,
                  [*parts[:2], b"\xff\xfe", *parts[3:]]):
        if frame is not None:
            both_paths_refuse(reference_frame(*frame), "next_request", wire.decode_request)


def test_unknown_kinds_bad_flags_and_oversized_frames_are_refused():
    for frame in ([b"XX", b"1", b"n", b"0"], [b"rw", b"1", b"n", b"0", b"0", b"k", b"s"],
                  [b"CW", b"1", b"n", b"0", b"0", b"k", b"", b"V", b"", b"0", b"0"],
                  [b"C", b"1", b"n", b"0", b"svc", *[b"a"] * 12]):  # 17 parts
        both_paths_refuse(reference_frame(*frame), "next_request", wire.decode_request)
    for bad in (b"+OK\r\n", b":1\r\n", b"*0\r\n", b"$3\r\nabc\r\n", b"!junk\r\n"):
        with pytest.raises(WireError):
            fused(bad, "next_request", 1)
        with pytest.raises(WireError):
            fused(bad, "next_reply", 1)


def test_malformed_replies_are_refused_by_both_paths():
    good = [b"R", b"7", b"OK", b"payload"]
    for frame in ([b"R", b"7", b"MAYBE", b""], [b"X", b"7", b"OK", b""], [b"R", b"07", b"OK", b""],
                  [b"R", b"7", b"OK"], [*good, b""], [b"R", b"-7", b"ERR", b"x"]):
        both_paths_refuse(reference_frame(*frame), "next_reply", wire.decode_reply)
    for element in NOT_BULK:
        for at in range(4):
            both_paths_refuse(raw_frame(good, at, element), "next_reply", wire.decode_reply)


def test_the_pending_bytes_limit_holds(monkeypatch):
    monkeypatch.setattr(wire, "_MAX_PENDING_BYTES", 100)
    dec = FrameDecoder()
    dec.feed(b"*1\r\n$200\r\n" + b"x" * 80)
    with pytest.raises(WireError, match="too large"):
        dec.feed(b"x" * 30)


# -- message values ---------------------------------------------------------------------------


def test_messages_are_immutable_values_equal_only_to_their_own_kind():
    w = ReplicaWrite(1, "n", 2, 0, b"k", b"s")
    assert w == ReplicaWrite(1, "n", 2, 0, b"k", b"s") and hash(w) == hash(
        ReplicaWrite(1, "n", 2, 0, b"k", b"s"))
    assert w != ReplicaWrite(2, "n", 2, 0, b"k", b"s")
    assert w != (1, "n", 2, 0, b"k", b"s") and not w == (1, "n", 2, 0, b"k", b"s")
    assert wire.Reply(1, True, b"") != (1, True, b"")
    assert Ping(1, "n", 2) != wire.Reply(1, "n", 2)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        w.key = b"other"  # type: ignore[misc]
    assert w.sibling_set == b"s" and repr(w).startswith("ReplicaWrite(req_id=1,")
