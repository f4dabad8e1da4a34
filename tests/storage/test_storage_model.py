"""Model-based test: the LSM engine against a dict, through flushes, compactions, clean reopens
and crashes of the fault file system (Hypothesis RuleBasedStateMachine).

The model follows the engine's contract (respkv/storage/api.py):
* get/scan return the newest record, expired or not; but compaction may drop a record that had
  expired by the compaction's now_ms, so an expired record in the model "may be gone".
* after a crash, a key untouched since the last sync() holds its synced value; a key written
  after it holds its synced value or one of the values given to it since (None for deletes).
"""

from __future__ import annotations

import random

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from storage_helpers import Clock, open_engine

from respkv.storage.api import Record
from respkv.storage.faultfs import FaultFileSystem

KEYS = [b"k%02d" % i for i in range(24)] + [b"p:" + bytes([c]) for c in b"abcdef"] + [b""]
keys = st.one_of(st.sampled_from(KEYS[:4]), st.sampled_from(KEYS))
values = st.one_of(st.binary(max_size=8), st.binary(min_size=300, max_size=900))
metas = st.sampled_from([b"", b"vv1", b"\x00\x01"])
GRACE = 5_000


class LSMModel(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32), inline=st.booleans())
    def setup(self, seed: int, inline: bool) -> None:
        self.inline = inline
        self.rng = random.Random(seed)
        self.fs = FaultFileSystem(self.rng)
        self.clock = Clock()
        self.model: dict[bytes, Record] = {}
        self.synced: dict[bytes, Record] = {}
        self.since_sync: dict[bytes, list[Record | None]] = {}
        self.engine = self._open()

    def _open(self):  # type: ignore[no-untyped-def]
        return open_engine(self.fs, self.clock, memtable_bytes=3000, tombstone_grace_ms=GRACE,
                           inline_background=self.inline, max_frozen=100)

    def _set(self, key: bytes, rec: Record | None) -> None:
        if rec is None:
            self.model.pop(key, None)
        else:
            self.model[key] = rec
        self.since_sync.setdefault(key, []).append(rec)

    def _expired(self, rec: Record) -> bool:
        return rec.expire_at_ms != 0 and rec.expire_at_ms <= self.clock.t

    # -- mutations ----------------------------------------------------------------------------
    @rule(key=keys, value=values, meta=metas,
          ttl=st.sampled_from([0, 0, 10**9, -1000, -1000, 2000]))
    def put(self, key: bytes, value: bytes, meta: bytes, ttl: int) -> None:
        exp = 0 if ttl == 0 else self.clock.t + ttl
        self.engine.put(key, value, exp, meta)
        self._set(key, Record(value, exp, meta))

    @rule(ks=st.lists(keys, min_size=1, max_size=12), big=st.booleans())
    def put_many(self, ks: list[bytes], big: bool) -> None:
        for i, k in enumerate(ks):
            v = (b"%d-" % i) * (150 if big else 2)
            self.engine.put(k, v)
            self._set(k, Record(v))

    @rule(key=keys)
    def delete(self, key: bytes) -> None:
        self.engine.delete(key)
        self._set(key, None)

    @rule(a=keys, b=st.one_of(st.none(), keys))
    def delete_range(self, a: bytes, b: bytes | None) -> None:
        self.engine.delete_range(a, b)
        for k in KEYS:
            if a <= k and (b is None or k < b):
                self._set(k, None)

    @rule(ops=st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=6))
    def write_batch(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        muts = [(k, None if v is None else Record(v, 0, b"b")) for k, v in ops]
        self.engine.write_batch(muts)
        for k, r in muts:
            self._set(k, r)

    # -- maintenance --------------------------------------------------------------------------
    @rule()
    def sync(self) -> None:
        self.engine.sync()
        self.synced = dict(self.model)
        self.since_sync = {}

    @rule()
    def flush(self) -> None:
        self.engine.flush()

    @rule(full=st.booleans())
    def compact(self, full: bool) -> None:
        self.engine.compact(full=full)

    @rule(n=st.integers(2, 4))
    def compact_newest(self, n: int) -> None:
        self.engine.compact(newest=n)

    @rule()
    def background_step(self) -> None:
        self.engine.do_background_work()

    @rule(ms=st.sampled_from([1, 1500, 6000, 10**6]))
    def advance_clock(self, ms: int) -> None:
        self.clock.t += ms

    @rule()
    def reopen(self) -> None:
        self.engine.close()
        self.engine = self._open()
        self.synced = dict(self.model)
        self.since_sync = {}

    @rule(tear=st.booleans(), partial=st.booleans())
    def crash(self, tear: bool, partial: bool) -> None:
        self.fs.crash(tear=tear, partial_dir_ops=partial)
        self.engine = self._open()
        recovered = dict(self.engine.scan())
        for k in KEYS:
            got = recovered.get(k)
            allowed = [self.synced.get(k)] + self.since_sync.get(k, [])
            ok = got in allowed or any(r is not None and self._expired(r) and got is None
                                       for r in allowed)
            assert ok, (k, got, allowed)
            assert self.engine.get(k) == got
        self.model = recovered
        self.synced = dict(recovered)
        self.since_sync = {}

    # -- checks -------------------------------------------------------------------------------
    def _check_value(self, key: bytes, got: Record | None) -> None:
        want = self.model.get(key)
        if want is not None and self._expired(want):
            assert got in (want, None), (key, got, want)
        else:
            assert got == want, (key, got, want)

    @invariant()
    def gets_match(self) -> None:
        if not hasattr(self, "engine"):
            return
        for k in KEYS:
            self._check_value(k, self.engine.get(k))

    @precondition(lambda self: hasattr(self, "engine"))
    @rule(a=keys, b=st.one_of(st.none(), keys))
    def scan_matches(self, a: bytes, b: bytes | None) -> None:
        got = list(self.engine.scan(a, b))
        assert [k for k, _ in got] == sorted(k for k, _ in got)
        got_d = dict(got)
        for k in KEYS:
            if a <= k and (b is None or k < b):
                self._check_value(k, got_d.get(k))
            else:
                assert k not in got_d

    @precondition(lambda self: hasattr(self, "engine"))
    @rule()
    def scan_is_a_snapshot(self) -> None:
        it = self.engine.scan()
        before = dict(self.engine.scan())
        self.engine.put(b"k00", b"during-scan")
        self._set(b"k00", Record(b"during-scan"))
        assert dict(it) == before

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.engine.close()


LSMModel.TestCase.settings = settings(
    max_examples=250, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestLSMModel = LSMModel.TestCase
