"""Bit commands on a real 3-node cluster, through unmodified redis-py clients.

SETBIT, GETBIT, BITCOUNT, BITPOS, BITFIELD and BITFIELD_RO are single-key read-modify-writes and
run on the coordinator's general path (quorum read, handler on the view, quorum write of what it
changed). BITOP reads its sources and writes one destination: the general path quorum-reads every
key of the spec's key positions (destination and sources), runs the handler, and writes only the
destination, with the clock of its read, so a concurrent write of the destination survives as a
sibling. The sources are read at quorum each, not as one atomic snapshot: like MGET, not atomic
across keys -- the result is the operation on values each read at quorum.
"""

from __future__ import annotations

import pytest
import redis

from respkv.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow


def test_setbit_getbit_bitcount_bitpos_bitfield_across_coordinators(cluster3: LocalCluster) -> None:
    c = [cluster3.client(i) for i in range(3)]
    assert c[0].setbit("bits", 7, 1) == 0
    assert c[1].setbit("bits", 7, 1) == 1  # the write through n0 is read through n1
    assert c[2].setbit("bits", 20, 1) == 0
    for r in c:
        assert r.get("bits") == b"\x01\x00\x08"
        assert [r.getbit("bits", i) for i in (0, 7, 20, 100)] == [0, 1, 1, 0]
        assert r.bitcount("bits") == 2
        assert r.bitpos("bits", 1) == 7
        assert r.bitpos("bits", 1, 1) == 20
    assert c[0].execute_command("SETBIT", "bits", 7, 0, "W", "ALL") == 1
    for r in c:
        assert r.execute_command("GETBIT", "bits", 7, "R", "ONE") == 0  # W=ALL: on every replica
    assert c[1].bitfield("bf").set("u8", 0, 200).incrby("u8", 0, 100).execute() == [0, 44]
    assert c[2].bitfield("bf", default_overflow="FAIL").incrby("u8", 0, 250).get("u8", 0) \
        .execute() == [None, 44]
    assert c[0].bitfield_ro("bf", "u8", 0) == [44]
    with pytest.raises(redis.ResponseError, match="bit offset is not an integer or out of range"):
        c[0].setbit("bits", -1, 1)
    with pytest.raises(redis.ResponseError, match="BITFIELD_RO only supports the GET subcommand"):
        c[1].execute_command("BITFIELD_RO", "bf", "SET", "u8", 0, 1)


def test_bitop_reads_sources_on_other_replicas_and_writes_the_destination(
    cluster3: LocalCluster,
) -> None:
    c = [cluster3.client(i) for i in range(3)]
    sources = {f"src{i}": bytes((1 << i, 0xF0 | i)) for i in range(6)}  # spread over the ring
    for i, (k, v) in enumerate(sources.items()):
        assert c[i % 3].set(k, v)
    names = list(sources)
    assert c[0].bitop("OR", "dest", *names) == 2
    expected_or = bytes((0x3F, 0xF7))
    assert c[0].bitop("AND", "and", *names) == 2
    assert c[1].bitop("XOR", "xor", *names[:3]) == 2
    assert c[2].bitop("NOT", "not", names[0]) == 2
    for r in c:
        assert r.get("dest") == expected_or
        assert r.get("and") == b"\x00\xf0"
        assert r.get("xor") == bytes((0x07, 0xF0 ^ 0xF1 ^ 0xF2))
        assert r.get("not") == b"\xfe\x0f"
    # The destination among the sources, a missing source, and a write level.
    assert c[1].execute_command("BITOP", "AND", "dest", "dest", "src1", "W", "ALL") == 2
    for r in c:
        assert r.execute_command("GET", "dest", "R", "ONE") == bytes((0x3F & 0x02, 0xF1))
    assert c[2].bitop("OR", "dest", "nokey", "nokey2") == 0  # nothing: the destination goes
    for r in c:
        assert r.exists("dest") == 0
    # The destination's TTL goes, as a SET's would.
    assert c[0].set("withttl", "x", ex=100)
    assert c[1].bitop("OR", "withttl", names[0]) == 2
    assert c[2].ttl("withttl") == -1
    with pytest.raises(redis.ResponseError, match="BITOP NOT must be called with a single source"):
        c[0].bitop("NOT", "d", "src0", "src1")
