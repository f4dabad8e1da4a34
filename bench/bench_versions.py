"""CPU cost of the version/sibling-set code on the replicated write path, without any network.

Two LocalReplicas on LSM engines in temp dirs: ``a`` coordinates blind overwrites of keys it
already holds (``LocalReplica.coordinate``), ``b`` receives the resulting bytes, each one
superseding what it stores (``LocalReplica.apply_raw``), as a replica does for ``RW``. Also times
``versions.decode_sibling_set`` / ``encode_sibling_set`` on those one-sibling sets, and the
engine's own ``put`` / ``get`` for scale. The keys cycle through more distinct keys than the
replica's decoded-set cache holds, as a real write load over many keys does.

Figures are CPU microseconds per call (process_time), the best of ``--rounds`` passes.
``--against REV`` also runs the same measurements on the ``respkv`` package of git revision
REV (exported to a temp dir, run in a child process) and prints both columns side by side:

    python bench/bench_versions.py [--keys 20000] [--rounds 3] [--against HEAD~3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VALUE = b"x" * 100


def measure(n_keys: int, rounds: int) -> dict[str, float]:
    """Per-call CPU microseconds of each operation, keyed by a label (imports respkv lazily, so
    ``--import-from`` decides which copy is measured)."""
    from respkv.cluster import versions as V
    from respkv.node.replica import LocalReplica, cluster_storage_key
    from respkv.storage.lsm import LSMEngine

    clock = itertools.count(1_700_000_000_000)
    tick: Callable[[], int] = lambda: next(clock)  # noqa: E731
    a = LocalReplica(LSMEngine.open(tempfile.mkdtemp(prefix="respkv-bv-")), "n0", tick)
    b = LocalReplica(LSMEngine.open(tempfile.mkdtemp(prefix="respkv-bv-")), "n1", tick)
    keys = [b"key:%d" % i for i in range(n_keys)]
    for k in keys:
        _, data = a.coordinate(0, k, VALUE, 0, None)
        b.apply_raw(0, k, data)

    best: dict[str, float] = {}

    def note(label: str, fn: Callable[..., object], calls: list[tuple[object, ...]]) -> None:
        t0 = time.process_time()
        for args in calls:
            fn(*args)
        us = (time.process_time() - t0) * 1e6 / len(calls)
        best[label] = min(us, best.get(label, us))

    skeys = [cluster_storage_key(0, k) for k in keys]
    for _ in range(rounds):
        out: list[bytes] = []

        def coordinate(key: bytes, out: list[bytes] = out) -> None:
            out.append(a.coordinate(0, key, VALUE, 0, None)[1])

        note("LocalReplica.coordinate (blind overwrite)", coordinate, [(k,) for k in keys])
        note("LocalReplica.apply_raw (incoming supersedes)", b.apply_raw,
             [(0, k, data) for k, data in zip(keys, out, strict=True)])
        note("versions.decode_sibling_set", V.decode_sibling_set, [(data,) for data in out])
        sets = [V.decode_sibling_set(data) for data in out]
        note("versions.encode_sibling_set", V.encode_sibling_set, [(s,) for s in sets])
        assert [V.encode_sibling_set(s) for s in sets] == out
        del sets  # not to be traversed by the collector during the next pass
        note("LSMEngine.put (for scale)", b.engine.put,
             list(zip(skeys, out, strict=True)))
        note("LSMEngine.get (for scale)", b.engine.get, [(sk,) for sk in skeys])
    return best


def measure_revision(rev: str, n_keys: int, rounds: int) -> dict[str, float]:
    """``measure`` on git revision ``rev``'s respkv package, in a child process."""
    tmp = tempfile.mkdtemp(prefix="respkv-bv-rev-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "respkv"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--keys", str(n_keys), "--rounds", str(rounds),
         "--json", "--import-from", tmp],
        check=True, capture_output=True, text=True,
    )
    return json.loads(child.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--keys", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--against", metavar="REV", help="also measure this git revision's respkv")
    p.add_argument("--import-from", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, args.import_from or ROOT)
    if args.json:
        print(json.dumps(measure(args.keys, args.rounds)))
        return
    before = measure_revision(args.against, args.keys, args.rounds) if args.against else None
    after = measure(args.keys, args.rounds)
    width = max(len(label) for label in after)
    print(f"CPU us per call, best of {args.rounds} passes over {args.keys} keys")
    if before is None:
        for label, us in after.items():
            print(f"  {label:<{width}}  {us:7.2f}")
        return
    print(f"  {'':<{width}}  {args.against:>9}  {'working':>9}  speedup")
    for label, us in after.items():
        old = before.get(label, float("nan"))
        print(f"  {label:<{width}}  {old:9.2f}  {us:9.2f}  {old / us:6.2f}x")


if __name__ == "__main__":
    main()
