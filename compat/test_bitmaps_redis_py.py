"""redis-py's bitmap API against respkv (and, with the same calls, against redis-server 7.0):
setbit, getbit, bitcount, bitpos, bitop and the bitfield builder, RESP2 and RESP3, bytes and
decoded responses."""

from __future__ import annotations

from typing import Any

import pytest
import redis

CONFIGS = [
    pytest.param({"protocol": 2, "decode_responses": False}, id="resp2-bytes"),
    pytest.param({"protocol": 3, "decode_responses": True}, id="resp3-str"),
]


def run_calls(r: redis.Redis, binary_values: bool) -> list[Any]:
    out: list[Any] = []
    out.append(r.setbit("b", 7, 1))
    out.append(r.setbit("b", 7, 0))
    out.append(r.setbit("b", 20, 1))
    out.append([r.getbit("b", i) for i in (0, 7, 20, 1000)])
    out.append(r.set("s", b"\xff\xf0\x00"))
    out.append(r.bitcount("s"))
    out.append(r.bitcount("s", 1, 1))
    out.append(r.bitcount("s", 4, 11, "BIT"))
    out.append(r.bitcount("nokey"))
    out.append(r.bitpos("s", 0))
    out.append(r.bitpos("s", 1, 1))
    out.append(r.bitpos("s", 0, 0, 7, "BIT"))
    out.append(r.bitpos("nokey", 1))
    out.append(r.bitop("AND", "and", "s", "b"))
    out.append(r.bitop("OR", "or", "s", "b"))
    out.append(r.bitop("XOR", "xor", "s", "b", "nokey"))
    out.append(r.bitop("NOT", "not", "s"))
    # Decoded responses cannot decode these bytes: compare their lengths there.
    out.append([r.get(k) if binary_values else r.strlen(k) for k in ("and", "or", "xor", "not")])
    out.append(r.bitfield("f").set("u8", 0, 255).get("i8", 0).incrby("u4", "#1", 3).execute())
    out.append(r.bitfield("f", default_overflow="FAIL").incrby("u8", 0, 1).incrby("i8", 8, -129)
               .execute())
    out.append(r.bitfield("f").overflow("SAT").incrby("i8", 8, -200).overflow("WRAP")
               .incrby("u8", 0, 300).get("u16", 0).execute())
    out.append(r.bitfield_ro("f", "u8", 0, items=[("i8", 8), ("u16", "#0")]))
    with pytest.raises(redis.ResponseError, match="bit offset is not an integer or out of range"):
        r.setbit("b", -1, 1)
    with pytest.raises(redis.ResponseError, match="BITOP NOT must be called with a single source"):
        r.bitop("NOT", "d", "s", "b")
    with pytest.raises(redis.ResponseError, match="Invalid bitfield type"):
        r.bitfield("f").get("u64", 0).execute()
    return out


@pytest.mark.parametrize("config", CONFIGS)
def test_bitmaps_via_redis_py(respkv_mem: Any, config: dict[str, Any]) -> None:
    r = redis.Redis(port=respkv_mem.port, **config)
    text = config["decode_responses"]
    try:
        out = run_calls(r, not text)
    finally:
        r.close()
    assert out[:4] == [0, 1, 0, [0, 0, 1, 0]]
    assert out[5:13] == [12, 4, 8, 0, 12, 8, -1, -1]
    assert out[13:17] == [3, 3, 3, 3]
    assert out[17] == ([3, 3, 3, 3] if text else
                       [b"\x00\x00\x00", b"\xff\xf0\x08", b"\xff\xf0\x08", b"\x00\x0f\xff"])
    assert out[18] == [0, -1, 2]
    assert out[19] == [243, None]
    assert out[20] == [-128, 31, 8064]
    assert out[21] == [31, -128, 8064]


@pytest.mark.parametrize("config", CONFIGS)
def test_bitmaps_via_redis_py_match_redis_server(both: Any, config: dict[str, Any]) -> None:
    results = []
    for sp in both:
        r = redis.Redis(port=sp.port, **config)
        try:
            results.append(run_calls(r, not config["decode_responses"]))
        finally:
            r.close()
    assert results[0] == results[1]
