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
from typing import NamedTuple

import xxhash

from respkv.cluster.codec import DecodeError, Reader, frame, put_bytes, put_str, put_uvarint, unframe

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


class VersionVector:
    """An immutable version vector: node -> :class:`ClockEntry`. Missing nodes count as 0."""

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[str, ClockEntry] | None = None) -> None:
        cleaned = {n: ClockEntry(*e) for n, e in (entries or {}).items() if e[0] > 0}
        self._entries: dict[str, ClockEntry] = dict(sorted(cleaned.items()))
        self._hash: int | None = None

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

    def merge(self, other: VersionVector) -> VersionVector:
        """Pointwise maximum of counters (and, independently, of timestamps)."""
        if not other._entries:
            return self
        if not self._entries:
            return other
        out = dict(self._entries)
        for node, theirs in other._entries.items():
            mine = out.get(node)
            if mine is None:
                out[node] = theirs
            elif mine != theirs:
                out[node] = ClockEntry(
                    max(mine.counter, theirs.counter), max(mine.timestamp_ms, theirs.timestamp_ms)
                )
        return VersionVector(out)

    def with_event(self, node: str, counter: int, timestamp_ms: int) -> VersionVector:
        out = dict(self._entries)
        old = out.get(node)
        ts = max(timestamp_ms, old.timestamp_ms) if old else timestamp_ms
        out[node] = ClockEntry(max(counter, old.counter if old else 0), ts)
        return VersionVector(out)


EMPTY_CLOCK = VersionVector()


def descends(a: VersionVector, b: VersionVector) -> bool:
    """True when ``a`` has seen everything ``b`` has (``a >= b`` pointwise); reflexive."""
    return all(a[node] >= entry.counter for node, entry in b.items())


def dominates(a: VersionVector, b: VersionVector) -> bool:
    """Strictly descends: ``a >= b`` and ``a != b`` in counters."""
    return descends(a, b) and not descends(b, a)


def concurrent(a: VersionVector, b: VersionVector) -> bool:
    """Neither has seen all of the other."""
    return not descends(a, b) and not descends(b, a)


@dataclass(frozen=True)
class SiblingSet:
    """All versions of one key a replica holds. Siblings are kept sorted by dot (canonical form:
    equal sets compare equal and serialize to equal bytes)."""

    clock: VersionVector
    siblings: tuple[Sibling, ...]

    @classmethod
    def make(cls, clock: VersionVector, siblings: Iterable[Sibling]) -> SiblingSet:
        return cls(clock, tuple(sorted(siblings, key=lambda s: s.dot)))

    @property
    def dots(self) -> frozenset[Dot]:
        return frozenset(s.dot for s in self.siblings)

    def __len__(self) -> int:
        return len(self.siblings)


EMPTY = SiblingSet(EMPTY_CLOCK, ())


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
) -> SiblingSet:
    """A write coordinated by ``node_id`` on its local set ``s``.

    ``context`` is what the client had read (``join`` of some replica's set, :data:`EMPTY_CLOCK`
    for a blind write). The result holds the new sibling plus every sibling of ``s`` whose dot
    the context does not cover; its clock is ``s.clock ⊔ context`` plus the new dot. ``value``
    None writes a tombstone.
    """
    counter = max(s.clock[node_id], context[node_id]) + 1
    dot = Dot(node_id, counter)
    kept = [sib for sib in s.siblings if not context.covers(sib.dot)]
    kept.append(Sibling(dot, value, expire_at_ms, timestamp_ms))
    clock = s.clock.merge(context).with_event(node_id, counter, timestamp_ms)
    return _bounded(clock, kept, max_entries)


def overwrite(
    s: SiblingSet,
    node_id: str,
    value: bytes | None,
    *,
    timestamp_ms: int,
    expire_at_ms: int = 0,
    max_entries: int = MAX_CLOCK_ENTRIES,
) -> SiblingSet:
    """A write with no client context (plain SET/DEL): ``update(s, join(s), ...)``. It supersedes
    everything the coordinator's replica ``s`` holds; writes it has not yet received stay as
    siblings until the next overwrite on a replica that has them. (A write with an *empty*
    context would instead keep every sibling, and plain SETs would pile them up.)"""
    return update(
        s, s.clock, node_id, value,
        timestamp_ms=timestamp_ms, expire_at_ms=expire_at_ms, max_entries=max_entries,
    )


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
    put_uvarint(out, len(clock))
    for node, entry in clock.items():
        put_str(out, node)
        put_uvarint(out, entry.counter)
        put_uvarint(out, entry.timestamp_ms)


def _read_clock(r: Reader) -> VersionVector:
    count = r.uvarint()
    entries: dict[str, ClockEntry] = {}
    prev: str | None = None
    for _ in range(count):
        node = r.str_()
        counter = r.uvarint()
        ts = r.uvarint()
        if counter < 1 or (prev is not None and node <= prev):
            raise DecodeError("non-canonical clock")
        prev = node
        entries[node] = ClockEntry(counter, ts)
    return VersionVector(entries)


def encode_context_bytes(context: VersionVector) -> bytes:
    body = bytearray()
    _put_clock(body, context)
    return frame(CONTEXT_FORMAT_VERSION, body)


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
    body = bytearray()
    _put_clock(body, s.clock)
    index = {node: i for i, (node, _) in enumerate(s.clock.items())}
    put_uvarint(body, len(s.siblings))
    for sib in s.siblings:
        put_uvarint(body, index[sib.dot.node])
        put_uvarint(body, sib.dot.counter)
        body.append(_FLAG_TOMBSTONE if sib.value is None else 0)
        put_uvarint(body, sib.expire_at_ms)
        put_uvarint(body, sib.timestamp_ms)
        if sib.value is not None:
            put_bytes(body, sib.value)
    return frame(SIBLING_SET_FORMAT_VERSION, body)


def decode_sibling_set(data: bytes) -> SiblingSet:
    """Inverse of :func:`encode_sibling_set`; raises :class:`InvalidSiblingSetError`."""
    try:
        r = Reader(unframe(bytes(data), SIBLING_SET_FORMAT_VERSION))
        clock = _read_clock(r)
        nodes = [n for n, _ in clock.items()]
        count = r.uvarint()
        sibs: list[Sibling] = []
        for _ in range(count):
            idx = r.uvarint()
            if idx >= len(nodes):
                raise DecodeError("dot node out of range")
            dot = Dot(nodes[idx], r.uvarint())
            flags = r.byte()
            if flags & ~_FLAG_TOMBSTONE:
                raise DecodeError("unknown sibling flags")
            expire = r.uvarint()
            ts = r.uvarint()
            value = None if flags & _FLAG_TOMBSTONE else r.bytes_()
            if dot.counter < 1 or not clock.covers(dot) or (sibs and dot <= sibs[-1].dot):
                raise DecodeError("non-canonical siblings")
            sibs.append(Sibling(dot, value, expire, ts))
        r.expect_end()
        return SiblingSet(clock, tuple(sibs))
    except DecodeError as exc:
        raise InvalidSiblingSetError(str(exc)) from exc


def version_digest(s: SiblingSet) -> int:
    """A 64-bit digest of a whole sibling set: ``xxh3_64(encode_sibling_set(s))``. Equal sets give
    equal digests on every node (the encoding is canonical); used in Merkle leaves."""
    return xxhash.xxh3_64_intdigest(encode_sibling_set(s))
