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


class Respkv:
    name = "respkv"

    def __init__(self, path: str, memtable_bytes: int, cache_bytes: int) -> None:
        # inline_background: flushes and compactions run inside put(), so their cost is part
        # of the put figure (as LevelDB's compactions are, in its background thread).
        self.e = LSMEngine.open(path, memtable_bytes=memtable_bytes,
                                block_cache_bytes=cache_bytes, inline_background=True)

    def load(self, keys, values) -> None:  # type: ignore[no-untyped-def]
        put = self.e.put
        wp = self.e.write_pending
        for i, k in enumerate(keys):
            put(k, values[i])
            if i % 1000 == 999:
                wp()  # appendfsync no: the log is handed to the OS, never fsynced
        wp()

    def gets(self, probes) -> None:  # type: ignore[no-untyped-def]
        get = self.e.get
        for k in probes:
            if get(k) is None:
                raise AssertionError("missing key")

    def absent(self, probes) -> None:  # type: ignore[no-untyped-def]
        get = self.e.get
        for k in probes:
            if get(k) is not None:
                raise AssertionError("phantom key")

    def scan(self) -> int:
        return sum(1 for _ in self.e.scan())

    def close(self) -> None:
        self.e.close()


class LevelDB:
    name = "LevelDB"

    def __init__(self, path: str) -> None:
        import plyvel

        self.db = plyvel.DB(path, create_if_missing=True)

    def load(self, keys, values) -> None:  # type: ignore[no-untyped-def]
        put = self.db.put
        for i, k in enumerate(keys):
            put(k, values[i])

    def gets(self, probes) -> None:  # type: ignore[no-untyped-def]
        get = self.db.get
        for k in probes:
            if get(k) is None:
                raise AssertionError

    def absent(self, probes) -> None:  # type: ignore[no-untyped-def]
        get = self.db.get
        for k in probes:
            if get(k) is not None:
                raise AssertionError

    def scan(self) -> int:
        return sum(1 for _ in self.db.iterator())

    def close(self) -> None:
        self.db.close()


class SQLite:
    name = "SQLite"

    def __init__(self, path: str) -> None:
        self.con = sqlite3.connect(path, isolation_level=None)  # autocommit: one txn per op
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def load(self, keys, values) -> None:  # type: ignore[no-untyped-def]
        ex = self.con.execute
        for i, k in enumerate(keys):
            ex("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, values[i]))

    def gets(self, probes) -> None:  # type: ignore[no-untyped-def]
        ex = self.con.execute
        for k in probes:
            if ex("SELECT v FROM kv WHERE k = ?", (k,)).fetchone() is None:
                raise AssertionError

    def absent(self, probes) -> None:  # type: ignore[no-untyped-def]
        ex = self.con.execute
        for k in probes:
            if ex("SELECT v FROM kv WHERE k = ?", (k,)).fetchone() is not None:
                raise AssertionError

    def scan(self) -> int:
        return sum(1 for _ in self.con.execute("SELECT k, v FROM kv ORDER BY k"))

    def close(self) -> None:
        self.con.close()


def profiled(enabled: bool, fn):  # type: ignore[no-untyped-def]
    if not enabled:
        return fn()
    pr = cProfile.Profile()
    pr.enable()
    try:
        return fn()
    finally:
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3, help="read phases: best of this many runs")
    ap.add_argument("--memtable-mb", type=int, default=8)
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--profile", choices=["put", "get", "get_mem", "absent", "scan"])
    ap.add_argument("--only-respkv", action="store_true")
    args = ap.parse_args()
    rng = random.Random(42)
    n = args.n
    keys = [rng.randbytes(12) for _ in range(n)]
    values = [rng.randbytes(100) for _ in range(n)]
    probes = [keys[rng.randrange(n)] for _ in range(n)]
    absent = [rng.randbytes(11) + b"\xff" for _ in range(n)]  # 11+1 bytes: never a loaded key
    nkeys = len(set(keys))
    tmp = tempfile.mkdtemp(prefix="respkv-bench-")
    res: dict[str, dict[str, float]] = {"respkv": {}, "LevelDB": {}, "SQLite": {}}

    def best(name: str, op: str, rate: float) -> None:
        res[name][op] = max(res[name].get(op, 0.0), rate)

    try:
        # -- loads: respkv and LevelDB twice each, alternating (best of 2); SQLite once --------
        engines = {}
        for rep in range(2):
            for cls in (Respkv, LevelDB):
                if args.only_respkv and cls is LevelDB:
                    continue
                path = os.path.join(tmp, f"{cls.name}-{rep}")
                eng = (Respkv(path, args.memtable_mb << 20, args.cache_mb << 20)
                       if cls is Respkv else cls(path))
                r = profiled(args.profile == "put" and cls is Respkv and rep == 0,
                             lambda eng=eng: timed(n, lambda: eng.load(keys, values)))
                best(cls.name, "put", r)
                if rep == 0:
                    engines[cls.name] = eng
                else:
                    eng.close()
        if not args.only_respkv:
            sq = SQLite(os.path.join(tmp, "sqlite.db"))
            best("SQLite", "put", timed(n, lambda: sq.load(keys, values)))
            engines["SQLite"] = sq
        rk = engines["respkv"]
        rk.e.flush()  # everything in SSTables: reads below are served from tables
        rk.e.compact(full=False)  # whatever the policy still wants (no forced full compaction)
        st = rk.e.stats()
        # the same data held in a memtable (never flushed)
        mem = Respkv(os.path.join(tmp, "respkv-mem"), 1 << 30, args.cache_mb << 20)
        mem.load(keys, values)
        for eng in engines.values():
            eng.gets(probes)  # one warm-up pass each (block caches, page cache)
        # -- reads: alternate engines, best of reps ------------------------------------------
        for _rep in range(args.reps):
            for name, eng in engines.items():
                prof = args.profile is not None and name == "respkv" and _rep == 0
                best(name, "get", profiled(prof and args.profile == "get",
                                           lambda eng=eng: timed(n, lambda: eng.gets(probes))))
                best(name, "absent", profiled(prof and args.profile == "absent",
                                              lambda eng=eng: timed(n, lambda: eng.absent(absent))))
                best(name, "scan", profiled(prof and args.profile == "scan",
                                            lambda eng=eng: timed(nkeys, lambda: eng.scan() == nkeys)))
            best("respkv", "get_mem", profiled(args.profile == "get_mem" and _rep == 0,
                                               lambda: timed(n, lambda: mem.gets(probes))))
        st2 = rk.e.stats()
        # extra data point: the same tables after a full (operator-triggered) compaction
        rk.e.compact(full=True)
        rk.gets(probes)
        for _rep in range(args.reps):
            best("respkv", "get_compacted", timed(n, lambda: rk.gets(probes)))
        for eng in list(engines.values()) + [mem]:
            eng.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r = res["respkv"]
    info = (f"memtable {args.memtable_mb} MB, block cache {args.cache_mb} MB; after load: "
            f"tables={st['tables']} ("
            + ", ".join(f"{k[:-7]}:{v}" for k, v in st.items() if k.startswith("level") and v)
            + f"), write_amplification={st['write_amplification']}, "
            f"bloom_false_positive_rate={st2['bloom_false_positive_rate']}, "
            f"block_cache hits/misses={st2['block_cache_hits']}/{st2['block_cache_misses']}")
    print(f"{n} random 12-byte keys, 100-byte values, no fsync; python {sys.version.split()[0]}; "
          f"puts best of 2 (SQLite 1), reads best of {args.reps}")
    print(f"respkv: {info}")
    if args.only_respkv:
        for k, v in r.items():
            print(f"respkv {k}: {v:,.0f}/s")
        return
    ldb, sql = res["LevelDB"], res["SQLite"]
    print(f"{'operation':<28}{'respkv':>12}{'LevelDB':>12}{'SQLite':>12}"
          f"{'respkv/LevelDB':>16}{'respkv/SQLite':>15}")
    rows = [("put/s", "put", "put"), ("get/s (from SSTables)", "get", "get"),
            ("get/s (1 table, compacted)", "get_compacted", "get"),
            ("get/s (from memtable)", "get_mem", "get"), ("get absent/s", "absent", "absent"),
            ("range scan keys/s", "scan", "scan")]
    for label, rk_op, op in rows:
        print(f"{label:<28}{r[rk_op]:>12,.0f}{ldb[op]:>12,.0f}{sql[op]:>12,.0f}"
              f"{r[rk_op] / ldb[op]:>15.2f}x{r[rk_op] / sql[op]:>14.2f}x")
    print("targets (issue): put >= 0.5x LevelDB, get >= 0.5x LevelDB, both ahead of SQLite")


if __name__ == "__main__":
    main()
