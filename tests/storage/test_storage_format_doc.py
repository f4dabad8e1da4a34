"""The format documents are a specification: these readers are written from
docs/formats/{sstable,commitlog,manifest}.md alone (no respkv.storage.format import) and must
read what the engine writes."""

from __future__ import annotations

import struct
import zlib

import xxhash
from storage_helpers import DB, open_engine

from respkv.storage.faultfs import FaultFileSystem


def _checksum(b: bytes) -> int:
    return xxhash.xxh3_64_intdigest(b) & 0xFFFFFFFF


def _block(f: bytes, off: int, ln: int) -> bytes:
    blk = f[off : off + ln]
    assert struct.unpack_from("<I", f, off + ln)[0] == _checksum(blk)
    return blk


def read_sstable(f: bytes) -> tuple[list[tuple], dict]:
    foot = f[-64:]
    (i_off, i_len, f_off, f_len, r_off, r_len, p_off, p_len, ver, crc, magic) = struct.unpack(
        "<QIQIQIQIIIQ", foot)
    assert magic == 0x5245535053535431 and ver == 2 and crc == _checksum(foot[:52])
    ix = _block(f, i_off, i_len)
    (count,) = struct.unpack_from("<I", ix, 0)
    o = 4
    entries = []
    for _ in range(count):
        boff, blen, kl = struct.unpack_from("<QII", ix, o)
        o += 16
        first = ix[o : o + kl]
        o += kl
        blk = _block(f, boff, blen)
        (n,) = struct.unpack_from("<I", blk, len(blk) - 4)
        offs = struct.unpack_from(f"<{n}I", blk, len(blk) - 4 - 8 * n)
        for eo in offs:
            kind, kl2, ml, vl, seq, t = struct.unpack_from("<BIIIQq", blk, eo)
            p = eo + 29
            key = blk[p : p + kl2]
            entries.append((key, kind, seq, t, blk[p + kl2 : p + kl2 + ml],
                            blk[p + kl2 + ml : p + kl2 + ml + vl]))
        assert entries[-n][0] == first
    flt = _block(f, f_off, f_len)
    k, nwords = struct.unpack_from("<BQ", flt, 0)
    assert len(flt) == 9 + 8 * nwords
    words = struct.unpack_from(f"<{nwords}Q", flt, 9)

    for key, *_ in entries:
        h = xxhash.xxh3_64_intdigest(key)
        w = words[h % nwords]
        x = h // 2**52
        a, b = x % 64, x // 64 | 1
        assert all((w >> ((a + j * b) % 64)) & 1 for j in range(k))
    rd = _block(f, r_off, r_len)
    (rn,) = struct.unpack_from("<I", rd, 0)
    props = _block(f, p_off, p_len)
    ent, tombs, mn, mx, nblocks, sl, ll = struct.unpack_from("<QQQQIII", props, 0)
    assert ent == len(entries) and nblocks == count
    return entries, {"range_tombstones": rn, "tombstones": tombs, "k": k}


def read_commitlog(f: bytes) -> list[tuple[int, bytes]]:
    out = []
    o = 0
    while o + 9 <= len(f):
        crc, ln, typ = struct.unpack_from("<IIB", f, o)
        payload = f[o + 9 : o + 9 + ln]
        assert zlib.crc32(bytes([typ]) + payload) == crc
        out.append((typ, payload))
        o += 9 + ln
    assert o == len(f)
    return out


def test_sstable_and_log_readable_from_the_documents(fs: FaultFileSystem) -> None:
    e = open_engine(fs, memtable_bytes=1 << 20)
    for i in range(500):
        e.put(b"k%04d" % i, b"v%d" % i, expire_at_ms=i, meta=b"m")
    e.delete(b"k0007")
    e.delete_range(b"k03", b"k04")
    e.sync()
    (log,) = [n for n in fs.listdir(DB) if n.endswith(".log")]
    recs = read_commitlog(fs.read_file(f"{DB}/{log}"))
    assert [t for t, _ in recs] == [1] * 500 + [2, 4]
    seq, exp, kl, ml, vl = struct.unpack_from("<QqIII", recs[5][1], 0)
    assert (seq, exp, kl, ml, vl) == (6, 5, 5, 1, 2)
    e.flush()
    (sst,) = [n for n in fs.listdir(DB) if n.endswith(".sst")]
    entries, info = read_sstable(fs.read_file(f"{DB}/{sst}"))
    assert [k for k, *_ in entries] == sorted(k for k, *_ in entries)
    by_key = {k: rest for k, *rest in entries}
    assert by_key[b"k0005"] == [1, 6, 5, b"m", b"v5"]
    assert by_key[b"k0007"][0] == 2 and b"k0300" not in by_key
    assert info == {"range_tombstones": 1, "tombstones": 1, "k": 5}
    current = fs.read_file(f"{DB}/CURRENT")
    assert current.startswith(b"MANIFEST-") and current.endswith(b"\n")
    manifest = read_commitlog(fs.read_file(f"{DB}/{current.decode().strip()}"))
    assert all(t == 10 for t, _ in manifest) and manifest[0][1][0] == 6  # format tag first
