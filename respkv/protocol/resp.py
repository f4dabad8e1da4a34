"""RESP request parsing and RESP2/RESP3 reply encoding, sans I/O (the h11 habit).

A ``RequestParser`` never sees a socket: the node feeds it the bytes it read
(``feed``) and takes complete commands out (``commands``), each a ``list[bytes]``, or a
``ProtocolError`` as the last item when the stream is broken. After a ``ProtocolError`` the caller
replies with its message as an error and closes the connection, as redis-server does; commands
parsed before the error are executed first, in order.

Limits and messages follow redis-server 7 (src/networking.c) byte for byte:

* multibulk count above 1024*1024: ``Protocol error: invalid multibulk length`` (redis-server 7
  accepts up to INT_MAX elements and waits for them; respkv keeps the older 1M cap on purpose)
* before AUTH, when a password is set: multibulk count above 10 or a bulk above 16 KB:
  ``Protocol error: unauthenticated multibulk length`` / ``unauthenticated bulk length``
* bulk length negative or above ``proto_max_bulk_len`` (512 MB): ``Protocol error: invalid bulk
  length`` -- raised on the header, before any byte of the bulk is buffered
* a header line longer than 64 KB with no CRLF: ``Protocol error: too big mbulk count string`` /
  ``too big bulk count string``
* an element that is not a bulk string: ``Protocol error: expected '$', got 'X'``
* an inline request longer than 64 KB with no newline: ``Protocol error: too big inline request``
* unbalanced quotes in an inline request: ``Protocol error: unbalanced quotes in request``

Two paths, one behaviour. The fast path hands a read that starts on a command boundary to
hiredis, and keeps hiredis's result only when the read also *ends* on a boundary and every element
is a bulk string (the common case: each client read holds whole commands). hiredis's
``has_data()`` alone cannot tell a boundary (it is false while hiredis holds a partial header),
so a ``*0`` sentinel is fed after the read: only a clean boundary yields it back as ``[]``. Anything else -- a
command split across reads, inline commands, odd frames -- goes through the resumable pure-Python
parser, which is the reference for every limit above.
"""

from __future__ import annotations

import re

import hiredis

INLINE_MAX_SIZE = 64 * 1024  # PROTO_INLINE_MAX_SIZE
MBULK_MAX = 1024 * 1024  # multibulk element limit
DEFAULT_PROTO_MAX_BULK_LEN = 512 * 1024 * 1024

# hiredis-py allocates a Python list of the announced size as soon as it reads an aggregate
# header, so one ``*2147483647`` froze the whole node while the allocation was paged in. A read
# with any ``*`` followed by 6+ digits therefore skips the fast path: the reference parser
# appends elements as they arrive and never allocates by the announced count.
_BIG_AGGREGATE = re.compile(rb"\*[0-9]{6}")


def string2ll(b: bytes | bytearray) -> int | None:
    """redis-server's string2ll: digits with an optional '-', no '+', no spaces, no leading zeros."""
    if not b or len(b) > 20:
        return None
    if b == b"0":
        return 0
    digits = b[1:] if b[0] == 0x2D else b
    if not digits or digits[0] == 0x30 or not digits.isdigit():
        return None
    v = int(b)
    if v < -(1 << 63) or v > (1 << 63) - 1:
        return None
    return v


def _strchr(buf: bytearray, ch: bytes, pos: int) -> int:
    """Index of ``ch`` at or after ``pos`` as C strchr finds it: a NUL byte ends the search."""
    i = buf.find(ch, pos)
    if i < 0 or buf.find(b"\x00", pos, i) >= 0:
        return -1
    return i


UNBALANCED_QUOTES = "Protocol error: unbalanced quotes in request"


class ProtocolError(Exception):
    """The client broke the protocol; ``str(err)`` is the exact Redis error text (without -ERR)."""


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_SPACE = b" \n\r\t\v\f"  # isspace() in the C locale: blanks between arguments, after quotes
_TOKEN_END = b" \n\r\t"  # what ends an unquoted argument in sdssplitargs (\v, \f do not)
_HEX = b"0123456789abcdefABCDEF"


def split_inline_args(line: bytes) -> list[bytes]:
    """Split an inline request line as redis-server's sdssplitargs does.

    Raises ProtocolError on unbalanced quotes (or a closing quote not followed by a space).
    The line is a C string there: a NUL byte ends it.
    """
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    raise ProtocolError(UNBALANCED_QUOTES)
                c = line[i]
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == ord("x")
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    cur += _ESCAPES.get(line[i], bytes((line[i],)))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError(UNBALANCED_QUOTES)
                    i += 1
                    break
                else:
                    cur.append(c)
            elif insq:
                if i >= n:
                    raise ProtocolError(UNBALANCED_QUOTES)
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        raise ProtocolError(UNBALANCED_QUOTES)
                    i += 1
                    break
                else:
                    cur.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in _TOKEN_END:
                    break
                if c == 0x22:
                    inq = True
                elif c == 0x27:
                    insq = True
                else:
                    cur.append(c)
            i += 1
        args.append(bytes(cur))


class RequestParser:
    """Turns a client's byte stream into commands. Sans I/O; one per connection.

    Contract: ``feed(data)`` then ``commands()`` returns every command now complete, in order.
    Once a ``ProtocolError`` has been returned the parser is dead: further input is ignored.
    Memory held is bounded by one incomplete command: a header announcing more than the limits
    fails at once, before the announced bytes are buffered.
    """

    __slots__ = (
        "_reader",
        "_buf",
        "_pos",
        "_ready",
        "_args",
        "_left",
        "_bulk_len",
        "_dead",
        "proto_max_bulk_len",
        "auth_required",
    )

    def __init__(self, proto_max_bulk_len: int = DEFAULT_PROTO_MAX_BULK_LEN) -> None:
        self._reader = hiredis.Reader()
        self._buf = bytearray()  # unparsed bytes for the slow path
        self._pos = 0  # parse position in _buf
        self._ready: list[list[bytes] | ProtocolError] = []
        self._args: list[bytes] | None = None  # multibulk in progress
        self._left = 0  # elements still to read in the multibulk in progress
        self._bulk_len = -1  # length of the bulk whose header was read, -1 if none
        self._dead = False
        self.proto_max_bulk_len = proto_max_bulk_len
        # While the client has not authenticated, redis-server caps requests far lower
        # (multibulk > 10, bulk > 16 KB); the node keeps this flag current.
        self.auth_required = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete command (for CLIENT LIST qbuf)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._dead:
            return
        if (
            not self._buf
            and self._args is None
            and data[:1] == b"*"
            and not self.auth_required
            and _BIG_AGGREGATE.search(data) is None
            # hiredis also reads RESP3 sets, pushes and attributes (~ > |) and hands back a
            # plain list for them, where redis-server sees an inline command: such reads go
            # to the reference parser (memchr-fast checks; values rarely hold these bytes).
            and b"~" not in data
            and b">" not in data
            and b"|" not in data
        ):
            reader = self._reader
            reader.feed(data)
            # The sentinel *0 parses as a standalone [] only if ``data`` ended on a command
            # boundary; otherwise it is swallowed by (or breaks) the incomplete command.
            reader.feed(b"*0\r\n")
            out: list = []
            try:
                while (cmd := reader.gets()) is not False:
                    out.append(cmd)
            except Exception:  # noqa: BLE001
                # Not only hiredis.ProtocolError: building RESP3 values from client bytes raises
                # too (a '%' map with an array key is TypeError: unhashable type: 'list'), and
                # any exception escaping here would end the node, not just this connection.
                pass
            else:
                if out and out[-1] == [] and not reader.has_data() and self._all_bulk(out, len(data)):
                    ready = self._ready
                    for cmd in out:
                        if cmd:  # *0 and *-1 are skipped, as redis-server does
                            ready.append(cmd)
                    return
            # Not a clean read: forget hiredis's view and let the reference parser redo it.
            self._reader = hiredis.Reader()
        self._buf += data
        self._parse_slow()

    def _all_bulk(self, cmds: list, size: int) -> bool:
        for cmd in cmds:
            if cmd is None:
                continue
            if type(cmd) is not list:
                return False
            for a in cmd:
                if type(a) is not bytes:
                    return False
        # A bulk can only exceed the limit if the whole read does.
        return size <= self.proto_max_bulk_len

    def commands(self) -> list[list[bytes] | ProtocolError]:
        """Take every complete command (and a trailing ProtocolError, if any)."""
        ready = self._ready
        if ready:
            self._ready = []
        return ready

    def _fail(self, msg: str) -> None:
        self._ready.append(ProtocolError(msg))
        self._dead = True
        self._buf = bytearray()
        self._pos = 0

    def _parse_slow(self) -> None:
        buf = self._buf
        pos = self._pos
        ready = self._ready
        n = len(buf)
        while pos < n:
            if self._args is None:
                # At a command boundary.
                if buf[pos] != 0x2A:  # not '*': inline command
                    nl = _strchr(buf, b"\n", pos)
                    if nl < 0:
                        if n - pos > INLINE_MAX_SIZE:
                            return self._fail("Protocol error: too big inline request")
                        break
                    end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                    try:
                        args = split_inline_args(bytes(buf[pos:end]))
                    except ProtocolError as e:
                        return self._fail(str(e))
                    pos = nl + 1
                    if args:
                        ready.append(args)
                    continue
                # As processMultibulkBuffer: the line ends at the first '\r' (strchr), the byte
                # after it is skipped unchecked, and the count is parsed by string2ll.
                cr = _strchr(buf, b"\r", pos)
                if cr < 0:
                    if n - pos > INLINE_MAX_SIZE:
                        return self._fail("Protocol error: too big mbulk count string")
                    break
                if cr > n - 2:
                    break
                count = string2ll(buf[pos + 1 : cr])
                if count is None or count > MBULK_MAX:
                    return self._fail("Protocol error: invalid multibulk length")
                if count > 10 and self.auth_required:
                    return self._fail("Protocol error: unauthenticated multibulk length")
                pos = cr + 2
                if count <= 0:
                    continue
                self._args = []
                self._left = count
                self._bulk_len = -1
            # Inside a multibulk.
            if self._bulk_len < 0:
                # Same line rules; the '$' is checked only once the whole line is there.
                cr = _strchr(buf, b"\r", pos)
                if cr < 0:
                    if n - pos > INLINE_MAX_SIZE:
                        return self._fail("Protocol error: too big bulk count string")
                    break
                if cr > n - 2:
                    break
                if buf[pos] != 0x24:  # '$'
                    got = buf[pos]
                    shown = " " if got in (0x0D, 0x0A) else chr(got)  # Redis maps CR/LF to spaces
                    return self._fail("Protocol error: expected '$', got '%s'" % shown)
                ln = string2ll(buf[pos + 1 : cr])
                if ln is None or ln < 0 or ln > self.proto_max_bulk_len:
                    return self._fail("Protocol error: invalid bulk length")
                if ln > 16384 and self.auth_required:
                    return self._fail("Protocol error: unauthenticated bulk length")
                self._bulk_len = ln
                pos = cr + 2
            ln = self._bulk_len
            if n - pos < ln + 2:
                break
            assert self._args is not None
            self._args.append(bytes(buf[pos : pos + ln]))
            pos += ln + 2
            self._bulk_len = -1
            self._left -= 1
            if self._left == 0:
                ready.append(self._args)
                self._args = None
        # Drop consumed bytes (amortised: only when they dominate the buffer).
        if pos >= n:
            self._buf = bytearray()
            self._pos = 0
        elif pos > 65536 and pos * 2 > n:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


class SimpleString(str):
    """A RESP simple string (+...)."""

    __slots__ = ()


class ErrorReply(Exception):
    """An error reply; ``str(err)`` is the full text including the code ("ERR ...", "WRONGTYPE ...")."""


class Verbatim(str):
    """A RESP3 verbatim string (=NNN\\r\\ntxt:...); a bulk string in RESP2."""

    __slots__ = ()


class Raw(bytes):
    """A reply already encoded, identical in RESP2 and RESP3 (e.g. +OK)."""

    __slots__ = ()


class _NullArray:
    """*-1 in RESP2, _ in RESP3 (e.g. a blocked pop's timeout, EXEC abort)."""

    __slots__ = ()


NULL_ARRAY = _NullArray()
OK = Raw(b"+OK\r\n")
PONG = Raw(b"+PONG\r\n")
QUEUED = Raw(b"+QUEUED\r\n")
NO_REPLY = Raw(b"")  # commands that reply nothing (e.g. CLIENT REPLY OFF)


def format_double(x: float) -> bytes:
    """A float as Redis prints it (%.17g, with inf/-inf/nan spelled as Redis does)."""
    if x != x:
        return b"nan"
    if x == float("inf"):
        return b"inf"
    if x == float("-inf"):
        return b"-inf"
    if x == int(x) and abs(x) < 1e17:
        return b"%d" % int(x)
    return (b"%.17g" % x)


def encode(value: object, resp3: bool, out: bytearray) -> None:
    """Append the encoding of ``value`` to ``out``.

    Type mapping: bytes -> bulk; int -> integer; bool -> #t/#f (RESP2 :1/:0); float -> double
    (RESP2 bulk); None -> null; list/tuple -> array; dict -> map (RESP2 flat array);
    set/frozenset -> set (RESP2 array); SimpleString -> +; ErrorReply -> -; Verbatim -> = (RESP2
    bulk); Raw -> as is; str -> bulk (UTF-8).
    """
    # One type() call and identity tests pick the branch (the common replies never reach an
    # isinstance); mypy does not narrow ``value`` through ``t``, hence the narrow ignores below.
    t = type(value)
    if t is bytes:
        out += b"$%d\r\n" % len(value)  # type: ignore[arg-type]
        out += value  # type: ignore[arg-type]
        out += b"\r\n"
    elif t is Raw:
        out += value  # type: ignore[arg-type]
    elif t is int:
        out += b":%d\r\n" % value  # type: ignore[str-format]
    elif value is None:
        out += b"_\r\n" if resp3 else b"$-1\r\n"
    elif t is list or t is tuple:
        out += b"*%d\r\n" % len(value)  # type: ignore[arg-type]
        for v in value:  # type: ignore[attr-defined]
            encode(v, resp3, out)
    elif t is SimpleString:
        out += b"+" + value.encode() + b"\r\n"  # type: ignore[attr-defined]
    elif isinstance(value, ErrorReply):
        # As Redis's addReplyErrorFormat: CR/LF at the end are trimmed, those inside become
        # spaces (an error reply is one line).
        msg = str(value).rstrip("\r\n").replace("\r", " ").replace("\n", " ")
        try:
            raw = msg.encode("latin-1")  # client bytes echoed in errors are kept as latin-1
        except UnicodeEncodeError:
            raw = msg.encode("utf-8", "replace")
        out += b"-" + raw + b"\r\n"
    elif t is dict:
        d: dict = value  # type: ignore[assignment]
        out += (b"%%%d\r\n" % len(d)) if resp3 else (b"*%d\r\n" % (2 * len(d)))
        for k, v in d.items():
            encode(k, resp3, out)
            encode(v, resp3, out)
    elif t is bool:
        if resp3:
            out += b"#t\r\n" if value else b"#f\r\n"
        else:
            out += b":1\r\n" if value else b":0\r\n"
    elif t is float:
        f = format_double(value)  # type: ignore[arg-type]
        if resp3:
            out += b"," + f + b"\r\n"
        else:
            out += b"$%d\r\n%s\r\n" % (len(f), f)
    elif t is set or t is frozenset:
        # operator: mypy repeats the len() error as a note on the % of a conditional operand
        out += (b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value)  # type: ignore[arg-type,operator]
        for v in value:  # type: ignore[attr-defined]
            encode(v, resp3, out)
    elif t is Verbatim:
        b = value.encode()  # type: ignore[attr-defined]
        if resp3:
            out += b"=%d\r\ntxt:%s\r\n" % (len(b) + 4, b)
        else:
            out += b"$%d\r\n%s\r\n" % (len(b), b)
    elif t is str:
        b = value.encode()  # type: ignore[attr-defined]
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    elif value is NULL_ARRAY:
        out += b"_\r\n" if resp3 else b"*-1\r\n"
    elif isinstance(value, bytes):
        out += b"$%d\r\n%s\r\n" % (len(value), value)
    elif isinstance(value, int):
        out += b":%d\r\n" % int(value)
    else:
        raise TypeError(f"cannot encode reply of type {t.__name__}")


def encode_reply(value: object, resp3: bool = False) -> bytes:
    out = bytearray()
    encode(value, resp3, out)
    return bytes(out)
