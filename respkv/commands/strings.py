"""String commands (redis-server 7.0 t_string.c semantics, replies and errors)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from respkv.commands import errors as E
from respkv.commands.core import INT64_MAX, INT64_MIN, TABLE, Client, parse_int
from respkv.commands.errors import CommandError
from respkv.protocol.resp import OK

cmd = TABLE.command

_EX, _PX, _EXAT, _PXAT, _KEEPTTL, _PERSIST = b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"PERSIST"
_UNITS = (_EX, _PX, _EXAT, _PXAT)


def expire_at_from(
    client: Client, unit: bytes, arg: bytes, command: str, now: int | None = None
) -> int:
    """Absolute expiry in ms for EX/PX/EXAT/PXAT ``arg``; Redis's checks and errors."""
    v = parse_int(arg)
    if v <= 0:
        raise CommandError(E.INVALID_EXPIRE % command)
    if unit == _EX or unit == _EXAT:
        if v > (1 << 63) // 1000:
            raise CommandError(E.INVALID_EXPIRE % command)
        v *= 1000
    if unit == _EX or unit == _PX:
        if now is None:
            now = client.server.clock_ms()
        if v > (1 << 63) - 1 - now:
            raise CommandError(E.INVALID_EXPIRE % command)
        v += now
    return v


@cmd("get", 2, "readonly fast", (1, 1, 1), "string", "Get the value of a key")
def get(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[1])
    return None if rec is None else rec.value


@cmd("set", -3, "write denyoom", (1, 1, 1), "string", "Set the string value of a key")
def set_(client: Client, args: list[bytes]) -> Any:
    db = client.db
    key = args[1]
    if len(args) == 3:  # the hot path: plain SET key value
        db.set(key, args[2])
        return OK
    nx = xx = keepttl = want_get = False
    expire_unit: bytes | None = None
    expire_arg = b""
    i = 3
    n = len(args)
    while i < n:
        opt = args[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            want_get = True
        elif opt == _KEEPTTL and expire_unit is None:
            keepttl = True
        elif opt in _UNITS and expire_unit in (None, opt) and not keepttl and i + 1 < n:
            expire_unit = opt  # as in Redis, a repeated EX (PX...) is allowed: the last wins
            i += 1
            expire_arg = args[i]
        else:
            raise CommandError(E.SYNTAX)
        i += 1
    expire_at = 0
    if expire_unit is not None:
        expire_at = expire_at_from(client, expire_unit, expire_arg, "set")
    # Only the GET option reads the key the way GET does (a keyspace hit or miss).
    if want_get:
        old = db.lookup_read(key)
    else:
        old = db.get(key) if (nx or xx or keepttl) else None
    if (nx and old is not None) or (xx and old is None):
        return (old.value if old is not None else None) if want_get else None
    if keepttl and old is not None:
        expire_at = old.expire_at_ms
    db.set(key, args[2], expire_at)
    if want_get:
        return None if old is None else old.value
    return OK


@cmd("setnx", 3, "write denyoom fast", (1, 1, 1), "string",
     "Set the value of a key, only if the key does not exist")
def setnx(client: Client, args: list[bytes]) -> Any:
    db = client.db
    if db.get(args[1]) is not None:
        return 0
    db.set(args[1], args[2])
    return 1


@cmd("setex", 4, "write denyoom", (1, 1, 1), "string", "Set the value and expiration of a key",
     since="2.0.0")
def setex(client: Client, args: list[bytes]) -> Any:
    client.db.set(args[1], args[3], expire_at_from(client, _EX, args[2], "setex"))
    return OK


@cmd("psetex", 4, "write denyoom", (1, 1, 1), "string",
     "Set the value and expiration in milliseconds of a key", since="2.6.0")
def psetex(client: Client, args: list[bytes]) -> Any:
    client.db.set(args[1], args[3], expire_at_from(client, _PX, args[2], "psetex"))
    return OK


@cmd("getset", 3, "write denyoom fast", (1, 1, 1), "string",
     "Set the string value of a key and return its old value")
def getset(client: Client, args: list[bytes]) -> Any:
    db = client.db
    old = db.lookup_read(args[1])
    db.set(args[1], args[2])  # like SET: the TTL goes
    return None if old is None else old.value


@cmd("getdel", 2, "write fast", (1, 1, 1), "string", "Get the value of a key and delete the key",
     since="6.2.0")
def getdel(client: Client, args: list[bytes]) -> Any:
    db = client.db
    rec = db.lookup_read(args[1])
    if rec is None:
        return None
    db.discard(args[1])
    return rec.value


@cmd("getex", -2, "write fast", (1, 1, 1), "string",
     "Get the value of a key and optionally set its expiration", since="6.2.0")
def getex(client: Client, args: list[bytes]) -> Any:
    unit: bytes | None = None
    unit_arg = b""
    persist = False
    i, n = 2, len(args)
    while i < n:  # Redis's parseExtendedStringArgumentsOrReply(COMMAND_GET)
        opt = args[i].upper()
        if opt == _PERSIST and unit is None:
            persist = True
        elif opt in _UNITS and unit in (None, opt) and not persist and i + 1 < n:
            unit = opt
            i += 1
            unit_arg = args[i]
        else:
            raise CommandError(E.SYNTAX)
        i += 1
    db = client.db
    key = args[1]
    rec = db.lookup_read(key)
    if rec is None:
        return None  # before the expire time is even parsed, as in Redis
    if unit is not None:
        now = client.server.clock_ms()
        when = expire_at_from(client, unit, unit_arg, "getex", now)
        if (unit == _EXAT or unit == _PXAT) and when <= now:
            db.discard(key)
        else:
            db.set(key, rec.value, when)
    elif persist and rec.expire_at_ms:
        db.set(key, rec.value, 0)
    return rec.value


@cmd("mget", -2, "readonly fast", (1, -1, 1), "string", "Get the values of all the given keys",
     complexity="O(N) where N is the number of keys to retrieve.")
def mget(client: Client, args: list[bytes]) -> Any:
    lookup = client.db.lookup_read
    out = []
    for key in args[1:]:
        rec = lookup(key)
        out.append(None if rec is None else rec.value)
    return out


def _mset_pairs(args: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(args) % 2 == 0:
        raise CommandError(E.WRONG_ARGS % E.arg_text(args[0]).lower())
    return list(zip(args[1::2], args[2::2], strict=True))


@cmd("mset", -3, "write denyoom", (1, -1, 2), "string", "Set multiple keys to multiple values",
     since="1.0.1", complexity="O(N) where N is the number of keys to set.")
def mset(client: Client, args: list[bytes]) -> Any:
    client.db.set_many(_mset_pairs(args))
    return OK


@cmd("msetnx", -3, "write denyoom", (1, -1, 2), "string",
     "Set multiple keys to multiple values, only if none of the keys exist", since="1.0.1",
     complexity="O(N) where N is the number of keys to set.")
def msetnx(client: Client, args: list[bytes]) -> Any:
    pairs = _mset_pairs(args)
    db = client.db
    for key, _ in pairs:
        if db.get(key) is not None:
            return 0
    db.set_many(pairs)
    return 1


# -- integer counters --------------------------------------------------------------------------

def _incr_by(client: Client, key: bytes, delta: int) -> int:
    """INCR/DECR/INCRBY/DECRBY: the stored value must be a Redis integer; the TTL is kept."""
    db = client.db
    rec = db.get(key)
    if rec is None:
        value, expire_at = delta, 0
    else:
        value = parse_int(rec.value) + delta
        expire_at = rec.expire_at_ms
    if value > INT64_MAX or value < INT64_MIN:
        raise CommandError(E.OVERFLOW)
    db.set(key, b"%d" % value, expire_at)
    return value


@cmd("incr", 2, "write denyoom fast", (1, 1, 1), "string",
     "Increment the integer value of a key by one")
def incr(client: Client, args: list[bytes]) -> Any:
    return _incr_by(client, args[1], 1)


@cmd("decr", 2, "write denyoom fast", (1, 1, 1), "string",
     "Decrement the integer value of a key by one")
def decr(client: Client, args: list[bytes]) -> Any:
    return _incr_by(client, args[1], -1)


@cmd("incrby", 3, "write denyoom fast", (1, 1, 1), "string",
     "Increment the integer value of a key by the given amount")
def incrby(client: Client, args: list[bytes]) -> Any:
    return _incr_by(client, args[1], parse_int(args[2]))


@cmd("decrby", 3, "write denyoom fast", (1, 1, 1), "string",
     "Decrement the integer value of a key by the given number")
def decrby(client: Client, args: list[bytes]) -> Any:
    delta = parse_int(args[2])
    if delta == INT64_MIN:
        raise CommandError(E.DECR_OVERFLOW)
    return _incr_by(client, args[1], -delta)


# -- INCRBYFLOAT: x87 80-bit long double arithmetic, reproduced exactly ------------------------
#
# redis-server (x86-64) does INCRBYFLOAT in C ``long double``: a 64-bit significand and a 15-bit
# exponent. It parses both operands with strtold, adds, and prints with "%.17Lf" before trimming
# trailing zeros (ld2string, LD_STR_HUMAN). A Python float has 53 bits and would print 10.5 + 0.1
# as 10.59999999999999964, so the arithmetic is redone here on exact rationals rounded to the
# long double grid, round half to even, as strtold and the FPU do.

_LD_SIGNIFICAND_BITS = 64
_LD_LSB_MIN = -16445  # exponent of the last significand bit of the smallest subnormal
_LD_LIMIT = 1 << 16384  # the first power of two that no long double reaches
_MAX_LONG_DOUBLE_CHARS = 5 * 1024  # string2ld rejects strings at least this long
_DECIMAL = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?\Z")
_HEXADECIMAL = re.compile(
    rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?\Z"
)
_INFINITY = re.compile(rb"[+-]?inf(?:inity)?\Z", re.IGNORECASE)
_POW10_17 = 10**17
_CHUNK = 10**1000  # int <-> decimal conversions in chunks: Python caps str(int) at 4300 digits


class _Infinite(Exception):
    """strtold read an infinity: a valid operand whose sum is never finite."""


def _digits_to_int(digits: bytes) -> int:
    value = 0
    for i in range(0, len(digits), 1000):
        chunk = digits[i : i + 1000]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def _int_to_digits(n: int) -> bytes:
    if n < _CHUNK:
        return b"%d" % n
    hi, lo = divmod(n, _CHUNK)
    return _int_to_digits(hi) + b"%01000d" % lo


def _exponent(text: bytes | None) -> int:
    """A strtold exponent; absurdly long ones are clamped (they over- or underflow anyway)."""
    if not text:
        return 0
    digits = text.lstrip(b"+-").lstrip(b"0")
    if len(digits) > 9:
        digits = b"999999999"
    e = int(digits or b"0")
    return -e if text[:1] == b"-" else e


def _ld_round(q: Fraction) -> Fraction | None:
    """``q`` rounded to the nearest long double (half to even); None when it overflows."""
    if not q:
        return q
    n, d = abs(q.numerator), q.denominator
    e = n.bit_length() - d.bit_length() - _LD_SIGNIFICAND_BITS
    if (n >> e if e >= 0 else n << -e) >= d << _LD_SIGNIFICAND_BITS:
        e += 1  # now 2**63 <= |q| / 2**e < 2**64, barring subnormals
    e = max(e, _LD_LSB_MIN)
    num, den = (n, d << e) if e >= 0 else (n << -e, d)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    value = Fraction(m << e) if e >= 0 else Fraction(m, 1 << -e)
    if value >= _LD_LIMIT:
        return None
    return -value if q < 0 else value


def _ld_parse(s: bytes) -> Fraction | None:
    """Redis's string2ld: strtold over the whole string, no leading space, no NaN, no
    over/underflow. None when the string is not a valid float; raises _Infinite for inf."""
    if not s or len(s) >= _MAX_LONG_DOUBLE_CHARS:
        return None
    m = _DECIMAL.match(s)
    if m is not None:
        sign, whole, frac, exp = m.groups()
        frac = frac or b""
        if not whole and not frac:
            return None
        digits = (whole + frac).lstrip(b"0")
        if not digits:
            return Fraction(0)
        e10 = _exponent(exp) - len(frac)
        if len(digits) - 1 + e10 > 4933:  # above LDBL_MAX (1.19e4932)
            return None
        if len(digits) + e10 < -4952:  # below half the smallest subnormal (3.6e-4951)
            return None
        mant = _digits_to_int(digits)
        q = Fraction(mant * 10**e10) if e10 >= 0 else Fraction(mant, 10**-e10)
    else:
        m = _HEXADECIMAL.match(s)
        if m is None:
            if _INFINITY.match(s):
                raise _Infinite
            return None
        sign, whole, frac, exp = m.groups()
        frac = frac or b""
        if not whole and not frac:
            return None
        mant = int(whole + frac, 16)
        if not mant:
            return Fraction(0)
        e2 = _exponent(exp) - 4 * len(frac)
        if mant.bit_length() + e2 > 16385 or mant.bit_length() + e2 < -16447:
            return None
        q = Fraction(mant << e2) if e2 >= 0 else Fraction(mant, 1 << -e2)
    rounded = _ld_round(q)
    if rounded is None or not rounded:  # ERANGE: overflow, or underflow to zero
        return None
    return -rounded if sign == b"-" else rounded


def _ld_format(v: Fraction) -> bytes:
    """ld2string(LD_STR_HUMAN): "%.17Lf", trailing zeros and point trimmed, "-0" as "0"."""
    n, d = abs(v.numerator) * _POW10_17, v.denominator
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    whole, frac = divmod(q, _POW10_17)
    text = (_int_to_digits(whole) + b".%017d" % frac).rstrip(b"0").rstrip(b".")
    if v < 0 and text != b"0":
        text = b"-" + text
    return text


@cmd("incrbyfloat", 3, "write denyoom fast", (1, 1, 1), "string",
     "Increment the float value of a key by the given amount", since="2.6.0")
def incrbyfloat(client: Client, args: list[bytes]) -> Any:
    db = client.db
    key = args[1]
    rec = db.get(key)
    infinite = False
    try:
        value = Fraction(0) if rec is None else _ld_parse(rec.value)
    except _Infinite:
        value, infinite = Fraction(0), True
    if value is None:
        raise CommandError(E.NOT_FLOAT)
    try:
        incr = _ld_parse(args[2])
    except _Infinite:
        incr, infinite = Fraction(0), True
    if incr is None:
        raise CommandError(E.NOT_FLOAT)
    total = None if infinite else _ld_round(value + incr)
    if total is None:
        raise CommandError(E.INCR_NAN)
    text = _ld_format(total)
    db.set(key, text, 0 if rec is None else rec.expire_at_ms)
    return text


# -- substrings ----------------------------------------------------------------------------------

def _check_length(client: Client, size: int, append: int) -> None:
    """Redis's checkStringLength: the result may not exceed proto-max-bulk-len."""
    if size + append > client.server.config.proto_max_bulk_len:
        raise CommandError(E.STRING_TOO_LONG)


@cmd("append", 3, "write denyoom fast", (1, 1, 1), "string", "Append a value to a key",
     since="2.0.0",
     complexity="O(1). The amortized time complexity is O(1) assuming the appended value is "
     "small and the already present value is of any size, since the dynamic string library used "
     "by Redis will double the free space available on every reallocation.")
def append(client: Client, args: list[bytes]) -> Any:
    db = client.db
    key, extra = args[1], args[2]
    rec = db.get(key)
    if rec is None:
        db.set(key, extra)
        return len(extra)
    _check_length(client, len(rec.value), len(extra))
    value = rec.value + extra
    db.set(key, value, rec.expire_at_ms)
    return len(value)


@cmd("strlen", 2, "readonly fast", (1, 1, 1), "string",
     "Get the length of the value stored in a key", since="2.2.0")
def strlen(client: Client, args: list[bytes]) -> Any:
    rec = client.db.lookup_read(args[1])
    return 0 if rec is None else len(rec.value)


_GETRANGE_COMPLEXITY = (
    "O(N) where N is the length of the returned string. The complexity is ultimately determined "
    "by the returned length, but because creating a substring from an existing string is very "
    "cheap, it can be considered O(1) for small strings."
)


def getrange(client: Client, args: list[bytes]) -> Any:
    start = parse_int(args[2])
    end = parse_int(args[3])
    rec = client.db.lookup_read(args[1])
    if rec is None:
        return b""
    s = rec.value
    n = len(s)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(n + start, 0)
    if end < 0:
        end = max(n + end, 0)
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return b""
    return s[start : end + 1]


cmd("getrange", 4, "readonly", (1, 1, 1), "string",
    "Get a substring of the string stored at a key", since="2.4.0",
    complexity=_GETRANGE_COMPLEXITY)(getrange)
cmd("substr", 4, "readonly", (1, 1, 1), "string",
    "Get a substring of the string stored at a key", complexity=_GETRANGE_COMPLEXITY)(getrange)


@cmd("setrange", 4, "write denyoom", (1, 1, 1), "string",
     "Overwrite part of a string at key starting at the specified offset", since="2.2.0",
     complexity="O(1), not counting the time taken to copy the new string in place. Usually, "
     "this string is very small so the amortized complexity is O(1). Otherwise, complexity is "
     "O(M) with M being the length of the value argument.")
def setrange(client: Client, args: list[bytes]) -> Any:
    offset = parse_int(args[2])
    if offset < 0:
        raise CommandError(E.OFFSET_OUT_OF_RANGE)
    db = client.db
    key, part = args[1], args[3]
    rec = db.get(key)
    if rec is None:
        if not part:
            return 0  # nothing written, and no key created
        _check_length(client, offset, len(part))
        value = bytes(offset) + part
        db.set(key, value)
        return len(value)
    old = rec.value
    if not part:
        return len(old)
    _check_length(client, offset, len(part))
    if offset > len(old):
        old += bytes(offset - len(old))
    value = old[:offset] + part + old[offset + len(part) :]
    db.set(key, value, rec.expire_at_ms)
    return len(value)


# -- LCS -----------------------------------------------------------------------------------------
#
# redis-server 7.0 (t_string.c lcsCommand) fills the (len(a)+1) x (len(b)+1) table of LCS
# lengths, uint32 each, then walks back from the bottom-right corner: on equal bytes it takes
# the byte and goes diagonally, else it goes up when LCS(i-1, j) > LCS(i, j-1) and left
# otherwise, and emits a range of IDX whenever a run of diagonal steps ends. The walk needs only
# one bit per cell: at a mismatch, "up" holds exactly when LCS(i, j-1) < LCS(i, j), i.e. when row
# i increases at column j. So respkv keeps, for each row, the bit-set of the columns where it
# increases, computed a row at a time with the bit-parallel LCS recurrence (Allison and Dix
# 1986; Hyyrö 2004) on Python ints: 1/32 of Redis's memory, and the fill runs at bigint speed.
# The walk, its tie-breaking and its emission rule are Redis's, so the string and the ranges,
# in their order, are Redis's. Redis's limits come first: the same errors at the same sizes.

_UINT32_MAX = (1 << 32) - 1


def _lcs_keyword(arg: bytes) -> bytes:
    return arg.split(b"\0", 1)[0].lower()  # strcasecmp: up to the first NUL, any case


def lcs_rows(a: bytes, b: bytes, keep_rows: bool = True) -> tuple[int, bytearray, int]:
    """(LCS length, rows, row width): row i-1 (for the prefix ``a[:i]``) is ``width`` bytes at
    ``(i-1)*width``, little-endian bit order, bit j-1 set when LCS(a[:i], b[:j]) is one more
    than LCS(a[:i], b[:j-1]). Without ``keep_rows`` only the length is computed."""
    blen = len(b)
    width = (blen + 7) // 8
    mask = (1 << blen) - 1
    # For each byte value of ``a``, the bit-set of its positions in ``b``: one linear pass per
    # distinct byte (translate, then a base-2 parse), at most len(a) * len(b) / 8 bytes in all.
    positions: dict[int, int] = {}
    if blen:
        for c in set(a):
            table = bytearray(b"0" * 256)
            table[c] = 0x31
            positions[c] = int(b.translate(table)[::-1], 2)
    rows = bytearray(width * len(a) if keep_rows else 0)
    v = mask  # a zero bit of v marks a column where the current row increases
    at = 0
    for c in a:
        u = v & positions.get(c, 0)
        v = ((v + u) | (v - u)) & mask
        if keep_rows:
            rows[at : at + width] = (v ^ mask).to_bytes(width, "little")
            at += width
    return blen - v.bit_count(), rows, width


def lcs_walk(a: bytes, b: bytes, rows: bytearray, width: int, length: int, minmatchlen: int,
             withmatchlen: bool, want_ranges: bool) -> tuple[bytes, list[list[Any]]]:
    """Redis's walk back through the table: the LCS string and (``want_ranges``) the IDX
    ranges, longest-suffix first, as redis-server emits them."""
    alen, blen = len(a), len(b)
    result = bytearray(length)
    idx = length
    matches: list[list[Any]] = []
    a_start, a_end, b_start, b_end = alen, 0, 0, 0  # a_start == alen: no range open
    i, j = alen, blen
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[idx - 1] = a[i - 1]
            if a_start == alen:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            idx -= 1
            i -= 1
            j -= 1
        else:
            if rows[(i - 1) * width + ((j - 1) >> 3)] >> ((j - 1) & 7) & 1:
                i -= 1  # LCS(i, j-1) < LCS(i, j) = LCS(i-1, j)
            else:
                j -= 1
            if a_start != alen:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if want_ranges and (minmatchlen == 0 or match_len >= minmatchlen):
                entry: list[Any] = [[a_start, a_end], [b_start, b_end]]
                if withmatchlen:
                    entry.append(match_len)
                matches.append(entry)
            a_start = alen
    return bytes(result), matches


@cmd("lcs", -3, "readonly", (1, 2, 1), "string", "Find longest common substring", since="7.0.0",
     complexity="O(N*M) where N and M are the lengths of s1 and s2, respectively")
def lcs(client: Client, args: list[bytes]) -> Any:
    db = client.db
    ra = db.lookup_read(args[1])
    rb = db.lookup_read(args[2])
    a = b"" if ra is None else ra.value
    b = b"" if rb is None else rb.value
    getlen = getidx = withmatchlen = False
    minmatchlen = 0
    j, n = 3, len(args)
    while j < n:
        opt = _lcs_keyword(args[j])
        if opt == b"idx":
            getidx = True
        elif opt == b"len":
            getlen = True
        elif opt == b"withmatchlen":
            withmatchlen = True
        elif opt == b"minmatchlen" and j + 1 < n:
            minmatchlen = max(parse_int(args[j + 1]), 0)
            j += 1
        else:
            raise CommandError(E.SYNTAX)
        j += 1
    if getlen and getidx:
        raise CommandError(E.LCS_LEN_AND_IDX)
    if len(a) >= _UINT32_MAX - 1 or len(b) >= _UINT32_MAX - 1:
        raise CommandError(E.LCS_STRING_TOO_LONG)
    # Redis's table: (len(a)+1) * (len(b)+1) uint32, refused above proto-max-bulk-len.
    if (len(a) + 1) * (len(b) + 1) * 4 > client.server.config.proto_max_bulk_len:
        raise CommandError(E.LCS_TOO_MUCH_MEMORY)
    computelcs = getidx or not getlen
    length, rows, width = lcs_rows(a, b, keep_rows=computelcs)
    if not computelcs:
        return length
    result, matches = lcs_walk(a, b, rows, width, length, minmatchlen, withmatchlen, getidx)
    if getidx:
        return {b"matches": matches, b"len": length}
    return result
