"""Versions of a key: dotted version vectors and sibling sets.

Implements the "causal context plus dotted siblings" form of dotted version vectors
(Preguiça, Baquero, Almeida, Fonte, Gonçalves 2012, *Dotted Version Vectors: Logical Clocks for
Optimistic Replication*; the representation Riak 2.0 stores, cf. Riak's ``dvvset``), built on
version vectors (Parker et al. 1983; Mattern 1988).

A :class:`SiblingSet` is a version vector ``clock`` (node -> highest counter seen, with the
wall-clock time of that event kept only for pruning) and a set of :class:`Sibling` values, each
tagged with the unique :class:`Dot` ``(node, counter)`` of the write that produced it.

Invariants every function here keeps (and relies on):

* every sibling's dot is covered by the set's clock;
* a dot names one write: two siblings with the same dot are the same sibling;
* the clock is downward closed in meaning: ``clock[n] = c`` means "has seen the writes
  ``(n, 1..c)``, either as a live sibling or as superseded".

Operations:

* :func:`update` -- a coordinator write. The new dot ``(node, max(clock[node], ctx[node]) + 1)``
  supersedes every sibling the client's context covers; siblings the client had not seen stay.
* :func:`sync` -- merge two replicas' sets. A sibling survives when the other side has it too or
  has not seen its dot. Commutative, associative and idempotent (a join-semilattice) as long as
  no clock exceeds the prune bound.
* :func:`join` -- the causal context to hand to a client (the clock).
* :func:`winner` -- the one sibling a plain GET returns; the same on every node.

Values: ``Sibling.value`` is bytes, or None for a tombstone (a delete is a versioned write).
``expire_at_ms`` is absolute unix ms (0 = no expiry); ``timestamp_ms`` is the coordinator's clock
at the write and is used only by the winner rule and by pruning, never for causality.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

import xxhash

from respkv.cluster.codec import (
    DecodeError,
    Reader,
    put_uvarint,
    read_uvarint,
    seal,
    unframe,
)

MAX_CLOCK_ENTRIES = 64
CONTEXT_FORMAT_VERSION = 1
SIBLING_SET_FORMAT_VERSION = 1
INVALID_CONTEXT_MESSAGE = "invalid causal context"
INVALID_SIBLING_SET_MESSAGE = "corrupt sibling set"


class InvalidContextError(ValueError):
    """A client-supplied causal context that is corrupt, truncated or of a foreign format.
    ``str(exc)`` is fit for a Redis error reply."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(INVALID_CONTEXT_MESSAGE)
        self.detail = detail


class InvalidSiblingSetError(ValueError):
    """Stored or received sibling-set bytes that fail their checksum or do not parse."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(INVALID_SIBLING_SET_MESSAGE + (f": {detail}" if detail else ""))
        self.detail = detail


class Dot(NamedTuple):
    """The identity of one write: the ``counter``-th write coordinated by ``node``."""

    node: str
    counter: int


class Sibling(NamedTuple):
    dot: Dot
    value: bytes | None  # None: a tombstone
    expire_at_ms: int = 0
    timestamp_ms: int = 0

    @property
    def is_tombstone(self) -> bool:
        return self.value is None


class ClockEntry(NamedTuple):
    counter: int
    timestamp_ms: int  # newest write time seen for this node; pruning only


_tuple_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot paths)


class VersionVector:
    """An immutable version vector: node -> :class:`ClockEntry`. Missing nodes count as 0.

    Canonical form (what ``__init__`` makes of any mapping, and what every method returns):
    entries in increasing node order, every counter >= 1, values :class:`ClockEntry`."""

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[str, ClockEntry] | None = None,
                 _canonical: dict[str, ClockEntry] | None = None) -> None:
        # ``_canonical``: the dict itself, already canonical (``_canonical_vector``'s contract).
        self._hash: int | None = None
        if _canonical is not None:
            self._entries: dict[str, ClockEntry] = _canonical
            return
        cleaned = {n: ClockEntry(*e) for n, e in (entries or {}).items() if e[0] > 0}
        self._entries = dict(sorted(cleaned.items()))

    @classmethod
    def from_counters(cls, counters: Mapping[str, int], timestamp_ms: int = 0) -> VersionVector:
        return cls({n: ClockEntry(c, timestamp_ms) for n, c in counters.items()})

    def __getitem__(self, node: str) -> int:
        entry = self._entries.get(node)
        return entry.counter if entry else 0

    def entry(self, node: str) -> ClockEntry | None:
        return self._entries.get(node)

    def items(self) -> Iterator[tuple[str, ClockEntry]]:
        return iter(self._entries.items())

    def counters(self) -> dict[str, int]:
        return {n: e.counter for n, e in self._entries.items()}

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._entries.items()))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}:{e.counter}" for n, e in self._entries.items())
        return f"VersionVector({{{inner}}})"

    def covers(self, dot: Dot) -> bool:
        """True when the write ``dot`` happened-before (or is) what this vector has seen."""
        return dot.counter <= self[dot.node]

    def includes(self, other: VersionVector) -> bool:
        """``self.merge(other) == self``: every entry of ``other`` is in this vector with a
        counter and a timestamp at least as large."""
        mine = self._entries
        for node, (counter, ts) in other._entries.items():
            entry = mine.get(node)
            if entry is None or entry[0] < counter or entry[1] < ts:
                return False
        return True

    def merge(self, other: VersionVector) -> VersionVector:
        """Pointwise maximum of counters (and, independently, of timestamps)."""
        if other is self or not other._entries:
            return self
        if not self._entries:
            return other
        out = dict(self._entries)
        added = changed = False
        for node, theirs in other._entries.items():
            mine = out.get(node)
            if mine is None:
                out[node] = theirs
                added = True
            elif mine != theirs:
                top = _tuple_new(ClockEntry, (max(mine[0], theirs[0]), max(mine[1], theirs[1])))
                if top != mine:
                    out[node] = top
                    changed = True
        if added:
            return _canonical_vector(dict(sorted(out.items())))
        return _canonical_vector(out) if changed else self

    def with_event(self, node: str, counter: int, timestamp_ms: int) -> VersionVector:
        """This vector having also seen the write ``(node, counter)`` made at ``timestamp_ms``
        (each of the entry's two fields only grows)."""
        entries = self._entries
        out = dict(entries)
        old = entries.get(node)
        if old is not None:
            out[node] = _tuple_new(
                ClockEntry, (max(counter, old[0]), max(timestamp_ms, old[1]))
            )
            return _canonical_vector(out)
        if counter < 1:
            return self
        out[node] = _tuple_new(ClockEntry, (counter, timestamp_ms))
        if entries and node < next(reversed(entries)):
            out = dict(sorted(out.items()))
        return _canonical_vector(out)


def _canonical_vector(entries: dict[str, ClockEntry]) -> VersionVector:
    """A VersionVector that takes ``entries`` as they are, skipping ``__init__``'s clean and
    sort. Precondition (unchecked; the caller's to keep): ``entries`` is already canonical
    (see :class:`VersionVector`) and nobody mutates the dict afterwards."""
    return VersionVector(None, entries)


EMPTY_CLOCK = VersionVector()
_NO_ENTRY = ClockEntry(0, 0)  # what a vector holds for a node it has not seen


def descends(a: VersionVector, b: VersionVector) -> bool:
    """True when ``a`` has seen everything ``b`` has (``a >= b`` pointwise); reflexive."""
    return all(a[node] >= entry.counter for node, entry in b.items())


def dominates(a: VersionVector, b: VersionVector) -> bool:
    """Strictly descends: ``a >= b`` and ``a != b`` in counters."""
    return descends(a, b) and not descends(b, a)


def concurrent(a: VersionVector, b: VersionVector) -> bool:
    """Neither has seen all of the other."""
    return not descends(a, b) and not descends(b, a)


@dataclass(frozen=True, slots=True)
class SiblingSet:
    """All versions of one key a replica holds. Siblings are kept sorted by dot (canonical form:
    equal sets compare equal and serialize to equal bytes)."""

    clock: VersionVector
    siblings: tuple[Sibling, ...]

    @classmethod
    def make(cls, clock: VersionVector, siblings: Iterable[Sibling]) -> SiblingSet:
        sibs = tuple(siblings)
        if len(sibs) > 1:
            sibs = tuple(sorted(sibs, key=_dot_of))
        return cls(clock, sibs)

    @property
    def dots(self) -> frozenset[Dot]:
        return frozenset(s.dot for s in self.siblings)

    def __len__(self) -> int:
        return len(self.siblings)


EMPTY = SiblingSet(EMPTY_CLOCK, ())
_dot_of = itemgetter(0)  # Sibling -> its dot


def join(s: SiblingSet) -> VersionVector:
    """The causal context to give a client that read ``s``: writing back with it supersedes
    exactly the siblings it saw."""
    return s.clock


def prune(
    clock: VersionVector, keep: Iterable[str] = (), max_entries: int = MAX_CLOCK_ENTRIES
) -> VersionVector:
    """Bound the vector: while it has more than ``max_entries`` entries, drop the entry with the
    oldest ``(timestamp_ms, node)`` that is not in ``keep`` (the nodes of live siblings' dots,
    which must stay covered). See docs/cluster.md for the risk this takes."""
    if len(clock) <= max_entries:
        return clock
    keep_set = set(keep)
    droppable = sorted(
        (e.timestamp_ms, n) for n, e in clock.items() if n not in keep_set
    )
    excess = len(clock) - max_entries
    drop = {n for _, n in droppable[:excess]}
    return VersionVector({n: e for n, e in clock.items() if n not in drop})


def _bounded(clock: VersionVector, siblings: Iterable[Sibling], max_entries: int) -> SiblingSet:
    sibs = list(siblings)
    return SiblingSet.make(prune(clock, (s.dot.node for s in sibs), max_entries), sibs)


def update(
    s: SiblingSet,
    context: VersionVector,
    node_id: str,
    value: bytes | None,
    *,
    timestamp_ms: int,
    expire_at_ms: int = 0,
    max_entries: int = MAX_CLOCK_ENTRIES,
    floor: int = 0,
) -> SiblingSet:
    """A write coordinated by ``node_id`` on its local set ``s``.

    ``context`` is what the client had read (``join`` of some replica's set, :data:`EMPTY_CLOCK`
    for a blind write). The result holds the new sibling plus every sibling of ``s`` whose dot
    the context does not cover; its clock is ``s.clock ⊔ context`` plus the new dot. ``value``
    None writes a tombstone. The new dot's counter is above ``floor`` too: the coordinator's
    dot floor, above every counter it issued for keys it has since purged (docs/cluster.md,
    "Purging dead keys"), so a key written again after a purge never reuses a dot.
    """
    return _write(s, context, node_id, value, timestamp_ms, expire_at_ms, max_entries, floor)


def overwrite(
    s: SiblingSet,
    node_id: str,
    value: bytes | None,
    *,
    timestamp_ms: int,
    expire_at_ms: int = 0,
    max_entries: int = MAX_CLOCK_ENTRIES,
    floor: int = 0,
) -> SiblingSet:
    """A write with no client context (plain SET/DEL): ``update(s, join(s), ...)``. It supersedes
    everything the coordinator's replica ``s`` holds; writes it has not yet received stay as
    siblings until the next overwrite on a replica that has them. (A write with an *empty*
    context would instead keep every sibling, and plain SETs would pile them up.)"""
    return _write(s, s.clock, node_id, value, timestamp_ms, expire_at_ms, max_entries, floor)


def _write(
    s: SiblingSet, context: VersionVector, node_id: str, value: bytes | None,
    timestamp_ms: int, expire_at_ms: int, max_entries: int, floor: int = 0,
) -> SiblingSet:
    """The body of :func:`update` (and so of :func:`overwrite`), positional and with
    ``VersionVector.merge``/``with_event``/``covers`` inlined, for speed."""
    seen = context._entries
    # The new write's time is at least that of every write it supersedes (its context), as a
    # hybrid logical clock: a write coordinated late (a CW held in the network) must not lose
    # the winner rule to a sibling that a write in its own past had beaten.
    for entry in seen.values():
        if entry[1] > timestamp_ms:
            timestamp_ms = entry[1]
    kept: list[Sibling] | None = None  # the siblings the context does not cover, if any
    for sib in s.siblings:
        if sib[0][1] > seen.get(sib[0][0], _NO_ENTRY)[0]:
            if kept is None:
                kept = []
            kept.append(sib)
    clock = s.clock if context is s.clock else s.clock.merge(context)
    entries = clock._entries
    old = entries.get(node_id)  # the merged clock: max(s.clock[node_id], context[node_id])
    out = dict(entries)
    if old is None:
        counter = floor + 1
        out[node_id] = _tuple_new(ClockEntry, (counter, timestamp_ms))
        if entries and node_id < next(reversed(entries)):
            out = dict(sorted(out.items()))
    else:
        counter = (old[0] if old[0] >= floor else floor) + 1
        out[node_id] = _tuple_new(ClockEntry, (counter, max(timestamp_ms, old[1])))
    new = _tuple_new(Sibling, (_tuple_new(Dot, (node_id, counter)), value, expire_at_ms,
                               timestamp_ms))
    if kept is not None:
        kept.append(new)
        return _bounded(_canonical_vector(out), kept, max_entries)
    # The common case (every overwrite): the new sibling is the only one.
    new_clock = _canonical_vector(out)
    if len(out) > max_entries:
        new_clock = prune(new_clock, (node_id,), max_entries)
    return SiblingSet(new_clock, (new,))


def sync(a: SiblingSet, b: SiblingSet, max_entries: int = MAX_CLOCK_ENTRIES) -> SiblingSet:
    """Merge two replicas' sets. A sibling survives when both sides hold it, or when the other
    side's clock has not seen its dot (it is concurrent with everything there)."""
    if a == b:
        return a
    a_dots = a.dots
    b_dots = b.dots
    kept = [s for s in a.siblings if s.dot in b_dots or not b.clock.covers(s.dot)]
    kept += [s for s in b.siblings if s.dot not in a_dots and not a.clock.covers(s.dot)]
    return _bounded(a.clock.merge(b.clock), kept, max_entries)


def sync_all(sets: Iterable[SiblingSet], max_entries: int = MAX_CLOCK_ENTRIES) -> SiblingSet:
    out = EMPTY
    for s in sets:
        out = sync(out, s, max_entries)
    return out


def is_superseded_by(a: SiblingSet, b: SiblingSet) -> bool:
    """True when merging ``a`` into ``b`` changes nothing: ``b`` already knows all of ``a``."""
    return sync(b, a) == b


def winner_key(s: Sibling) -> tuple[int, str, int, int, bytes]:
    """The total order of the winner rule: highest ``timestamp_ms``, then the dot (node id
    compared as a string, then counter), then values over tombstones, then the value bytes."""
    return (s.timestamp_ms, s.dot.node, s.dot.counter, s.value is not None, s.value or b"")


def winner(s: SiblingSet) -> Sibling | None:
    """The sibling a plain GET returns (maybe a tombstone); None for an empty set. Every node
    picks the same one from the same set."""
    return max(s.siblings, key=winner_key) if s.siblings else None


def live_value(s: SiblingSet, now_ms: int) -> bytes | None:
    """The value a plain GET sees at ``now_ms``: the winner's value unless it is a tombstone or
    has expired (``0 < expire_at_ms <= now_ms``). Expiry is applied to the winner only, so an
    expired newest write hides older concurrent siblings, as a Redis overwrite would."""
    w = winner(s)
    if w is None or w.value is None:
        return None
    if w.expire_at_ms and w.expire_at_ms <= now_ms:
        return None
    return w.value


def dead_since_ms(s: SiblingSet, now_ms: int) -> int | None:
    """When the key of ``s`` died: None while some sibling is a value that has not expired
    at ``now_ms``; else the latest of the clock's write timestamps and the siblings' expiry
    times (a tombstone dies when written, a value when it expires). A set with no sibling at
    all dies with its last write."""
    since = max((e.timestamp_ms for e in s.clock._entries.values()), default=0)
    for sib in s.siblings:
        if sib.value is not None:
            if not 0 < sib.expire_at_ms <= now_ms:
                return None
            if sib.expire_at_ms > since:
                since = sib.expire_at_ms
    return since


def purgeable(s: SiblingSet, now_ms: int, grace_ms: int) -> bool:
    """True when ``s`` may be removed from storage, history and all: every sibling is a
    tombstone or expired, and has been for at least ``grace_ms`` (Cassandra's gc_grace).
    Removing it is only safe if every replica learned of the deletes within ``grace_ms`` (anti-
    entropy and hints run more often than that) and the node raised its dot floor first
    (``update``'s ``floor``)."""
    since = dead_since_ms(s, now_ms)
    return since is not None and now_ms - since >= grace_ms


def is_deleted(s: SiblingSet, now_ms: int) -> bool:
    """True when no sibling is a live value at ``now_ms`` (all tombstones or expired)."""
    return all(
        sib.value is None or (sib.expire_at_ms and sib.expire_at_ms <= now_ms)
        for sib in s.siblings
    )


# -- causal context encoding (client-facing) ---------------------------------------------------
#
# text  = base64url(framed), no padding
# framed = 0x01 || uvarint(count) || count * (str node, uvarint counter, uvarint timestamp_ms)
#          || xxh32 (4 bytes BE) of everything before it
# Entries are in strictly increasing node order; counters are >= 1.


def _put_clock(out: bytearray, clock: VersionVector) -> None:
    entries = clock._entries
    put_uvarint(out, len(entries))
    for node, (counter, timestamp_ms) in entries.items():
        raw = node.encode()
        put_uvarint(out, len(raw))
        out += raw
        put_uvarint(out, counter)
        put_uvarint(out, timestamp_ms)


# One clock entry as _parse_clock read it: (node, counter, timestamp_ms, where the timestamp's
# varint starts and ends in the data) -- a sibling's timestamp is most often the same varint.
_ParsedEntry = tuple[str, int, int, int, int]


def _parse_clock(data: bytes, pos: int) -> tuple[VersionVector, list[_ParsedEntry], int]:
    """The clock encoded at ``data[pos:]`` (as ``_put_clock`` writes it), its entries in order,
    and the position after it. Raises DecodeError for truncation, invalid UTF-8 or a
    non-canonical clock (nodes not strictly increasing, a zero counter). Varints are read
    inline when they are one byte, by read_uvarint otherwise."""
    try:
        count = data[pos]
        pos += 1
        if count >= 0x80:
            count, pos = read_uvarint(data, pos - 1)
        entries: dict[str, ClockEntry] = {}
        parsed: list[_ParsedEntry] = []
        prev = ""
        for _ in range(count):
            n = data[pos]
            pos += 1
            if n >= 0x80:
                n, pos = read_uvarint(data, pos - 1)
            end = pos + n
            if end > len(data):
                raise DecodeError("truncated field")
            node = data[pos:end].decode()
            counter = data[end]
            pos = end + 1
            if counter >= 0x80:
                counter, pos = read_uvarint(data, end)
            ts_start = pos
            ts = data[pos]
            pos += 1
            if ts >= 0x80:
                ts, pos = read_uvarint(data, ts_start)
            if counter < 1 or (entries and node <= prev):
                raise DecodeError("non-canonical clock")
            prev = node
            entries[node] = _tuple_new(ClockEntry, (counter, ts))
            parsed.append((node, counter, ts, ts_start, pos))
    except IndexError:
        raise DecodeError("truncated") from None
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8") from exc
    return _canonical_vector(entries), parsed, pos


def _read_clock(r: Reader) -> VersionVector:
    clock, _, r.pos = _parse_clock(r.data, r.pos)
    return clock


def encode_context_bytes(context: VersionVector) -> bytes:
    out = bytearray((CONTEXT_FORMAT_VERSION,))
    _put_clock(out, context)
    return seal(out)


def encode_context(context: VersionVector) -> str:
    """The opaque text a client gets from SIBLINGS and passes back with SET ... CONTEXT."""
    return base64.urlsafe_b64encode(encode_context_bytes(context)).rstrip(b"=").decode("ascii")


def decode_context(text: str | bytes) -> VersionVector:
    """Inverse of :func:`encode_context`. Raises :class:`InvalidContextError` for anything that
    is not exactly such a text (bad alphabet, checksum, version, structure, trailing bytes)."""
    try:
        raw_text = text.encode("ascii") if isinstance(text, str) else bytes(text)
        if len(raw_text) % 4 == 1:
            raise InvalidContextError("bad base64 length")
        raw = base64.b64decode(raw_text + b"=" * (-len(raw_text) % 4), altchars=b"-_", validate=True)
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != raw_text:
            raise InvalidContextError("non-canonical base64")
        r = Reader(unframe(raw, CONTEXT_FORMAT_VERSION))
        clock = _read_clock(r)
        r.expect_end()
        return clock
    except InvalidContextError:
        raise
    except (DecodeError, UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise InvalidContextError(str(exc)) from exc


# -- sibling set serialization (storage meta and replica messages) ----------------------------
#
# framed = 0x01 || clock (as in the context) || uvarint(nsiblings) || nsiblings * sibling
#          || xxh32 (4 bytes BE)
# sibling = uvarint(index of dot.node in the clock's node order) || uvarint(dot.counter)
#           || flags byte (bit 0: tombstone) || uvarint(expire_at_ms) || uvarint(timestamp_ms)
#           || [bytes value, when not a tombstone]
# Siblings are in increasing dot order; each dot is covered by the clock.

_FLAG_TOMBSTONE = 0x01


def encode_sibling_set(s: SiblingSet) -> bytes:
    # Written for speed: the fields that are nearly always one byte are appended directly
    # (``x < 0x80``), the rest go through put_uvarint.
    out = bytearray((SIBLING_SET_FORMAT_VERSION,))
    put = put_uvarint
    entries = s.clock._entries
    put(out, len(entries))  # the clock, as _put_clock writes it, noting where each entry is
    where: dict[str, tuple[int, int, int, int]] = {}  # node -> (index, ts, ts varint's span)
    for i, (node, (counter, ts)) in enumerate(entries.items()):
        raw = node.encode()
        put(out, len(raw))
        out += raw
        if counter < 0x80:
            out.append(counter)
        else:
            put(out, counter)
        start = len(out)
        put(out, ts)
        where[node] = (i, ts, start, len(out))
    siblings = s.siblings
    put(out, len(siblings))
    for (node, counter), value, expire_at_ms, timestamp_ms in siblings:
        i, ts, start, end = where[node]
        flags = _FLAG_TOMBSTONE if value is None else 0
        if i | counter | expire_at_ms < 0x80:
            out += bytes((i, counter, flags, expire_at_ms))
        else:
            put(out, i)
            put(out, counter)
            out.append(flags)
            put(out, expire_at_ms)
        if timestamp_ms == ts:  # usually: the node's newest write, so the clock's timestamp
            out += out[start:end]
        else:
            put(out, timestamp_ms)
        if value is not None:
            if len(value) < 0x80:
                out.append(len(value))
            else:
                put(out, len(value))
            out += value
    return seal(out)


def decode_sibling_set(data: bytes) -> SiblingSet:
    """Inverse of :func:`encode_sibling_set`; raises :class:`InvalidSiblingSetError` for bytes
    that fail the checksum or version check, are truncated or have trailing bytes, or are not
    canonical (see the format above: sorted clock, counters >= 1, siblings in strictly
    increasing dot order, each dot covered by the clock)."""
    try:
        clock, siblings = _parse_sibling_set(data, True)
    except DecodeError as exc:
        raise InvalidSiblingSetError(str(exc)) from exc
    return SiblingSet(clock, siblings)


def decode_sibling_set_clock(data: bytes) -> VersionVector:
    """``decode_sibling_set(data).clock``, after the very same checks (so it raises
    :class:`InvalidSiblingSetError` for exactly the same inputs) but without building the
    siblings: for a caller that needs only the clock, such as a blind overwrite (which
    supersedes every sibling of a valid set) or a check that a newer set supersedes this one."""
    try:
        return _parse_sibling_set(data, False)[0]
    except DecodeError as exc:
        raise InvalidSiblingSetError(str(exc)) from exc


def _parse_sibling_set(data: bytes, build: bool) -> tuple[VersionVector, tuple[Sibling, ...]]:
    """The clock and (when ``build``, else ``()``) the siblings of an encoded set, after every
    check of the format; raises DecodeError. Written for speed, as one loop over local
    variables: one-byte varints are read inline, longer ones by read_uvarint."""
    body = unframe(bytes(data), SIBLING_SET_FORMAT_VERSION)
    clock, parsed, pos = _parse_clock(body, 0)
    sibs: list[Sibling] = []
    try:
        count = body[pos]
        pos += 1
        if count >= 0x80:
            count, pos = read_uvarint(body, pos - 1)
        prev_idx = prev_counter = -1
        for _ in range(count):
            idx = body[pos]  # the dot's node, as its index in the clock (index order = node order)
            pos += 1
            if idx >= 0x80:
                idx, pos = read_uvarint(body, pos - 1)
            if idx >= len(parsed):
                raise DecodeError("dot node out of range")
            node, top, clock_ts, ts_start, ts_end = parsed[idx]
            counter = body[pos]
            pos += 1
            if counter >= 0x80:
                counter, pos = read_uvarint(body, pos - 1)
            # Canonical: counter >= 1, covered by the clock, dots strictly increasing.
            if (counter < 1 or counter > top or idx < prev_idx
                    or (idx == prev_idx and counter <= prev_counter)):
                raise DecodeError("non-canonical siblings")
            prev_idx = idx
            prev_counter = counter
            flags = body[pos]
            pos += 1
            if flags & ~_FLAG_TOMBSTONE:
                raise DecodeError("unknown sibling flags")
            expire = body[pos]
            pos += 1
            if expire >= 0x80:
                expire, pos = read_uvarint(body, pos - 1)
            end = pos + ts_end - ts_start
            if body[pos:end] == body[ts_start:ts_end]:  # the same varint as the clock's
                ts = clock_ts
                pos = end
            else:
                ts = body[pos]
                pos += 1
                if ts >= 0x80:
                    ts, pos = read_uvarint(body, pos - 1)
            if flags:
                value = None
            else:
                n = body[pos]
                pos += 1
                if n >= 0x80:
                    n, pos = read_uvarint(body, pos - 1)
                end = pos + n
                if end > len(body):
                    raise DecodeError("truncated field")
                value = body[pos:end] if build else None
                pos = end
            if build:
                dot = _tuple_new(Dot, (node, counter))
                sibs.append(_tuple_new(Sibling, (dot, value, expire, ts)))
    except IndexError:
        raise DecodeError("truncated") from None
    if pos != len(body):
        raise DecodeError("trailing bytes")
    return clock, tuple(sibs)


def version_digest(s: SiblingSet) -> int:
    """A 64-bit digest of a whole sibling set: ``xxh3_64(encode_sibling_set(s))``. Equal sets give
    equal digests on every node (the encoding is canonical); used in Merkle leaves."""
    return xxhash.xxh3_64_intdigest(encode_sibling_set(s))
