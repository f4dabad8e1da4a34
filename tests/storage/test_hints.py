"""The hint store (respkv/storage/hints.py, docs/formats/hints.md): units, a reader written from
the format document alone, recovery from torn tails and corruption, failed syncs, a Hypothesis
state machine against a dict model with power losses, and crash points at every file operation.

The crash rule checked everywhere (``Model.check_after_crash``): every hint that was synced and
whose removal was not synced is back; no hint whose removal was synced is back; anything else is
a hint that was added or removed after the last completed sync, which may go either way; and
every hint read back has exactly the contents it was added with.
"""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from respkv.storage.faultfs import FaultFileSystem, SimulatedCrash
from respkv.storage.fs import OSFileSystem
from respkv.storage.hints import OFFSET_BITS, HintStore, acks_name, segment_name

DIR = "/data/hints"
Content = tuple[str, int, int, bytes, bytes]  # target, created_ms, db, key, set


def open_store(fs: FaultFileSystem, segment_bytes: int = 400) -> HintStore:
    return HintStore.open(DIR, fs, segment_bytes=segment_bytes)


class Model:
    """What the store must hold: ``live`` now; ``synced`` at the last completed sync; the ids
    added or removed since, which a crash may keep or lose."""

    def __init__(self) -> None:
        self.live: dict[int, Content] = {}
        self.synced: dict[int, Content] = {}
        self.changed: set[int] = set()
        self.contents: dict[int, Content] = {}

    def add(self, hid: int, content: Content) -> None:
        assert hid not in self.live
        self.live[hid] = self.contents[hid] = content
        self.changed.add(hid)

    def remove(self, hid: int) -> None:
        del self.live[hid]
        self.changed.add(hid)

    def sync(self) -> None:
        self.synced = dict(self.live)
        self.changed = set()

    def check_live(self, store: HintStore) -> None:
        got = all_hints(store)
        assert got == self.live
        for t in {c[0] for c in self.live.values()} | set(store.targets()):
            assert store.pending(t) == sum(1 for c in self.live.values() if c[0] == t)
        assert sorted(store.targets()) == sorted({c[0] for c in self.live.values()})

    def check_after_crash(self, store: HintStore) -> None:
        got = all_hints(store)
        for hid, content in got.items():
            assert hid in self.synced or hid in self.changed, f"hint {hid:#x} came back"
            assert content == self.contents[hid], f"hint {hid:#x} changed"
        for hid in self.synced:
            if hid not in self.changed:
                assert hid in got, f"synced hint {hid:#x} lost"
        self.live = dict(got)
        self.sync()


def all_hints(store: HintStore) -> dict[int, Content]:
    out: dict[int, Content] = {}
    for t in store.targets():
        hints = store.iterate(t, 1 << 30)
        ids = [h.hint_id for h in hints]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        for h in hints:
            out[h.hint_id] = (t, h.created_ms, h.db, h.key, h.set_bytes)
    return out


# -- units ------------------------------------------------------------------------------------


def test_add_iterate_ack_and_pending(fs: FaultFileSystem) -> None:
    s = open_store(fs)
    ids = [s.add("n1", 1000 + i, i % 3, b"k%d" % i, b"set%d" % i) for i in range(20)]
    other = s.add("n2", 5, 0, b"x", b"y")
    assert ids == sorted(ids) and other not in ids
    assert s.targets() == ["n1", "n2"] and s.pending("n1") == 20 and s.pending("nobody") == 0
    first = s.iterate("n1", 5)
    assert [h.key for h in first] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    assert first[2] == (ids[2], 1002, 2, b"k2", b"set2")
    assert [h.key for h in s.iterate("n1", 3, after=ids[4])] == [b"k5", b"k6", b"k7"]
    assert s.iterate("n1", 0) == []
    # Buffered (not yet synced) hints can be acked; unknown, foreign and repeated ids are ignored.
    assert s.ack("n1", [ids[0], ids[0], other, 12345, ids[3]]) == 2
    s.sync()
    assert s.ack("n1", up_to=ids[9]) == 8
    assert s.pending("n1") == 10 and s.iterate("n1", 1)[0].key == b"k10"
    assert s.ack("n1", [ids[9]]) == 0
    s.sync()
    assert s.ack("n2", [other]) == 1
    s.sync()
    assert s.targets() == ["n1"]
    st_ = s.stats()
    assert st_["pending"] == 10 and st_["targets"]["n1"]["oldest_created_ms"] == 1010
    assert st_["acked"] == 11 and st_["added"] == 21 and st_["corrupt_records"] == 0
    s2 = open_store(fs)
    assert [h.key for h in s2.iterate("n1", 100)] == [b"k%d" % i for i in range(10, 20)]
    assert s2.targets() == ["n1"]


def test_segments_roll_and_fully_acked_ones_are_deleted(fs: FaultFileSystem) -> None:
    s = open_store(fs, segment_bytes=300)
    ids = [s.add("n1", i, 0, b"key%03d" % i, b"v" * 40) for i in range(30)]
    s.sync()
    segs = sorted({i >> OFFSET_BITS for i in ids})
    assert len(segs) > 3
    assert sorted(fs.listdir(DIR)) == [segment_name(n, "n1") for n in segs]
    # Ack every hint of the first two segments: their files (and ack files) go.
    in_first_two = [i for i in ids if i >> OFFSET_BITS in segs[:2]]
    s.ack("n1", in_first_two)
    s.ack("n1", [ids[-1]])
    s.sync()
    names = set(fs.listdir(DIR))
    assert segment_name(segs[0], "n1") not in names and acks_name(segs[0]) not in names
    assert acks_name(segs[-1]) in names
    s.ack("n1", up_to=ids[-1])
    s.sync()
    assert fs.listdir(DIR) == [] and s.targets() == [] and s.stats()["bytes"] == 0
    # New hints start a new segment whose number was never used.
    new = s.add("n1", 1, 0, b"k", b"v")
    assert new >> OFFSET_BITS > segs[-1]


def test_expire_drops_hints_older_than_the_window(fs: FaultFileSystem) -> None:
    s = open_store(fs)
    for i in range(10):
        s.add("n1" if i % 2 else "n2", 1000 * i, 0, b"k%d" % i, b"v")
    s.sync()
    assert s.expire(now_ms=9500, window_ms=5000) == 5  # created 0..4000 < 4500
    assert s.expire(now_ms=9500, window_ms=5000) == 0
    assert s.expire(now_ms=10000, window_ms=5000) == 0  # created 5000: exactly the window, kept
    s.sync()
    assert sorted(h.created_ms for t in s.targets() for h in s.iterate(t, 99)) == [
        5000, 6000, 7000, 8000, 9000]
    fs.crash()
    s2 = open_store(fs)
    assert s2.pending("n1") + s2.pending("n2") == 5 and s2.stats()["expired"] == 0
    assert s2.expire(now_ms=10**12, window_ms=1) == 5
    s2.sync()
    assert fs.listdir(DIR) == []


def _doc_read(data: bytes) -> list[tuple[int, int, tuple]]:
    """A reader written from docs/formats/hints.md alone."""
    out = []
    o = 0
    while o < len(data):
        crc, ln, typ = struct.unpack_from("<IIB", data, o)
        payload = data[o + 9 : o + 9 + ln]
        assert zlib.crc32(bytes([typ]) + payload) == crc
        if typ == 20:
            created, db, tl, kl, vl = struct.unpack_from("<qIHII", payload)
            p = 22
            fields = (created, db, payload[p : p + tl].decode(), payload[p + tl : p + tl + kl],
                      payload[p + tl + kl :])
            assert len(payload) == 22 + tl + kl + vl
        else:
            (n,) = struct.unpack_from("<I", payload)
            fields = struct.unpack_from(f"<{n}Q", payload, 4)
        out.append((o, typ, fields))
        o += 9 + ln
    assert o == len(data)
    return out


def test_files_match_the_format_document(fs: FaultFileSystem) -> None:
    s = open_store(fs, segment_bytes=1 << 20)
    a = s.add("node-é", 1_700_000_000_123, 7, b"key", b"\x01sibling set")
    b = s.add("node-é", 1_700_000_000_124, 0, b"", b"")
    s.sync()
    s.ack("node-é", [a])
    s.sync()
    number = a >> OFFSET_BITS
    assert segment_name(number, "node-é") == f"{number:010d}-{'node-é'.encode().hex()}.hints"
    seg = _doc_read(fs.read_file(f"{DIR}/{segment_name(number, 'node-é')}"))
    mask = (1 << 40) - 1
    assert seg == [
        (a & mask, 20, (1_700_000_000_123, 7, "node-é", b"key", b"\x01sibling set")),
        (b & mask, 20, (1_700_000_000_124, 0, "node-é", b"", b"")),
    ]
    assert _doc_read(fs.read_file(f"{DIR}/{acks_name(number)}")) == [(0, 21, (seg[0][0],))]
    s.expire(now_ms=10**13, window_ms=1)
    s.add("node-é", 1, 0, b"keep", b"x")  # keeps the segment from being deleted
    # (the new hint goes to the same, still active, segment)
    s.sync()
    acks = _doc_read(fs.read_file(f"{DIR}/{acks_name(number)}"))
    assert acks[-1][1:] == (22, (seg[1][0],))


def test_real_file_system_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path / "hints")
    s = HintStore.open(d, OSFileSystem(), segment_bytes=256)
    ids = [s.add(f"n{i % 3}", i, 0, b"k%d" % i, b"v" * i) for i in range(40)]
    s.sync()
    s.ack("n0", [i for n, i in enumerate(ids) if n % 3 == 0])
    s.sync()
    s.close()
    s2 = HintStore.open(d, OSFileSystem(), segment_bytes=256)
    assert sorted(s2.targets()) == ["n1", "n2"]
    got = {h.hint_id: h.key for t in s2.targets() for h in s2.iterate(t, 100)}
    assert got == {i: b"k%d" % n for n, i in enumerate(ids) if n % 3}
    s2.close()


# -- recovery ---------------------------------------------------------------------------------


def _one_segment(fs: FaultFileSystem, n: int = 5) -> tuple[HintStore, list[int], str]:
    s = open_store(fs, segment_bytes=1 << 20)
    ids = [s.add("n1", i, 0, b"key%d" % i, b"value%d" % i) for i in range(n)]
    s.sync()
    return s, ids, f"{DIR}/{segment_name(ids[0] >> OFFSET_BITS, 'n1')}"


def test_a_torn_tail_is_dropped(fs: FaultFileSystem) -> None:
    _, ids, path = _one_segment(fs)
    size = fs.size(path)
    fs.chop(path, size - 3)
    s = open_store(fs)
    assert [h.hint_id for h in s.iterate("n1", 99)] == ids[:-1]
    assert s.stats()["torn_tails"] == 1 and s.stats()["corrupt_records"] == 0
    # New hints go to a new segment; the torn one is never appended to.
    new = s.add("n1", 9, 0, b"new", b"v")
    s.sync()
    assert new >> OFFSET_BITS > ids[0] >> OFFSET_BITS
    s2 = open_store(fs)
    assert [h.key for h in s2.iterate("n1", 99)][-1] == b"new"


def test_a_corrupt_record_in_the_middle_is_skipped_and_counted(fs: FaultFileSystem) -> None:
    _, ids, path = _one_segment(fs)
    fs.corrupt(path, (ids[2] & ((1 << OFFSET_BITS) - 1)) + 12)
    s = open_store(fs)
    assert [h.hint_id for h in s.iterate("n1", 99)] == ids[:2] + ids[3:]
    assert s.stats()["corrupt_records"] == 1 and s.stats()["torn_tails"] == 0
    # A corrupt header (length) too.
    fs.corrupt(path, (ids[1] & ((1 << OFFSET_BITS) - 1)) + 5, 0x40)
    assert [h.hint_id for h in open_store(fs).iterate("n1", 99)] == [ids[0]] + ids[3:]


def test_a_corrupt_ack_record_brings_its_hints_back_never_crashes(fs: FaultFileSystem) -> None:
    s, ids, _ = _one_segment(fs)
    s.ack("n1", ids[:1])
    s.sync()
    s.ack("n1", ids[1:2])
    s.sync()
    acks = f"{DIR}/{acks_name(ids[0] >> OFFSET_BITS)}"
    fs.corrupt(acks, 10)  # the first ack record
    s2 = open_store(fs)
    assert [h.hint_id for h in s2.iterate("n1", 99)] == [ids[0]] + ids[2:]
    assert s2.stats()["corrupt_records"] == 1


def test_a_torn_ack_file_is_truncated_before_new_acks(fs: FaultFileSystem) -> None:
    s, ids, _ = _one_segment(fs)
    s.ack("n1", ids[:1])
    s.sync()
    s.ack("n1", ids[1:3])
    s.sync()
    acks = f"{DIR}/{acks_name(ids[0] >> OFFSET_BITS)}"
    fs.chop(acks, fs.size(acks) - 2)
    s2 = open_store(fs)
    assert [h.hint_id for h in s2.iterate("n1", 99)] == ids[1:]
    s2.ack("n1", [ids[4]])
    s2.sync()
    s3 = open_store(fs)
    assert [h.hint_id for h in s3.iterate("n1", 99)] == ids[1:4]
    assert s3.stats()["corrupt_records"] == 0 and s3.stats()["torn_tails"] == 0


def test_an_orphan_ack_file_is_removed_on_open(fs: FaultFileSystem) -> None:
    s, ids, path = _one_segment(fs)
    s.ack("n1", ids[:2])
    s.sync()
    fs.unlink(path)  # as if the crash came between the segment's unlink and its ack file's
    fs.fsync_dir(DIR)
    s2 = open_store(fs)
    assert s2.targets() == [] and fs.listdir(DIR) == []
    assert s2.stats()["orphan_ack_files"] == 1
    assert s2.add("n1", 1, 0, b"k", b"v") >> OFFSET_BITS > ids[0] >> OFFSET_BITS


def test_a_failed_sync_loses_nothing_and_the_next_one_rewrites(fs: FaultFileSystem) -> None:
    s, ids, path = _one_segment(fs, 3)
    more = [s.add("n1", 10 + i, 0, b"m%d" % i, b"x" * 50) for i in range(3)]
    fs.space_left = 70  # a short write, then ENOSPC
    with pytest.raises(OSError):
        s.sync()
    assert s.stats()["sync_failures"] == 1
    assert [h.hint_id for h in s.iterate("n1", 99)] == ids + more  # still served from memory
    fs.space_left = None
    s.sync()
    fs.crash(tear=True)
    s2 = open_store(fs)
    assert [h.hint_id for h in s2.iterate("n1", 99)] == ids + more
    assert s2.stats()["corrupt_records"] == 0 and s2.stats()["torn_tails"] == 0


def test_a_failed_fsync_is_never_retried_the_bytes_are_rewritten(
    fs: FaultFileSystem, monkeypatch: pytest.MonkeyPatch,
) -> None:
    s, ids, path = _one_segment(fs, 2)
    more = s.add("n1", 10, 0, b"m", b"x")
    real_sync = fs._sync
    calls = []

    def failing_sync(f):  # type: ignore[no-untyped-def]
        calls.append(f.path)
        if len(calls) == 1:  # the fsync fails and (as Linux may) the dirty pages are dropped
            inode = f._inode
            del inode.data[inode.synced_len:]
            raise OSError(5, "EIO")
        real_sync(f)

    monkeypatch.setattr(fs, "_sync", failing_sync)
    with pytest.raises(OSError):
        s.sync()
    s.sync()
    fs.crash()
    assert [h.hint_id for h in open_store(fs).iterate("n1", 9)] == ids + [more]


def test_memory_holds_an_index_not_the_hints(fs: FaultFileSystem) -> None:
    s = open_store(fs, segment_bytes=1 << 20)
    for i in range(2000):
        s.add("n1", i, 0, b"k%06d" % i, b"v" * 500)
    s.sync()
    s2 = open_store(fs, segment_bytes=1 << 20)
    held = sum(len(seg.buffer) + len(seg.ack_buffer) for seg in s2._segments.values())
    assert held == 0 and s2.pending("n1") == 2000
    assert s2.iterate("n1", 1, after=s2.iterate("n1", 1500)[-1].hint_id)[0].key == b"k001500"


# -- model-based: a dict model with power losses ---------------------------------------------


class HintMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = FaultFileSystem(random.Random(7))
        self.store = open_store(self.fs, segment_bytes=250)
        self.model = Model()
        self.now = 10_000

    @rule(node=st.sampled_from(["a", "b", "c"]), db=st.integers(0, 3),
          key=st.binary(max_size=12), value=st.binary(max_size=60), age=st.integers(0, 5000))
    def add(self, node: str, db: int, key: bytes, value: bytes, age: int) -> None:
        created = self.now - age
        hid = self.store.add(node, created, db, key, value)
        self.model.add(hid, (node, created, db, key, value))

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self.model.sync()

    @precondition(lambda self: self.model.live)
    @rule(data=st.data())
    def ack_some(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(sorted({c[0] for c in self.model.live.values()})))
        batch = self.store.iterate(target, data.draw(st.integers(1, 8)))
        chosen = data.draw(st.lists(st.sampled_from(batch), unique=True))
        assert self.store.ack(target, [h.hint_id for h in chosen]) == len(chosen)
        for h in chosen:
            self.model.remove(h.hint_id)

    @precondition(lambda self: self.model.live)
    @rule(data=st.data())
    def ack_up_to(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(sorted({c[0] for c in self.model.live.values()})))
        mine = sorted(h for h, c in self.model.live.items() if c[0] == target)
        up_to = data.draw(st.sampled_from(mine))
        gone = [h for h in mine if h <= up_to]
        assert self.store.ack(target, up_to=up_to) == len(gone)
        for h in gone:
            self.model.remove(h)

    @rule(window=st.integers(0, 6000), advance=st.integers(0, 2000))
    def expire(self, window: int, advance: int) -> None:
        self.now += advance
        gone = [h for h, c in self.model.live.items() if c[1] < self.now - window]
        assert self.store.expire(self.now, window) == len(gone)
        for h in gone:
            self.model.remove(h)

    @rule(tear=st.booleans(), partial=st.booleans())
    def power_loss(self, tear: bool, partial: bool) -> None:
        self.fs.crash(tear=tear, partial_dir_ops=partial)
        self.store = open_store(self.fs, segment_bytes=250)
        self.model.check_after_crash(self.store)

    @rule(tear=st.booleans(), ops=st.integers(1, 12))
    def crash_during_sync(self, tear: bool, ops: int) -> None:
        self.fs.crash_after(ops)
        try:
            self.store.sync()
            self.model.sync()
        except SimulatedCrash:
            pass
        self.fs.crash(tear=tear)
        self.store = open_store(self.fs, segment_bytes=250)
        self.model.check_after_crash(self.store)

    @rule()
    def reopen_cleanly(self) -> None:
        self.store.sync()
        self.model.sync()
        self.store.close()
        self.store = open_store(self.fs, segment_bytes=250)
        self.model.check_live(self.store)

    @invariant()
    def matches_model(self) -> None:
        self.model.check_live(self.store)
        assert self.store.stats()["corrupt_records"] == 0


HintMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_hint_store_model = HintMachine.TestCase


# -- crash points: every file operation of a workload -----------------------------------------


def _workload(s: HintStore, m: Model, rng: random.Random) -> None:
    def add(n: int) -> None:
        for _ in range(n):
            t = rng.choice(["a", "b"])
            c = (t, rng.randrange(1000), rng.randrange(4), b"k%d" % rng.randrange(99),
                 bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
            m.add(s.add(*c), c)

    def sync() -> None:
        s.sync()
        m.sync()

    add(12)
    sync()
    for t in ("a", "b"):
        hs = s.iterate(t, 4)
        s.ack(t, [h.hint_id for h in hs[::2]])
        for h in hs[::2]:
            m.remove(h.hint_id)
    add(5)
    sync()
    live_a = sorted(h for h, c in m.live.items() if c[0] == "a")
    if live_a:
        s.ack("a", up_to=live_a[len(live_a) // 2])
        for h in live_a[: len(live_a) // 2 + 1]:
            m.remove(h)
    for h in [h for h, c in m.live.items() if c[1] < 500]:
        m.remove(h)
    s.expire(1500, 1000)
    sync()
    add(4)
    sync()
    for t in ("a", "b"):
        for h in s.iterate(t, 1000):
            m.remove(h.hint_id)
        s.ack(t, [h.hint_id for h in s.iterate(t, 1000)])
    sync()


def _run(fs: FaultFileSystem, m: Model, crash_at: int | None) -> HintStore | None:
    s = open_store(fs, segment_bytes=200)
    if crash_at is not None:
        fs.crash_after(crash_at)
    try:
        _workload(s, m, random.Random(99))
    except SimulatedCrash:
        return None
    return s


@pytest.mark.parametrize("tear", [False, True])
def test_crash_at_every_file_operation(tear: bool) -> None:
    fs = FaultFileSystem(random.Random(3))
    ops0 = fs.ops
    assert _run(fs, Model(), None) is not None
    total = fs.ops - ops0
    assert total > 20
    for k in range(1, total + 1):
        fs = FaultFileSystem(random.Random(k))
        m = Model()
        _run(fs, m, k)
        fs.crash(tear=tear, partial_dir_ops=k % 3 == 0)
        s = open_store(fs)
        m.check_after_crash(s)
        assert s.stats()["corrupt_records"] == 0
        s.sync()
        fs.crash(tear=tear)
        m.check_live(open_store(fs))  # recovery itself is durable
