"""Hostile and broken clients over real sockets: respkv answers what redis-server 7.0 answers,
never crashes, never hangs, never allocates what a header merely announces, and other clients
do not notice.

Most cases send some bytes, half-close the socket and read until the server closes, on both
servers; the two byte streams must carry the same replies. Unknown-command error *texts* are
normalised here (test_differential compares them exactly); everything else -- protocol errors,
their order, the close -- must be identical. After every case another connection must get PONG
and the process must be alive.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rawresp import COMPARED, RawConn, _NeedMore, _parse, encode_command, examples, flushall

from respkv.testing.procs import ServerProcess

BAD_SETTINGS = dict(
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def exchange(port: int, data: bytes, chunks: list[int] | None = None, deadline: float = 10.0) -> bytes:
    """Send ``data`` (in pieces), half-close, and return everything until the server closes.

    A server that closes early (protocol error) may make our later sends fail or turn its close
    into a reset; the replies it sent before are still read, and only they are returned.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=deadline)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = bytearray()
    try:
        try:
            i = 0
            for c in chunks or []:
                if i >= len(data):
                    break
                s.sendall(data[i : i + c])
                i += c
            s.sendall(data[i:])
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server already closed: read what it said
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except OSError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk
        raise AssertionError(f"server on {port} neither replied nor closed within {deadline}s")
    finally:
        s.close()


def replies(stream: bytes) -> list:
    """The replies in a byte stream; unknown-command texts reduced to their kind."""
    out: list = []
    pos = 0
    while pos < len(stream):
        try:
            tree, end = _parse(stream, pos)
        except (_NeedMore, ValueError):
            out.append(("rest", stream[pos:]))
            break
        if tree[0] == "-" and tree[1].startswith(b"ERR unknown command"):
            tree = ("-", b"ERR unknown command ...")
        out.append(tree)
        pos = end
    return out


def assert_alive(sp: ServerProcess) -> None:
    assert sp.proc.poll() is None, f"server exited with {sp.proc.returncode}: {sp.log()[-3000:]}"
    with RawConn(sp.port, timeout=5) as c:
        assert c.call("PING")[1] == b"+PONG\r\n"


def compare(both: tuple[ServerProcess, ServerProcess], data: bytes,
            chunks: list[int] | None = None) -> tuple[bytes, bytes]:
    respkv, redis = both
    got = exchange(respkv.port, data, chunks)
    want = exchange(redis.port, data, chunks)
    COMPARED["(bad input)"] += 1
    assert replies(got) == replies(want), f"input {data[:300]!r}\n redis : {want[:400]!r}\n respkv: {got[:400]!r}"
    assert_alive(respkv)
    return got, want


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- deterministic cases --------------------------------------------------------------------------

PING = encode_command("PING")

CASES = {
    "bulk length above 512MB": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n",
    "negative bulk length": b"*1\r\n$-1\r\n",
    "bulk length not a number": b"*1\r\n$abc\r\n",
    "bulk length +1 / leading zero / -0": b"*1\r\n$+4\r\nPING\r\n",
    "bulk length leading zero": b"*1\r\n$04\r\nPING\r\n",
    "bulk length -0": b"*1\r\n$-0\r\n",
    "multibulk length not a number": b"*x\r\n",
    "multibulk length +1": b"*+1\r\n$4\r\nPING\r\n",
    "multibulk length leading zero": b"*01\r\n$4\r\nPING\r\n",
    "multibulk length above INT_MAX": b"*3000000000\r\n",
    "multibulk then not a bulk": b"*2\r\n$4\r\nECHO\r\n:5\r\n",
    "multibulk then a byte >= 0x80": b"*1\r\n\xff\r\n",
    "CR not followed by LF in a header": b"*1\rX$4\r\nPING\r\n",
    "negative multibulk is skipped": b"*-10\r\nPING\r\n",
    "empty multibulk is skipped": b"*0\r\n" + PING,
    "empty lines are skipped": b"\r\n\r\n\n" + PING,
    "LF-only inline": b"PING\nECHO hi\n",
    "unbalanced double quote": b'SET k "abc\r\n',
    "unbalanced single quote": b"ECHO 'abc\r\n",
    "closing quote followed by a letter": b'ECHO "a"b\r\n',
    "quotes and escapes that balance": b'ECHO "a\\x41\\n\\"b" \'it\\\'s\'\r\n',
    "vertical tab inside an inline argument": b"ECHO a\x0bb\r\n",
    "NUL inside an inline line waits like strchr": b"ECHO a\x00b\r\n" + PING,
    "too big inline request": b"x" * 70000,
    "too big mbulk count string": b"*" + b"1" * 70000,
    "too big bulk count string": b"*1\r\n$" + b"1" * 70000,
    "commands before an error run first": PING + encode_command("ECHO", "x") + b"*1\r\n$-5\r\n" + PING,
    "pipelined mixed inline and multibulk": PING + b"ECHO inline\r\n" + encode_command("ECHO", "bulk"),
    "bulk with NUL and CRLF inside": encode_command("ECHO", b"a\x00b\r\nc"),
    "bulk payload not followed by CRLF (skipped unchecked)": b"*1\r\n$4\r\nPINGXX" + PING,
    "nested array element": b"*1\r\n*1\r\n$4\r\nPING\r\n",
    "RESP3 types from a client": b"*1\r\n%1\r\n",
    "huge multibulk after a command in one read (hiredis fast path)": PING + b"*3000000000\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_deterministic_bad_input(both, name: str) -> None:
    compare(both, CASES[name])


@pytest.mark.parametrize("name", ["bulk length above 512MB", "too big bulk count string",
                                  "pipelined mixed inline and multibulk", "unbalanced double quote",
                                  "CR not followed by LF in a header"])
def test_deterministic_bad_input_trickled(both, name: str) -> None:
    """The same inputs arriving in small pieces give the same replies."""
    data = CASES[name]
    compare(both, data, [7] * (len(data) // 7) if len(data) < 1000 else [4096] * (len(data) // 4096))


@pytest.mark.xfail(strict=False, reason=(
    "deliberate deviation (respkv/protocol/resp.py docstring): respkv keeps the old 1M multibulk "
    "cap; redis-server 7.0.15 accepts up to INT_MAX and waits for the elements"))
def test_multibulk_count_above_1m_like_redis(both) -> None:
    # Redis waits for 2M elements; the 'X' then makes its reply deterministic.
    compare(both, b"*2000000\r\nX\r\n")


def test_multibulk_count_above_1m_never_hangs(both) -> None:
    """Whatever the cap, a huge count costs nothing: other clients are served at once."""
    respkv, _ = both
    for data in (b"*2000000\r\n", b"*2147483647\r\n", PING + b"*2147483647\r\n",
                 b"*1\r\n$4\r\nPING\r\n*1048577\r\n$1\r\n"):
        with RawConn(respkv.port) as bad, RawConn(respkv.port, timeout=3) as other:
            bad.send(data)
            t0 = time.monotonic()
            assert other.call("PING")[1] == b"+PONG\r\n"
            assert time.monotonic() - t0 < 2.0
        assert_alive(respkv)


def test_600mb_bulk_header_is_refused_at_once_without_allocating(both) -> None:
    respkv, redis = both
    before = rss_kb(respkv.pid)
    t0 = time.monotonic()
    got = exchange(respkv.port, CASES["bulk length above 512MB"])
    assert got == b"-ERR Protocol error: invalid bulk length\r\n"
    assert time.monotonic() - t0 < 2.0
    assert exchange(redis.port, CASES["bulk length above 512MB"]) == got
    assert rss_kb(respkv.pid) - before < 50_000
    assert_alive(respkv)


def test_announced_big_bulk_is_not_allocated_up_front(both) -> None:
    """A 500 MB bulk under the limit, announced but never sent, costs what was really sent."""
    respkv, _ = both
    before = rss_kb(respkv.pid)
    with RawConn(respkv.port) as c:
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n" + b"x" * 1000)
        with RawConn(respkv.port) as other:  # the server has read it by the time this answers
            assert other.call("PING")[1] == b"+PONG\r\n"
        assert rss_kb(respkv.pid) - before < 50_000
    assert_alive(respkv)


def test_a_command_trickled_byte_by_byte_works(both) -> None:
    data = encode_command("SET", "k", "hello world") + b"GET k\r\n" + encode_command("STRLEN", "k")
    for sp in both:
        with RawConn(sp.port) as c:
            for i in range(len(data)):
                c.send(data[i : i + 1])
            got = [c.read_reply()[1] for _ in range(3)]
        assert got == [b"+OK\r\n", b"$11\r\nhello world\r\n", b":11\r\n"], sp
    assert_alive(both[0])


def test_client_vanishing_mid_pipeline(both) -> None:
    respkv, _ = both
    with RawConn(respkv.port) as witness:
        witness.call("SET", "witness", "1")
        # 1) a pipeline cut in the middle of a command, then the socket is reset
        s = socket.create_connection(("127.0.0.1", respkv.port))
        pipe = b"".join(encode_command("SET", f"p{i}", "v" * 100) for i in range(2000))
        s.sendall(pipe + b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$100\r\nabc")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
        # 2) many big replies requested, none read, then gone
        s = socket.create_connection(("127.0.0.1", respkv.port))
        s.sendall(encode_command("SET", "big", "x" * 100_000))
        s.sendall(encode_command("GET", "big") * 300)
        s.close()
        assert_alive(respkv)
        assert witness.call("GET", "witness")[1] == b"$1\r\n1\r\n"
        assert witness.call("PING")[1] == b"+PONG\r\n"


def test_slow_trickling_client_does_not_block_others(both) -> None:
    respkv, _ = both
    with RawConn(respkv.port) as slow, RawConn(respkv.port, timeout=3) as fast:
        data = encode_command("SET", "slow", "v" * 50)
        for i in range(len(data) - 1):
            slow.send(data[i : i + 1])
            if i % 10 == 0:
                assert fast.call("PING")[1] == b"+PONG\r\n"
        slow.send(data[-1:])
        assert slow.read_reply()[1] == b"+OK\r\n"


def test_many_bad_clients_at_once(both) -> None:
    """Concurrent hostile clients; the server still answers and stays up."""
    respkv, _ = both
    inputs = list(CASES.values())
    errors: list[BaseException] = []

    def run(data: bytes) -> None:
        try:
            exchange(respkv.port, data)
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(d,)) for d in inputs * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert_alive(respkv)


# -- Hypothesis: random bytes, truncated and mutated frames ----------------------------------------

SAFE_COMMANDS = st.sampled_from([
    [b"PING"], [b"ECHO", b"hi"], [b"SET", b"k", b"v"], [b"GET", b"k"], [b"INCR", b"n"],
    [b"APPEND", b"k", b"xyz"], [b"STRLEN", b"k"], [b"DEL", b"k"], [b"EXISTS", b"k", b"n"],
    [b"MGET", b"k", b"n"], [b"ECHO", b"a\r\nb"], [b"GETRANGE", b"k", b"0", b"-1"],
])
FRAMES = st.lists(SAFE_COMMANDS, min_size=1, max_size=6).map(
    lambda cmds: b"".join(encode_command(*c) for c in cmds))
INLINE = st.lists(st.sampled_from([b"PING", b"ECHO hi", b"SET k v", b"GET k", b'ECHO "a b"',
                                   b"INCR n", b"  ", b""]), min_size=1, max_size=4).map(
    lambda lines: b"".join(x + b"\r\n" for x in lines))
CHUNKS = st.lists(st.integers(1, 40), max_size=6)


def _fresh(both: tuple[ServerProcess, ServerProcess]) -> None:
    for sp in both:
        flushall(sp.port)


def test_random_bytes(both) -> None:
    @settings(max_examples=examples(3.0), **BAD_SETTINGS)
    @given(st.binary(max_size=200), CHUNKS)
    def check(data: bytes, chunks: list[int]) -> None:
        _fresh(both)
        compare(both, data, chunks)

    check()


def test_truncated_frames(both) -> None:
    @settings(max_examples=examples(3.0), **BAD_SETTINGS)
    @given(st.one_of(FRAMES, INLINE), st.integers(0, 10_000), CHUNKS)
    def check(data: bytes, cut: int, chunks: list[int]) -> None:
        _fresh(both)
        compare(both, data[: cut % (len(data) + 1)], chunks)

    check()


def test_mutated_frames(both) -> None:
    mutation = st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10_000),
                         st.sampled_from(list(b"*$\r\n-+:0123456789abcPIN\x00\xff \"'\\")))

    @settings(max_examples=examples(5.0), **BAD_SETTINGS)
    @given(st.one_of(FRAMES, INLINE), st.lists(mutation, min_size=1, max_size=3), CHUNKS)
    def check(data: bytes, mutations: list, chunks: list[int]) -> None:
        buf = bytearray(data)
        for kind, pos, byte in mutations:
            p = pos % (len(buf) + 1)
            if kind == "insert":
                buf.insert(p, byte)
            elif buf:
                p = min(p, len(buf) - 1)
                if kind == "replace":
                    buf[p] = byte
                else:
                    del buf[p]
        _fresh(both)
        compare(both, bytes(buf), chunks)

    check()
