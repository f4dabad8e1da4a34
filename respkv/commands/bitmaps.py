"""Bit commands on string values (redis-server 7.0 bitops.c semantics, replies and errors).

SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO. A string is a bit array whose
bit 0 is the most significant bit of its first byte; bits past the end read as 0.

Contracts:
* Every offset is checked against ``proto_max_bulk_len`` before anything is read or allocated
  (Redis's getBitOffsetFromArgument), so a write grows a string to at most that many bytes
  (BITFIELD: plus the up to 8 bytes its last field reaches past the offset, as in Redis).
* Work is proportional to the part of the string a command touches: a write copies the string
  once (values are immutable bytes), reads never copy it. Counting and searching run in C
  (``int.bit_count`` over bounded chunks; BITPOS skips runs of 0x00 or 0xff with
  ``bytes.startswith``, a memcmp, then a byte-class regex finds the byte), never a Python loop
  per bit or byte.
* A write that changes nothing (SETBIT of the bit already there, BITFIELD writes of the values
  already there) writes nothing, so WATCH and the cluster see no write, as in Redis. One
  difference: a BITFIELD whose writes all fail (OVERFLOW FAIL) but which creates or grows the
  string stores it, which touches WATCH; Redis grows it in place without signalling the key.
  SETBIT and BITFIELD keep the key's TTL (Redis edits the string in place); BITOP's destination
  loses it (Redis's setKey).
* Keywords (BITOP's operation, BIT/BYTE, BITFIELD's subcommands and overflow types) are compared
  as C strings, as Redis's strcasecmp does: case-insensitively and only up to a NUL byte.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import TABLE, Client, parse_int
from respkv.commands.errors import CommandError

cmd = TABLE.command

_CHUNK = 1 << 20  # bytes turned into one int at a time (BITCOUNT, BITOP): bounded extra memory
_SCAN_CHUNK = 1 << 16  # BITPOS skips runs of 0x00 / 0xff this long with one memcmp
_ZEROS = bytes(_SCAN_CHUNK)
_ONES = b"\xff" * _SCAN_CHUNK
_FIRST_SET_BYTE = re.compile(rb"[^\x00]")
_FIRST_CLEAR_BYTE = re.compile(rb"[^\xff]")
_INVERT = bytes(255 - i for i in range(256))  # a bytes.translate table: BITOP NOT


def _keyword(arg: bytes) -> bytes:
    """``arg`` as strcasecmp compares it: lower case, cut at the first NUL."""
    return arg.split(b"\0", 1)[0].lower()


def _wrap_int64(v: int) -> int:
    """``v`` as a C int64_t arithmetic result (two's complement wrap-around)."""
    return ((v + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def bit_offset(client: Client, arg: bytes, bits: int = 0) -> int:
    """Redis's getBitOffsetFromArgument: a bit offset of at most proto-max-bulk-len bytes.
    With ``bits`` (BITFIELD), ``#n`` means ``n * bits``, multiplied as C int64 (it wraps)."""
    if bits and arg[:1] == b"#":
        offset = _wrap_int64(parse_int(arg[1:], E.BIT_OFFSET) * bits)
    else:
        offset = parse_int(arg, E.BIT_OFFSET)
    if offset < 0 or (offset >> 3) >= client.server.config.proto_max_bulk_len:
        raise CommandError(E.BIT_OFFSET)
    return offset


def _splice(old: bytes, at: int, part: bytes) -> bytes:
    """``old`` with ``part`` written at byte ``at`` (zero-padded up to it): one copy."""
    n = len(old)
    if at >= n:
        return b"".join((old, bytes(at - n), part))
    mv = memoryview(old)
    return b"".join((mv[:at], part, mv[at + len(part) :]))


def popcount(s: bytes, start: int, stop: int) -> int:
    """Set bits in ``s[start:stop]``."""
    mv = memoryview(s)
    total = 0
    for i in range(start, stop, _CHUNK):
        total += int.from_bytes(mv[i : min(i + _CHUNK, stop)], "little").bit_count()
    return total


def first_bit(s: bytes, start: int, count: int, bit: int) -> int:
    """Redis's redisBitpos over the ``count`` bytes of ``s`` from ``start``: the position (in
    bits, from ``start``) of the first ``bit``; if there is none, -1 for a 1 and ``count * 8``
    (the first bit after the bytes) for a 0."""
    skip = _ZEROS if bit else _ONES  # the bytes that cannot hold the bit looked for
    stop = start + count
    i = start
    while i < stop:
        j = min(i + _SCAN_CHUNK, stop)
        if not s.startswith(skip[: j - i], i):
            break
        i = j
    else:
        return -1 if bit else count * 8
    m = (_FIRST_SET_BYTE if bit else _FIRST_CLEAR_BYTE).search(s, i, j)
    assert m is not None
    i = m.start()
    byte = s[i] if bit else s[i] ^ 0xFF
    return (i - start) * 8 + 8 - byte.bit_length()


def _is_bit_unit(arg: bytes) -> bool:
    """BITCOUNT/BITPOS's last argument: True for BIT, False for BYTE."""
    word = _keyword(arg)
    if word == b"bit":
        return True
    if word == b"byte":
        return False
    raise CommandError(E.SYNTAX)


def _clamp(start: int, end: int, totlen: int, isbit: bool) -> tuple[int, int, int, int]:
    """BITCOUNT/BITPOS's range arithmetic: negative indexes from the end, clamped to the string
    (``totlen`` in the range's unit). BIT ranges become byte ranges plus the masks of the bits
    of the first and last byte that lie outside. Returns (start, end, first mask, last mask)."""
    if start < 0:
        start = totlen + start
    if end < 0:
        end = totlen + end
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= totlen:
        end = totlen - 1
    first_mask = last_mask = 0
    if isbit and start <= end:
        first_mask = ~((1 << (8 - (start & 7))) - 1) & 0xFF
        last_mask = (1 << (7 - (end & 7))) - 1
        start >>= 3
        end >>= 3
    return start, end, first_mask, last_mask


# -- SETBIT / GETBIT -----------------------------------------------------------------------------

@cmd("setbit", 4, "write denyoom", (1, 1, 1), "bitmap",
     "Sets or clears the bit at offset in the string value stored at key", since="2.2.0")
def setbit(client: Client, args: list[bytes]) -> Any:
    offset = bit_offset(client, args[2])
    on = parse_int(args[3], E.BIT_VALUE)
    if on & ~1:
        raise CommandError(E.BIT_VALUE)
    db = client.db
    key = args[1]
    rec = db.get(key)
    old = b"" if rec is None else rec.value
    byte = offset >> 3
    shift = 7 - (offset & 7)
    if byte < len(old):
        current = old[byte]
        was = (current >> shift) & 1
        if was == on:
            return was  # nothing changes: no write (Redis signals no modification)
        value = _splice(old, byte, bytes(((current & ~(1 << shift)) | (on << shift),)))
    else:
        was = 0
        value = _splice(old, byte, bytes((on << shift,)))
    db.set(key, value, 0 if rec is None else rec.expire_at_ms)
    return was


@cmd("getbit", 3, "readonly fast", (1, 1, 1), "bitmap",
     "Returns the bit value at offset in the string value stored at key", since="2.2.0")
def getbit(client: Client, args: list[bytes]) -> Any:
    offset = bit_offset(client, args[2])
    rec = client.db.lookup_read(args[1])
    if rec is None:
        return 0
    byte = offset >> 3
    value = rec.value
    if byte >= len(value):
        return 0
    return (value[byte] >> (7 - (offset & 7))) & 1


# -- BITCOUNT / BITPOS ---------------------------------------------------------------------------

@cmd("bitcount", -2, "readonly", (1, 1, 1), "bitmap", "Count set bits in a string",
     since="2.6.0", complexity="O(N)")
def bitcount(client: Client, args: list[bytes]) -> Any:
    # 7.0 looks the key up first: a missing key answers 0 whatever the other arguments are.
    rec = client.db.lookup_read(args[1])
    if rec is None:
        return 0
    s = rec.value
    n = len(args)
    first_mask = last_mask = 0
    if n == 4 or n == 5:
        start = parse_int(args[2])
        end = parse_int(args[3])
        isbit = _is_bit_unit(args[4]) if n == 5 else False
        if start < 0 and end < 0 and start > end:
            return 0
        start, end, first_mask, last_mask = _clamp(
            start, end, len(s) * 8 if isbit else len(s), isbit)
    elif n == 2:
        start, end = 0, len(s) - 1
    else:
        raise CommandError(E.SYNTAX)
    if start > end:
        return 0
    count = popcount(s, start, end + 1)
    # The bits of the edge bytes outside a BIT range were counted too: take them off.
    if first_mask:
        count -= (s[start] & first_mask).bit_count()
    if last_mask:
        count -= (s[end] & last_mask).bit_count()
    return count


@cmd("bitpos", -3, "readonly", (1, 1, 1), "bitmap", "Find first bit set or clear in a string",
     since="2.8.7", complexity="O(N)")
def bitpos(client: Client, args: list[bytes]) -> Any:
    bit = parse_int(args[2])
    if bit != 0 and bit != 1:
        raise CommandError(E.BITPOS_BIT)
    rec = client.db.lookup_read(args[1])
    if rec is None:  # an endless run of zeros, before the range is even parsed (as 7.0)
        return -1 if bit else 0
    s = rec.value
    n = len(args)
    end_given = False
    first_mask = last_mask = 0
    if 4 <= n <= 6:
        start = parse_int(args[3])
        isbit = _is_bit_unit(args[5]) if n == 6 else False  # the unit before the end, as 7.0
        if n >= 5:
            end = parse_int(args[4])
            end_given = True
        else:
            end = len(s) - 1
        start, end, first_mask, last_mask = _clamp(
            start, end, len(s) * 8 if isbit else len(s), isbit)
    elif n == 3:
        start, end = 0, len(s) - 1
    else:
        raise CommandError(E.SYNTAX)
    if start > end:
        return -1  # an empty range holds neither a 0 nor a 1
    nbytes = end - start + 1
    pos = _bitpos_in_range(s, start, end, nbytes, bit, first_mask, last_mask)
    if pos is None:
        pos, start, nbytes = _bitpos_rest(s, start, end, nbytes, bit, first_mask, last_mask)
    # Looking for a 0 in an explicit range: the bits after it are not zero padding, so a miss
    # (the first bit after the range) is -1.
    if end_given and bit == 0 and pos == nbytes << 3:
        return -1
    if pos != -1:
        pos += start << 3
    return pos


def _bitpos_in_range(s: bytes, start: int, end: int, nbytes: int, bit: int, first_mask: int,
                     last_mask: int) -> int | None:
    """BITPOS's first byte of a BIT range (masked); the answer if it settles it, else None."""
    if not first_mask:
        return None
    tmp = (s[start] & ~first_mask) if bit else (s[start] | first_mask)
    if last_mask and nbytes == 1:  # the range is within one byte
        tmp = (tmp & ~last_mask) if bit else (tmp | last_mask)
    pos = first_bit(bytes((tmp,)), 0, 1, bit)
    if nbytes == 1 or (pos != -1 and pos != 8):
        return pos
    return None


def _bitpos_rest(s: bytes, start: int, end: int, nbytes: int, bit: int, first_mask: int,
                 last_mask: int) -> tuple[int, int, int]:
    """BITPOS past a first byte that did not settle it: the whole bytes, then the masked last
    byte. Returns (position from ``start``, start, bytes) as redis-server leaves them."""
    if first_mask:
        start += 1
        nbytes -= 1
    whole = nbytes - (1 if last_mask else 0)
    if whole > 0:
        pos = first_bit(s, start, whole, bit)
        if nbytes == whole or (pos != -1 and pos != whole << 3):
            return pos, start, nbytes
        start += whole
        nbytes -= whole
    tmp = (s[end] & ~last_mask) if bit else (s[end] | last_mask)
    return first_bit(bytes((tmp,)), 0, 1, bit), start, nbytes


# -- BITOP ---------------------------------------------------------------------------------------

_BITOPS: dict[bytes, Callable[[int, int], int]] = {
    b"and": operator.and_, b"or": operator.or_, b"xor": operator.xor,
}


@cmd("bitop", -4, "write denyoom", (2, -1, 1), "bitmap",
     "Perform bitwise operations between strings", since="2.6.0", complexity="O(N)")
def bitop(client: Client, args: list[bytes]) -> Any:
    op = _keyword(args[1])
    if op not in _BITOPS and op != b"not":
        raise CommandError(E.SYNTAX)
    if op == b"not" and len(args) != 4:
        raise CommandError(E.BITOP_NOT_ONE_SOURCE)
    db = client.db
    sources = []
    for key in args[3:]:
        rec = db.lookup_read(key)
        sources.append(b"" if rec is None else rec.value)  # a missing key: an empty string
    size = max(len(v) for v in sources)
    dest = args[2]
    if not size:
        db.delete(dest)  # every source empty: the destination goes
        return 0
    if op == b"not":
        result = sources[0].translate(_INVERT)
    else:
        result = _combine(_BITOPS[op], sources, size)
    db.set(dest, result)  # a plain SET of the destination: its TTL goes
    return size


def _combine(fn: Callable[[int, int], int], sources: list[bytes], size: int) -> bytes:
    """``fn`` (and, or, xor) folded over ``sources``, each zero-padded to ``size`` bytes; a
    chunk at a time, as little-endian ints (whose zero padding at the end is free)."""
    views = [memoryview(v) for v in sources]
    out = []
    for i in range(0, size, _CHUNK):
        j = min(i + _CHUNK, size)
        acc = int.from_bytes(views[0][i:j], "little")
        for v in views[1:]:
            acc = fn(acc, int.from_bytes(v[i:j], "little"))
        out.append(acc.to_bytes(j - i, "little"))
    return b"".join(out)


# -- BITFIELD ------------------------------------------------------------------------------------

_GET, _SET, _INCRBY = 0, 1, 2
_WRAP, _SAT, _FAIL = 0, 1, 2
_SUBCOMMANDS = {b"get": (_GET, 2), b"set": (_SET, 3), b"incrby": (_INCRBY, 3)}
_OVERFLOWS = {b"wrap": _WRAP, b"sat": _SAT, b"fail": _FAIL}
_BITFIELD_COMPLEXITY = "O(1) for each subcommand specified"


def bitfield_type(arg: bytes) -> tuple[bool, int]:
    """Redis's getBitfieldTypeFromArgument: ``i1``..``i64`` or ``u1``..``u63`` (case-sensitive;
    the width is read up to a NUL, as strlen does). Returns (signed, bits)."""
    sign = arg[:1]
    if sign != b"i" and sign != b"u":
        raise CommandError(E.BITFIELD_TYPE)
    signed = sign == b"i"
    bits = parse_int(arg[1:].split(b"\0", 1)[0], E.BITFIELD_TYPE)
    if bits < 1 or bits > (64 if signed else 63):
        raise CommandError(E.BITFIELD_TYPE)
    return signed, bits


def _field_width(offset: int, bits: int) -> tuple[int, int, int]:
    """The bytes a field spans: (first byte, how many, right shift of the field in them)."""
    first = offset >> 3
    width = ((offset + bits - 1) >> 3) - first + 1
    return first, width, width * 8 - (offset & 7) - bits


def _field_value(window: bytes, shift: int, bits: int, signed: bool) -> int:
    v = (int.from_bytes(window, "big") >> shift) & ((1 << bits) - 1)
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


def read_field(s: bytes, offset: int, bits: int, signed: bool) -> int:
    """The ``bits``-wide integer at bit ``offset`` of ``s`` (zero past its end)."""
    first, width, shift = _field_width(offset, bits)
    return _field_value(s[first : first + width].ljust(width, b"\0"), shift, bits, signed)


class StringEdit:
    """A string being written by BITFIELD: the stored bytes zero-extended to ``size``, and the
    bytes written since (index -> byte). Fields are at most 9 bytes, so reads and writes touch
    at most 9 bytes each; ``value()`` copies the string once."""

    __slots__ = ("base", "size", "patches")

    def __init__(self, base: bytes, size: int) -> None:
        self.base = base
        self.size = max(size, len(base))
        self.patches: dict[int, int] = {}

    def _window(self, first: int, width: int) -> bytes:
        window = self.base[first : first + width].ljust(width, b"\0")
        patches = self.patches
        if patches:
            w = bytearray(window)
            for i in range(width):
                b = patches.get(first + i)
                if b is not None:
                    w[i] = b
            window = bytes(w)
        return window

    def read(self, offset: int, bits: int, signed: bool) -> int:
        first, width, shift = _field_width(offset, bits)
        return _field_value(self._window(first, width), shift, bits, signed)

    def write(self, offset: int, bits: int, value: int) -> None:
        """Store the low ``bits`` bits of ``value`` at bit ``offset`` (below ``size``)."""
        first, width, shift = _field_width(offset, bits)
        mask = ((1 << bits) - 1) << shift
        old = int.from_bytes(self._window(first, width), "big")
        new = (old & ~mask) | ((value << shift) & mask)
        for i, b in enumerate(new.to_bytes(width, "big")):
            self.patches[first + i] = b

    def value(self) -> bytes:
        base = self.base
        n = len(base)
        mv = memoryview(base)
        pieces: list[bytes | memoryview] = []
        pos = 0
        for i in [*sorted(self.patches), self.size]:
            if i > pos:  # untouched bytes [pos, i): stored ones, then zero padding
                if pos < n:
                    pieces.append(mv[pos : min(i, n)])
                if i > n:
                    pieces.append(bytes(i - max(pos, n)))
            if i < self.size:
                pieces.append(bytes((self.patches[i],)))
            pos = i + 1
        return b"".join(pieces)


def overflowed(value: int, bits: int, signed: bool, owtype: int) -> tuple[bool, int]:
    """Redis's check{Signed,Unsigned}BitfieldOverflow on an exact result: whether ``value``
    fits the field, and the value to store (wrapped or saturated; unchanged if it fits)."""
    if signed:
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 1
    if low <= value <= high:
        return False, value
    if owtype == _SAT:
        return True, high if value > high else low
    return True, ((value - low) & ((1 << bits) - 1)) + low  # WRAP (FAIL stores nothing)


def _bitfield(client: Client, args: list[bytes], read_only: bool) -> Any:
    # Parse every subcommand first, as Redis: the first bad one is the error, nothing runs.
    ops: list[tuple[int, bool, int, int, int, int]] = []  # opcode, signed, bits, offset, arg, ow
    owtype = _WRAP
    writes = False
    highest = 0  # the last bit a SET or INCRBY reaches
    j, n = 2, len(args)
    while j < n:
        remaining = n - j - 1
        word = _keyword(args[j])
        if word == b"overflow" and remaining >= 1:
            ow = _OVERFLOWS.get(_keyword(args[j + 1]))
            if ow is None:
                raise CommandError(E.BITFIELD_OVERFLOW)
            owtype = ow
            j += 2
            continue
        sub = _SUBCOMMANDS.get(word)
        if sub is None or remaining < sub[1]:
            raise CommandError(E.SYNTAX)
        opcode = sub[0]
        signed, bits = bitfield_type(args[j + 1])
        offset = bit_offset(client, args[j + 2], bits)
        arg = 0
        if opcode != _GET:
            writes = True
            highest = max(highest, offset + bits - 1)
            arg = parse_int(args[j + 3])
        ops.append((opcode, signed, bits, offset, arg, owtype))
        j += 1 + sub[1]
    db = client.db
    key = args[1]
    if not writes:
        rec = db.lookup_read(key)
        s = b"" if rec is None else rec.value
        return [read_field(s, offset, bits, signed) for _, signed, bits, offset, _, _ in ops]
    if read_only:
        raise CommandError(E.BITFIELD_RO_GET_ONLY)
    rec = db.get(key)
    edit = StringEdit(b"" if rec is None else rec.value, (highest >> 3) + 1)
    # Redis grows (or creates) the string before running the writes: it is stored even when
    # every write fails.
    grown = rec is None or edit.size > len(edit.base)
    changed = False
    replies: list[int | None] = []
    for opcode, signed, bits, offset, arg, ow in ops:
        old = edit.read(offset, bits, signed)
        if opcode == _GET:
            replies.append(old)
            continue
        if opcode == _INCRBY:
            overflow, new = overflowed(old + arg, bits, signed, ow)
            reply = new
        else:
            # SET checks the value as the field's C type: an unsigned field sees an int64 as
            # uint64, so a negative value is far above its maximum.
            overflow, new = overflowed(arg if signed else arg & ((1 << 64) - 1), bits, signed, ow)
            reply = old
        if overflow and ow == _FAIL:
            replies.append(None)
            continue
        replies.append(reply)
        if new != old:
            edit.write(offset, bits, new)
            changed = True
    if changed or grown:
        db.set(key, edit.value(), 0 if rec is None else rec.expire_at_ms)
    return replies


@cmd("bitfield", -2, "write denyoom", (1, 1, 1), "bitmap",
     "Perform arbitrary bitfield integer operations on strings", since="3.2.0",
     complexity=_BITFIELD_COMPLEXITY)
def bitfield(client: Client, args: list[bytes]) -> Any:
    return _bitfield(client, args, False)


@cmd("bitfield_ro", -2, "readonly fast", (1, 1, 1), "bitmap",
     "Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD",
     since="6.0.0", complexity=_BITFIELD_COMPLEXITY)
def bitfield_ro(client: Client, args: list[bytes]) -> Any:
    return _bitfield(client, args, True)
