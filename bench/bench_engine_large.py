"""Large-data benchmark: load a data set several times the engine's memory budget, then read a
random sample back, printing throughput and peak RSS.

The engine's memory budget is what its knobs allow it to hold: the active memtable plus up to
``max_frozen`` frozen ones (memtable_bytes counts Python object overhead), plus the block cache.
The data set defaults to 2 GB against a 256 MB budget (64 MB memtable x (1 active + 2 frozen) +
64 MB cache); ``--gb`` scales it. Flushes and compactions run in two worker threads while the main
thread writes (as the node may run them), the writer waiting whenever ``write_stalled()``; the commit
log is handed to the OS every 1000 writes and never fsynced (appendfsync no).

Run: python bench/bench_engine_large.py [--gb 2] [--value-bytes 1000]
A measurement to read, never a timed test.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.storage.lsm import LSMEngine  # noqa: E402

_MIX = 0x9E3779B97F4A7C15  # odd: i -> i * _MIX mod 2^64 is a bijection (unique, scattered keys)
_pack = struct.Struct(">QQ").pack


def key_of(i: int) -> bytes:
    return _pack((i * _MIX) & 0xFFFFFFFFFFFFFFFF, i)  # 16 bytes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--value-bytes", type=int, default=1000)
    ap.add_argument("--memtable-mb", type=int, default=64)
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--max-frozen", type=int, default=2)
    ap.add_argument("--sample", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to put the data (default: a temp dir)")
    args = ap.parse_args()
    budget_mb = args.memtable_mb * (1 + args.max_frozen) + args.cache_mb
    n = int(args.gb * (1 << 30) / (16 + args.value_bytes))
    rng = random.Random(1)
    pool = [rng.randbytes(args.value_bytes) for _ in range(1024)]
    tmp = tempfile.mkdtemp(prefix="respkv-large-", dir=args.dir)
    print(f"{n:,} keys x ({16} + {args.value_bytes}) bytes = {args.gb:.2f} GB of user data; "
          f"engine memory budget {budget_mb} MB (memtable {args.memtable_mb} MB x "
          f"{1 + args.max_frozen}, block cache {args.cache_mb} MB); "
          f"data/budget = {args.gb * 1024 / budget_mb:.1f}x")
    rss_start = peak_rss_mb()
    try:
        e = LSMEngine.open(tmp, memtable_bytes=args.memtable_mb << 20,
                           block_cache_bytes=args.cache_mb << 20, max_frozen=args.max_frozen)
        # Two workers, as the node may run them: flushes never wait behind a long compaction.
        wake = threading.Condition()
        stop = False

        def worker(step) -> None:  # type: ignore[no-untyped-def]
            while not stop:
                did = step()
                with wake:
                    wake.notify_all()
                    if not did and not stop:
                        wake.wait(0.05)

        threads = [threading.Thread(target=worker, args=(f,), daemon=True)
                   for f in (e.do_flush, e.do_compaction)]
        for th in threads:
            th.start()

        def wait_until(cond) -> None:  # type: ignore[no-untyped-def]
            with wake:
                while not cond():
                    wake.notify_all()
                    wake.wait(1.0)

        put = e.put
        stalls = 0
        t0 = time.perf_counter()
        for i in range(n):
            if i % 1000 == 0:
                e.write_pending()
                if e.write_stalled():
                    stalls += 1
                    wait_until(lambda: not e.write_stalled())
            put(key_of(i), pool[i % 1024])
        e.write_pending()
        t_load = time.perf_counter() - t0
        wait_until(lambda: not e.stats()["frozen_memtables"])
        t_flushed = time.perf_counter() - t0
        st_flushed = e.stats()
        wait_until(lambda: not e.background_work_pending())
        t_settle = time.perf_counter() - t0
        st = e.stats()
        sample = [rng.randrange(n) for _ in range(args.sample)]
        get = e.get
        t1 = time.perf_counter()
        for i in sample:
            r = get(key_of(i))
            if r is None or r.value != pool[i % 1024]:
                raise AssertionError(f"key {i} wrong")
        t_read = time.perf_counter() - t1
        st2 = e.stats()
        stop = True
        with wake:
            wake.notify_all()
        for th in threads:
            th.join()
        e.close()
        disk = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mb = n * (16 + args.value_bytes) / (1 << 20)
    print(f"load: {n / t_load:,.0f} puts/s, {mb / t_load:.1f} MB/s ({t_load:.1f} s; writer "
          f"stalled {stalls} times); all flushed at {t_flushed:.1f} s "
          f"({st_flushed['tables']} tables); compactions settled at {t_settle:.1f} s")
    print(f"read back {args.sample:,} random keys (verified): {args.sample / t_read:,.0f} gets/s")
    print(f"tables={st2['tables']} ("
          + ", ".join(f"{k[:-7]}:{v}" for k, v in st2.items() if k.startswith("level") and v)
          + f"), on disk {disk / (1 << 20):.0f} MB, write_amplification="
          f"{st['write_amplification']}, flushes={st2['flushes']}, "
          f"compactions={st2['compactions']}, bloom_false_positive_rate="
          f"{st2['bloom_false_positive_rate']}, block cache hits/misses="
          f"{st2['block_cache_hits']}/{st2['block_cache_misses']}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (process start {rss_start:.0f} MB) "
          f"for {mb:.0f} MB of data and a {budget_mb} MB engine budget")


if __name__ == "__main__":
    main()
