"""In-process storage engine benchmark: respkv's LSMEngine vs LevelDB (plyvel) vs SQLite.

300k random 12-byte keys, 100-byte values, no fsync (respkv: write_pending() every 1000 writes,
like appendfsync no; LevelDB: sync=False; SQLite: WAL, synchronous=NORMAL, autocommit, one
statement per operation). Reports puts/s, gets/s of present keys (respkv twice: served from
SSTables after everything is flushed, and served from the memtable), gets/s of absent keys, and a
full range scan (keys/s), with the ratios respkv/LevelDB and respkv/SQLite.

Run: python bench/bench_engine.py [--n 300000] [--profile put|get|get_mem|absent|scan]
This is a measurement to read, never a timed test.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.storage.lsm import LSMEngine  # noqa: E402


def timed(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_respkv(keys, values, probes, absent, tmp, profile):  # type: ignore[no-untyped-def]
    out = {}
    path = os.path.join(tmp, "respkv")
    # memtable well below the data size (~40 MB of Python objects), so tables are written,
    # flushed and compacted while loading (inline: the cost is part of put throughput).
    e = LSMEngine.open(path, memtable_bytes=8 << 20, block_cache_bytes=64 << 20,
                       inline_background=True)
    put = e.put
    wp = e.write_pending

    def load() -> None:
        for i, k in enumerate(keys):
            put(k, values[i])
            if i % 1000 == 999:
                wp()
        wp()

    def run(name, fn, n):  # type: ignore[no-untyped-def]
        if profile == name:
            pr = cProfile.Profile()
            pr.enable()
        r = timed(n, fn)
        if profile == name:
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(15)
        out[name] = r

    run("put", load, len(keys))
    e.flush()  # everything in tables now
    e.compact(full=False)
    st = e.stats()
    get = e.get

    def gets() -> None:
        for k in probes:
            if get(k) is None:
                raise AssertionError("missing key")

    def gets_absent() -> None:
        for k in absent:
            if get(k) is not None:
                raise AssertionError("phantom key")

    gets()  # warm the block cache once (LevelDB's is warmed the same way)
    run("get", gets, len(probes))
    run("absent", gets_absent, len(absent))

    def scan() -> None:
        n = sum(1 for _ in e.scan())
        assert n == len(set(keys)), n

    run("scan", scan, len(set(keys)))
    st2 = e.stats()
    e.close()
    # the same data held entirely in the memtable
    path2 = os.path.join(tmp, "respkv-mem")
    e = LSMEngine.open(path2, memtable_bytes=1 << 30, inline_background=True)
    for i, k in enumerate(keys):
        e.put(k, values[i])
    get = e.get
    run("get_mem", gets, len(probes))
    e.close()
    info = (f"tables={st['tables']} levels="
            + ",".join(f"{k[5:-7]}:{v}" for k, v in st.items() if k.startswith("level"))
            + f" write_amplification={st['write_amplification']}"
            + f" bloom_fp_rate={st2['bloom_false_positive_rate']}"
            + f" cache_hits={st2['block_cache_hits']} misses={st2['block_cache_misses']}")
    return out, info


def bench_leveldb(keys, values, probes, absent, tmp):  # type: ignore[no-untyped-def]
    import plyvel

    db = plyvel.DB(os.path.join(tmp, "leveldb"), create_if_missing=True)
    out = {}
    put = db.put

    def load() -> None:
        for i, k in enumerate(keys):
            put(k, values[i])

    out["put"] = timed(len(keys), load)
    get = db.get

    def gets() -> None:
        for k in probes:
            if get(k) is None:
                raise AssertionError

    def gets_absent() -> None:
        for k in absent:
            if get(k) is not None:
                raise AssertionError

    gets()
    out["get"] = timed(len(probes), gets)
    out["absent"] = timed(len(absent), gets_absent)
    nkeys = len(set(keys))
    out["scan"] = timed(nkeys, lambda: sum(1 for _ in db.iterator()))
    db.close()
    return out


def bench_sqlite(keys, values, probes, absent, tmp):  # type: ignore[no-untyped-def]
    con = sqlite3.connect(os.path.join(tmp, "sqlite.db"), isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    out = {}
    ex = con.execute

    def load() -> None:
        for i, k in enumerate(keys):
            ex("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, values[i]))

    out["put"] = timed(len(keys), load)

    def gets() -> None:
        for k in probes:
            if ex("SELECT v FROM kv WHERE k = ?", (k,)).fetchone() is None:
                raise AssertionError

    def gets_absent() -> None:
        for k in absent:
            if ex("SELECT v FROM kv WHERE k = ?", (k,)).fetchone() is not None:
                raise AssertionError

    out["get"] = timed(len(probes), gets)
    out["absent"] = timed(len(absent), gets_absent)
    nkeys = len(set(keys))
    out["scan"] = timed(nkeys, lambda: sum(1 for _ in ex("SELECT k, v FROM kv ORDER BY k")))
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--profile", choices=["put", "get", "get_mem", "absent", "scan"])
    ap.add_argument("--only-respkv", action="store_true")
    args = ap.parse_args()
    rng = random.Random(42)
    keys = [rng.randbytes(12) for _ in range(args.n)]
    values = [rng.randbytes(100) for _ in range(args.n)]
    probes = [keys[rng.randrange(args.n)] for _ in range(args.n)]
    absent = [rng.randbytes(11) + b"\xff" for _ in range(args.n)]
    tmp = tempfile.mkdtemp(prefix="respkv-bench-")
    try:
        r, info = bench_respkv(keys, values, probes, absent, tmp, args.profile)
        if args.only_respkv:
            for k, v in r.items():
                print(f"respkv {k}: {v:,.0f}/s")
            print(info)
            return
        ldb = bench_leveldb(keys, values, probes, absent, tmp)
        sql = bench_sqlite(keys, values, probes, absent, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.n} random 12-byte keys, 100-byte values, no fsync (python {sys.version.split()[0]})")
    print(f"respkv: {info}")
    print(f"{'operation':<28}{'respkv':>12}{'LevelDB':>12}{'SQLite':>12}{'vs LevelDB':>12}{'vs SQLite':>11}")
    rows = [("put/s", "put", "put"), ("get/s (from tables)", "get", "get"),
            ("get/s (from memtable)", "get_mem", "get"), ("get absent/s", "absent", "absent"),
            ("range scan keys/s", "scan", "scan")]
    for label, rk, ok in rows:
        print(f"{label:<28}{r[rk]:>12,.0f}{ldb[ok]:>12,.0f}{sql[ok]:>12,.0f}"
              f"{r[rk] / ldb[ok]:>11.2f}x{r[rk] / sql[ok]:>10.2f}x")
    print("targets: put >= 0.5x LevelDB, get >= 0.5x LevelDB, both ahead of SQLite")


if __name__ == "__main__":
    main()
