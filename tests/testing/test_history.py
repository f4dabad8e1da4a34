"""The history checker (respkv/testing/history.py) on hand-made histories: each rule has
histories that must pass and histories that must fail."""

from __future__ import annotations

import pytest

from respkv.testing.history import History, check

K = b"k"


def write(h: History, value: str | None, t0: float, t1: float | None, outcome: str = "ok",
          client: str = "c1", key: bytes = K, noop: bool = False) -> None:
    op = (h.invoke(client, "set", key, value.encode(), at_ms=t0) if value is not None
          else h.invoke(client, "del", key, at_ms=t0))
    if outcome == "ok":
        assert t1 is not None
        h.ok(op, at_ms=t1, noop=noop)
    elif outcome == "fail":
        assert t1 is not None
        h.fail(op, at_ms=t1)
    else:
        h.unknown(op, at_ms=t1)


def read(h: History, value: str | None, t0: float, t1: float, client: str = "c2",
         key: bytes = K) -> None:
    op = h.invoke(client, "get", key, at_ms=t0)
    h.ok(op, at_ms=t1, values=[None if value is None else value.encode()])


def final(h: History, *values: str | None, key: bytes = K) -> None:
    h.set_final(key, [None if v is None else v.encode() for v in values])


def rules(h: History, **kw: object) -> list[str]:
    return [v.rule for v in check(h, **kw)]  # type: ignore[arg-type]


# -- valid histories -------------------------------------------------------------------------------


def test_sequential_writes_last_survives() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 20, 30)
    read(h, "b", 40, 50)
    final(h, "b")
    assert rules(h, stale_reads=True) == []


def test_superseded_write_may_survive_as_a_sibling() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 20, 30)
    final(h, "a", "b")
    assert rules(h, stale_reads=True) == []


def test_concurrent_write_may_replace_the_other() -> None:
    # b overlaps a, so it may have seen a's dot and superseded it: a may be gone.
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 5, 15, client="c2")
    final(h, "b")
    assert rules(h) == []


def test_zero_duration_operations_on_one_clock() -> None:
    h = History()
    write(h, "a", 5, 5)
    write(h, "b", 5, 5)
    final(h, "b")
    assert rules(h) == []


def test_unknown_and_failed_writes_need_not_survive() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "u", 20, None, outcome="unknown")
    write(h, "f", 30, 31, outcome="fail")
    final(h, "a")
    assert rules(h, stale_reads=True) == []


def test_unknown_write_may_appear_late_and_supersede() -> None:
    h = History()
    write(h, "u", 0, None, outcome="unknown")
    write(h, "a", 10, 20)
    read(h, "u", 30, 40)
    final(h, "u")
    # u never completed: it may have been applied after a and replaced it.
    assert rules(h, stale_reads=True) == []


def test_delete_survives_as_a_tombstone_and_nil_reads() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, None, 20, 30)
    read(h, None, 40, 50)
    final(h, None)
    assert rules(h, stale_reads=True) == []


def test_noop_delete_is_not_a_write() -> None:
    h = History()
    write(h, None, 0, 10, noop=True)
    write(h, "a", 20, 30)
    final(h, "a")
    assert rules(h) == []


def test_stale_read_allowed_without_the_flag_and_concurrent_read_ok() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 20, 30)
    read(h, "a", 25, 35)  # overlaps b: may see either
    read(h, "a", 40, 50)  # after b: stale, but only judged with stale_reads=True
    final(h, "b")
    assert rules(h) == []
    assert rules(h, stale_reads=True) == ["stale-read"]


def test_read_within_the_clock_granularity_is_not_stale() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 10.5, 11)  # starts within a millisecond of a's end: may tie on timestamp
    read(h, "a", 20, 21)
    final(h, "a", "b")
    assert rules(h, stale_reads=True) == []
    assert rules(h, stale_reads=True, granularity_ms=0.1) == ["stale-read"]


def test_convergence_recorded() -> None:
    h = History()
    h.set_convergence(heal_ms=1000.0, converged_ms=1250.0, equal=True)
    assert h.convergence_ms() == 250.0
    assert rules(h) == []


def test_counts() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 0, None, outcome="unknown")
    read(h, "a", 20, 30)
    assert h.counts() == {"ops": 3, "set_ok": 1, "set_unknown": 1, "get_ok": 1}


# -- invalid histories ------------------------------------------------------------------------------


def test_lost_acknowledged_write() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 20, 30)  # acknowledged, nothing after it, and gone
    final(h, "a")
    assert rules(h) == ["lost-write"]


def test_lost_write_with_no_survivor() -> None:
    h = History()
    write(h, "a", 0, 10)
    final(h)
    assert rules(h) == ["lost-write"]


def test_lost_delete() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, None, 20, 30)
    final(h, "a")
    assert rules(h) == ["lost-write"]


def test_phantom_value() -> None:
    h = History()
    write(h, "a", 0, 10)
    read(h, "zzz", 20, 30)
    final(h, "a")
    assert rules(h) == ["phantom-read"]


def test_phantom_in_final_state() -> None:
    h = History()
    write(h, "a", 0, 10)
    final(h, "a", "ghost")
    assert rules(h) == ["phantom-read"]


def test_read_from_the_future() -> None:
    h = History()
    read(h, "a", 0, 5)
    write(h, "a", 10, 20)
    final(h, "a")
    assert rules(h) == ["phantom-read"]


def test_value_of_another_key_is_a_phantom() -> None:
    h = History()
    write(h, "a", 0, 10, key=b"other")
    read(h, "a", 20, 30)
    final(h, "a", key=b"other")
    assert rules(h) == ["phantom-read"]


def test_failed_write_visible() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "f", 20, 21, outcome="fail")
    read(h, "f", 30, 40)
    final(h, "a")
    assert rules(h) == ["failed-write-visible"]


def test_stale_read_after_acknowledged_write() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "b", 20, 30)
    read(h, "a", 40, 50)
    final(h, "b")
    got = check(h, stale_reads=True)
    assert [v.rule for v in got] == ["stale-read"]
    assert "#1" in got[0].message and "#2" in got[0].message


def test_stale_nil_read() -> None:
    h = History()
    write(h, "a", 0, 10)
    read(h, None, 20, 30)  # the key was written and acknowledged before the read began
    final(h, "a")
    assert rules(h, stale_reads=True) == ["stale-read"]


def test_nil_read_explained_by_a_concurrent_delete() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, None, 15, None, outcome="unknown")
    read(h, None, 20, 30)
    final(h, None)
    assert rules(h, stale_reads=True) == []


def test_divergence() -> None:
    h = History()
    h.set_convergence(heal_ms=0.0, converged_ms=None, equal=False, detail="k: n1=[a] n2=[b]")
    got = check(h)
    assert [v.rule for v in got] == ["divergence"] and "n1=[a]" in str(got[0])


def test_values_must_be_unique() -> None:
    h = History()
    write(h, "a", 0, 10)
    write(h, "a", 20, 30)
    with pytest.raises(ValueError, match="unique"):
        check(h)
