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
