"""redis-benchmark against respkv and redis-server in one run; prints each pair and the ratio.

Both servers run at the same time on loopback; the runs alternate (redis, respkv, redis, ...) so
that machine noise hits both alike, and each figure is the median of --repeat runs.

    python bench/bench_redis.py [--requests 100000] [--repeat 3] [--engine lsm|memory]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from respkv.testing.procs import start_redis, start_respkv  # noqa: E402

SCENARIOS = [
    ("-c 50", ["-c", "50"]),
    ("-c 50 -P 16", ["-c", "50", "-P", "16"]),
    ("-c 1", ["-c", "1"]),
]
LINE = re.compile(rb"^(SET|GET): ([\d.]+) requests per second, p50=([\d.]+) msec", re.M)


def run_benchmark(port: int, requests: int, extra: list[str]) -> dict[str, tuple[float, float]]:
    n = requests if "-P" in extra or extra[1] != "1" else max(requests // 5, 10000)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(n), "-d", "100", "-q",
         *extra],
        capture_output=True, timeout=600, check=True,
    ).stdout.replace(b"\r", b"\n")
    res = {m.group(1).decode(): (float(m.group(2)), float(m.group(3))) for m in LINE.finditer(out)}
    if set(res) != {"SET", "GET"}:
        raise RuntimeError(f"unexpected redis-benchmark output: {out[-500:]!r}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", default="lsm", choices=("lsm", "memory"))
    ap.add_argument("--appendfsync", default="everysec")
    args = ap.parse_args()
    if not shutil.which("redis-benchmark") or not shutil.which("redis-server"):
        print("redis-server and redis-benchmark are needed: apt-get install redis-server redis-tools")
        return 2
    redis = start_redis()
    respkv = start_respkv("--appendfsync", args.appendfsync, engine=args.engine)
    try:
        print(f"redis-benchmark -t set,get -d 100 -n {args.requests}, median of {args.repeat}; "
              f"respkv engine={args.engine} appendfsync={args.appendfsync}")
        print(f"{'scenario':<14}{'op':<5}{'redis ops/s':>13}{'respkv ops/s':>14}{'ratio':>8}"
              f"{'redis p50':>11}{'respkv p50':>12}")
        for label, extra in SCENARIOS:
            samples: dict[str, dict[str, list[tuple[float, float]]]] = {"redis": {}, "respkv": {}}
            for _ in range(args.repeat):
                for name, srv in (("redis", redis), ("respkv", respkv)):
                    for op, fig in run_benchmark(srv.port, args.requests, extra).items():
                        samples[name].setdefault(op, []).append(fig)
            for op in ("SET", "GET"):
                r = statistics.median(x[0] for x in samples["redis"][op])
                k = statistics.median(x[0] for x in samples["respkv"][op])
                rp = statistics.median(x[1] for x in samples["redis"][op])
                kp = statistics.median(x[1] for x in samples["respkv"][op])
                print(f"{label:<14}{op:<5}{r:>13,.0f}{k:>14,.0f}{k / r:>8.2f}{rp:>9.3f}ms{kp:>10.3f}ms")
    finally:
        respkv.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
