"""The RESP codec, without sockets: parsing (both paths agree), limits, inline rules, encoding."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.protocol.resp import (
    NULL_ARRAY,
    OK,
    ErrorReply,
    ProtocolError,
    RequestParser,
    SimpleString,
    Verbatim,
    encode_reply,
    split_inline_args,
)


def mb(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def parse_all(data: bytes, chunks: list[int] | None = None, **kw) -> list:
    p = RequestParser(**kw)
    if chunks is None:
        p.feed(data)
    else:
        i = 0
        for c in chunks:
            p.feed(data[i : i + c])
            i += c
        if i < len(data):
            p.feed(data[i:])
    return p.commands()


def test_multibulk_fast_path():
    assert parse_all(mb(b"SET", b"k", b"v") + mb(b"GET", b"k")) == [[b"SET", b"k", b"v"], [b"GET", b"k"]]


def test_split_command_resumes():
    data = mb(b"SET", b"key", b"x" * 1000) + mb(b"PING")
    for cut in (1, 2, 5, 13, 500, len(data) - 1):
        assert parse_all(data, [cut]) == [[b"SET", b"key", b"x" * 1000], [b"PING"]]


def test_byte_at_a_time():
    data = mb(b"SET", b"k", b"hello world") + b"PING\r\n"
    p = RequestParser()
    got = []
    for i in range(len(data)):
        p.feed(data[i : i + 1])
        got += p.commands()
    assert got == [[b"SET", b"k", b"hello world"], [b"PING"]]


def test_inline_and_multibulk_mixed():
    data = b"PING\r\n" + mb(b"ECHO", b"a") + b"set a 'b c'\n"
    assert parse_all(data) == [[b"PING"], [b"ECHO", b"a"], [b"set", b"a", b"b c"]]


def test_empty_multibulk_and_empty_inline_are_skipped():
    assert parse_all(b"*0\r\n*-1\r\n\r\n" + mb(b"PING")) == [[b"PING"]]


@pytest.mark.parametrize(
    "data,msg",
    [
        (b"*1\r\n$600000000\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$-3\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
        (b"*2000000\r\n", "Protocol error: invalid multibulk length"),
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n:5\r\n", "Protocol error: expected '$', got ':'"),
        (b'set a "b\r\n', "Protocol error: unbalanced quotes in request"),
        (b"set a 'b\r\n", "Protocol error: unbalanced quotes in request"),
        (b'set a "b"c\r\n', "Protocol error: unbalanced quotes in request"),
        (b"a" * (64 * 1024 + 1), "Protocol error: too big inline request"),
        (b"*" + b"1" * (64 * 1024 + 1), "Protocol error: too big mbulk count string"),
        (b"*1\r\n$" + b"1" * (64 * 1024 + 1), "Protocol error: too big bulk count string"),
    ],
)
def test_protocol_errors_match_redis(data, msg):
    out = parse_all(data)
    assert len(out) == 1 and isinstance(out[0], ProtocolError)
    assert str(out[0]) == msg


def test_big_bulk_header_fails_before_buffering():
    p = RequestParser()
    p.feed(b"*2\r\n$3\r\nSET\r\n$600000000\r\n")
    [err] = p.commands()
    assert isinstance(err, ProtocolError)
    assert p.buffered == 0


def test_commands_before_an_error_come_first_and_parser_dies():
    p = RequestParser()
    p.feed(mb(b"PING") + b"*1\r\n$-5\r\n" + mb(b"PING"))
    out = p.commands()
    assert out[0] == [b"PING"] and isinstance(out[1], ProtocolError) and len(out) == 2
    p.feed(mb(b"PING"))
    assert p.commands() == []


def test_configurable_bulk_limit():
    out = parse_all(mb(b"SET", b"k", b"x" * (2 * 1024 * 1024)), proto_max_bulk_len=1024 * 1024)
    assert isinstance(out[0], ProtocolError)


@pytest.mark.parametrize(
    "line,args",
    [
        (b"set a b", [b"set", b"a", b"b"]),
        (b'  set   "a b"  c ', [b"set", b"a b", b"c"]),
        (b'"\\x41\\n\\t\\\\"', [b"A\n\t\\"]),
        (b"'it\\'s'", [b"it's"]),
        (b'""', [b""]),
        (b"", []),
    ],
)
def test_inline_split(line, args):
    assert split_inline_args(line) == args


def test_encoding_resp2_and_resp3():
    assert encode_reply(b"v") == b"$1\r\nv\r\n"
    assert encode_reply(None) == b"$-1\r\n"
    assert encode_reply(None, True) == b"_\r\n"
    assert encode_reply(NULL_ARRAY) == b"*-1\r\n"
    assert encode_reply(7) == b":7\r\n"
    assert encode_reply(True) == b":1\r\n" and encode_reply(True, True) == b"#t\r\n"
    assert encode_reply(1.5) == b"$3\r\n1.5\r\n" and encode_reply(1.5, True) == b",1.5\r\n"
    assert encode_reply({b"a": 1}) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode_reply({b"a": 1}, True) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encode_reply({b"x"}, True) == b"~1\r\n$1\r\nx\r\n"
    assert encode_reply([b"a", [1, None]]) == b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n"
    assert encode_reply(SimpleString("PONG")) == b"+PONG\r\n"
    assert encode_reply(ErrorReply("ERR bad\r\nthing")) == b"-ERR bad  thing\r\n"
    assert encode_reply(OK) == b"+OK\r\n"
    assert encode_reply(Verbatim("hi"), True) == b"=6\r\ntxt:hi\r\n"
    assert encode_reply(Verbatim("hi")) == b"$2\r\nhi\r\n"


def hiredis_decode(data: bytes, resp3: bool = False) -> object:
    r = hiredis.Reader(notEnoughData=Ellipsis)
    r.feed(data)
    return r.gets()


@given(st.recursive(st.none() | st.binary() | st.integers(-(2**63), 2**63 - 1),
                    lambda c: st.lists(c, max_size=4), max_leaves=12))
def test_encoding_is_valid_resp(value):
    """Every encoding decodes back with an independent parser (hiredis) to the same value."""
    assert hiredis_decode(encode_reply(value)) == value


commands = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1, max_size=6)


@given(commands, st.lists(st.integers(1, 30), max_size=10))
def test_any_split_of_valid_multibulk_parses_the_same(cmds, cuts):
    data = b"".join(mb(*c) for c in cmds)
    assert parse_all(data, cuts) == cmds


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=8))
def test_random_bytes_never_crash(data, cuts):
    """Random input yields commands and at most one trailing ProtocolError; never an exception."""
    out = parse_all(data, cuts)
    for item in out[:-1]:
        assert isinstance(item, list)
    for item in out:
        if isinstance(item, list):
            assert item and all(type(a) is bytes for a in item)


@settings(max_examples=300)
@given(commands, st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_frames_agree_between_fast_and_slow_paths(cmds, pos, byte):
    """A mutated frame fed whole (fast path) or byte by byte (reference path) parses the same."""
    data = bytearray(b"".join(mb(*c) for c in cmds))
    data[pos % len(data)] = byte
    whole = parse_all(bytes(data))
    trickled = parse_all(bytes(data), [1] * len(data))
    assert [x if isinstance(x, list) else str(x) for x in whole] == [
        x if isinstance(x, list) else str(x) for x in trickled
    ]


def test_unauthenticated_limits():
    p = RequestParser()
    p.auth_required = True
    p.feed(mb(*[b"a"] * 11))
    assert str(p.commands()[0]) == "Protocol error: unauthenticated multibulk length"
    p = RequestParser()
    p.auth_required = True
    p.feed(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n")
    assert str(p.commands()[0]) == "Protocol error: unauthenticated bulk length"
    p = RequestParser()
    p.auth_required = True
    p.feed(mb(b"AUTH", b"secret"))
    assert p.commands() == [[b"AUTH", b"secret"]]


@pytest.mark.parametrize("text, wire", [
    # as redis-server 7.0.15 answers PEXPIRE k 10 <option> (found by the compat differential)
    ("ERR Unsupported option \r\n", b"-ERR Unsupported option \r\n"),
    ("ERR Unsupported option x\r\n", b"-ERR Unsupported option x\r\n"),
    ("ERR Unsupported option \r\nx\r\n", b"-ERR Unsupported option   x\r\n"),
    ("ERR Unsupported option \nx\ry\n", b"-ERR Unsupported option  x y\r\n"),
    ("ERR unknown subcommand 'x\r\n'. Try OBJECT HELP.",
     b"-ERR unknown subcommand 'x  '. Try OBJECT HELP.\r\n"),
])
def test_error_replies_are_one_line_as_redis_makes_them(text: str, wire: bytes) -> None:
    assert encode_reply(ErrorReply(text)) == wire
